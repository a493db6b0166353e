"""Alerts to Microsoft Teams and e-mail, recorded in ``etl.ETL_Alerts``.

Channels (every configured one is notified):

* **Teams Workflows** (default): each URL of ``CBM_TEAMS_WEBHOOK`` (environment or ``.env``; several URLs separated
  by spaces) receives an Adaptive Card (schema 1.4) inside the ``{"type": "message", "attachments": [...]}``
  envelope a Power Automate "When a Teams webhook request is received" flow expects.  Posted with the stdlib.
* **Teams legacy connector**: a URL whose path holds ``IncomingWebhook`` (``https://x.webhook.office.com/
  webhookb2/.../IncomingWebhook/...``) is sent a MessageCard through pymsteams.
* **E-mail**: Luigi's own ``[email]`` (receiver, sender, prefix, format) and ``[smtp]`` (host, port, ssl, no_tls,
  username, password, timeout) settings, sent with smtplib.  ``CBM_SMTP_USERNAME`` / ``CBM_SMTP_PASSWORD`` and
  ``CBM_ALERT_EMAIL_TO`` override them from the environment.  With Teams configured, e-mail gets the failure (and
  test) alerts; when e-mail is the only channel it gets every alert (``[cbm_alerts] email_alerts``).

Delivery: 429 is retried after ``Retry-After`` (capped, bounded attempts), 5xx with backoff, 413 once with a
compact card; cards are kept under the Teams size limit by shortening the error excerpt.  A 202 from a workflow
means "accepted", not "delivered": the log says so.  A notifier never raises into the caller: a dead endpoint
never fails a load.  The webhook URL is a secret: it is never logged (channels are named ``teams#1`` and the
host only).  Each alert sent is recorded (one row per channel and table) in ``etl.ETL_Alerts``.

Settings: luigi.cfg ``[cbm_alerts]`` (see :class:`cbm_alerts`).  Operator guide: docs/ALERTS.md.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from cbm_luigi.alerts.channels import build_channels
from cbm_luigi.alerts.message import (
    CRITICAL,
    FAILURE,
    INFO,
    TEST,
    Alert,
    Delivery,
    fmt_rows,
    fmt_seconds,
    task_link,
)
from cbm_luigi.config.alerts import AlertSettings, load_alert_settings
from cbm_luigi.config.run import RUN_ID, RUN_STARTED
from cbm_luigi.errors import ConfigError
from cbm_luigi.store.alerts_log import AlertLog

if TYPE_CHECKING:
    from cbm_luigi.destinations.client import Target

log = logging.getLogger(__name__)


# --- the alert ---------------------------------------------------------------------------------------------------


# --- payloads ----------------------------------------------------------------------------------------------------


# --- channels ----------------------------------------------------------------------------------------------------


# --- etl.ETL_Alerts ----------------------------------------------------------------------------------------------


# --- sending -----------------------------------------------------------------------------------------------------


class Notifier:
    """Sends an :class:`Alert` to every channel that wants it and records the outcome; never raises."""

    def __init__(self, settings: AlertSettings | None = None, target: Target | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings or load_alert_settings()
        self.target = target
        self.channels = build_channels(self.settings, sleep)
        self.log = AlertLog(target) if target is not None else None

    def send(self, alert: Alert, when: datetime | None = None) -> list[Delivery]:
        """Send to every channel that wants the alert; record it (SentTs = ``when``, default now)."""
        deliveries: list[Delivery] = []
        wanted = [c for c in self.channels if c.wants(alert)]
        if not wanted:
            log.warning("alert not sent (no channel configured: set CBM_TEAMS_WEBHOOK or [email] receiver): %s",
                        alert.title)
            return deliveries
        for channel in wanted:
            try:
                deliveries.append(channel.send(alert))
            except Exception as exc:  # a notifier must never fail its caller
                log.exception("alert %r: channel %s failed", alert.title, channel.name)
                deliveries.append(Delivery(channel.name, False, f"notifier error: {type(exc).__name__}: {exc}"[:400]))
        if self.log is not None:
            try:
                self.log.record(alert, deliveries, when)
            except Exception:  # the target may be what is down
                log.exception("could not record alert %r in etl.ETL_Alerts", alert.title)
        return deliveries


# In-process memory of failure alerts already sent: (table, batch, run id).  The database check (etl.ETL_Alerts)
# covers forked workers and other processes sharing CBM_RUN_ID; this one covers a target that is down.
_failures_sent: set[tuple[str, str, str]] = set()


def notify_failure(*, table: str, step: str, batch: str | None, mode: str | None, error: str,
                   run_id: str, rows: int | None = None, duration: float | None = None,
                   task_id: str | None = None, target: Target | None = None,
                   settings: AlertSettings | None = None) -> list[Delivery]:
    """The "table load failed" alert, once per (table, batch, run): a retry of the same failure is not re-sent,
    nor a failure of the same table and batch that another run alerted after this one started (the other hosts
    of one night: luigid gives a failed table to the next worker that asks).  A run started after that alert (the
    operator's re-run) alerts again.

    Never raises (returns the deliveries, empty when nothing was sent).
    """
    try:
        key = (table, batch or "", run_id)
        if key in _failures_sent:
            log.info("failure alert for %s (batch %s) already sent by this run: not re-sent", table, batch)
            return []
        alert_log = AlertLog(target) if target is not None else None
        if alert_log is not None:
            try:
                if alert_log.last_sent(FAILURE, table=table, run_id=run_id, delivered_only=False) is not None:
                    _failures_sent.add(key)
                    log.info("failure alert for %s already recorded for run %s: not re-sent", table, run_id)
                    return []
                # another host (or process) of the same batch, running at the same time, alerted it already:
                # luigid hands a failed table to the next worker that asks, which fails it again
                other = (alert_log.failure_alerted_by_another_run(FAILURE, table=table, batch=batch,
                                                                  since=RUN_STARTED, run_id=run_id)
                         if batch else None)
                if other is not None:
                    _failures_sent.add(key)
                    log.warning("%s failed again at %s (batch %s): its failure alert was sent at %s by run %s of "
                                "the same batch, not re-sent", table, step, batch, other[1], other[0])
                    return []
            except Exception:  # noqa: BLE001 - the target may be down: still alert
                log.warning("cannot read etl.ETL_Alerts: sending the failure alert without the duplicate check")
        s = settings or load_alert_settings()
        facts = [("Table", table), ("Step", step), ("Batch", batch or "-"), ("Mode", mode or "-"),
                 ("Run id", run_id), ("Rows", fmt_rows(rows)), ("Duration", fmt_seconds(duration)),
                 ("Host", socket.gethostname())]
        alert = Alert(
            alert_type=FAILURE, severity=CRITICAL, title=f"ETL failure: {table} failed at {step}",
            text=f"The load of {table} (batch {batch or '-'}, {mode or '-'}) failed at step {step}. "
                 "The ODS table keeps its previous content; re-run the same command after fixing the cause.",
            facts=tuple(facts), error=error, tables=(table,), run_id=run_id,
            link=task_link(s.scheduler_url, task_id),
        )
        deliveries = Notifier(s, target).send(alert)
        if deliveries:
            _failures_sent.add(key)
        return deliveries
    except Exception:  # a notifier must never fail the load
        log.exception("failure alert for %s could not be sent", table)
        return []


def send_test_alert(settings: AlertSettings | None = None, target: Target | None = None) -> list[Delivery]:
    """Send a test card / e-mail to every channel (e-mail included even when it gets failures only)."""

    s = settings or load_alert_settings()
    if not s.channels_configured:
        raise ConfigError("no alert channel configured: set CBM_TEAMS_WEBHOOK (in .env) and/or "
                          "[email] receiver with [smtp] host/port in luigi.cfg, then run cbm-etl test-alert again")
    facts = (("Host", socket.gethostname()), ("Run id", RUN_ID),
             ("Sent", datetime.now().isoformat(sep=" ", timespec="seconds")),
             ("Channels", ", ".join(c.name for c in build_channels(s))))
    alert = Alert(TEST, INFO, "CBM ETL test alert",
                  text="If you can read this, cbm-luigi alerts reach this channel.", facts=facts, run_id=RUN_ID,
                  link=task_link(s.scheduler_url))
    return Notifier(s, target).send(alert)

