"""Retries and the source circuit breaker (cbm_luigi/pipeline/retry.py).

``call_with_retry`` runs a step again on transient errors only, a bounded number of times, waiting longer each
time; the breaker of a run is a state file under ``<cache_dir>/.breaker/`` that every worker reads.  The probes
are the real ``probe_source`` on a real source: a SQLite file that is missing (down) or present (back).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cbm_luigi.config.settings import Settings, load_settings
from cbm_luigi.errors import ConfigError, SourceError, TransientSourceError, TransientTargetError
from cbm_luigi.pipeline.retry import RetryPolicy, SourceBreaker, call_with_retry, is_transient, probe_source

TINY = RetryPolicy(attempts=4, delay=0.02, max_delay=0.05)


class Flaky:
    """A step that fails with ``errors`` in turn, then returns 'done'; counts its calls."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


def test_transient_errors_are_retried_with_growing_delays():
    step = Flaky(TransientSourceError("08S01 communication link failure"),
                 TransientTargetError("deadlock victim"), TransientSourceError("HYT00 timeout"))
    waits: list[tuple[int, float, str]] = []
    started = time.monotonic()
    result = call_with_retry(step, what="t: extract", policy=TINY,
                             on_retry=lambda attempt, delay, exc: waits.append((attempt, delay, str(exc))))
    elapsed = time.monotonic() - started
    assert (result, step.calls) == ("done", 4)
    assert [(a, e) for a, _, e in waits] == [(1, "08S01 communication link failure"), (2, "deadlock victim"),
                                             (3, "HYT00 timeout")]
    # exponential from delay, capped at max_delay, jittered within the upper half of each step
    delays = [d for _, d, _ in waits]
    for (lo, hi), d in zip([(0.01, 0.02), (0.02, 0.04), (0.025, 0.05)], delays, strict=True):
        assert lo <= d <= hi, delays
    assert elapsed >= sum(delays)  # it really waited


def test_backoff_grows_exponentially_up_to_the_cap():
    policy = RetryPolicy(attempts=10, delay=2.0, max_delay=60.0)
    for attempt, base in [(1, 2.0), (2, 4.0), (3, 8.0), (5, 32.0), (6, 60.0), (9, 60.0)]:
        samples = [policy.backoff(attempt) for _ in range(50)]
        assert all(base / 2 <= s <= base for s in samples), (attempt, min(samples), max(samples))


def test_attempts_are_bounded_and_the_last_error_raised():
    errors = [TransientSourceError(f"08001 attempt {i}") for i in range(1, 6)]
    step = Flaky(*errors)
    with pytest.raises(TransientSourceError, match="attempt 4") as err:
        call_with_retry(step, what="t: extract", policy=TINY)
    assert err.value is errors[3]
    assert step.calls == TINY.attempts == 4


@pytest.mark.parametrize("error", [SourceError("syntax error near FROM"), ConfigError("CBM_SOURCE is not set"),
                                   ValueError("a bug")], ids=["source", "config", "bug"])
def test_a_non_transient_error_fails_at_once(error):
    step = Flaky(error, error)
    retried: list[int] = []
    started = time.monotonic()
    with pytest.raises(type(error)):
        call_with_retry(step, what="t", policy=TINY, on_retry=lambda a, d, e: retried.append(a))
    assert (step.calls, retried) == (1, [])
    assert time.monotonic() - started < 0.5  # no wait


def test_odbc_sqlstates_are_transient():
    assert is_transient(RuntimeError("[08S01] [unixODBC]Communication link failure"))
    assert is_transient(RuntimeError("[HYT00] [unixODBC]Timeout expired"))
    assert not is_transient(RuntimeError("[42S02] Table not found"))


@pytest.mark.postgres
def test_a_driver_error_the_dialect_calls_transient_is_retried(pg_conninfo):
    """A real lock_not_available (55P03) from psycopg, raised outside any Target: the PostgreSQL dialect's
    SQLSTATE list makes it transient; the retry succeeds once the holder commits."""
    import uuid

    import psycopg

    from cbm_luigi.destinations.postgresql import PostgresDialect

    table = f"cbm_retry_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_conninfo, autocommit=True) as admin:
        admin.execute(f'CREATE TABLE "{table}" (k int PRIMARY KEY)')
        admin.execute(f'INSERT INTO "{table}" VALUES (1)')
    holder = psycopg.connect(pg_conninfo)
    try:
        holder.execute(f'SELECT k FROM "{table}" WHERE k = 1 FOR UPDATE')
        errors: list[BaseException] = []

        def step() -> int:
            with psycopg.connect(pg_conninfo) as c:
                return int(c.execute(f'SELECT k FROM "{table}" WHERE k = 1 FOR UPDATE NOWAIT').fetchone()[0])

        def release(attempt: int, delay: float, exc: BaseException) -> None:
            errors.append(exc)
            holder.commit()

        with pytest.raises(psycopg.errors.LockNotAvailable):  # without the dialect: not transient, no retry
            call_with_retry(step, what="t: merge", policy=TINY)
        assert call_with_retry(step, what="t: merge", dialect=PostgresDialect(), policy=TINY, on_retry=release) == 1
        assert len(errors) == 1 and isinstance(errors[0], psycopg.errors.LockNotAvailable)
    finally:
        holder.close()
        with psycopg.connect(pg_conninfo, autocommit=True) as admin:
            admin.execute(f'DROP TABLE IF EXISTS "{table}"')


