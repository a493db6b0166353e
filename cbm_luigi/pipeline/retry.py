"""Bounded retries with backoff for transient errors, and the source circuit breaker of a run.

Retries: :func:`call_with_retry` runs one atomic step (an extract written to a temporary directory, a staging or
merge transaction) again when it fails with a transient error: a :class:`~cbm_luigi.errors.CbmError` whose
``transient`` is true, a driver error the target dialect calls transient (deadlock, lock timeout, lost
connection, DuckDB file lock), or an ODBC communication/timeout SQLSTATE.  Anything else fails at once.
Delays grow exponentially from ``retry_delay`` to ``retry_max_delay`` seconds, with jitter, for at most
``retry_attempts`` attempts in all.

Breaker: when the source cannot be reached after the retries of one table, a short probe (login timeout
``breaker_probe_timeout``) confirms it and the breaker opens: a state file under ``<cache_dir>/.breaker/``
keyed by the run id, shared by every worker process of the run (and by every machine that shares the cache
and ``CBM_RUN_ID``).  While it is open every extract of the run fails at once with the reason, instead of
waiting for its own timeouts.  After ``breaker_reset_seconds`` one extract probes again and closes it when the
source answers.

Options (environment ``CBM_<NAME>`` or luigi.cfg ``[cbm_ops]``): retry_attempts (3), retry_delay (2.0),
retry_max_delay (60.0), breaker_reset_seconds (300), breaker_probe_timeout (10).
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from cbm_luigi.config.options import cbm_option
from cbm_luigi.config.run import RUN_ID
from cbm_luigi.config.secrets import redact
from cbm_luigi.errors import CbmError, SourceError
from cbm_luigi.pipeline.sources import is_transient_odbc, open_source

if TYPE_CHECKING:
    from cbm_luigi.config.settings import Settings
    from cbm_luigi.destinations.dialect import Dialect

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3
    delay: float = 2.0
    max_delay: float = 60.0

    @classmethod
    def from_options(cls) -> RetryPolicy:
        return cls(
            attempts=max(1, cbm_option("retry_attempts", 3)),
            delay=max(0.0, cbm_option("retry_delay", 2.0)),
            max_delay=max(0.0, cbm_option("retry_max_delay", 60.0)),
        )

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based): exponential, capped, half jittered."""
        base = min(self.max_delay, self.delay * (2 ** (attempt - 1)))
        return base / 2 + random.uniform(0, base / 2)


def is_transient(exc: BaseException, dialect: Dialect | None = None) -> bool:
    """Whether retrying the same work may succeed."""
    if isinstance(exc, CbmError):
        return exc.transient
    if dialect is not None and dialect.is_transient(exc):
        return True

    return is_transient_odbc(exc)


