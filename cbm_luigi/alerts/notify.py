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

import json
import logging
import smtplib
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from html import escape
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import pymsteams
import requests

from cbm_luigi.config.alerts import AlertSettings, EmailSettings, load_alert_settings
from cbm_luigi.config.run import RUN_ID
from cbm_luigi.config.secrets import redact
from cbm_luigi.errors import ConfigError
from cbm_luigi.store.alerts_log import AlertLog

if TYPE_CHECKING:
    from cbm_luigi.destinations.client import Target

log = logging.getLogger(__name__)

# Alert types (etl.ETL_Alerts.AlertType) and severities.
FAILURE, SLA, REPEATED_FAILURES, SUMMARY, TEST, HEALTH_ERROR = (
    "failure", "sla", "repeated_failures", "summary", "test", "health_error",
)
CRITICAL, WARNING, INFO, OK = "CRITICAL", "WARNING", "INFO", "OK"
SEVERITY_ORDER = {OK: 0, INFO: 1, WARNING: 2, CRITICAL: 3}
#: Adaptive Card container style / text colour, and MessageCard theme colour, per severity.
_STYLE = {CRITICAL: ("attention", "Attention", "D13438"), WARNING: ("warning", "Warning", "FFB900"),
          INFO: ("good", "Good", "107C10"), OK: ("good", "Good", "107C10")}
_TEST_STYLE = ("accent", "Accent", "0078D4")
ADAPTIVE_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
ADAPTIVE_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
ADAPTIVE_VERSION = "1.4"


# --- the alert ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Alert:
    """What is said, independent of the channel."""

    alert_type: str
    severity: str
    title: str
    text: str = ""
    facts: tuple[tuple[str, str], ...] = ()
    error: str | None = None
    tables: tuple[str, ...] = ()  # one etl.ETL_Alerts row per table (none: one row without table)
    run_id: str | None = None
    link: str | None = None
    link_title: str = "Open the Luigi scheduler"

    @property
    def style(self) -> tuple[str, str, str]:
        return _TEST_STYLE if self.alert_type == TEST else _STYLE.get(self.severity, _STYLE[INFO])

    def plain_text(self, max_error: int = 4000) -> str:
        lines = [self.title, ""]
        if self.text:
            lines += [self.text, ""]
        width = max((len(k) for k, _ in self.facts), default=0)
        lines += [f"{k.ljust(width)} : {v}" for k, v in self.facts]
        if self.error:
            lines += ["", "Error:", excerpt(self.error, max_error)]
        if self.link:
            lines += ["", f"{self.link_title}: {self.link}"]
        return "\n".join(lines).rstrip() + "\n"


def excerpt(text: str, limit: int) -> str:
    """``text`` with passwords hidden, cut to ``limit`` characters (the cut is marked)."""
    text = str(text).strip()
    total = len(text)
    # cut first (redact() is slow on very long text), with a margin so a secret at the cut is still recognised
    text = redact(text[: limit + 200])
    if total <= limit and len(text) <= limit:
        return text
    return text[: max(0, limit - 30)].rstrip() + f" … [{max(total - limit + 30, 0)} more characters]"


@dataclass(frozen=True)
class Delivery:
    """The outcome of one channel: ``delivered`` = the endpoint accepted it (2xx / SMTP accepted)."""

    channel: str
    delivered: bool
    note: str
    attempts: int = 1


# --- payloads ----------------------------------------------------------------------------------------------------


