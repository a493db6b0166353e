"""The health check on seeded run logs (DuckDB file, and the machine's PostgreSQL): exactly the expected alerts
(SLA WARNING/CRITICAL, more than N failures, the daily summary), no repeats, and the exit codes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from alert_servers import Recorder, card_of, closed_port, facts_of, fast

from cbm_luigi.alerts.message import CRITICAL, INFO, OK, REPEATED_FAILURES, SLA, SUMMARY, WARNING
from cbm_luigi.config.alerts import AlertSettings
from cbm_luigi.destinations import open_target
from cbm_luigi.destinations.client import Target
from cbm_luigi.ops.health import HealthCheck, compute_sla, sla_from_view, sla_status
from cbm_luigi.store.runlog import insert_log_sql
from cbm_luigi.store.schema import ETL_TABLES, init_db

NOW = datetime(2026, 3, 10, 7, 0, 0)


def seed_table(t: Target, name: str, sla_hours: float = 24.0, active: bool = True, priority: str = "normal") -> None:
    d = t.dialect
    q = d.quote
    values = {"TableName": name, "SqlName": name, "DestinationTable": f"ods.{name}", "PrimaryKeyCols": "id",
              "HasTimestamps": False, "IsDimension": False, "IsFact": True, "IsActive": active,
              "SLAHours": sla_hours, "PriorityTier": priority}
    with t.begin() as conn:
        conn.execute(f"INSERT INTO {d.qualified(ETL_TABLES.schema, ETL_TABLES.name)} "
                     f"({', '.join(q(k) for k in values)}) VALUES ({', '.join(':' + k for k in values)})", values)


def seed_log(t: Target, table: str, ts: datetime, status: str = "success", step: str = "flow_complete",
             rows: int | None = None, seconds: float | None = None, error: str | None = None,
             run_id: str = "run-a") -> None:
    with t.begin() as conn:
        conn.execute(insert_log_sql(t.dialect), {
            "LogId": str(uuid.uuid4()), "RunId": run_id, "TableName": table, "Batch": ts.strftime("%Y-%m-%d"),
            "Mode": "incremental", "StepName": step, "Status": status, "RowsProcessed": rows,
            "RowsInserted": rows and rows // 10, "RowsUpdated": rows and rows // 20, "RowsUnchanged": None, "RowsDeleted": None,
            "DurationSeconds": seconds, "ErrorMessage": error, "LogTs": ts,
        })


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    r = Recorder().start()
    yield r
    r.stop()


@pytest.fixture
def duck(tmp_path, monkeypatch) -> Target:
    url = f"duckdb:///{tmp_path / 'ods.duckdb'}"
    monkeypatch.setenv("CBM_TARGET", url)
    t = open_target(url)
    init_db(t)
    return t


def check(t: Target, recorder: Recorder, **kw: Any) -> HealthCheck:
    s = fast(webhooks=(recorder.workflow_url(),), **kw)
    return HealthCheck(t, s)


def cards(recorder: Recorder) -> list[dict[str, Any]]:
    return [card_of(p) for p in recorder.posts]


def alert_log(t: Target) -> list[tuple[Any, ...]]:
    q = t.dialect.quote
    return sorted(t.fetchall(f"SELECT {q('AlertType')}, {q('Severity')}, {q('TableName')} "
                             f"FROM {t.dialect.qualified('etl', 'ETL_Alerts')}"), key=lambda r: (r[0], r[1], r[2] or ""))


def test_sla_rule_of_the_contract():
    assert sla_status(None, 24) == CRITICAL
    assert sla_status(24.0, 24) == OK
    assert sla_status(24.01, 24) == WARNING
    assert sla_status(48.0, 24) == WARNING
    assert sla_status(48.01, 24) == CRITICAL


def test_all_well_sends_one_daily_summary_with_the_real_figures(duck, recorder):
    for name in ("client", "produit", "lignecli"):
        seed_table(duck, name)
    seed_log(duck, "client", NOW - timedelta(hours=2), rows=1500, seconds=5.0)
    seed_log(duck, "produit", NOW - timedelta(hours=2), rows=200, seconds=50.0)
    seed_log(duck, "lignecli", NOW - timedelta(hours=3), rows=3000, seconds=20.0, run_id="run-b")
    seed_log(duck, "lignecli", NOW - timedelta(hours=5), status="failed", step="merge_ods", error="x",
             run_id="run-c")
    seed_log(duck, "lignecli", NOW - timedelta(hours=26), rows=999_999, seconds=999.0, run_id="run-old")  # outside

    report = check(duck, recorder).run(NOW)
    assert report.exit_code == 0
    [card] = cards(recorder)
    assert card["body"][0]["style"] == "good"
    facts = facts_of(card)
    assert facts["Tables loaded"] == "3" and facts["Loads"] == "3" and facts["Runs"] == "3"
    assert facts["Rows processed"] == "4 700" and facts["Failures"] == "1 (alert above 5)"
    assert facts["Inserted / updated"] == "470 / 235"
    assert facts["Tables within SLA"] == "3 of 3"
    assert facts["Slowest #1"] == "produit: 50.0 s, 200 rows"
    assert facts["Slowest #2"] == "lignecli: 20.0 s, 3 000 rows"
    assert facts["Slowest #3"] == "client: 5.0 s, 1 500 rows"
    assert alert_log(duck) == [(SUMMARY, INFO, None)]

    # a second health run the same day sends nothing more
    again = check(duck, recorder).run(NOW + timedelta(hours=3))
    assert len(recorder.posts) == 1 and again.exit_code == 0
    assert [f.alert for f in again.findings if f.check == "summary"] == ["already sent today (07:00)"]
    # the next day it is due again
    check(duck, recorder).run(NOW + timedelta(hours=20))
    assert len(recorder.posts) == 2


def test_sla_breaches_send_one_card_per_severity_and_exit_2(duck, recorder):
    seed_table(duck, "ok_table")
    seed_table(duck, "late", sla_hours=10)          # 15 h ago: WARNING (<= 20)
    seed_table(duck, "very_late")                   # 60 h ago: CRITICAL (> 48)
    seed_table(duck, "never")                       # never loaded: CRITICAL
    seed_table(duck, "inactive", active=False)      # never loaded, but inactive: ignored
    seed_log(duck, "ok_table", NOW - timedelta(hours=1), rows=10, seconds=1.0)
    seed_log(duck, "late", NOW - timedelta(hours=15), rows=10, seconds=1.0)
    seed_log(duck, "very_late", NOW - timedelta(hours=60), rows=10, seconds=1.0)

    report = check(duck, recorder).run(NOW)
    assert report.exit_code == 2
    crit, warn = cards(recorder)
    assert crit["body"][0]["style"] == "attention" and warn["body"][0]["style"] == "warning"
    assert set(facts_of(crit)) == {"very_late", "never"}
    assert facts_of(crit)["very_late"].startswith("60.0 h since last success (SLA 24 h")
    assert facts_of(crit)["never"].startswith("never loaded")
    assert set(facts_of(warn)) == {"late"}
    assert alert_log(duck) == [(SLA, CRITICAL, "never"), (SLA, CRITICAL, "very_late"), (SLA, WARNING, "late")]
    assert not any(f.check == "summary" for f in report.findings)

    # one hour later: the same breaches are not re-sent, the exit code still says CRITICAL
    later = check(duck, recorder).run(NOW + timedelta(hours=1))
    assert len(recorder.posts) == 2 and later.exit_code == 2
    assert all(f.alert.startswith("not re-sent") for f in later.findings if f.check == "sla" and f.severity != OK)

    # six hours later `late` escalates to CRITICAL (21 h > 2 x 10 h): sent at once, alone
    escalated = check(duck, recorder).run(NOW + timedelta(hours=6))
    assert len(recorder.posts) == 3 and escalated.exit_code == 2
    assert set(facts_of(cards(recorder)[2])) == {"late"}

    # after the repeat window (12 h), what is still late is sent again; `late` was sent 7 h ago
    check(duck, recorder, repeat_hours=12).run(NOW + timedelta(hours=13))
    assert len(recorder.posts) == 4
    assert set(facts_of(cards(recorder)[3])) == {"very_late", "never"}


def test_more_than_n_failures_in_24h_sends_one_critical_card(duck, recorder):
    seed_table(duck, "client")
    seed_table(duck, "produit")
    seed_log(duck, "client", NOW - timedelta(hours=1), rows=10, seconds=1.0)
    seed_log(duck, "produit", NOW - timedelta(hours=1), rows=10, seconds=1.0)
    for i in range(4):
        seed_log(duck, "produit", NOW - timedelta(hours=2 + i), status="failed", step="extract",
                 error=f"SourceError: timeout {i}", run_id=f"r{i}")
    seed_log(duck, "client", NOW - timedelta(hours=3), status="failed", step="merge_ods", error="deadlock")
    seed_log(duck, "client", NOW - timedelta(hours=30), status="failed", step="merge_ods", error="old")  # outside

    # exactly 5 = the threshold: not "more than 5" -> the summary instead
    report = check(duck, recorder).run(NOW)
    assert report.exit_code == 0 and [a.alert_type for a, _ in report.sent] == [SUMMARY]

    seed_log(duck, "produit", NOW - timedelta(minutes=30), status="failed", step="extract",
             error="SourceError: timeout last", run_id="r9")
    report = check(duck, recorder).run(NOW)
    assert report.exit_code == 2
    assert [a.alert_type for a, _ in report.sent] == [REPEATED_FAILURES]
    card = cards(recorder)[-1]
    assert card["body"][0]["items"][0]["text"] == "ETL: 6 failures in the last 24 h (threshold 5)"
    facts = facts_of(card)
    assert facts["produit"] == "5 failure(s)" and facts["client"] == "1 failure(s)"
    assert any("timeout last" in b.get("text", "") for b in card["body"])  # the last error of the worst table
    # not repeated within the window
    check(duck, recorder).run(NOW + timedelta(hours=1))
    assert len(recorder.posts) == 2
    # a lower threshold from [cbm_alerts] / the environment
    assert check(duck, recorder, failure_threshold=10).run(NOW + timedelta(hours=2)).exit_code == 0


def test_no_send_reports_without_sending_or_recording(duck, recorder):
    seed_table(duck, "never")
    report = check(duck, recorder).run(NOW, send=False)
    assert report.exit_code == 2 and recorder.posts == [] and alert_log(duck) == []
    assert [f.alert for f in report.findings if f.check == "sla"] == ["due (not sent: --no-send)"]


def test_unreachable_target_is_critical_and_alerted(recorder):
    broken = open_target(f"postgresql+psycopg://nobody@127.0.0.1:{closed_port()}/nothing")
    report = HealthCheck(broken, fast(webhooks=(recorder.workflow_url(),))).run(NOW)
    assert report.exit_code == 2
    [card] = cards(recorder)
    assert card["body"][0]["items"][0]["text"] == "ETL health check cannot read the run log"


def test_undelivered_alert_gives_exit_1(duck):
    seed_table(duck, "t")
    seed_log(duck, "t", NOW - timedelta(hours=1), rows=1, seconds=1.0)
    dead = f"http://127.0.0.1:{closed_port()}/workflows/x/triggers/manual/paths/invoke"
    report = HealthCheck(duck, fast(webhooks=(dead,))).run(NOW)
    assert report.exit_code == 1
    assert [f.alert.split(":")[0] for f in report.findings if f.check == "summary"] == ["NOT delivered"]


@pytest.mark.postgres
def test_health_on_postgresql_matches_duckdb_and_the_view(pg_database, recorder):
    """Same seeded log on PostgreSQL: the portable SQL gives the same alerts, and etl.vw_SLABreach agrees."""
    t = open_target(pg_database)
    init_db(t)
    now = datetime.now().replace(microsecond=0)
    seed_table(t, "ok_table")
    seed_table(t, "late", sla_hours=10)
    seed_table(t, "never")
    seed_log(t, "ok_table", now - timedelta(hours=1), rows=10, seconds=1.0)
    seed_log(t, "late", now - timedelta(hours=15), rows=10, seconds=1.0)
    report = HealthCheck(t, fast(webhooks=(recorder.workflow_url(),))).run(now)
    assert report.exit_code == 2
    assert sorted((a.severity, a.tables) for a, _ in report.sent) == [(CRITICAL, ("never",)), (WARNING, ("late",))]
    assert not any(f.check == "sla view" for f in report.findings)  # the view agrees
    view = sla_from_view(t)
    assert view is not None
    assert {r.table: r.status for r in view} == {r.table: r.status for r in compute_sla(t, now)}


def test_view_agrees_on_duckdb(duck):
    now = datetime.now().replace(microsecond=0)
    seed_table(duck, "a")
    seed_table(duck, "b", sla_hours=2)
    seed_table(duck, "c")
    seed_log(duck, "a", now - timedelta(hours=3))
    seed_log(duck, "b", now - timedelta(hours=3))
    view = sla_from_view(duck)
    if view is None:
        pytest.skip("this dialect creates no etl.vw_SLABreach")
    assert {r.table: r.status for r in view} == {"a": OK, "b": WARNING, "c": CRITICAL}
    assert {r.table: r.status for r in compute_sla(duck, now)} == {"a": OK, "b": WARNING, "c": CRITICAL}


def test_health_command_prints_the_table_and_exits_2_on_critical(duck, recorder, monkeypatch, capsys):
    from cbm_luigi.cli import main

    seed_table(duck, "never")
    monkeypatch.setenv("CBM_TEAMS_WEBHOOK", recorder.workflow_url())
    assert main(["health"]) == 2
    out = capsys.readouterr().out
    assert "never loaded successfully" in out and "sent: teams#1" in out and "health: CRITICAL (exit 2)" in out
    assert main(["health"]) == 2  # still critical, not re-sent
    assert "not re-sent" in capsys.readouterr().out
    assert len(recorder.posts) == 1
    assert isinstance(AlertSettings(), AlertSettings)
