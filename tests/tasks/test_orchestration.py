"""Orchestration on real databases: priority tiers with stop-on-critical and --continue-on-error (a table made
to fail by dropping its source table), dependencies (order observed in the run log), cycles refused, the source
breaker against a dead source, retries, the DuckDB single-writer lock across processes, and the run log files."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import luigi
import pytest
from conftest import build, configure
from helpers import log_rows, ods_rows, pg_source_rows, register_demo_tables

from cbm_luigi.cli import main
from cbm_luigi.config.logs import start_run_log, stop_run_log
from cbm_luigi.demo import data as demo_data
from cbm_luigi.destinations import open_target
from cbm_luigi.destinations.locking import set_lock_timeout
from cbm_luigi.errors import MetadataError, SourceError, TransientSourceError, TransientTargetError
from cbm_luigi.model.plan import build_plan, find_cycle
from cbm_luigi.pipeline.retry import RetryPolicy, call_with_retry, is_transient
from cbm_luigi.store import runlog
from cbm_luigi.store.config_tables import MetadataStore
from cbm_luigi.store.schema import init_db
from cbm_luigi.tasks.context import clear_caches, settings
from cbm_luigi.tasks.wrappers import LoadAll

REPO = Path(__file__).resolve().parents[2]
TABLES = [t.name for t in demo_data.DEMO_TABLES]  # client, produit: critical; fournis, lignecli: high; hisprixa
odbc = [pytest.mark.postgres, pytest.mark.odbc]


def ran(batch: str) -> dict[str, str]:
    """Per table of the batch: 'loaded', 'failed at <step>' or absent (never started)."""
    out: dict[str, str] = {}
    for r in log_rows():
        if r["Batch"] != batch:
            continue
        if r["StepName"] == "flow_complete" and r["Status"] == "success":
            out[r["TableName"]] = "loaded"
        elif r["Status"] == "failed":
            out.setdefault(r["TableName"], f"failed at {r['StepName']}")
    return out


def summary_lines(out: str) -> dict[str, str]:
    """The run summary printed by cbm-etl run: table -> the rest of its line."""
    lines = {}
    for ln in out.splitlines():
        parts = ln.split(None, 1)
        if parts and parts[0] in TABLES and len(parts) == 2:
            lines[parts[0]] = parts[1]
    return lines


# --- the plan --------------------------------------------------------------------------------------------------


def table_row(name: str, tier: str | None = None, active: bool = True, notes: str | None = None,
              dim: bool = False) -> dict[str, Any]:
    return {"TableName": name, "SqlName": name.replace("-", "_"), "IsActive": active, "PriorityTier": tier,
            "Notes": notes, "IsDimension": dim, "IsFact": not dim}


def dep(t: str, on: str, active: bool = True) -> dict[str, Any]:
    return {"TableName": t, "DependsOn": on, "IsActive": active}


def test_plan_tiers_gate_and_problems():
    rows = [table_row("client", "critical"), table_row("produit", notes="table critique"),
            table_row("fournis", dim=True), table_row("lignecli"), table_row("hisprixa"),
            table_row("old", active=False)]
    plan = build_plan(rows, [dep("lignecli", "client"), dep("LIGNECLI", "produit"), dep("produit", "fournis"),
                             dep("hisprixa", "produit", active=False)])
    assert plan.tables == ("client", "produit", "fournis", "hisprixa", "lignecli")
    assert [plan.tier(t) for t in plan.tables] == ["critical", "critical", "high", "normal", "normal"]
    assert plan.deps("lignecli") == ("client", "produit") and plan.deps("hisprixa") == ()
    # fournis is high, but a critical table waits for it: it runs before the gate, with the critical tier
    assert plan.pre_gate == {"client", "produit", "fournis"} and plan.effective_tier("fournis") == "critical"
    assert [t for t in plan.tables if plan.gated(t, continue_on_error=False)] == ["hisprixa", "lignecli"]
    assert not any(plan.gated(t, continue_on_error=True) for t in plan.tables)
    assert plan.ordered(["lignecli"]) == ["client", "fournis", "produit", "lignecli"]
    plan.check()

    bad = build_plan(rows, [dep("lignecli", "nosuch"), dep("hisprixa", "old"), dep("client", "lignecli"),
                            dep("lignecli", "client"), dep("old", "nosuch")])
    with pytest.raises(MetadataError, match="lignecli depends on 'nosuch', which is not registered"):
        bad.check(["lignecli"])
    with pytest.raises(MetadataError, match="hisprixa depends on old, which is inactive"):
        bad.check(["hisprixa"])
    with pytest.raises(MetadataError, match="dependency cycle in config.ETL_Dependencies: client -> lignecli -> client"):
        bad.check()
    bad.check(["produit", "fournis"])  # unrelated tables stay loadable on their own


def test_find_cycle_names_the_path():
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": ["a"]}) == ["a", "a"]
    assert find_cycle({"a": ["b", "c"], "b": ["c"], "c": []}) is None


# --- stop-on-critical, continue-on-error, dependencies: real failures ----------------------------------------


@pytest.mark.postgres
@pytest.mark.odbc
def test_failed_critical_table_stops_the_rest(pg_source, tmp_path, monkeypatch, capsys):
    configure(monkeypatch, source=pg_source.odbc, flavor="progress", schema=pg_source.schema,
              target=f"duckdb:///{tmp_path / 'ods.duckdb'}")
    register_demo_tables()
    pg_source.execute(f'DROP TABLE "{pg_source.schema}"."client"')  # critical: its extract fails for real

    assert main(["run", "--all", "--mode", "full", "--batch", "b1"]) == 1
    assert ran("b1") == {"client": "failed at extract", "produit": "loaded"}  # nothing else started
    out = capsys.readouterr().out
    lines = summary_lines(out)
    assert lines["client"].split()[:3] == ["critical", "FAILED", "at"]
    assert lines["produit"].split()[:2] == ["critical", "loaded"]
    for t in ("fournis", "hisprixa", "lignecli"):
        assert "NOT RUN" in lines[t] and "critical table(s) client did not load: stop-on-critical" in lines[t], t
    assert "2 of 5 table(s) loaded" not in out and "1 of 5 table(s) loaded" in out

    # the same run through the `luigi` command: [retcode] task_failed, still gated
    env = {**os.environ, "LUIGI_CONFIG_PATH": str(REPO / "luigi.cfg")}
    r = subprocess.run([sys.executable, "-m", "luigi", "--module", "cbm_luigi.tasks", "LoadAll", "--mode", "full",
                        "--batch-id", "b2", "--local-scheduler"], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 30, r.stderr[-3000:]
    assert ran("b2") == {"client": "failed at extract", "produit": "loaded"}

    # one log file for the cbm-etl run, the run id on every line
    logs = list((tmp_path / "logs").glob("cbm-etl_*_run_*.log"))
    assert len(logs) == 1
    text = logs[0].read_text(encoding="utf-8")
    assert "client: FAILED at extract" in text and "hisprixa: NOT RUN" in text
    stamped = [ln for ln in text.splitlines() if ln[:2] == "20"]
    assert stamped and all(f"[run {runlog.RUN_ID[:8]}]" in ln for ln in stamped)


@pytest.mark.postgres
@pytest.mark.odbc
def test_continue_on_error_runs_every_table_but_the_dependents_of_a_failure(pg_source, tmp_path, monkeypatch,
                                                                            capsys):
    configure(monkeypatch, source=pg_source.odbc, flavor="postgresql", schema=pg_source.schema,
              target=f"duckdb:///{tmp_path / 'ods.duckdb'}")
    register_demo_tables()
    assert main(["depends", "lignecli", "--on", "client,produit"]) == 0
    pg_source.execute(f'DROP TABLE "{pg_source.schema}"."client"')

    assert main(["run", "--all", "--mode", "full", "--batch", "b1", "--continue-on-error"]) == 1
    assert ran("b1") == {"client": "failed at extract", "produit": "loaded", "fournis": "loaded",
                         "hisprixa": "loaded"}
    lines = summary_lines(capsys.readouterr().out)
    assert "NOT RUN" in lines["lignecli"] and "waits for client (failed at extract)" in lines["lignecli"]
    # lignecli's own extract and staging ran (only its merge waits): no half-loaded ODS table
    assert not any(r["TableName"] == "lignecli" and r["StepName"] in ("merge_ods", "flow_complete")
                   for r in log_rows())
    for t in ("produit", "fournis", "hisprixa"):
        assert ods_rows(t) == pg_source_rows(pg_source, t)


@pytest.mark.postgres
@pytest.mark.odbc
def test_dependencies_and_tiers_are_honoured_with_two_workers(pg_source, tmp_path, monkeypatch):
    configure(monkeypatch, source=pg_source.odbc, flavor="progress", schema=pg_source.schema,
              target=f"duckdb:///{tmp_path / 'ods.duckdb'}")
    store = register_demo_tables()
    store.set_dependencies("lignecli", ["client", "produit"])
    store.set_dependencies("hisprixa", ["produit"])
    store.set_dependencies("produit", ["fournis"])  # a critical table waiting for a high one
    clear_caches()

    result = build(LoadAll(mode="full", batch_id="b1"), workers=2)
    assert result.scheduling_succeeded and result.status.name == "SUCCESS", result.summary_text
    rows = [r for r in log_rows() if r["Batch"] == "b1"]

    def ts(table: str, step: str) -> Any:
        return next(r["LogTs"] for r in rows if r["TableName"] == table and r["StepName"] == step)

    for table, deps in {"lignecli": ["client", "produit"], "hisprixa": ["produit"], "produit": ["fournis"]}.items():
        for d in deps:
            assert ts(table, "merge_ods") > ts(d, "flow_complete"), f"{table} merged before {d}"
    # the gate: the tables outside the critical tier (and what it waits for) start after every critical merge
    last_critical = max(ts(t, "flow_complete") for t in ("client", "produit"))
    for t in ("lignecli", "hisprixa"):
        assert ts(t, "extract") > last_critical, t
    assert ts("fournis", "flow_complete") < ts("produit", "merge_ods")
    for t in TABLES:
        assert ods_rows(t) == pg_source_rows(pg_source, t), t


# --- cycles, unknown and inactive dependencies --------------------------------------------------------------


def seed_tables(url: str, names: list[str], inactive: tuple[str, ...] = ()) -> MetadataStore:
    """Register tables straight in config.ETL_Tables (the plan needs no columns)."""
    t = open_target(url)
    init_db(t)
    d = t.dialect
    with t.begin() as conn:
        for n in names:
            values = {"TableName": n, "SqlName": n, "DestinationTable": f"ods.{n}", "PrimaryKeyCols": "id",
                      "HasTimestamps": False, "IsDimension": False, "IsFact": True, "IsActive": n not in inactive,
                      "PriorityTier": "critical" if n == "client" else None}
            conn.execute(f"INSERT INTO {d.qualified('config', 'ETL_Tables')} "
                         f"({', '.join(d.quote(k) for k in values)}) VALUES ({', '.join(':' + k for k in values)})",
                         values)
    clear_caches()
    return MetadataStore(t)


def test_cycles_and_bad_dependencies_are_refused(tmp_path, monkeypatch, capsys):
    url = f"duckdb:///{tmp_path / 'ods.duckdb'}"
    configure(monkeypatch, source="sqlite:///unused", flavor="sqlite", schema="PUB", target=url)
    store = seed_tables(url, ["client", "produit", "lignecli", "hisprixa"], inactive=("hisprixa",))

    # the depends command checks names and cycles, and writes nothing when it refuses
    assert main(["depends", "lignecli", "--on", "CLIENT,produit"]) == 0
    assert "lignecli: waits for client, produit" in capsys.readouterr().out
    assert main(["depends", "client", "--on", "lignecli"]) == 2
    assert "cycle: client -> lignecli -> client" in capsys.readouterr().err
    assert main(["depends", "lignecli", "--on", "nosuch"]) == 2
    assert "'nosuch' is not registered" in capsys.readouterr().err
    assert main(["depends", "lignecli", "--on", "hisprixa"]) == 2
    assert "hisprixa is inactive" in capsys.readouterr().err
    assert main(["depends", "lignecli", "--on", "lignecli"]) == 2
    assert sorted(store.dependencies()) == [("lignecli", "client"), ("lignecli", "produit")]
    assert main(["depends"]) == 0
    assert "lignecli  client" in capsys.readouterr().out.replace("   ", "  ")

    # a cycle written straight into the table is refused when LoadAll is scheduled, naming it
    store.set_dependencies("client", ["produit"])
    store.set_dependencies("produit", ["lignecli"])
    clear_caches()
    result = build(LoadAll(mode="full", batch_id="b1"))
    assert not result.scheduling_succeeded
    assert main(["run", "--all", "--mode", "full", "--batch", "b1"]) == 2
    err = capsys.readouterr().err
    assert "dependency cycle in config.ETL_Dependencies: client -> produit -> lignecli -> client" in err
    assert not [r for r in log_rows() if r["Batch"] == "b1"]  # nothing ran

    # a dependency on an inactive table is refused too, with the fix
    store.set_dependencies("produit", ["hisprixa"])
    store.set_dependencies("client", [])
    clear_caches()
    assert main(["run", "--all", "--mode", "full", "--batch", "b2"]) == 2
    assert "produit depends on hisprixa, which is inactive" in capsys.readouterr().err
    assert main(["depends", "--clear"]) == 2
    assert main(["depends", "produit", "--clear"]) == 0
    assert store.dependencies() == [("lignecli", "client"), ("lignecli", "produit")] or \
        sorted(store.dependencies()) == [("lignecli", "client"), ("lignecli", "produit")]


# --- retries and the source breaker -------------------------------------------------------------------------


def test_retries_transient_errors_only():
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TransientSourceError("08S01 communication link failure")
        return "ok"

    assert call_with_retry(flaky, what="t", policy=RetryPolicy(attempts=3, delay=0)) == "ok"
    assert len(calls) == 3
    calls.clear()
    with pytest.raises(TransientSourceError):
        call_with_retry(flaky, what="t", policy=RetryPolicy(attempts=2, delay=0))
    assert len(calls) == 2

    def broken() -> None:
        calls.append(1)
        raise SourceError("relation does not exist")

    calls.clear()
    with pytest.raises(SourceError):
        call_with_retry(broken, what="t", policy=RetryPolicy(attempts=5, delay=0))
    assert len(calls) == 1
    delays = [RetryPolicy(attempts=9, delay=2, max_delay=10).backoff(n) for n in (1, 2, 3, 4, 5)]
    assert 1 <= delays[0] <= 2 and 4 <= delays[2] <= 8 and all(5 <= x <= 10 for x in delays[3:])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.postgres
@pytest.mark.odbc
def test_a_dead_source_opens_the_breaker_and_every_extract_fails_at_once(pg_source, odbc_driver, tmp_path,
                                                                         monkeypatch):
    configure(monkeypatch, source=pg_source.odbc, flavor="progress", schema=pg_source.schema,
              target=f"duckdb:///{tmp_path / 'ods.duckdb'}")
    register_demo_tables()
    dead = f"DRIVER={{{odbc_driver}}};SERVER=127.0.0.1;PORT={free_port()};DATABASE=test;UID=postgres;PWD=s3cr3t-pw"
    monkeypatch.setenv("CBM_SOURCE", dead)
    monkeypatch.setenv("CBM_RETRY_ATTEMPTS", "2")
    monkeypatch.setenv("CBM_RETRY_DELAY", "0")
    monkeypatch.setenv("CBM_BREAKER_PROBE_TIMEOUT", "2")
    clear_caches()

    result = build(LoadAll(mode="full", batch_id="b1", continue_on_error=True))
    assert result.status.name == "FAILED"
    failed = [r for r in log_rows() if r["Status"] == "failed"]
    assert sorted(r["TableName"] for r in failed) == sorted(TABLES)
    assert all(r["StepName"] == "extract" for r in failed)
    first, rest = failed[0], failed[1:]
    assert "circuit breaker" not in first["ErrorMessage"] and "08001" in first["ErrorMessage"]
    assert all("circuit breaker open" in r["ErrorMessage"] and first["TableName"] in r["ErrorMessage"]
               for r in rest)
    assert all("s3cr3t-pw" not in r["ErrorMessage"] for r in failed)
    state = tmp_path / "cache" / ".breaker" / f"source-{runlog.RUN_ID}.json"
    assert state.exists() and "s3cr3t-pw" not in state.read_text()

    # the source is back: after the reset delay one extract probes, closes the breaker and the run finishes
    monkeypatch.setenv("CBM_SOURCE", pg_source.odbc)
    monkeypatch.setenv("CBM_BREAKER_RESET_SECONDS", "0")
    clear_caches()
    assert build(LoadAll(mode="full", batch_id="b1")).status.name == "SUCCESS"
    assert not state.exists()
    assert ods_rows("produit") == pg_source_rows(pg_source, "produit")


# --- the single-writer lock of a DuckDB target ----------------------------------------------------------------

HOLDER = """
import sys, time, pathlib
from cbm_luigi.destinations import open_target
t = open_target(sys.argv[1])
with t.begin() as c:
    c.execute("INSERT INTO etl_lock_probe VALUES (1)")
    pathlib.Path(sys.argv[2]).write_text("held")
    time.sleep(3)
