"""Alert settings: Teams webhooks and e-mail from the environment (``.env``), thresholds and limits from luigi.cfg
``[cbm_alerts]``, SMTP from Luigi's own ``[email]`` / ``[smtp]`` sections.  The webhook URLs are secrets: they come
from ``CBM_TEAMS_WEBHOOK`` only and never appear in a repr or a log.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

import luigi
import luigi.notifications as ln

from cbm_luigi.config.options import config_text, read_option
from cbm_luigi.config.settings import load_dotenv_once, read_section
from cbm_luigi.errors import ConfigError

log = logging.getLogger(__name__)


class cbm_alerts(luigi.Config):  # luigi maps the class name to the [cbm_alerts] section
    """luigi.cfg ``[cbm_alerts]``: thresholds, links and delivery limits (the webhook URL comes from the env)."""

    failure_threshold = luigi.IntParameter(default=5, description="alert when MORE than N failures in the window")
    failure_window_hours = luigi.FloatParameter(default=24.0)
    repeat_hours = luigi.FloatParameter(
        default=12.0, description="an unchanged SLA / repeated-failure alert is not re-sent within this many hours")
    scheduler_url = luigi.Parameter(default="", description="luigid web view, e.g. http://etl-host:8082")
    email_alerts = luigi.ChoiceParameter(default="auto", choices=("auto", "failures", "all"))
    http_timeout = luigi.FloatParameter(default=10.0)
    max_attempts = luigi.IntParameter(default=3, description="posts per alert and URL (429 / 5xx retried)")
    max_retry_wait = luigi.FloatParameter(default=30.0, description="cap on one Retry-After / backoff wait")
    retry_backoff = luigi.FloatParameter(default=2.0, description="first backoff after a 5xx, doubled each time")
    max_card_bytes = luigi.IntParameter(default=24_000, description="Teams rejects messages over ~28 KB")
    max_error_chars = luigi.IntParameter(default=2_000)
    slowest_tables = luigi.IntParameter(default=5, description="tables listed in the daily summary")


@dataclass(frozen=True)
class EmailSettings:
    receivers: tuple[str, ...]
    sender: str
    prefix: str
    html: bool
    host: str
    port: int
    use_ssl: bool
    no_tls: bool
    username: str | None
    password: str | None = field(repr=False)
    timeout: float
    local_hostname: str | None = None


@dataclass(frozen=True)
class AlertSettings:
    webhooks: tuple[str, ...] = field(default=(), repr=False)  # secrets
    email: EmailSettings | None = None
    failure_threshold: int = 5
    failure_window_hours: float = 24.0
    repeat_hours: float = 12.0
    scheduler_url: str | None = None
    email_alerts: str = "auto"
    http_timeout: float = 10.0
    max_attempts: int = 3
    max_retry_wait: float = 30.0
    retry_backoff: float = 2.0
    max_card_bytes: int = 24_000
    max_error_chars: int = 2_000
    slowest_tables: int = 5

    @property
    def channels_configured(self) -> bool:
        return bool(self.webhooks or self.email)

    def with_overrides(self, **changes: Any) -> AlertSettings:
        return replace(self, **changes)


def scheduler_web_url(explicit: str = "") -> str | None:
    """The luigid web view when one is configured: ``[cbm_alerts] scheduler_url``, ``CBM_SCHEDULER_URL``, or
    luigi's ``[core] default_scheduler_url`` / ``default_scheduler_host`` (+ port) when set.  None otherwise."""
    url = os.environ.get("CBM_SCHEDULER_URL", "").strip() or explicit.strip()
    if not url:
        url = config_text("core", "default_scheduler_url")
    if not url:
        host = config_text("core", "default_scheduler_host", "scheduler_host")
        if host:
            port = config_text("core", "default_scheduler_port", "scheduler_port") or "8082"
            url = f"http://{host}:{port}"
    return url.rstrip("/") or None


def load_email_settings() -> EmailSettings | None:
    """Luigi's ``[email]`` / ``[smtp]`` settings; None when no receiver is configured or the format is 'none'."""

    try:
        with warnings.catch_warnings():  # luigi warns about its own None defaults (password, username...)
            warnings.simplefilter("ignore", UserWarning)
            em, sm = ln.email(), ln.smtp()
    except Exception as exc:  # e.g. password=${VAR} with VAR unset
        raise ConfigError(f"luigi.cfg [email]/[smtp] cannot be read: {exc}") from exc
    receiver = os.environ.get("CBM_ALERT_EMAIL_TO", "").strip() or str(em.receiver or "").strip()
    if not receiver or em.format == "none":
        return None
    if em.method != "smtp":
        log.warning("[email] type=%s: cbm-luigi alerts send through SMTP only ([smtp] settings)", em.method)
    receivers = tuple(r.strip() for r in receiver.replace(";", ",").split(",") if r.strip())
    return EmailSettings(
        receivers=receivers, sender=str(em.sender), prefix=str(em.prefix or ""), html=em.format == "html",
        host=str(sm.host), port=int(sm.port or 0), use_ssl=bool(sm.ssl), no_tls=bool(sm.no_tls),
        username=os.environ.get("CBM_SMTP_USERNAME") or sm.username or None,
        password=os.environ.get("CBM_SMTP_PASSWORD") or sm.password or None,
        timeout=float(sm.timeout or 10.0), local_hostname=sm.local_hostname or None,
    )


def load_alert_settings() -> AlertSettings:
    """Channels and thresholds from the environment (``.env``) and luigi.cfg ``[cbm_alerts]``/``[email]``/``[smtp]``."""
    load_dotenv_once()
    c = read_section(cbm_alerts)
    webhooks = tuple(u for u in os.environ.get("CBM_TEAMS_WEBHOOK", "").split() if u)
    for i, u in enumerate(webhooks, 1):
        # the URL is a secret: never in the message (nor urlsplit's own text, which may quote part of it)
        try:
            parts = urlsplit(u)
            ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        except ValueError:
            ok = False
        if not ok:
            raise ConfigError(f"CBM_TEAMS_WEBHOOK URL #{i} of {len(webhooks)} is not a valid http(s) URL: copy the "
                              "Workflows webhook URL again into .env (several URLs: separated by spaces)") from None
    threshold = read_option("cbm_alerts", "failure_threshold", int(c.failure_threshold),
                            env="CBM_ALERT_FAILURE_THRESHOLD")
    if threshold < 0:
        raise ConfigError(f"[cbm_alerts] failure_threshold must be 0 or more, got {threshold}")
    return AlertSettings(
        webhooks=webhooks, email=load_email_settings(), failure_threshold=threshold,
        failure_window_hours=float(c.failure_window_hours), repeat_hours=float(c.repeat_hours),
        scheduler_url=scheduler_web_url(str(c.scheduler_url)), email_alerts=str(c.email_alerts),
        http_timeout=float(c.http_timeout), max_attempts=max(1, int(c.max_attempts)),
        max_retry_wait=float(c.max_retry_wait), retry_backoff=float(c.retry_backoff),
        max_card_bytes=int(c.max_card_bytes), max_error_chars=int(c.max_error_chars),
        slowest_tables=int(c.slowest_tables),
    )
