"""Alerts against real local endpoints: an HTTP server recording webhook posts (Workflows Adaptive Cards and
legacy MessageCards), an aiosmtpd SMTP server, and real loads through Luigi (SQLite demo source -> DuckDB)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from alert_servers import (
    LEGACY_PATH,
    SECRET_QUERY,
    WORKFLOW_PATH,
    Sleeps,
    assert_adaptive_card,
    card_of,
    closed_port,
    facts_of,
    fast,
    texts_of,
)
from conftest import build, configure
from helpers import ods_rows, register_demo_tables

from cbm_luigi.alerts import notify as alerts
from cbm_luigi.alerts.cards import workflow_payload
from cbm_luigi.alerts.message import CRITICAL, FAILURE, INFO, SUMMARY, Alert
from cbm_luigi.alerts.notify import Notifier, notify_failure
from cbm_luigi.config.alerts import load_alert_settings
from cbm_luigi.demo import data as demo_data
from cbm_luigi.destinations import open_target
from cbm_luigi.store import runlog
from cbm_luigi.tasks.context import clear_caches, settings
from cbm_luigi.tasks.wrappers import LoadTable

# --- cards ----------------------------------------------------------------------------------------------------


def test_failure_card_is_a_valid_adaptive_card_with_the_facts_and_a_truncated_error(recorder, log_lines):
    url = recorder.workflow_url()
    s = fast(webhooks=(url,), scheduler_url="http://etl-host:8082")
    huge = "Traceback (most recent call last):\n" + "x" * 100_000 + "\nPWD=hunter2;"
    out = notify_failure(table="produit", step="merge_ods", batch="2026-11-25", mode="incremental", error=huge,
                         run_id="run-1", rows=1234, duration=12.5, task_id="MergeOds_produit_abc", settings=s)
    assert [(d.delivered, d.attempts) for d in out] == [(True, 1)]
    assert "202" in out[0].note and "not proof" in out[0].note
    assert len(recorder.posts) == 1
    post = recorder.posts[0]
    assert post.path == WORKFLOW_PATH and post.headers["content-type"].startswith("application/json")
    assert len(post.body) <= 24_000  # under Teams' ~28 KB message limit
    card = card_of(post)
    facts = facts_of(card)
    assert facts["Table"] == "produit" and facts["Step"] == "merge_ods" and facts["Run id"] == "run-1"
    assert facts["Rows"] == "1 234" and facts["Duration"] == "12.5 s" and facts["Batch"] == "2026-11-25"
    error = next(t for t in texts_of(card) if t.startswith("Traceback"))
    assert len(error) <= 2_000 and "more characters" in error
    assert card["body"][0]["style"] == "attention" and card["body"][0]["items"][0]["color"] == "Attention"
    assert card["actions"][0]["url"] == (
        "http://etl-host:8082/static/visualiser/index.html#tab=graph&taskId=MergeOds_produit_abc")
    # the URL is a secret: neither the signature nor the path is ever logged
    text = "\n".join(log_lines)
    assert "202 accepted" in text and "not proof" in text
    assert "TopSecretSignature123" not in text and WORKFLOW_PATH not in text


def test_password_in_an_error_is_hidden_in_the_card():
    alert = Alert(FAILURE, CRITICAL, "x", error="connect failed: DRIVER={X};UID=etl;PWD=hunter2;HOST=h")
    body = workflow_payload(alert).decode()
    assert "hunter2" not in body and "PWD=***" in body


def test_summary_is_green_and_info():
    card = json.loads(workflow_payload(Alert(SUMMARY, INFO, "all well", facts=(("Rows", "10"),))))
    content = card["attachments"][0]["content"]
    assert_adaptive_card(content)
    assert content["body"][0]["style"] == "good"


def test_many_facts_are_cut_to_fit_the_size_limit():
    facts = tuple((f"table_{i}", "y" * 150) for i in range(400))
    data = workflow_payload(Alert("sla", CRITICAL, "late", facts=facts), max_bytes=20_000)
    assert len(data) <= 20_000
    assert_adaptive_card(json.loads(data)["attachments"][0]["content"])


# --- delivery: 429, 413, 500, dead endpoint ------------------------------------------------------------------------


def test_429_is_retried_after_retry_after_then_delivered(recorder):
    recorder.respond(WORKFLOW_PATH, (429, {"Retry-After": "1"}, "Rate limited"))
    sleeps = Sleeps()
    n = Notifier(fast(webhooks=(recorder.workflow_url(),)), sleep=sleeps)
    [d] = n.send(Alert("test", INFO, "hello"))
    assert d.delivered and d.attempts == 2
    assert sleeps == [1.0]  # the server's Retry-After, honoured
    assert len(recorder.posts) == 2 and recorder.posts[0].body == recorder.posts[1].body


def test_retry_after_is_capped_and_attempts_are_bounded(recorder):
    recorder.respond(WORKFLOW_PATH, *[(429, {"Retry-After": "3600"}, "")] * 5)
    sleeps = Sleeps()
    n = Notifier(fast(webhooks=(recorder.workflow_url(),), max_retry_wait=0.2, max_attempts=3), sleep=sleeps)
    [d] = n.send(Alert("test", INFO, "hello"))
    assert not d.delivered and d.attempts == 3
    assert "429" in d.note and "3 attempt" in d.note
    assert sleeps == [0.2, 0.2]
    assert len(recorder.posts) == 3


def test_413_is_retried_once_with_a_compact_card(recorder):
    recorder.respond(WORKFLOW_PATH, (413, {}, "Request Entity Too Large"))
    n = Notifier(fast(webhooks=(recorder.workflow_url(),)))
    alert = Alert(FAILURE, CRITICAL, "big", text="long explanation " * 50, facts=(("Table", "t"),), error="e" * 1500)
    [d] = n.send(alert)
    assert d.delivered and d.attempts == 2
    first, second = recorder.posts
    assert len(second.body) < len(first.body)
    card = card_of(second)
    assert not any(t.startswith("long explanation") for t in texts_of(card))
    assert facts_of(card) == {"Table": "t"}


def test_413_twice_gives_up_without_raising(recorder):
    recorder.respond(WORKFLOW_PATH, (413, {}, ""), (413, {}, "still too large"))
    [d] = Notifier(fast(webhooks=(recorder.workflow_url(),))).send(Alert(FAILURE, CRITICAL, "big"))
    assert not d.delivered and "413" in d.note
    assert len(recorder.posts) == 2


def test_500_is_retried_with_backoff_then_reported(recorder):
    recorder.respond(WORKFLOW_PATH, (500, {}, "boom"), (500, {}, "boom"))
    sleeps = Sleeps()
    [d] = Notifier(fast(webhooks=(recorder.workflow_url(),)), sleep=sleeps).send(Alert("test", INFO, "x"))
    assert d.delivered and d.attempts == 3 and sleeps == [0.01, 0.02]

    recorder.respond(WORKFLOW_PATH, *[(500, {}, "boom")] * 3)
    [d] = Notifier(fast(webhooks=(recorder.workflow_url(),)), sleep=Sleeps()).send(Alert("test", INFO, "x"))
    assert not d.delivered and d.note == "HTTP 500 server error after 3 attempt(s)"


def test_400_is_not_retried(recorder):
    recorder.respond(WORKFLOW_PATH, (400, {}, '{"error":{"code":"TriggerInputSchemaMismatch"}}'))
    [d] = Notifier(fast(webhooks=(recorder.workflow_url(),))).send(Alert("test", INFO, "x"))
    assert not d.delivered and d.attempts == 1 and "TriggerInputSchemaMismatch" in d.note


def test_dead_endpoint_is_reported_not_raised(log_lines):
    url = f"http://127.0.0.1:{closed_port()}{WORKFLOW_PATH}?{SECRET_QUERY}"
    [d] = Notifier(fast(webhooks=(url,))).send(Alert(FAILURE, CRITICAL, "x"))
    assert not d.delivered and d.note.startswith("unreachable:") and d.attempts == 1
    assert "TopSecretSignature123" not in "\n".join(log_lines) + d.note


# --- legacy connector, several URLs ------------------------------------------------------------------------------


def test_legacy_connector_url_gets_a_message_card_through_pymsteams(recorder):
    recorder.respond(LEGACY_PATH, (429, {"Retry-After": "0"}, ""))
    s = fast(webhooks=(recorder.legacy_url(),), scheduler_url="http://etl-host:8082")
    out = notify_failure(table="client", step="extract", batch="b1", mode="full", error="SourceError: gone",
                         run_id="run-legacy", settings=s)
    assert [(d.channel, d.delivered, d.attempts) for d in out] == [("teams-legacy#1", True, 2)]
    card = recorder.posts[-1].json
    assert card["title"] == "ETL failure: client failed at extract"
    assert card["themeColor"] == "D13438"
    facts = {f["name"]: f["value"] for f in card["sections"][0]["facts"]}
    assert facts["Table"] == "client" and facts["Step"] == "extract"
    assert "SourceError: gone" in card["text"]
    assert card["potentialAction"][0]["target"] == ["http://etl-host:8082/static/visualiser/index.html"]


def test_every_url_of_cbm_teams_webhook_is_notified(recorder, monkeypatch):
    second = "/workflows/second/triggers/manual/paths/invoke"
    monkeypatch.setenv("CBM_TEAMS_WEBHOOK", f"{recorder.workflow_url()}  {recorder.workflow_url(second)}")
    s = load_alert_settings()
    assert len(s.webhooks) == 2 and "TopSecret" not in repr(s)
    out = Notifier(s.with_overrides(retry_backoff=0.01)).send(Alert("test", INFO, "two"))
    assert [d.channel for d in out] == ["teams#1", "teams#2"] and all(d.delivered for d in out)
    assert sorted(p.path for p in recorder.posts) == sorted([WORKFLOW_PATH, second])


def test_scheduler_link_comes_from_luigi_core_settings(luigi_cfg):
    luigi_cfg("core", "default_scheduler_host", "etl-host")
    luigi_cfg("core", "default_scheduler_port", "8099")
    assert load_alert_settings().scheduler_url == "http://etl-host:8099"


# --- e-mail through a real SMTP server ------------------------------------------------------------------------------


@dataclass
class Mailbox:
    messages: list[Any] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd hook
        self.messages.append(envelope)
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_server(luigi_cfg) -> Iterator[Mailbox]:
    from aiosmtpd.controller import Controller

    box = Mailbox()
    port = closed_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    luigi_cfg("email", "receiver", "oncall@example.com, data@example.com")
    luigi_cfg("email", "sender", "cbm-etl@example.com")
    luigi_cfg("email", "prefix", "[TEST] ")
    luigi_cfg("smtp", "host", "127.0.0.1")
    luigi_cfg("smtp", "port", str(port))
    yield box
    controller.stop()


def test_failure_email_reaches_a_real_smtp_server(smtp_server):
    import email.policy
    from email import message_from_bytes

    s = load_alert_settings()
    assert s.email is not None and s.email.receivers == ("oncall@example.com", "data@example.com")
    out = notify_failure(table="lignecli", step="load_staging", batch="b9", mode="full",
                         error="DataError: 3 duplicate primary key(s)", run_id="run-mail", rows=42, settings=s)
    assert [(d.channel, d.delivered) for d in out] == [("email", True)]
    [env] = smtp_server.messages
    assert sorted(env.rcpt_tos) == ["data@example.com", "oncall@example.com"]
    assert env.mail_from == "cbm-etl@example.com"
    msg = message_from_bytes(env.content, policy=email.policy.default)
    assert msg["Subject"].strip() == "[TEST] [CBM ETL] CRITICAL: ETL failure: lignecli failed at load_staging"
    body = msg.get_content()
    assert "Table    : lignecli" in body and "Rows     : 42" in body and "duplicate primary key" in body


def test_email_gets_failures_only_when_teams_is_configured(smtp_server, recorder, monkeypatch):
    monkeypatch.setenv("CBM_TEAMS_WEBHOOK", recorder.workflow_url())
    n = Notifier(load_alert_settings())
    assert [d.channel for d in n.send(Alert(SUMMARY, INFO, "summary"))] == ["teams#1"]
    assert [d.channel for d in n.send(Alert(FAILURE, CRITICAL, "failed"))] == ["teams#1", "email"]
    monkeypatch.delenv("CBM_TEAMS_WEBHOOK")
    # e-mail alone: every alert
    assert [d.channel for d in Notifier(load_alert_settings()).send(Alert(SUMMARY, INFO, "summary"))] == ["email"]
    assert len(smtp_server.messages) == 2


def test_dead_smtp_server_is_reported_not_raised(luigi_cfg):
    luigi_cfg("email", "receiver", "oncall@example.com")
    luigi_cfg("smtp", "host", "127.0.0.1")
    luigi_cfg("smtp", "port", str(closed_port()))
    [d] = Notifier(load_alert_settings()).send(Alert(FAILURE, CRITICAL, "x"))
    assert d.channel == "email" and not d.delivered and "SMTP 127.0.0.1" in d.note


def test_test_alert_command_reaches_teams_and_email(smtp_server, recorder, monkeypatch, capsys, tmp_path):
    from cbm_luigi.cli import main

    monkeypatch.setenv("CBM_TEAMS_WEBHOOK", recorder.workflow_url())
    monkeypatch.setenv("CBM_TARGET", f"duckdb:///{tmp_path / 'ods.duckdb'}")
    assert main(["test-alert"]) == 0
    out = capsys.readouterr().out
    assert "teams#1" in out and "email" in out and "TopSecret" not in out
    assert len(recorder.posts) == 1 and len(smtp_server.messages) == 1
    assert "test alert" in texts_of(card_of(recorder.posts[0]))[0]


def test_test_alert_without_any_channel_says_how_to_configure_one(capsys):
    from cbm_luigi.cli import main

    assert main(["test-alert"]) == 2
    assert "CBM_TEAMS_WEBHOOK" in capsys.readouterr().err


# --- through real loads ---------------------------------------------------------------------------------------


@pytest.fixture
def sqlite_pipeline(tmp_path, monkeypatch):
    """The demo source in SQLite and a DuckDB ODS; lignecli registered with a wrong key (it fails to stage)."""
    demo_data.create_sqlite_source(tmp_path / "erp.sqlite", scale=0.05)
    configure(monkeypatch, source=f"sqlite:///{tmp_path / 'erp.sqlite'}", flavor="sqlite", schema="PUB",
              target=f"duckdb:///{tmp_path / 'ods.duckdb'}")
    store = register_demo_tables(["produit", "lignecli"])
    store.register_table("lignecli", primary_key=["num_cde"], date_modif_col="dat_mod", lookback="12h")
    clear_caches()
    alerts._failures_sent.clear()
    return store


def alert_rows() -> list[dict[str, Any]]:
    t = open_target(settings().target)
    names = ["AlertType", "Severity", "TableName", "RunId", "Channel", "Delivered", "DeliveryNote"]
    q = t.dialect.quote
    return [dict(zip(names, r, strict=True)) for r in t.fetchall(
        f"SELECT {', '.join(q(n) for n in names)} FROM {t.dialect.qualified('etl', 'ETL_Alerts')}")]


def test_a_failing_load_sends_exactly_one_card_even_when_run_again(sqlite_pipeline, recorder, monkeypatch):
    monkeypatch.setenv("CBM_TEAMS_WEBHOOK", recorder.workflow_url())
    result = build(LoadTable(table="lignecli", mode="full", batch_id="b1"),
                   LoadTable(table="produit", mode="full", batch_id="b1"))
    assert result.status.name != "SUCCESS"
    assert len(ods_rows("produit")) > 0  # the good table loaded
    assert len(recorder.posts) == 1
    card = card_of(recorder.posts[0])
    facts = facts_of(card)
    assert facts["Table"] == "lignecli" and facts["Step"] == "load_staging" and facts["Batch"] == "b1"
    assert facts["Run id"] == runlog.RUN_ID and facts["Rows"] != "-" and facts["Duration"].endswith("s")
    assert any("duplicate primary key" in t for t in texts_of(card))
    # the same failure again in this run (a retry): no second card
    build(LoadTable(table="lignecli", mode="full", batch_id="b1"))
    assert len(recorder.posts) == 1
    rows = alert_rows()
    assert [(r["AlertType"], r["TableName"], r["Channel"], bool(r["Delivered"])) for r in rows] == [
        (FAILURE, "lignecli", "teams#1", True)]
    assert rows[0]["RunId"] == runlog.RUN_ID


def test_a_dead_webhook_never_fails_a_load(sqlite_pipeline, monkeypatch):
    monkeypatch.setenv("CBM_TEAMS_WEBHOOK", f"http://127.0.0.1:{closed_port()}{WORKFLOW_PATH}?{SECRET_QUERY}")
    good = build(LoadTable(table="produit", mode="full", batch_id="b2"))
    assert good.scheduling_succeeded and good.status.name == "SUCCESS"
    both = build(LoadTable(table="lignecli", mode="full", batch_id="b2"),
                 LoadTable(table="produit", mode="full", batch_id="b3"))
    from helpers import log_rows

    done = {(r["TableName"], r["Batch"]) for r in log_rows() if r["StepName"] == "flow_complete"}
    assert ("produit", "b3") in done and ("lignecli", "b2") not in done
    failed = [r for r in log_rows() if r["Status"] == "failed"]
    assert [r["TableName"] for r in failed] == ["lignecli"]  # the load's own error, not a notifier error
    assert both.status.name != "SUCCESS"
    [row] = alert_rows()
    assert row["TableName"] == "lignecli" and not row["Delivered"] and row["DeliveryNote"].startswith("unreachable")


def test_a_load_failure_e_mails_the_operator(sqlite_pipeline, smtp_server):
    build(LoadTable(table="lignecli", mode="full", batch_id="b4"))
    [env] = smtp_server.messages
    assert b"lignecli failed at load_staging" in env.content
    assert [r["Channel"] for r in alert_rows()] == ["email"]


def test_without_any_channel_a_failure_is_only_logged(sqlite_pipeline, log_lines):
    build(LoadTable(table="lignecli", mode="full", batch_id="b5"))
    assert alert_rows() == []
    assert any("no channel configured" in line for line in log_lines)


def test_notify_failure_survives_a_broken_target(recorder, tmp_path):
    """The target may be what failed: the alert is still sent, its record is skipped."""
    from cbm_luigi.destinations.client import Target

    broken = open_target(f"postgresql+psycopg://nobody@127.0.0.1:{closed_port()}/nothing")
    assert isinstance(broken, Target)
    alerts._failures_sent.clear()
    out = notify_failure(table="t", step="extract", batch="b", mode="full", error="TargetError: down",
                         run_id="run-x", target=broken, settings=fast(webhooks=(recorder.workflow_url(),)))
    assert [d.delivered for d in out] == [True]
    assert Path(tmp_path).exists()


def test_a_failure_another_run_of_the_batch_alerted_is_not_re_sent_unless_nobody_was_told(sqlite_pipeline,
                                                                                          recorder, monkeypatch):
    target = open_target(settings().target)

    def fail(run_id: str) -> list[Any]:
        """Run ``run_id`` (another host of the night) logs lignecli's failure in batch b7, then alerts it."""
        monkeypatch.setattr(runlog, "RUN_ID", run_id)
        runlog.write_log_now(target, "lignecli", "load_staging", "failed", batch="b7", mode="full", error="DataError")
        return notify_failure(table="lignecli", step="load_staging", batch="b7", mode="full", error="DataError: dup",
                              run_id=run_id, target=target)

    # host 1's webhook is down: its alert is recorded, delivered to nobody
    monkeypatch.setenv("CBM_TEAMS_WEBHOOK", f"http://127.0.0.1:{closed_port()}{WORKFLOW_PATH}?{SECRET_QUERY}")
    [undelivered] = fail("host-1-run")
    assert not undelivered.delivered
    # host 2 fails the table again: nobody was told, so it alerts
    monkeypatch.setenv("CBM_TEAMS_WEBHOOK", recorder.workflow_url())
    assert [d.delivered for d in fail("host-2-run")] == [True]
    # host 3 of the same night: host 2's card was delivered, not re-sent
    assert fail("host-3-run") == []
    assert len(recorder.posts) == 1 and facts_of(card_of(recorder.posts[0]))["Run id"] == "host-2-run"
    # another batch is another failure
    monkeypatch.setattr(runlog, "RUN_ID", "host-3-run")
    runlog.write_log_now(target, "lignecli", "load_staging", "failed", batch="b8", mode="full", error="DataError")
    assert notify_failure(table="lignecli", step="load_staging", batch="b8", mode="full", error="DataError: dup",
                          run_id="host-3-run", target=target) != []
    assert len(recorder.posts) == 2
