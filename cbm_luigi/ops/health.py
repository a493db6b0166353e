"""The daily health check: SLA breaches, repeated failures, or the daily summary; sends what is due.

Reads ``config.ETL_Tables``, ``etl.ETL_Log`` and ``etl.ETL_Alerts`` (and ``etl.vw_SLABreach`` when the dialect
creates it, to cross-check); writes ``etl.ETL_Alerts`` through :class:`cbm_luigi.alerts.Notifier`.

* **SLA** per active table: LastSuccessTs = the latest ``flow_complete``/``success`` row of etl.ETL_Log;
  OK when HoursSinceSuccess <= SLAHours, WARNING when <= 2 x SLAHours, CRITICAL beyond or when never loaded
  (the monitoring-view contract).  One card per severity lists the late tables.
* **Repeated failures**: more than ``[cbm_alerts] failure_threshold`` (default 5) failed steps in the last
  ``failure_window_hours`` (24) -> CRITICAL.
* **Daily summary** when all is well: runs, tables loaded, rows, failures and the slowest tables of the window,
  read from the run log; at most one per calendar day.
* **No repeats**: an SLA alert for the same table and severity, or a repeated-failures alert, is not re-sent
  within ``repeat_hours`` (12); an escalation (WARNING -> CRITICAL) is sent at once.

Run it with ``cbm-etl health`` (exit 2 when something is CRITICAL, 1 when a due alert reached no channel).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cbm_luigi.alerts.message import (
    CRITICAL,
    HEALTH_ERROR,
    INFO,
    OK,
    REPEATED_FAILURES,
    SEVERITY_ORDER,
    SLA,
    SUMMARY,
    WARNING,
    Alert,
    Delivery,
    excerpt,
    fmt_rows,
    fmt_seconds,
    task_link,
)
from cbm_luigi.alerts.notify import Notifier
from cbm_luigi.config.alerts import AlertSettings
from cbm_luigi.config.secrets import redact
from cbm_luigi.destinations.client import Target
from cbm_luigi.model.specs import default_priority
from cbm_luigi.model.values import naive_datetime, truthy
from cbm_luigi.store.alerts_log import AlertLog
from cbm_luigi.store.config_tables import sla_table_rows
from cbm_luigi.store.runlog import last_success_by_table, outcome_rows_between
from cbm_luigi.store.views import read_sla_view

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SlaRow:
    table: str
    priority: str
    sla_hours: float
    last_success: datetime | None
    hours_since: float | None
    status: str


def sla_status(hours_since: float | None, sla_hours: float) -> str:
    """The contract's rule: OK <= SLA, WARNING <= 2 x SLA, CRITICAL beyond or never loaded."""
    if hours_since is None:
        return CRITICAL
    if hours_since <= sla_hours:
        return OK
    if hours_since <= 2 * sla_hours:
        return WARNING
    return CRITICAL



def compute_sla(target: Target, now: datetime) -> list[SlaRow]:
    """SLA status of every active table, from config.ETL_Tables and etl.ETL_Log (portable SQL)."""
    tables = sla_table_rows(target)
    last = last_success_by_table(target)
    out = []
    for name, tier, sla, active, notes, is_dim, is_fact in tables:
        if not truthy(active):
            continue
        sla_hours = float(sla) if sla is not None else 24.0
        ts = naive_datetime(last.get(name))
        hours = round((now - ts).total_seconds() / 3600, 2) if ts else None
        priority = str(tier or "").strip().lower() or default_priority(notes, truthy(is_dim), truthy(is_fact))
        out.append(SlaRow(name, priority, sla_hours, ts, hours, sla_status(hours, sla_hours)))
    return out


def sla_from_view(target: Target) -> list[SlaRow] | None:
    """etl.vw_SLABreach as SlaRows, or None when the dialect does not create the view (yet)."""
    rows = read_sla_view(target)
    if rows is None:
        return None
    return [SlaRow(str(r[0]), str(r[1] or ""), float(r[2]) if r[2] is not None else 24.0, naive_datetime(r[3]),
                   float(r[4]) if r[4] is not None else None, str(r[5]).upper()) for r in rows]