def call_with_retry(fn: Callable[[], T], *, what: str, dialect: Dialect | None = None,
                    policy: RetryPolicy | None = None,
                    on_retry: Callable[[int, float, BaseException], None] | None = None) -> T:
    """Call ``fn`` until it succeeds, fails with a non-transient error, or the attempts are spent.

    ``fn`` must be safe to run again (one transaction, or output written atomically).  ``on_retry(attempt,
    delay, exc)`` is told before each wait (e.g. to show it in the scheduler's status line).
    """
    policy = policy or RetryPolicy.from_options()
    attempt = 1
    while True:
        try:
            return fn()
        except Exception as exc:
            if attempt >= policy.attempts or not is_transient(exc, dialect):
                raise
            delay = policy.backoff(attempt)
            log.warning("%s: transient error (attempt %d of %d), retrying in %.1fs: %s", what, attempt,
                        policy.attempts, delay, redact(str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
            if on_retry is not None:
                on_retry(attempt, delay, exc)
            time.sleep(delay)
            attempt += 1


class SourceBreaker:
    """Open/closed state of the source for one run, in a small JSON file (atomic writes)."""

    def __init__(self, state_dir: Path, run_id: str, reset_seconds: float = 300.0) -> None:
        self.state_dir = Path(state_dir)
        self.run_id = run_id
        self.reset_seconds = reset_seconds
        self.path = self.state_dir / f"source-{run_id}.json"

    @classmethod
    def for_run(cls, settings: Settings, run_id: str | None = None) -> SourceBreaker:
        return cls(settings.cache_dir / ".breaker", run_id or RUN_ID,
                   float(cbm_option("breaker_reset_seconds", 300.0)))

    def state(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def is_open(self) -> bool:
        return self.state() is not None

    def trip(self, table: str, error: BaseException | str) -> None:
        """Open the breaker (or refresh it) with the reason."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        text = redact(str(error).splitlines()[0] if str(error) else type(error).__name__)[:500]
        data = {"opened": time.time(), "opened_at": datetime.now().isoformat(timespec="seconds"),
                "table": table, "error": text, "run_id": self.run_id}
        tmp = self.state_dir / f".{self.path.name}.{uuid.uuid4().hex[:8]}"
        tmp.write_text(json.dumps(data), encoding="utf-8")
        os.replace(tmp, self.path)
        log.error("source breaker OPEN for run %s after %s: %s; the other extracts of this run fail at once",
                  self.run_id[:8], table, text)
        self._cleanup_old()

    def reset(self) -> None:
        if self.path.exists():
            self.path.unlink(missing_ok=True)
            log.info("source breaker closed: the source answers again")

    def check(self, probe: Callable[[], None]) -> None:
        """Raise SourceError while the breaker is open; after ``reset_seconds`` probe once and close it if the
        source answers (re-open it otherwise)."""
        st = self.state()
        if st is None:
            return
        age = time.time() - float(st.get("opened", 0))
        if age >= self.reset_seconds:
            try:
                probe()
            except Exception as exc:  # noqa: BLE001 - any probe failure keeps the breaker open
                self.trip(str(st.get("table", "?")), exc)
                st = self.state() or st
            else:
                self.reset()
                return
        raise SourceError(
            f"source unreachable: circuit breaker open since {st.get('opened_at')} (after {st.get('table')}: "
            f"{st.get('error')}); this extract was not attempted. Fix the source connection and run again: "
            "tables already loaded are skipped"
        )

    def record_failure(self, table: str, exc: BaseException, probe: Callable[[], None]) -> None:
        """After a table's transient source failure: probe the source, and open the breaker if it is down."""
        if not is_transient(exc) or self.is_open():
            return
        try:
            probe()
        except Exception as probe_exc:  # noqa: BLE001 - the probe's failure is the verdict
            self.trip(table, probe_exc)
        else:
            log.info("%s: the source answers a probe; the failure is specific to this table", table)

    def call(self, fn: Callable[[], T], *, table: str, what: str, probe: Callable[[], None],
             on_retry: Callable[[int, float, BaseException], None] | None = None) -> T:
        """``fn()`` with its transient errors retried (:func:`call_with_retry`, ``"<table>: <what>"`` in the log);
        the error that ends the retries is told to the breaker (:meth:`record_failure`), then raised."""
        try:
            return call_with_retry(fn, what=f"{table}: {what}", on_retry=on_retry)
        except Exception as exc:
            self.record_failure(table, exc, probe=probe)
            raise

    def _cleanup_old(self, days: float = 7.0) -> None:
        cutoff = time.time() - days * 86400
        for p in self.state_dir.glob("source-*.json"):
            try:
                if p != self.path and p.stat().st_mtime < cutoff:
                    p.unlink()
            except OSError:
                pass


def probe_source(settings: Settings) -> None:
    """Connect to the source with a short login timeout and read its clock; raises when it is down."""

    timeout = int(cbm_option("breaker_probe_timeout", 10))
    with open_source(settings.with_overrides(source_login_timeout=max(1, timeout))) as src:
        src.clock()
