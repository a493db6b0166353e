"""One duration per table and run (docs/OPERATIONS.md, "Durations"): from the start of the first step the run
executed (its extract, recorded in the manifest) to the merge's commit, written once as flow_complete's
DurationSeconds in the merge transaction.  A real run (SQLite source -> DuckDB): ``cbm-etl run``'s summary,
``cbm-etl status`` (etl.vw_LastRuns, etl.vw_TablePerformance) and the run log give the same number, and it
covers every step; a run that reuses an earlier run's extract counts from its own first step."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import build, configure
from helpers import register_demo_tables

from cbm_luigi.cli import main
from cbm_luigi.commands.status import read_view
from cbm_luigi.demo import data as demo_data
from cbm_luigi.destinations import open_target
from cbm_luigi.pipeline.extract import Manifest, extract_dir
from cbm_luigi.store import runlog
from cbm_luigi.tasks.context import clear_caches, settings
from cbm_luigi.tasks.table import ExtractParquet
from cbm_luigi.tasks.wrappers import LoadTable

TABLES = [t.name for t in demo_data.DEMO_TABLES]


@pytest.fixture
def sqlite_to_duckdb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    source = tmp_path / "erp.sqlite"
    demo_data.create_sqlite_source(source)
    configure(monkeypatch, source=f"sqlite:///{source}", flavor="sqlite", schema="PUB",
              target=f"duckdb:///{tmp_path / 'ods.duckdb'}")
    return tmp_path


def log_of(batch: str) -> list[dict[str, Any]]:
    target = open_target(settings().target)
    d = target.dialect
    names = ["RunId", "TableName", "StepName", "Status", "DurationSeconds", "LogTs"]
    rows = target.fetchall(f"SELECT {', '.join(d.quote(n) for n in names)} FROM {d.qualified('etl', 'ETL_Log')} "
                           f"WHERE {d.quote('Batch')} = :b", {"b": batch})
    return [dict(zip(names, r, strict=True)) for r in rows]


def summary_seconds(out: str) -> dict[str, str]:
    """table -> the seconds column of ``cbm-etl run``'s summary."""
    lines = out.split(" table(s) loaded", 1)[1].splitlines()
    header = next(ln for ln in lines if ln.startswith("table "))
    at = header.index("seconds")
    return {ln.split()[0]: ln[at:].split()[0] for ln in lines[lines.index(header) + 2:]
            if ln.split() and ln.split()[0] in TABLES}


def test_run_summary_status_and_log_give_one_duration(sqlite_to_duckdb, capsys):
    register_demo_tables()
    assert main(["run", "--all", "--mode", "full", "--batch-id", "d1"]) == 0
    printed = summary_seconds(capsys.readouterr().out)
    clear_caches()
    rows = log_of("d1")
    flow = {r["TableName"]: r for r in rows if r["StepName"] == "flow_complete" and r["Status"] == "success"}
    assert sorted(flow) == sorted(TABLES)
    last = {r["TableName"]: r for r in read_view("last")}
    perf = {r["TableName"]: r for r in read_view("performance")}
    assert main(["status", "--view", "last"]) == 0
    status_out = capsys.readouterr().out
    for t in TABLES:
        seconds = float(flow[t]["DurationSeconds"])
        # the same number in the log, the views and the two commands' output
        assert float(last[t]["DurationSeconds"]) == seconds, t
        assert float(perf[t]["LastDurationSeconds"]) == seconds == float(perf[t]["AvgDurationSeconds"]), t
        assert printed[t] == f"{seconds:.1f}", (t, printed)
        line = next(ln for ln in status_out.splitlines() if ln.startswith(t + " "))
        assert f" {seconds:,.1f} " in line, (t, line)
        # it covers every step of the table, staging and merge included ...
        steps = {r["StepName"]: float(r["DurationSeconds"]) for r in rows
                 if r["TableName"] == t and r["StepName"] != "flow_complete"}
        assert set(steps) == {"extract", "transform", "load_staging", "merge_ods"}, t
        assert seconds + 0.005 >= sum(steps.values()), (t, seconds, steps)
        # ... from the extract step's start (the manifest) to the merge's last statement (flow_complete's LogTs)
        manifest = Manifest.read(extract_dir(settings().cache_dir, t, "d1", "full"))
        began = datetime.fromisoformat(manifest.started)
        assert abs((flow[t]["LogTs"] - began).total_seconds() - seconds) < 0.05, t
    # the night report, written at the end of run --all, shows that number too
    page = (sqlite_to_duckdb / "reports" / "night" / "latest.html").read_text(encoding="utf-8")
    for t in TABLES:
        assert f"duration {float(flow[t]['DurationSeconds']):.1f} s" in page, t