def view_disagreements(computed: list[SlaRow], view: list[SlaRow]) -> list[str]:
    """Tables whose status differs between our computation and the view (ignoring clock-skew boundary cases)."""
    by_table = {r.table: r for r in view}
    out = []
    for r in computed:
        v = by_table.get(r.table)
        if v is None:
            out.append(f"{r.table}: missing from etl.vw_SLABreach")
            continue
        if v.status == r.status:
            continue
        near = r.hours_since is not None and any(abs(r.hours_since - b) < 0.05 for b in (r.sla_hours, 2 * r.sla_hours))
        if not near:
            out.append(f"{r.table}: computed {r.status}, view says {v.status}")
    return out


@dataclass(frozen=True)
class RunFigures:
    """What the run log says about a window (the daily summary's figures)."""

    since: datetime
    until: datetime
    runs: int
    tables_loaded: int
    loads: int
    rows: int
    inserted: int
    updated: int
    failures: int
    failures_by_table: dict[str, int]
    last_errors: dict[str, str]
    slowest: list[tuple[str, float, int]]  # table, seconds (slowest load), rows of that load


def run_figures(target: Target, since: datetime, until: datetime, slowest: int = 5) -> RunFigures:
    rows = outcome_rows_between(target, since, until)
    runs: set[str] = set()
    loaded: set[str] = set()
    loads = n_rows = ins = upd = 0
    failures: dict[str, int] = {}
    errors: dict[str, str] = {}
    slow: dict[str, tuple[float, int]] = {}
    for run_id, table, _step, status, processed, inserted, updated, secs, err, _ts in rows:
        runs.add(str(run_id))
        if status == "failed":
            failures[table] = failures.get(table, 0) + 1
            errors[table] = str(err or "")
            continue
        loaded.add(table)
        loads += 1
        n_rows += int(processed or 0)
        ins += int(inserted or 0)
        upd += int(updated or 0)
        if secs is not None and float(secs) > slow.get(table, (-1.0, 0))[0]:
            slow[table] = (float(secs), int(processed or 0))
    ranked = sorted(slow.items(), key=lambda kv: (-kv[1][0], kv[0]))[:slowest]
    return RunFigures(since, until, len(runs), len(loaded), loads, n_rows, ins, upd, sum(failures.values()),
                      failures, errors, [(t, s, n) for t, (s, n) in ranked])


@dataclass
class Finding:
    """One line of the health report."""

    check: str
    subject: str
    severity: str
    detail: str
    alert: str = "-"  # what happened to its alert


@dataclass
class HealthReport:
    now: datetime
    findings: list[Finding] = field(default_factory=list)
    sla: list[SlaRow] = field(default_factory=list)
    figures: RunFigures | None = None
    sent: list[tuple[Alert, list[Delivery]]] = field(default_factory=list)
    undelivered: bool = False

    @property
    def worst(self) -> str:
        return max((f.severity for f in self.findings), key=lambda s: SEVERITY_ORDER.get(s, 0), default=OK)

    @property
    def exit_code(self) -> int:
        """2 when something is CRITICAL, 1 when a due alert reached no channel, else 0."""
        if self.worst == CRITICAL:
            return 2
        return 1 if self.undelivered else 0


