"""The night report: one static HTML page of every table's last run and its last 30 days, from the run log.

Reads ``etl.vw_LastRuns`` (each table's last run), ``etl.vw_SLABreach`` (the active tables and their SLA) and
``etl.ETL_Log`` (the steps of those runs; the flow_complete and failure rows of the period) through
:mod:`cbm_luigi.store.history`; writes ``<reports dir>/night/night_<time>.html`` (with ``.csv`` and ``.json``)
and ``<reports dir>/night/latest.html``, the same page under a name that never changes.

Per table: status, SLA, the flow's duration (one definition: docs/OPERATIONS.md, "Durations"), rows read,
inserted, updated, unchanged and deleted, the first error, each step of the run, and a chart of the period: per
day, the seconds spent loading the table (bars) and the rows read (line), failures marked in red.  Inline SVG and
CSS only (no script, no external asset): the page works offline, from a mail attachment or a file share.

``cbm-etl report`` writes it on demand; ``cbm-etl run --all`` writes it after every run (:func:`write_after_run`,
which only logs its own errors: a report must never fail the load).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from cbm_luigi.config.options import cbm_option
from cbm_luigi.config.settings import load_settings
from cbm_luigi.destinations import open_target
from cbm_luigi.destinations.client import Target
from cbm_luigi.errors import MetadataError
from cbm_luigi.ops.reports import (
    Raw,
    ReportFiles,
    badge,
    cards,
    esc,
    heading,
    page,
    paragraph,
    stamp,
    table,
    write_report,
)
from cbm_luigi.store import history
from cbm_luigi.store.views import read_sla_view

log = logging.getLogger(__name__)

KIND = "night"
LATEST = "latest.html"
STEP_ORDER = ("extract", "transform", "load_staging", "merge_ods", "flow_complete")


@dataclass(frozen=True)
class Step:
    """One etl.ETL_Log row of the run."""

    step: str
    status: str
    logged: datetime | None
    seconds: float | None
    rows: int | None
    inserted: int | None
    updated: int | None
    unchanged: int | None
    deleted: int | None
    error: str | None


@dataclass(frozen=True)
class Day:
    """One day of a table's history: its successful runs' seconds and rows (summed), and its failures."""

    day: date
    loads: int = 0
    seconds: float = 0.0
    rows: int = 0
    failures: int = 0


@dataclass(frozen=True)
class TableNight:
    """A table's last run, its SLA and its history."""

    table: str
    status: str  # success | failed | running | never run
    run_id: str | None = None
    batch: str | None = None
    mode: str | None = None
    started: datetime | None = None
    ended: datetime | None = None
    seconds: float | None = None  # the flow's duration (flow_complete's DurationSeconds)
    rows: int | None = None
    inserted: int | None = None
    updated: int | None = None
    unchanged: int | None = None
    deleted: int | None = None
    error: str | None = None
    sla: str | None = None  # OK | WARNING | CRITICAL, None for an inactive table
    hours_since_success: float | None = None
    steps: tuple[Step, ...] = ()
    days: tuple[Day, ...] = ()


@dataclass(frozen=True)
class NightReport:
    generated: datetime
    since: date
    days: int
    tables: tuple[TableNight, ...] = field(default_factory=tuple)

    def count(self, status: str) -> int:
        return sum(t.status == status for t in self.tables)


# -- reading --------------------------------------------------------------------------------------------------


def _int(v: Any) -> int | None:
    return None if v is None else int(v)


def _float(v: Any) -> float | None:
    return None if v is None else float(v)