"""


def test_duckdb_target_is_shared_by_processes_without_lock_errors(tmp_path, monkeypatch):
    url = f"duckdb:///{tmp_path / 'ods.duckdb'}"
    configure(monkeypatch, source="sqlite:///unused", flavor="sqlite", schema="PUB", target=url)
    t = open_target(url)
    with t.begin() as c:
        c.execute("CREATE TABLE etl_lock_probe (n INTEGER)")
    flag = tmp_path / "held.flag"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, url, str(flag)], cwd=REPO, env=env)
    try:
        for _ in range(600):
            if flag.exists() or holder.poll() is not None:
                break
            time.sleep(0.05)
        assert flag.exists(), "the holder process did not take the database"
        set_lock_timeout(0.2)
        try:
            with pytest.raises(TransientTargetError, match=r"single-writer lock .*ods\.duckdb\.cbm-lock.*held by pid"):
                t.fetchall("SELECT 1")
        finally:
            set_lock_timeout(None)
        assert is_transient(TransientTargetError("x"))
        # without the lock DuckDB would refuse at once ("Could not set lock"); with it, this waits its turn
        with t.begin() as c:
            c.execute("INSERT INTO etl_lock_probe VALUES (2)")
        assert holder.wait(timeout=60) == 0
    finally:
        if holder.poll() is None:
            holder.kill()
    assert sorted(r[0] for r in t.fetchall("SELECT n FROM etl_lock_probe")) == [1, 2]


def test_duckdb_lock_errors_are_transient(tmp_path):
    import duckdb

    from cbm_luigi.destinations import dialect_for_url

    path = tmp_path / "held.duckdb"
    held = duckdb.connect(str(path))
    try:
        r = subprocess.run([sys.executable, "-c", f"import duckdb; duckdb.connect({str(path)!r})"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode != 0
        exc = RuntimeError(r.stderr.strip().splitlines()[-1])
        assert is_transient(exc, dialect_for_url(f"duckdb:///{path}"))
    finally:
        held.close()


# --- run log files --------------------------------------------------------------------------------------------


def test_run_log_file_has_the_run_id_and_no_secret(tmp_path, monkeypatch):
    monkeypatch.setenv("CBM_TEAMS_WEBHOOK", "https://example.test/workflows/run?api-version=1&sig=SIGNATURE123")
    monkeypatch.setenv("CBM_TARGET_PASSWORD", "hunter2-target")
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    old = log_dir / "cbm-etl_20200101-000000_run_deadbeef.log"
    old.write_text("old\n")
    os.utime(old, (time.time() - 40 * 86400, time.time() - 40 * 86400))
    recent = log_dir / "cbm-etl_20990101-000000_run_cafebabe.log"
    recent.write_text("recent\n")
    other = log_dir / "luigid.out"
    other.write_text("not ours\n")
    os.utime(other, (time.time() - 40 * 86400, time.time() - 40 * 86400))

    logging.getLogger().setLevel(logging.INFO)
    path = start_run_log("run", log_dir)
    assert path is not None
    try:
        lg = logging.getLogger("cbm_luigi.test")
        lg.info("source %s", "DSN=erp;UID=etl;PWD=topsecret;")
        lg.info("target postgresql+psycopg://etl:hunter2-target@db/ods")
        lg.info("posting to %s", os.environ["CBM_TEAMS_WEBHOOK"])
        try:
            raise RuntimeError("connect failed: PWD={brace;secret}")
        except RuntimeError:
            lg.exception("with a traceback")
    finally:
        stop_run_log()
    text = path.read_text(encoding="utf-8")
    for secret in ("topsecret", "hunter2-target", "SIGNATURE123", "brace;secret"):
        assert secret not in text, secret
    assert "PWD=***" in text and "etl:***@db" in text and "posting to ***" in text
    assert str(REPO) in text  # an ordinary environment value (PWD, the current directory) is not hidden
    stamped = [ln for ln in text.splitlines() if ln[:2] == "20"]
    assert len(stamped) == 6 and all(f"[run {runlog.RUN_ID[:8]}]" in ln for ln in stamped)
    assert "deleted 1 old run log file(s)" in text
    assert not old.exists() and recent.exists() and other.exists()


def test_luigi_registry_is_clean():
    # the wrappers registered under their names (the scheduler shows them), nothing left instantiated
    assert luigi.task_register.Register.get_task_cls("CriticalGate").__name__ == "CriticalGate"
    assert settings().target
