"""Channels: Teams webhooks (Workflows and legacy connector) and e-mail over SMTP, with bounded retries (429 after
Retry-After, 5xx with backoff, 413 once compact).  A channel never raises into the caller.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from html import escape
from typing import Any
from urllib.parse import urlsplit

import pymsteams
import requests

from cbm_luigi.alerts.cards import _card_json, message_card_sections, workflow_payload
from cbm_luigi.alerts.message import FAILURE, HEALTH_ERROR, TEST, Alert, Delivery, excerpt
from cbm_luigi.config.alerts import AlertSettings, EmailSettings
from cbm_luigi.config.secrets import redact_text, secret_values, url_secrets

log = logging.getLogger(__name__)


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
        """A reply may quote the URL (its ``sig=`` is the webhook's password), whole or in pieces, escaped or not:
        every form of it, and every other secret, hidden (config/secrets.py) before the text is cut."""
        text = text.replace(self._url, "<webhook URL>")
        return redact_text(text, sorted(url_secrets(self._url) | set(secret_values()), key=len, reverse=True))[:300]

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
