"""``cbm-etl status``: the monitoring views for a terminal.

Reads ``etl.vw_LastRuns`` (each table's most recent run), ``etl.vw_TablePerformance`` (last 7 days) and
``etl.vw_SLABreach`` (hours since the last success against each table's SLA), created by ``cbm-etl init-db``.
Writes nothing.

    cbm-etl status                    # the three views
    cbm-etl status --view sla         # one view: last | performance | sla
    cbm-etl status --table lignecli   # one table
    cbm-etl status --strict           # exit 1 when a last run failed or an SLA is not OK (for monitoring probes)
"""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from cbm_luigi.commands.setup import print_table
from cbm_luigi.errors import MetadataError

VIEWS = {
    "last": ("vw_LastRuns", "last run per table",
             ["TableName", "RunId", "Batch", "Mode", "Status", "StartedTs", "EndedTs", "DurationSeconds",
              "RowsProcessed", "RowsInserted", "RowsUpdated", "RowsUnchanged", "ErrorMessage"]),
    "performance": ("vw_TablePerformance", "last 7 days",
                    ["TableName", "Runs", "Successes", "Failures", "AvgDurationSeconds", "LastDurationSeconds",
                     "TotalRows", "LastSuccessTs"]),
    "sla": ("vw_SLABreach", "SLA", ["TableName", "PriorityTier", "SLAHours", "LastSuccessTs", "HoursSinceSuccess",
                                    "SLAStatus"]),
}
HEADERS = {
    "TableName": "table", "Batch": "batch", "Mode": "mode", "Status": "status", "StartedTs": "started",
    "EndedTs": "ended", "DurationSeconds": "seconds", "RowsProcessed": "rows", "RowsInserted": "inserted",
    "RowsUpdated": "updated", "RowsUnchanged": "unchanged", "ErrorMessage": "error", "Runs": "runs",
    "Successes": "ok", "Failures": "failed", "AvgDurationSeconds": "avg s", "LastDurationSeconds": "last s",
    "TotalRows": "rows", "LastSuccessTs": "last success", "PriorityTier": "tier", "SLAHours": "SLA h",
    "HoursSinceSuccess": "hours since", "SLAStatus": "SLA",
}
_SLA_ORDER = {"CRITICAL": 0, "WARNING": 1, "OK": 2}


def add_parser(sub: Any) -> None:
    p = sub.add_parser("status", help="last runs, 7-day performance and SLA of every table (monitoring views)")
    p.add_argument("--view", choices=[*VIEWS, "all"], default="all")
    p.add_argument("--table", help="only this table (source or SQL-safe name)")
    p.add_argument("--strict", action="store_true",
                   help="exit 1 when a table's last run failed or its SLA is WARNING or CRITICAL")
    p.add_argument("--wait", type=float, default=60.0,
                   help="seconds to wait for a DuckDB ODS that a load is writing (default 60)")
    p.set_defaults(func=cmd_status)


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, float) or type(value).__name__ == "Decimal":
        return f"{float(value):,.1f}"
    if isinstance(value, str) and len(value) > 70:
        return value[:67] + "..."
    return value


def read_view(view: str, table: str | None = None) -> list[dict[str, Any]]:
    """Rows of one monitoring view (``last``, ``performance`` or ``sla``) as dicts, by table name."""
    from cbm_luigi.destinations import open_target  # deferred: start-up of cbm-etl
    from cbm_luigi.tasks.context import settings  # deferred: start-up of cbm-etl

    target = open_target(settings().target)
    d = target.dialect
    name, _title, cols = VIEWS[view]
    with target.begin() as conn:
        if not target.existing_columns(conn, "etl", name):
            raise MetadataError(f"the monitoring view etl.{name} does not exist: run cbm-etl init-db")
        where, params = "", {}
        if table:
            where, params = f" WHERE {d.quote('TableName')} = :t", {"t": table}
        rows = conn.fetchall(f"SELECT {', '.join(d.quote(c) for c in cols)} FROM {d.qualified('etl', name)}{where} "
                             f"ORDER BY {d.quote('TableName')}", params)
    out = [dict(zip(cols, r, strict=True)) for r in rows]
    if view == "sla":
        out.sort(key=lambda r: (_SLA_ORDER.get(str(r["SLAStatus"]), 9), str(r["TableName"])))
    return out


def cmd_status(args: argparse.Namespace) -> int:
    from cbm_luigi.destinations import open_target  # deferred: start-up of cbm-etl
    from cbm_luigi.destinations.locking import set_lock_timeout  # deferred: start-up of cbm-etl
    from cbm_luigi.store.config_tables import MetadataStore  # deferred: start-up of cbm-etl
    from cbm_luigi.tasks.context import settings  # deferred: start-up of cbm-etl

    set_lock_timeout(args.wait)
    try:
        table = MetadataStore(open_target(settings().target)).resolve_table(args.table) if args.table else None
        views = list(VIEWS) if args.view == "all" else [args.view]
        bad = 0
        for i, view in enumerate(views):
            name, title, cols = VIEWS[view]
            rows = read_view(view, table)
            if i:
                print()
            print(f"== {title} (etl.{name}) ==")
            if not rows:
                print("(no rows)")
                continue
            shown = [c for c in cols if c != "RunId"]
            print_table(tuple(HEADERS[c] for c in shown), [tuple(_cell(r[c]) for c in shown) for r in rows])
            if view == "last":
                bad += sum(r["Status"] == "failed" for r in rows)
            if view == "sla":
                bad += sum(r["SLAStatus"] != "OK" for r in rows)
    finally:
        set_lock_timeout(None)
    return 1 if args.strict and bad else 0