def collect(target: Target, days: int = 30, now: datetime | None = None) -> NightReport:
    """Read the report's figures from the target (views and run log)."""
    now = now or datetime.now().replace(microsecond=0)
    first_day = (now - timedelta(days=days - 1)).date()
    since = datetime.combine(first_day, datetime.min.time())
    last = history.last_runs(target)
    if last is None:
        raise MetadataError("the monitoring view etl.vw_LastRuns does not exist: run cbm-etl init-db")
    sla = {str(r[0]): r for r in (read_sla_view(target) or [])}
    runs = {str(r["TableName"]): r for r in last}
    # active tables, plus inactive ones that ran in the period
    names = sorted(set(sla) | {t for t, r in runs.items() if (r["EndedTs"] or r["StartedTs"] or since) >= since},
                   key=str.lower)
    steps: dict[tuple[str, str, str | None], list[Step]] = {}
    for r in history.log_of_runs(target, {str(runs[t]["RunId"]) for t in names if t in runs}):
        steps.setdefault((str(r["TableName"]), str(r["RunId"]), r["Batch"]), []).append(Step(
            step=str(r["StepName"]), status=str(r["Status"]), logged=r["LogTs"], seconds=_float(r["DurationSeconds"]),
            rows=_int(r["RowsProcessed"]), inserted=_int(r["RowsInserted"]), updated=_int(r["RowsUpdated"]),
            unchanged=_int(r["RowsUnchanged"]), deleted=_int(r["RowsDeleted"]), error=r["ErrorMessage"]))
    by_day: dict[str, dict[date, Day]] = {}
    for r in history.outcomes_since(target, since):
        ts = r["LogTs"]
        if not isinstance(ts, datetime):
            continue
        day = by_day.setdefault(str(r["TableName"]), {}).get(ts.date(), Day(ts.date()))
        if r["Status"] == "failed":
            day = Day(day.day, day.loads, day.seconds, day.rows, day.failures + 1)
        else:
            day = Day(day.day, day.loads + 1, day.seconds + float(r["DurationSeconds"] or 0),
                      day.rows + int(r["RowsProcessed"] or 0), day.failures)
        by_day[str(r["TableName"])][day.day] = day
    out = []
    for name in names:
        s = sla.get(name)
        period = tuple(by_day.get(name, {}).get(first_day + timedelta(days=i), Day(first_day + timedelta(days=i)))
                       for i in range(days))
        common: dict[str, Any] = {"sla": str(s[5]) if s else None,
                                  "hours_since_success": _float(s[4]) if s else None, "days": period}
        run = runs.get(name)
        if run is None:
            out.append(TableNight(name, "never run", **common))
            continue
        run_steps = steps.get((name, str(run["RunId"]), run["Batch"]), [])
        flow = next((st for st in reversed(run_steps) if st.step == "flow_complete" and st.status == "success"), None)
        out.append(TableNight(
            name, str(run["Status"]), run_id=str(run["RunId"]), batch=run["Batch"], mode=run["Mode"],
            started=run["StartedTs"], ended=run["EndedTs"], seconds=_float(run["DurationSeconds"]),
            rows=_int(run["RowsProcessed"]), inserted=_int(run["RowsInserted"]), updated=_int(run["RowsUpdated"]),
            unchanged=_int(run["RowsUnchanged"]), deleted=flow.deleted if flow else None, error=run["ErrorMessage"],
            steps=tuple(sorted(run_steps, key=_step_key)), **common))
    return NightReport(generated=now, since=first_day, days=days, tables=tuple(out))


def _step_key(s: Step) -> tuple[datetime, int]:
    return (s.logged or datetime.min, STEP_ORDER.index(s.step) if s.step in STEP_ORDER else len(STEP_ORDER))


# -- rendering ------------------------------------------------------------------------------------------------

_EXTRA_CSS = """<style>
.chart{margin:4px 0 12px} .chart text{font:11px -apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif;fill:#59636e}
.legend{font-size:12px;color:#59636e;margin:0 0 4px} .sw{display:inline-block;width:10px;height:10px;margin:0 4px 0 10px}
section.tbl{border-top:1px solid #d1d9e0;margin-top:18px} a.tl{color:#0969da;text-decoration:none}
pre.err{white-space:pre-wrap;background:#ffebe9;border:1px solid #ff818266;padding:6px 8px;font-size:12px;max-width:1100px}
</style>"""

