"""The run history, read for the night report (:mod:`cbm_luigi.ops.night_report`): each table's last run
(``etl.vw_LastRuns``), the ``etl.ETL_Log`` rows of given runs, and the outcomes (flow_complete successes and
failures) of a period.  Reads only.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from cbm_luigi.destinations.client import Target
from cbm_luigi.store.schema import ETL_LOG

#: the columns of etl.vw_LastRuns (docs/OPERATIONS.md, "Monitoring views")
LAST_RUN_COLUMNS = ("TableName", "RunId", "Batch", "Mode", "Status", "StartedTs", "EndedTs", "DurationSeconds",
                    "RowsProcessed", "RowsInserted", "RowsUpdated", "RowsUnchanged", "ErrorMessage")
#: the etl.ETL_Log columns a report reads
LOG_COLUMNS = ("RunId", "TableName", "Batch", "Mode", "StepName", "Status", "RowsProcessed", "RowsInserted",
               "RowsUpdated", "RowsUnchanged", "RowsDeleted", "DurationSeconds", "ErrorMessage", "LogTs")


def last_runs(target: Target) -> list[dict[str, Any]] | None:
    """Each table's most recent run (``etl.vw_LastRuns``) as dicts, or None when the view does not exist (yet:
    ``cbm-etl init-db`` creates it)."""
    d = target.dialect
    with target.begin() as conn:
        if not target.existing_columns(conn, "etl", "vw_LastRuns"):
            return None
        rows = conn.fetchall(f"SELECT {', '.join(d.quote(c) for c in LAST_RUN_COLUMNS)} "
                             f"FROM {d.qualified('etl', 'vw_LastRuns')} ORDER BY {d.quote('TableName')}")
    return [dict(zip(LAST_RUN_COLUMNS, r, strict=True)) for r in rows]


def log_of_runs(target: Target, run_ids: Iterable[str]) -> list[dict[str, Any]]:
    """Every etl.ETL_Log row of these runs, in LogTs order."""
    ids = sorted({str(r) for r in run_ids})
    if not ids:
        return []
    d = target.dialect
    q = d.quote
    out: list[dict[str, Any]] = []
    for start in range(0, len(ids), 500):  # a bounded IN list per statement
        chunk = ids[start:start + 500]
        params = {f"r{i}": r for i, r in enumerate(chunk)}
        rows = target.fetchall(
            f"SELECT {', '.join(q(c) for c in LOG_COLUMNS)} FROM {d.qualified(ETL_LOG.schema, ETL_LOG.name)} "
            f"WHERE {q('RunId')} IN ({', '.join(':' + k for k in params)})", params)
        out.extend(dict(zip(LOG_COLUMNS, r, strict=True)) for r in rows)
    out.sort(key=lambda r: (r["LogTs"] or datetime.min, str(r["StepName"])))
    return out


def outcomes_since(target: Target, since: datetime) -> list[dict[str, Any]]:
    """The flow_complete success rows and the failure rows logged since ``since``, in LogTs order: one row per
    loaded (table, run) with its duration and rows, one per failed step."""
    d = target.dialect
    q = d.quote
    rows = target.fetchall(
        f"SELECT {', '.join(q(c) for c in LOG_COLUMNS)} FROM {d.qualified(ETL_LOG.schema, ETL_LOG.name)} "
        f"WHERE {q('LogTs')} >= :since AND (({q('StepName')} = :flow AND {q('Status')} = :ok) "
        f"OR {q('Status')} = :failed) ORDER BY {q('LogTs')}",
        {"since": since, "flow": "flow_complete", "ok": "success", "failed": "failed"},
    )
    return [dict(zip(LOG_COLUMNS, r, strict=True)) for r in rows]