def test_policy_from_options(monkeypatch):
    assert RetryPolicy.from_options() == RetryPolicy(3, 2.0, 60.0)
    monkeypatch.setenv("CBM_RETRY_ATTEMPTS", "0")  # at least one attempt
    monkeypatch.setenv("CBM_RETRY_DELAY", "0.5")
    monkeypatch.setenv("CBM_RETRY_MAX_DELAY", "4")
    assert RetryPolicy.from_options() == RetryPolicy(1, 0.5, 4.0)


# --- the source breaker -----------------------------------------------------------------------------------------


@pytest.fixture
def source_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """CBM_SOURCE: a SQLite file, not created yet (the source is down until a test creates it)."""
    db = tmp_path / "erp.sqlite"
    monkeypatch.setenv("CBM_SOURCE", f"sqlite:///{db}")
    monkeypatch.setenv("CBM_SOURCE_FLAVOR", "sqlite")
    monkeypatch.setenv("CBM_SOURCE_SCHEMA", "PUB")
    return db


def source_comes_back(db: Path) -> None:
    sqlite3.connect(db).close()


def counted(probe: Callable[[], None]) -> tuple[Callable[[], None], list[int]]:
    calls: list[int] = []

    def wrapped() -> None:
        calls.append(1)
        probe()

    return wrapped, calls


DOWN = TransientSourceError("source (progress, DSN=erp;UID=etl;PWD=hunter2): connect failed: [08001] refused")


def test_the_breaker_opens_after_a_confirmed_failure_and_fails_other_extracts(source_db, monkeypatch):
    settings = load_settings()
    probe, probes = counted(lambda: probe_source(settings))
    worker_a = SourceBreaker.for_run(settings, run_id="run-1")
    assert worker_a.path == settings.cache_dir / ".breaker" / "source-run-1.json"
    worker_a.check(probe)  # closed: nothing happens
    assert not worker_a.path.exists() and probes == []

    worker_a.record_failure("client", DOWN, probe)
    assert probes == [1]  # the failure was confirmed by a probe before opening
    state = json.loads(worker_a.path.read_text(encoding="utf-8"))
    assert state["table"] == "client" and state["run_id"] == "run-1"
    assert "does not exist" in state["error"]  # the probe's own error
    # another worker process of the same run reads the same file
    worker_b = SourceBreaker.for_run(load_settings(), run_id="run-1")
    with pytest.raises(SourceError) as err:
        worker_b.check(probe)
    msg = str(err.value)
    assert "source unreachable: circuit breaker open since" in msg
    assert f"(after client: {state['error']})" in msg and "this extract was not attempted" in msg
    assert probes == [1]  # failing at once: no probe, no timeout of its own
    # another run is not affected
    SourceBreaker.for_run(settings, run_id="run-2").check(probe)


def test_the_breaker_stays_closed_when_the_source_answers_or_the_error_is_not_transient(source_db):
    settings = load_settings()
    breaker = SourceBreaker.for_run(settings, run_id="run-1")
    probe, probes = counted(lambda: probe_source(settings))
    breaker.record_failure("client", SourceError("table client: column x unknown"), probe)
    assert probes == [] and not breaker.is_open()  # not a source outage: not even probed
    source_comes_back(source_db)
    breaker.record_failure("client", DOWN, probe)
    assert probes == [1] and not breaker.is_open()  # the source answers: the failure is the table's own
    assert not (settings.cache_dir / ".breaker" / "source-run-1.json").exists()


def test_the_breaker_closes_after_reset_seconds_when_the_probe_succeeds(source_db, monkeypatch):
    monkeypatch.setenv("CBM_BREAKER_RESET_SECONDS", "0.5")
    settings = load_settings()
    breaker = SourceBreaker.for_run(settings, run_id="run-1")
    assert breaker.reset_seconds == 0.5
    probe, probes = counted(lambda: probe_source(settings))
    breaker.trip("client", DOWN)
    assert "PWD=***" in breaker.state()["error"] and "hunter2" not in breaker.path.read_text()
    with pytest.raises(SourceError):
        breaker.check(probe)
    assert probes == []  # before reset_seconds: no probe
    time.sleep(0.55)
    # still down after reset_seconds: probed once, opened again (from now), still failing
    first_opened = breaker.state()["opened"]
    with pytest.raises(SourceError, match="does not exist"):
        breaker.check(probe)
    assert probes == [1] and breaker.state()["opened"] > first_opened
    with pytest.raises(SourceError):
        breaker.check(probe)
    assert probes == [1]  # the new period started
    time.sleep(0.55)
    source_comes_back(source_db)
    breaker.check(probe)  # probed, answers: closed, the extract goes on
    assert probes == [1, 1] and not breaker.is_open() and not breaker.path.exists()
    breaker.check(probe)
    assert probes == [1, 1]


def test_a_state_file_that_cannot_be_read_means_closed(tmp_path):
    breaker = SourceBreaker(tmp_path / ".breaker", "run-1", reset_seconds=300)
    breaker.state_dir.mkdir()
    breaker.path.write_text("{half a json", encoding="utf-8")
    assert breaker.state() is None and not breaker.is_open()


def test_probe_source_fails_while_the_source_is_down_and_passes_when_it_is_back(source_db, monkeypatch):
    monkeypatch.setenv("CBM_BREAKER_PROBE_TIMEOUT", "2")
    settings: Settings = load_settings()
    with pytest.raises(ConfigError, match="does not exist"):
        probe_source(settings)
    source_comes_back(source_db)
    probe_source(settings)