def test_a_run_reusing_an_earlier_extract_counts_from_its_own_first_step(sqlite_to_duckdb, monkeypatch):
    register_demo_tables(["produit"])
    monkeypatch.setattr(runlog, "RUN_ID", "run-that-extracted")
    assert build(ExtractParquet(table="produit", mode="full", batch_id="d2")).scheduling_succeeded
    time.sleep(1.0)  # between the runs: not part of the second run's flow
    monkeypatch.setattr(runlog, "RUN_ID", "run-that-merged")
    assert build(LoadTable(table="produit", mode="full", batch_id="d2")).scheduling_succeeded
    rows = [r for r in log_of("d2") if r["RunId"] == "run-that-merged"]
    assert {r["StepName"] for r in rows} == {"load_staging", "merge_ods", "flow_complete"}
    seconds = float(next(r["DurationSeconds"] for r in rows if r["StepName"] == "flow_complete"))
    steps = sum(float(r["DurationSeconds"]) for r in rows if r["StepName"] != "flow_complete")
    assert steps <= seconds + 0.005 and seconds < 1.0, (steps, seconds)


def test_a_slow_commit_is_added_to_the_rows_of_its_transaction(sqlite_to_duckdb):
    """DuckDB writes a large load at its commit (seconds for a wide table), after the step's rows were written:
    add_commit_time adds it to their DurationSeconds and moves LogTs to its end (the step's start,
    LogTs - DurationSeconds, is unchanged); a commit under COMMIT_NOTED_SECONDS changes nothing."""
    register_demo_tables()
    target = open_target(settings().target)
    d = target.dialect

    def rows() -> dict[str, tuple[float, datetime]]:
        got = target.fetchall(f"SELECT {d.quote('LogId')}, {d.quote('DurationSeconds')}, {d.quote('LogTs')} FROM "
                              f"{d.qualified('etl', 'ETL_Log')} WHERE {d.quote('Batch')} = 'c1'")
        return {r[0]: (float(r[1]), r[2]) for r in got}

    with target.begin() as conn:  # a step's transaction: its rows last, then the commit
        ids = [runlog.write_log(conn, "client", step, "success", batch="c1", mode="full", duration=1.0)
               for step in ("merge_ods", "flow_complete")]
        other = runlog.write_log(conn, "client", "extract", "success", batch="c1", mode="full", duration=1.0)
        written = time.perf_counter()
    runlog.add_commit_time(target, ids, written)  # a fast commit: nothing written
    before = rows()
    assert {v[0] for v in before.values()} == {1.0}
    with target.begin() as conn:
        fast = runlog.write_log(conn, "client", "load_staging", "success", batch="c1", mode="full", duration=1.0)
        written = time.perf_counter()
        time.sleep(0.4)  # the commit of a large load
    staged_seconds, staged_ts = rows()[fast]
    runlog.add_commit_time(target, [fast], written)
    after = rows()
    seconds, ts = after[fast]
    assert 1.4 <= seconds < 2.0
    for log_id in [*ids, other]:
        assert after[log_id] == before[log_id]  # rows of other transactions are left alone
    assert ts > staged_ts
    # when the step began, LogTs - DurationSeconds, is what it was
    assert abs((ts.timestamp() - seconds) - (staged_ts.timestamp() - staged_seconds)) < 0.05