def _card_json(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def adaptive_card(alert: Alert, error_chars: int, compact: bool = False) -> dict[str, Any]:
    """The Adaptive Card (schema 1.4) for ``alert`` (without the message envelope)."""
    style, color, _ = alert.style
    body: list[dict[str, Any]] = [{
        "type": "Container", "style": style, "bleed": True,
        "items": [
            {"type": "TextBlock", "text": alert.title, "weight": "Bolder", "size": "Medium", "wrap": True,
             "color": color},
            {"type": "TextBlock", "text": f"{alert.severity} · {alert.alert_type.replace('_', ' ')}",
             "isSubtle": True, "spacing": "None", "wrap": True},
        ],
    }]
    if alert.text and not compact:
        body.append({"type": "TextBlock", "text": alert.text, "wrap": True})
    if alert.facts:
        body.append({"type": "FactSet",
                     "facts": [{"title": k, "value": v} for k, v in alert.facts]})
    if alert.error and error_chars > 0:
        body.append({"type": "TextBlock", "text": "Error", "weight": "Bolder", "spacing": "Medium"})
        body.append({"type": "TextBlock", "text": excerpt(alert.error, error_chars), "wrap": True,
                     "fontType": "Monospace", "size": "Small"})
    card: dict[str, Any] = {
        "$schema": ADAPTIVE_SCHEMA, "type": "AdaptiveCard", "version": ADAPTIVE_VERSION,
        "msteams": {"width": "Full"}, "body": body,
    }
    if alert.link:
        card["actions"] = [{"type": "Action.OpenUrl", "title": alert.link_title, "url": alert.link}]
    return card


def workflow_payload(alert: Alert, max_bytes: int = 24_000, error_chars: int = 2_000,
                     compact: bool = False) -> bytes:
    """The JSON body posted to a Workflows webhook, shortened (error first, then facts) to fit ``max_bytes``."""
    chars = min(error_chars, 300) if compact else error_chars
    facts = alert.facts
    while True:
        a = replace(alert, facts=facts)
        envelope = {"type": "message", "attachments": [{
            "contentType": ADAPTIVE_CONTENT_TYPE, "contentUrl": None, "content": adaptive_card(a, chars, compact),
        }]}
        data = _card_json(envelope)
        if len(data) <= max_bytes:
            return data
        if alert.error and chars > 200:
            chars //= 2
        elif any(len(v) > 200 for _, v in facts):
            facts = tuple((k, excerpt(v, 200)) for k, v in facts)
        elif len(facts) > 5:
            facts = (*facts[:5], ("…", f"{len(alert.facts) - 5} more lines not shown"))
        elif not compact:
            compact = True
        else:
            raise ValueError(f"alert {alert.title!r} does not fit in {max_bytes} bytes")


def message_card_sections(alert: Alert, error_chars: int) -> tuple[str, list[tuple[str, str]]]:
    text = alert.text
    if alert.error and error_chars > 0:
        text = (text + "\n\n" if text else "") + "**Error**\n\n```\n" + excerpt(alert.error, error_chars) + "\n```"
    return text, list(alert.facts)


# --- channels ----------------------------------------------------------------------------------------------------


def _retry_after(value: str | None, default: float) -> float:
    if not value:
        return default
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
        now = datetime.now(when.tzinfo) if when.tzinfo else datetime.now()
        return max(0.0, (when - now).total_seconds())
    except (TypeError, ValueError):
        return default


@dataclass
class HttpAnswer:
    status: int  # 0 = no answer (network error)
    headers: dict[str, str]
    body: str
    error: str = ""


class Channel:
    name = "channel"

    def wants(self, alert: Alert) -> bool:
        return True

    def send(self, alert: Alert) -> Delivery:
        raise NotImplementedError


class _WebhookChannel(Channel):
    """Shared retry logic: 429 (Retry-After), 5xx (backoff), 413 (compact once); network errors not retried."""

    kind = "teams"

    def __init__(self, url: str, index: int, settings: AlertSettings,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._url = url
        self.name = f"{self.kind}#{index}"
        self.host = urlsplit(url).hostname or "?"
        self.s = settings
        self.sleep = sleep

    def _scrub(self, text: str) -> str:
        return text.replace(self._url, "<webhook URL>")[:300]

    def _post(self, alert: Alert, compact: bool) -> HttpAnswer:
        raise NotImplementedError

    def send(self, alert: Alert) -> Delivery:
        compact = False
        note = ""
        for attempt in range(1, self.s.max_attempts + 1):
            ans = self._post(alert, compact)
            if 200 <= ans.status < 300:
                if ans.status == 202:
                    note = "HTTP 202 accepted (queued by the workflow: not proof that it reached the channel)"
                else:
                    note = f"HTTP {ans.status} accepted"
                log.info("alert %r -> %s (%s): %s", alert.title, self.name, self.host, note)
                return Delivery(self.name, True, note, attempt)
            if ans.status == 0:
                note = f"unreachable: {self._scrub(ans.error)}"
                return self._failed(alert, note, attempt)
            if ans.status == 413 and not compact:
                compact = True
                note = "HTTP 413 payload too large"
                log.warning("alert %r -> %s: HTTP 413 (too large): retrying with a compact card",
                            alert.title, self.name)
                continue
            if ans.status == 429 or ans.status >= 500:
                backoff = self.s.retry_backoff * (2 ** (attempt - 1))
                wait = _retry_after(ans.headers.get("retry-after"), backoff) if ans.status == 429 else backoff
                wait = min(wait, self.s.max_retry_wait)
                note = f"HTTP {ans.status} " + ("throttled" if ans.status == 429 else "server error")
                if attempt < self.s.max_attempts:
                    log.warning("alert %r -> %s: %s; retry %d/%d in %.1fs", alert.title, self.name, note,
                                attempt + 1, self.s.max_attempts, wait)
                    self.sleep(wait)
                continue
            detail = self._scrub(ans.body).strip()
            return self._failed(alert, f"HTTP {ans.status} rejected" + (f": {detail}" if detail else ""), attempt)
        return self._failed(alert, f"{note} after {self.s.max_attempts} attempt(s)", self.s.max_attempts)

    def _failed(self, alert: Alert, note: str, attempts: int) -> Delivery:
        log.error("alert %r NOT delivered to %s (%s): %s", alert.title, self.name, self.host, note)
        return Delivery(self.name, False, note[:400], attempts)


class WorkflowWebhook(_WebhookChannel):
    """Power Automate "Workflows" webhook: Adaptive Card in the message envelope, posted with urllib."""

    kind = "teams"

    def payload(self, alert: Alert, compact: bool = False) -> bytes:
        return workflow_payload(alert, self.s.max_card_bytes, self.s.max_error_chars, compact)

    def _post(self, alert: Alert, compact: bool) -> HttpAnswer:
        req = urllib.request.Request(self._url, data=self.payload(alert, compact), method="POST",
                                     headers={"Content-Type": "application/json; charset=utf-8"})
        try:
            with urllib.request.urlopen(req, timeout=self.s.http_timeout) as resp:
                return HttpAnswer(resp.status, {k.lower(): v for k, v in resp.headers.items()},
                                  resp.read(2000).decode("utf-8", "replace"))
        except urllib.error.HTTPError as exc:
            body = exc.read(2000).decode("utf-8", "replace") if exc.fp else ""
            return HttpAnswer(exc.code, {k.lower(): v for k, v in (exc.headers or {}).items()}, body)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            return HttpAnswer(0, {}, "", f"{type(exc).__name__}: {reason}")


class LegacyConnectorWebhook(_WebhookChannel):
    """Retired Office 365 connector URL (``.../IncomingWebhook/...``): MessageCard through pymsteams."""

    kind = "teams-legacy"

    def card(self, alert: Alert, compact: bool = False) -> Any:
        card = pymsteams.connectorcard(self._url, http_timeout=self.s.http_timeout)
        card.title(alert.title)
        card.summary(alert.title)
        card.color(alert.style[2])
        chars = min(self.s.max_error_chars, 300) if compact else self.s.max_error_chars
        text, facts = message_card_sections(alert, chars)
        while True:
            section = pymsteams.cardsection()
            section.activitySubtitle(f"{alert.severity} · {alert.alert_type.replace('_', ' ')}")
            for k, v in facts:
                section.addFact(k, v)
            card.payload["sections"] = [section.dumpSection()]
            card.text(text or alert.title)
            if len(_card_json(card.payload)) <= self.s.max_card_bytes or chars <= 100:
                break
            chars //= 2
            text, facts = message_card_sections(alert, chars)
        if alert.link:
            card.payload.pop("potentialAction", None)
            card.addLinkButton(alert.link_title, alert.link)
        return card

    def _post(self, alert: Alert, compact: bool) -> HttpAnswer:
        card = self.card(alert, compact)
        try:
            card.send()
        except pymsteams.TeamsWebhookException:
            pass
        except requests.RequestException as exc:
            return HttpAnswer(0, {}, "", f"{type(exc).__name__}: {exc}")
        r = card.last_http_response
        if r is None:
            return HttpAnswer(0, {}, "", "no response")
        return HttpAnswer(r.status_code, {k.lower(): v for k, v in r.headers.items()}, r.text[:2000])


def is_legacy_connector(url: str) -> bool:
    """Office 365 connector URLs have ``IncomingWebhook`` in their path; Workflows URLs do not."""
    return "incomingwebhook" in urlsplit(url).path.lower()


class EmailChannel(Channel):
    """SMTP with Luigi's [email]/[smtp] settings (SSL, or STARTTLS when offered unless no_tls)."""

    name = "email"

    def __init__(self, settings: EmailSettings, failures_only: bool, error_chars: int = 4000) -> None:
        self.s = settings
        self.failures_only = failures_only
        self.error_chars = error_chars

    def wants(self, alert: Alert) -> bool:
        return not self.failures_only or alert.alert_type in (FAILURE, TEST, HEALTH_ERROR)

    def message(self, alert: Alert) -> EmailMessage:
        msg = EmailMessage()
        msg["Subject"] = " ".join(p for p in (self.s.prefix.strip(), "[CBM ETL]", f"{alert.severity}: {alert.title}") if p)
        msg["From"] = self.s.sender
        msg["To"] = ", ".join(self.s.receivers)
        msg["X-CBM-Alert-Type"] = alert.alert_type
        text = alert.plain_text(self.error_chars)
        msg.set_content(text)
        if self.s.html:
            rows = "".join(f"<tr><th align='left'>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in alert.facts)
            html = (f"<h3 style='color:#{alert.style[2]}'>{escape(alert.title)}</h3>"
                    f"<p>{escape(alert.text)}</p><table>{rows}</table>")
            if alert.error:
                html += f"<pre>{escape(excerpt(alert.error, self.error_chars))}</pre>"
            if alert.link:
                html += f"<p><a href='{escape(alert.link)}'>{escape(alert.link_title)}</a></p>"
            msg.add_alternative(html, subtype="html")
        return msg

    def send(self, alert: Alert) -> Delivery:
        s = self.s
        where = f"{s.host}:{s.port or (465 if s.use_ssl else 25)}"
        try:
            kwargs: dict[str, Any] = {"host": s.host, "port": s.port, "timeout": s.timeout,
                                      "local_hostname": s.local_hostname}
            conn = smtplib.SMTP_SSL(**kwargs) if s.use_ssl else smtplib.SMTP(**kwargs)
            try:
                conn.ehlo_or_helo_if_needed()
                if not s.use_ssl and not s.no_tls and conn.has_extn("starttls"):
                    conn.starttls(context=ssl.create_default_context())
                    conn.ehlo()
                if s.username and s.password:
                    conn.login(s.username, s.password)
                refused = conn.send_message(self.message(alert))
            finally:
                try:
                    conn.quit()
                except (smtplib.SMTPException, OSError):
                    conn.close()
        except (smtplib.SMTPException, OSError) as exc:
            note = f"SMTP {where}: {type(exc).__name__}: {exc}"[:400]
            log.error("alert %r NOT e-mailed: %s", alert.title, note)
            return Delivery(self.name, False, note)
        if refused:
            note = f"SMTP {where} refused: {', '.join(refused)}"
            log.error("alert %r: %s", alert.title, note)
            return Delivery(self.name, len(refused) < len(s.receivers), note[:400])
        note = f"accepted by SMTP {where} for {len(s.receivers)} recipient(s)"
        log.info("alert %r e-mailed: %s", alert.title, note)
        return Delivery(self.name, True, note)


def build_channels(settings: AlertSettings, sleep: Callable[[float], None] = time.sleep) -> list[Channel]:
    channels: list[Channel] = []
    for i, url in enumerate(settings.webhooks, 1):
        cls = LegacyConnectorWebhook if is_legacy_connector(url) else WorkflowWebhook
        channels.append(cls(url, i, settings, sleep))
    if settings.email:
        failures_only = settings.email_alerts == "failures" or (
            settings.email_alerts == "auto" and bool(settings.webhooks))
        channels.append(EmailChannel(settings.email, failures_only, max(settings.max_error_chars, 4000)))
    return channels


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


def task_link(scheduler_url: str | None, task_id: str | None = None) -> str | None:
    if not scheduler_url:
        return None
    base = f"{scheduler_url}/static/visualiser/index.html"
    return f"{base}#tab=graph&taskId={quote(task_id)}" if task_id else base


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"


def fmt_rows(n: int | None) -> str:
    return "-" if n is None else f"{int(n):,}".replace(",", " ")


# In-process memory of failure alerts already sent: (table, batch, run id).  The database check (etl.ETL_Alerts)
# covers forked workers and other processes sharing CBM_RUN_ID; this one covers a target that is down.
_failures_sent: set[tuple[str, str, str]] = set()


def notify_failure(*, table: str, step: str, batch: str | None, mode: str | None, error: str,
                   run_id: str, rows: int | None = None, duration: float | None = None,
                   task_id: str | None = None, target: Target | None = None,
                   settings: AlertSettings | None = None) -> list[Delivery]:
    """The "table load failed" alert, once per (table, batch, run): a retry of the same failure is not re-sent.

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

