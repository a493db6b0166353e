"""The monitoring views on a seeded run log, on DuckDB and PostgreSQL: etl.vw_LastRuns, etl.vw_TablePerformance,
etl.vw_SLABreach (exact rows), and ``cbm-etl status`` printing them."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from conftest import configure

from cbm_luigi.cli import main
from cbm_luigi.commands.status import read_view
from cbm_luigi.destinations import open_target
from cbm_luigi.store.schema import init_db, init_statements
from cbm_luigi.tasks.context import settings

NOW = datetime.now().replace(microsecond=0)
STEPS = ("extract", "transform", "load_staging", "merge_ods")


@pytest.fixture(params=["duckdb", pytest.param("postgresql", marks=pytest.mark.postgres)])
def view_target(request: pytest.FixtureRequest, tmp_path, monkeypatch) -> str:
    url = f"duckdb:///{tmp_path / 'ods.duckdb'}" if request.param == "duckdb" else \
        str(request.getfixturevalue("pg_database"))
    configure(monkeypatch, source="sqlite:///unused.sqlite", flavor="sqlite", schema="PUB", target=url)
    init_db(open_target(url))
    return url


def add_table(name: str, *, sla: float | None = 24.0, tier: str | None = None, notes: str | None = None,
              dimension: bool = False, active: bool = True) -> None:
    t = open_target(settings().target)
    d = t.dialect
    values = {"TableName": name, "SqlName": name, "DestinationTable": f"ods.{name}", "PrimaryKeyCols": "id",
              "HasTimestamps": True, "DateModifCol": "dat_mod", "DateModifPrecision": "datetime",
              "IsDimension": dimension, "IsFact": not dimension, "LookbackInterval": "0d", "PriorityTier": tier,
              "Notes": notes, "IsActive": active, "SLAHours": sla}
    with t.begin() as conn:
        conn.execute(f"INSERT INTO {d.qualified('config', 'ETL_Tables')} ({', '.join(d.quote(k) for k in values)}) "
                     f"VALUES ({', '.join(':' + k for k in values)})", values)


def log_row(conn: Any, table: str, run: str, step: str, status: str, ts: datetime, *, batch: str = "b",
            rows: int | None = None, dur: float | None = None, ins: int | None = None, upd: int | None = None,
            error: str | None = None) -> None:
    d = conn.dialect
    values = {"LogId": str(uuid.uuid4()), "RunId": run, "TableName": table, "Batch": batch, "Mode": "incremental",
              "StepName": step, "Status": status, "RowsProcessed": rows, "RowsInserted": ins, "RowsUpdated": upd,
              "RowsUnchanged": None if rows is None or ins is None or upd is None else rows - ins - upd,
              "DurationSeconds": dur, "ErrorMessage": error, "LogTs": ts}
    conn.execute(f"INSERT INTO {d.qualified('etl', 'ETL_Log')} ({', '.join(d.quote(k) for k in values)}) "
                 f"VALUES ({', '.join(':' + k for k in values)})", values)


def run_ok(conn: Any, table: str, run: str, ended: datetime, durations: tuple[float, ...] = (1, 0.5, 2, 1.5),
           rows: int = 100, ins: int = 10, upd: int = 5) -> None:
    """A successful flow ending at ``ended``: four step rows one second apart, then flow_complete, whose
    duration (the flow's, twice the steps' sum here) is what the views must report, not a sum of the steps."""
    start = ended - timedelta(seconds=len(STEPS))
    for i, (step, dur) in enumerate(zip(STEPS, durations, strict=True)):
        log_row(conn, table, run, step, "success", start + timedelta(seconds=i), rows=rows, dur=dur,
                ins=ins if step == "merge_ods" else None, upd=upd if step == "merge_ods" else None)
    log_row(conn, table, run, "flow_complete", "success", ended, rows=rows, dur=2 * sum(durations), ins=ins, upd=upd)


def seed() -> None:
    add_table("t_ok")
    add_table("t_warn")
    add_table("t_crit", notes="table critique pour la facturation")
    add_table("t_never", dimension=True)
    add_table("t_short", sla=1.0, tier="high")
    add_table("t_running", tier="normal")
    add_table("t_off", active=False)
    t = open_target(settings().target)
    with t.begin() as c:
        # t_ok: a run 10 days ago (outside the 7-day window), then success, failure, success in the window
        run_ok(c, "t_ok", "r-old", NOW - timedelta(days=10), durations=(50, 50, 50, 50), rows=7)
        run_ok(c, "t_ok", "r1", NOW - timedelta(hours=50), durations=(1, 0.5, 2, 1.5), rows=100)
        log_row(c, "t_ok", "r2", "extract", "success", NOW - timedelta(hours=26), rows=40, dur=3.0)
        log_row(c, "t_ok", "r2", "load_staging", "failed", NOW - timedelta(hours=26) + timedelta(seconds=5),
                error="DataError: duplicate keys")
        run_ok(c, "t_ok", "r3", NOW - timedelta(hours=2), durations=(2, 1, 3, 4), rows=300, ins=30, upd=20)
        # t_warn: success 30 h ago, then a failed run 1 h ago (two failed rows: the first one is reported)
        run_ok(c, "t_warn", "r4", NOW - timedelta(hours=30))
        log_row(c, "t_warn", "r5", "extract", "failed", NOW - timedelta(hours=1), error="SourceError: first")
        log_row(c, "t_warn", "r5", "extract", "failed", NOW - timedelta(minutes=50), error="SourceError: second")
        # t_crit: success 60 h ago
        run_ok(c, "t_crit", "r6", NOW - timedelta(hours=60))
        # t_short: SLA 1 h, success 90 minutes ago
        run_ok(c, "t_short", "r7", NOW - timedelta(minutes=90))
        # t_running: steps logged, no flow_complete, no failure
        log_row(c, "t_running", "r8", "extract", "success", NOW - timedelta(minutes=10), rows=5, dur=1.0)
        log_row(c, "t_running", "r8", "transform", "success", NOW - timedelta(minutes=10), rows=5, dur=0.5)
        # t_off: inactive, loaded long ago: not in the SLA view
        run_ok(c, "t_off", "r9", NOW - timedelta(days=3))


def by_table(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["TableName"]: r for r in rows}


def approx(v: Any) -> float | None:
    return None if v is None else round(float(v), 3)


def test_sla_view(view_target):
    seed()
    sla = by_table(read_view("sla"))
    assert {t: r["SLAStatus"] for t, r in sla.items()} == {
        "t_ok": "OK", "t_warn": "WARNING", "t_crit": "CRITICAL", "t_never": "CRITICAL", "t_short": "WARNING",
        "t_running": "CRITICAL",
    }
    assert {t: r["PriorityTier"] for t, r in sla.items()} == {
        "t_ok": "normal", "t_warn": "normal", "t_crit": "critical", "t_never": "high", "t_short": "high",
        "t_running": "normal",
    }
    assert sla["t_never"]["LastSuccessTs"] is None and sla["t_never"]["HoursSinceSuccess"] is None
    assert sla["t_ok"]["LastSuccessTs"] == NOW - timedelta(hours=2)
    assert 2.0 <= float(sla["t_ok"]["HoursSinceSuccess"]) < 3.0
    assert float(sla["t_short"]["SLAHours"]) == 1.0 and float(sla["t_ok"]["SLAHours"]) == 24.0


def test_last_runs_view(view_target):
    seed()
    last = by_table(read_view("last"))
    assert set(last) == {"t_ok", "t_warn", "t_crit", "t_short", "t_running", "t_off"}
    ok = last["t_ok"]
    assert (ok["RunId"], ok["Batch"], ok["Mode"], ok["Status"]) == ("r3", "b", "incremental", "success")
    assert ok["StartedTs"] == NOW - timedelta(hours=2, seconds=4) and ok["EndedTs"] == NOW - timedelta(hours=2)
    assert approx(ok["DurationSeconds"]) == 20.0  # flow_complete's figure, not the sum of the four steps (10)
    assert (ok["RowsProcessed"], ok["RowsInserted"], ok["RowsUpdated"], ok["RowsUnchanged"]) == (300, 30, 20, 250)
    assert ok["ErrorMessage"] is None
    warn = last["t_warn"]
    assert (warn["RunId"], warn["Status"], warn["ErrorMessage"]) == ("r5", "failed", "SourceError: first")
    assert warn["EndedTs"] == NOW - timedelta(minutes=50) and warn["RowsInserted"] is None
    run = last["t_running"]
    assert (run["Status"], run["EndedTs"], run["RowsProcessed"]) == ("running", None, 5)
    assert run["DurationSeconds"] is None  # no flow_complete yet: no flow duration


def test_table_performance_view(view_target):
    seed()
    perf = by_table(read_view("performance"))
    assert set(perf) == {"t_ok", "t_warn", "t_crit", "t_short", "t_running", "t_off"}
    ok = perf["t_ok"]  # r1, r2, r3 in the window; r-old is 10 days old
    assert (ok["Runs"], ok["Successes"], ok["Failures"]) == (3, 2, 1)
    assert approx(ok["AvgDurationSeconds"]) == 15.0  # (10 + 20) / 2: the successful runs' flow durations
    assert approx(ok["LastDurationSeconds"]) == 20.0
    assert ok["TotalRows"] == 400
    assert ok["LastSuccessTs"] == NOW - timedelta(hours=2)
    warn = perf["t_warn"]
    assert (warn["Runs"], warn["Successes"], warn["Failures"]) == (2, 1, 1)
    running = perf["t_running"]
    assert (running["Runs"], running["Successes"], running["Failures"], running["TotalRows"]) == (1, 0, 0, 0)
    assert running["AvgDurationSeconds"] is None and running["LastSuccessTs"] is None


def test_status_command_prints_the_views(view_target, capsys):
    seed()
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert "== last run per table (etl.vw_LastRuns) ==" in out
    assert "== last 7 days (etl.vw_TablePerformance) ==" in out
    assert "== SLA (etl.vw_SLABreach) ==" in out
    sla_part = out.split("== SLA")[1]
    lines = [ln for ln in sla_part.splitlines() if ln.startswith("t_")]
    assert [ln.split()[0] for ln in lines][:3] == ["t_crit", "t_never", "t_running"]  # CRITICAL first
    assert "SourceError: first" in out
    assert main(["status", "--view", "sla", "--table", "t_ok", "--strict"]) == 0
    assert main(["status", "--view", "sla", "--strict"]) == 1
    out = capsys.readouterr().out
    assert "vw_LastRuns" not in out and "t_short" in out


def test_status_without_views_says_how_to_fix(tmp_path, monkeypatch, capsys):
    url = f"duckdb:///{tmp_path / 'bare.duckdb'}"
    configure(monkeypatch, source="sqlite:///unused.sqlite", flavor="sqlite", schema="PUB", target=url)
    t = open_target(url)
    with t.begin() as conn:
        for sql in init_statements(t.dialect):
            conn.execute(sql)
    assert main(["status"]) == 2
    assert "run cbm-etl init-db" in capsys.readouterr().err