class HealthCheck:
    """Runs the checks against a target and sends (or, with ``send=False``, only reports) what is due."""

    def __init__(self, target: Target, settings: AlertSettings, notifier: Notifier | None = None) -> None:
        self.target = target
        self.s = settings
        self.notifier = notifier or Notifier(settings, target)
        self.alert_log = AlertLog(target)

    def run(self, now: datetime | None = None, *, send: bool = True, force_summary: bool = False) -> HealthReport:
        now = (now or datetime.now()).replace(microsecond=0)
        report = HealthReport(now)
        try:
            report.sla = compute_sla(self.target, now)
            report.figures = run_figures(self.target, now - timedelta(hours=self.s.failure_window_hours), now,
                                         self.s.slowest_tables)
            view = sla_from_view(self.target)
        except Exception as exc:  # noqa: BLE001 - any failure to read the run log is itself CRITICAL
            self._health_error(report, exc, send)
            return report
        if view is not None:
            for problem in view_disagreements(report.sla, view):
                report.findings.append(Finding("sla view", "etl.vw_SLABreach", WARNING, problem))
        self._sla(report, send)
        self._failures(report, send)
        if all(f.severity in (OK, INFO) for f in report.findings if f.check in ("sla", "failures")):
            self._summary(report, send, force_summary)
        if not self.s.channels_configured:
            report.findings.append(Finding("channels", "-", WARNING,
                                           "no alert channel: set CBM_TEAMS_WEBHOOK and/or [email] receiver",
                                           "see docs/ALERTS.md"))
        return report

    # -- checks -------------------------------------------------------------------------------------------------
    def _due(self, alert_type: str, since: datetime, **kw: Any) -> datetime | None:
        """When an alert like this was last delivered after ``since`` (None: it is due)."""
        return self.alert_log.last_sent(alert_type, since=since, **kw)

    def _sla(self, report: HealthReport, send: bool) -> None:
        late = [r for r in report.sla if r.status != OK]
        if not late:
            report.findings.append(Finding("sla", f"{len(report.sla)} table(s)", OK,
                                           "every active table loaded within its SLA"))
            return
        repeat_since = report.now - timedelta(hours=self.s.repeat_hours)
        for severity in (CRITICAL, WARNING):
            rows = [r for r in late if r.status == severity]
            due, findings = [], []
            for r in rows:
                detail = (f"last success {r.last_success:%Y-%m-%d %H:%M}, {r.hours_since:.1f} h ago "
                          f"(SLA {r.sla_hours:g} h)" if r.last_success else
                          f"never loaded successfully (SLA {r.sla_hours:g} h)")
                f = Finding("sla", r.table, severity, detail)
                last = self._due(SLA, repeat_since, table=r.table, severity=severity)
                if last is not None:
                    f.alert = f"not re-sent (sent {last:%Y-%m-%d %H:%M})"
                else:
                    due.append(r)
                findings.append(f)
            report.findings.extend(findings)
            if not due:
                continue
            facts = tuple((r.table, f"{r.hours_since:.1f} h since last success (SLA {r.sla_hours:g} h, {r.priority})"
                           if r.hours_since is not None else f"never loaded (SLA {r.sla_hours:g} h, {r.priority})")
                          for r in due)
            alert = Alert(
                SLA, severity, f"SLA breach ({severity}): {len(due)} table(s) late",
                text=("Beyond twice their SLA or never loaded: " if severity == CRITICAL
                      else "Beyond their SLA (less than twice): ") + ", ".join(r.table for r in due)
                + ". Check etl.ETL_Log for their last failures and re-run them.",
                facts=facts, tables=tuple(r.table for r in due), link=task_link(self.s.scheduler_url),
            )
            self._send(report, alert, [f for f in findings if f.subject in alert.tables], send)

    def _failures(self, report: HealthReport, send: bool) -> None:
        fig = report.figures
        assert fig is not None
        n, limit = fig.failures, self.s.failure_threshold
        window = f"{self.s.failure_window_hours:g} h"
        if n <= limit:
            report.findings.append(Finding("failures", f"last {window}", OK if n == 0 else INFO,
                                           f"{n} failure(s) (alert above {limit})"))
            return
        by_table = ", ".join(f"{t} x{c}" for t, c in sorted(fig.failures_by_table.items(), key=lambda kv: -kv[1]))
        f = Finding("failures", f"last {window}", CRITICAL, f"{n} failures (threshold {limit}): {by_table}")
        report.findings.append(f)
        last = self._due(REPEATED_FAILURES, report.now - timedelta(hours=self.s.repeat_hours))
        if last is not None:
            f.alert = f"not re-sent (sent {last:%Y-%m-%d %H:%M})"
            return
        worst = max(fig.failures_by_table, key=lambda t: fig.failures_by_table[t])
        facts = tuple((t, f"{c} failure(s)") for t, c in
                      sorted(fig.failures_by_table.items(), key=lambda kv: (-kv[1], kv[0])))
        alert = Alert(
            REPEATED_FAILURES, CRITICAL, f"ETL: {n} failures in the last {window} (threshold {limit})",
            text=f"More than {limit} failed steps since {fig.since:%Y-%m-%d %H:%M}. Last error of {worst} below.",
            facts=(("Window", f"{fig.since:%Y-%m-%d %H:%M} - {fig.until:%Y-%m-%d %H:%M}"), *facts),
            error=fig.last_errors.get(worst) or None, tables=tuple(sorted(fig.failures_by_table)),
            link=task_link(self.s.scheduler_url),
        )
        self._send(report, alert, [f], send)

    def _summary(self, report: HealthReport, send: bool, force: bool) -> None:
        fig = report.figures
        assert fig is not None
        ok = sum(1 for r in report.sla if r.status == OK)
        f = Finding("summary", "daily", INFO,
                    f"{fig.tables_loaded} table(s) loaded, {fig.rows:,} rows, {fig.failures} failure(s)")
        report.findings.append(f)
        midnight = report.now.replace(hour=0, minute=0, second=0)
        last = None if force else self._due(SUMMARY, midnight)
        if last is not None:
            f.alert = f"already sent today ({last:%H:%M})"
            return
        facts = [
            ("Window", f"{fig.since:%Y-%m-%d %H:%M} - {fig.until:%Y-%m-%d %H:%M}"),
            ("Tables within SLA", f"{ok} of {len(report.sla)}"),
            ("Tables loaded", str(fig.tables_loaded)),
            ("Loads", str(fig.loads)),
            ("Runs", str(fig.runs)),
            ("Rows processed", fmt_rows(fig.rows)),
            ("Inserted / updated", f"{fmt_rows(fig.inserted)} / {fmt_rows(fig.updated)}"),
            ("Failures", f"{fig.failures} (alert above {self.s.failure_threshold})"),
        ]
        facts += [(f"Slowest #{i}", f"{t}: {fmt_seconds(s)}, {fmt_rows(n)} rows")
                  for i, (t, s, n) in enumerate(fig.slowest, 1)]
        alert = Alert(SUMMARY, INFO, f"ETL daily summary: all is well ({ok}/{len(report.sla)} tables within SLA)",
                      text=f"{fig.loads} load(s) of {fig.tables_loaded} table(s), {fmt_rows(fig.rows)} rows, "
                           f"{fig.failures} failure(s) in the last {self.s.failure_window_hours:g} h.",
                      facts=tuple(facts), link=task_link(self.s.scheduler_url))
        self._send(report, alert, [f], send)

    # -- sending ------------------------------------------------------------------------------------------------
    def _send(self, report: HealthReport, alert: Alert, findings: list[Finding], send: bool) -> None:
        if not send:
            outcome = "due (not sent: --no-send)"
        elif not self.s.channels_configured:
            self.notifier.send(alert)  # logs that no channel is configured
            outcome = "due, no channel configured"
        else:
            deliveries = self.notifier.send(alert, report.now)
            report.sent.append((alert, deliveries))
            ok = [d.channel for d in deliveries if d.delivered]
            if ok:
                outcome = "sent: " + ", ".join(ok)
                failed = [d.channel for d in deliveries if not d.delivered]
                if failed:
                    outcome += " (failed: " + ", ".join(failed) + ")"
            else:
                outcome = "NOT delivered: " + "; ".join(f"{d.channel} {d.note}" for d in deliveries)[:200]
                report.undelivered = True
        for f in findings:
            f.alert = outcome

    def _health_error(self, report: HealthReport, exc: BaseException, send: bool) -> None:
        msg = f"{type(exc).__name__}: {exc}"
        log.error("health check cannot read the run log: %s", redact(msg))
        f = Finding("run log", redact(self.target.url), CRITICAL, excerpt(msg, 300))
        report.findings.append(f)
        alert = Alert(HEALTH_ERROR, CRITICAL, "ETL health check cannot read the run log",
                      text="The target database (etl.ETL_Log) could not be read: SLA and failures are unknown.",
                      facts=(("Target", redact(self.target.url)),), error=msg)
        if send and self.s.channels_configured:
            # the target is what failed: send without recording
            deliveries = Notifier(self.s, None).send(alert)
            f.alert = ("sent: " + ", ".join(d.channel for d in deliveries if d.delivered)) if any(
                d.delivered for d in deliveries) else "NOT delivered"
        elif send:
            f.alert = "due, no channel configured"
