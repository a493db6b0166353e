"""What an alert says, independent of the channel: types, severities, the :class:`Alert` and a channel's
:class:`Delivery`, and the small formatters of figures.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import quote

from cbm_luigi.config.secrets import redact

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