_STATUS_WORD = {"success": "success", "failed": "failed", "running": "warning", "never run": "na"}


def _seconds(v: float | None, digits: int = 1) -> str:
    if v is None:
        return ""
    if v < 60:
        return f"{v:.{digits}f} s"
    m, s = divmod(round(v), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def _ts(v: datetime | None) -> str:
    return v.strftime("%Y-%m-%d %H:%M:%S") if isinstance(v, datetime) else ""


def _anchor(name: str) -> str:
    return "t-" + "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def _badge(status: str) -> Raw:
    return badge(_STATUS_WORD.get(status, status), status)


def _nice(v: float) -> float:
    """A round axis maximum at or above ``v``."""
    if v <= 0:
        return 1.0
    mag = 10 ** len(str(int(v))) / 10
    for m in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if v <= m * mag:
            return m * mag
    return v


def _compact(v: float) -> str:
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.3g}{suffix}"
    return f"{v:.3g}"


def history_chart(name: str, days: Sequence[Day], width: int = 720, height: int = 170) -> Raw:
    """An inline SVG of the period: seconds per day (bars, left axis), rows read per day (line, right axis),
    red marks on days with a failure; a tooltip (``<title>``) per day."""
    left, right, top, bottom = 54, 58, 10, 34
    pw, ph = width - left - right, height - top - bottom
    n = max(1, len(days))
    slot = pw / n
    max_s = _nice(max((d.seconds for d in days), default=0.0))
    max_r = _nice(float(max((d.rows for d in days), default=0)))
    base = top + ph
    parts = [f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="{esc(name)}: seconds and rows per day" xmlns="http://www.w3.org/2000/svg">',
             f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#f6f8fa" stroke="#d1d9e0"/>']
    for frac in (0.5, 1.0):  # grid lines and axis labels
        y = base - frac * ph
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" stroke="#d1d9e0" '
                     'stroke-dasharray="3,3"/>')
        parts.append(f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{esc(_seconds(max_s * frac))}</text>')
        parts.append(f'<text x="{left + pw + 4}" y="{y + 4:.1f}">{esc(_compact(max_r * frac))}</text>')
    parts.append(f'<text x="{left - 4}" y="{base + 4}" text-anchor="end">0</text>')
    parts.append(f'<text x="{left + pw + 4}" y="{base + 4}">0</text>')
    lines: list[list[tuple[float, float]]] = []  # the rows line, broken on days without a load
    for i, d in enumerate(days):
        x = left + i * slot
        cx = x + slot / 2
        tip = (f"{d.day.isoformat()}: {d.loads} load(s), {_seconds(d.seconds) or '0 s'}, {d.rows:,} rows read"
               + (f", {d.failures} failure(s)" if d.failures else ""))
        parts.append(f"<g><title>{esc(tip)}</title>")
        parts.append(f'<rect x="{x:.1f}" y="{top}" width="{slot:.1f}" height="{ph}" fill="transparent"/>')
        if d.loads:
            h = max(1.0, d.seconds / max_s * ph)
            parts.append(f'<rect class="bar" x="{x + slot * 0.15:.1f}" y="{base - h:.1f}" width="{slot * 0.7:.1f}" '
                         f'height="{h:.1f}" fill="#54aeff"/>')
            if not (lines and i and days[i - 1].loads):
                lines.append([])
            lines[-1].append((cx, base - d.rows / max_r * ph))
        if d.failures:
            parts.append(f'<path class="fail" d="M{cx - 5:.1f},{base + 12} L{cx + 5:.1f},{base + 12} '
                         f'L{cx:.1f},{base + 3} Z" fill="#cf222e"/>')
        parts.append("</g>")
        if i in (0, n // 2, n - 1):
            parts.append(f'<text x="{cx:.1f}" y="{base + 26}" text-anchor="middle">{d.day.strftime("%m-%d")}</text>')
    for points in lines:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        parts.append(f'<polyline class="rows" points="{path}" fill="none" stroke="#bf8700" stroke-width="2"/>')
        parts.extend(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="#bf8700"/>' for x, y in points)
    parts.append("</svg>")
    return Raw("".join(parts))


def _legend() -> Raw:
    return Raw('<div class="legend"><span class="sw" style="background:#54aeff"></span>seconds loading per day '
               '(left axis)<span class="sw" style="background:#bf8700"></span>rows read per day (right axis)'
               '<span class="sw" style="background:#cf222e"></span>a failure that day</div>')


def _step_table(steps: Sequence[Step]) -> Raw:
    rows = [(s.step, badge(s.status), _ts(s.logged), _seconds(s.seconds, 2), s.rows, s.inserted, s.updated, s.unchanged,
             s.deleted, (s.error or "")[:300]) for s in steps]
    classes = ["bad" if s.status == "failed" else None for s in steps]
    return table(("step", "status", "logged at", "seconds", "rows", "inserted", "updated", "unchanged", "deleted",
                  "error"), rows, classes, numeric=(3, 4, 5, 6, 7, 8))


def render(report: NightReport) -> str:
    """The report as one self-contained HTML page."""
    ts = report.tables
    failed = [t for t in ts if t.status == "failed"]
    total_rows = sum(t.rows or 0 for t in ts if t.status == "success")
    runs = sorted({t.run_id for t in ts if t.run_id})
    late = sum(t.sla not in (None, "OK") for t in ts)
    blocks: list[Raw | str] = [Raw(_EXTRA_CSS), cards([
        ("tables", len(ts), None),
        ("loaded", report.count("success"), "ok" if ts and not failed else None),
        ("failed", len(failed), "bad" if failed else "ok"),
        ("running", report.count("running"), "warn" if report.count("running") else None),
        ("never run", report.count("never run"), "warn" if report.count("never run") else None),
        ("SLA not OK", late, "warn" if late else "ok"),
        ("rows read", total_rows, None),
        ("inserted", sum(t.inserted or 0 for t in ts), None),
        ("updated", sum(t.updated or 0 for t in ts), None),
        ("deleted", sum(t.deleted or 0 for t in ts), None),
    ])]
    blocks.append(heading("Last run per table"))
    if not ts:
        blocks.append(paragraph("No table is registered and nothing was logged: nothing to report.", "note"))
    order = sorted(ts, key=lambda t: ({"failed": 0, "running": 1, "never run": 2}.get(t.status, 3), t.table.lower()))
    rows = [(Raw(f'<a class="tl" href="#{_anchor(t.table)}">{esc(t.table)}</a>'), _badge(t.status),
             badge(t.sla, t.sla) if t.sla else "", t.batch, t.mode, _ts(t.ended), _seconds(t.seconds),
             t.rows, t.inserted, t.updated, t.unchanged, t.deleted, (t.error or "")[:160]) for t in order]
    classes = ["bad" if t.status == "failed" else "warn" if t.status in ("running", "never run") else None
               for t in order]
    blocks.append(table(("table", "status", "SLA", "batch", "mode", "ended", "duration", "rows read", "inserted",
                         "updated", "unchanged", "deleted", "error"), rows, classes, numeric=(6, 7, 8, 9, 10, 11)))
    blocks.append(paragraph(
        "Duration: from the start of the table's first step in that run (normally its extract) to the commit of "
        "its merge, the figure of cbm-etl run's summary, cbm-etl status and etl.vw_LastRuns "
        "(docs/OPERATIONS.md, Durations). Run id(s): " + (", ".join(runs) or "none") + ".", "note"))
    for t in sorted(ts, key=lambda t: t.table.lower()):
        blocks.append(Raw(f'<section class="tbl" id="{_anchor(t.table)}">'))
        blocks.append(Raw(f"<h2>{esc(t.table)} {_badge(t.status)}"
                          + (f" {badge(t.sla, 'SLA ' + t.sla)}" if t.sla else "") + "</h2>"))
        facts = [f"batch {t.batch}" if t.batch else "", f"mode {t.mode}" if t.mode else "",
                 f"duration {_seconds(t.seconds)}" if t.seconds is not None else "",
                 f"run {t.run_id}" if t.run_id else "",
                 f"{t.hours_since_success:,.1f} h since the last success" if t.hours_since_success is not None
                 else ("never loaded" if t.sla else "")]
        blocks.append(paragraph(" · ".join(f for f in facts if f), "sub"))
        if t.error:
            blocks.append(Raw(f'<pre class="err">{esc(t.error[:4000])}</pre>'))
        if t.steps:
            blocks.append(_step_table(t.steps))
        blocks.append(_legend())
        blocks.append(history_chart(t.table, t.days))
        blocks.append(Raw("</section>"))
    subtitle = (f"last run of {len(ts)} table(s); history {report.since.isoformat()} to "
                f"{report.generated.date().isoformat()} ({report.days} days)")
    return page("cbm-luigi night report", subtitle, blocks)


def csv_rows(report: NightReport) -> list[dict[str, Any]]:
    return [{"table": t.table, "status": t.status, "sla": t.sla, "run_id": t.run_id, "batch": t.batch,
             "mode": t.mode, "started": t.started, "ended": t.ended, "duration_seconds": t.seconds, "rows": t.rows,
             "inserted": t.inserted, "updated": t.updated, "unchanged": t.unchanged, "deleted": t.deleted,
             "error": t.error} for t in report.tables]


# -- writing --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NightFiles:
    files: ReportFiles
    latest: Path

    def describe(self) -> str:
        return f"{self.files.describe()}; latest: {self.latest}"


def write_night_report(target: Target | None = None, *, days: int = 30, base: Path | None = None,
                       now: datetime | None = None) -> NightFiles:
    """Collect, render and write the report: ``night/night_<time>.html`` (+ .csv, .json) and
    ``night/latest.html`` under the reports folder (``base``, default ``CBM_REPORTS_DIR`` or ``reports``)."""
    target = target or open_target(load_settings().target)
    report = collect(target, days=days, now=now)
    text = render(report)
    files = write_report(KIND, f"night_{stamp(report.generated)}", text, csv_rows(report), _json(report),
                         base=base)
    latest = files.html.with_name(LATEST)
    tmp = latest.with_name(f".{LATEST}.tmp")
    tmp.write_text(text, encoding="utf-8", newline="")
    os.replace(tmp, latest)
    return NightFiles(files, latest)


def _json(report: NightReport) -> dict[str, Any]:
    data = asdict(report)
    for t in data["tables"]:
        t["days"] = [d for d in t["days"] if d["loads"] or d["failures"]]
    return data


_caller_writes = False


@contextlib.contextmanager
def written_at_the_end() -> Iterator[None]:
    """While ``cbm-etl run --all`` builds the graph: ``LoadAll``'s handler leaves the report to the command, which
    writes it at the end whatever the outcome (a failed night never completes ``LoadAll``)."""
    global _caller_writes
    _caller_writes = True
    try:
        yield
    finally:
        _caller_writes = False


def write_after_run(*, from_handler: bool = False) -> NightFiles | None:
    """The night report after a run of every table: when ``LoadAll`` completes (its success handler, so the
    ``luigi`` command writes it too) or at the end of ``cbm-etl run --all`` (see :func:`written_at_the_end`).
    Off with ``night_report = false`` in ``[cbm_ops]`` / ``CBM_NIGHT_REPORT=0``.  Never raises: an error is logged
    and the run's exit code is left alone."""
    try:
        if not cbm_option("night_report", True) or (from_handler and _caller_writes):
            return None
        files = write_night_report()
        log.info("night report: %s", files.describe())
        return files
    except Exception:  # a report must never fail (or hide the outcome of) the load
        log.exception("the night report could not be written (the load itself is not affected)")
        return None
