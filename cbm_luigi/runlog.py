"""The run log ``etl.ETL_Log`` and the completion markers ``etl.ETL_Markers``.

One RunId (UUID) per process invocation: the ``cbm-etl``/``luigi`` command that started the run (set
``CBM_RUN_ID`` to share one id across machines).  Steps: extract, transform, load_staging, merge_ods,
flow_complete; statuses: started, success, failed.  Success rows of the merge are written in the merge's own
transaction; failure rows in a transaction of their own (the failed one was rolled back).
"""

from __future__ import annotations

import logging
import os
import uuid
from datetime import datetime
from typing import Any

from cbm_luigi.destinations.base import Connection, Target
from cbm_luigi.metadata import ETL_LOG, ETL_MARKERS

log = logging.getLogger(__name__)

RUN_ID = os.environ.get("CBM_RUN_ID") or str(uuid.uuid4())
STEPS = ("extract", "transform", "load_staging", "merge_ods", "flow_complete")


def now() -> datetime:
    return datetime.now().replace(tzinfo=None)


def insert_log_sql(conn_dialect: Any) -> str:
    q = conn_dialect.quote
    cols = [c.name for c in ETL_LOG.columns]
    return (f"INSERT INTO {conn_dialect.qualified(ETL_LOG.schema, ETL_LOG.name)} "
            f"({', '.join(q(c) for c in cols)}) VALUES ({', '.join(':' + c for c in cols)})")


def write_log(conn: Connection, table: str, step: str, status: str, *, batch: str | None = None,
              mode: str | None = None, rows: int | None = None, inserted: int | None = None,
              updated: int | None = None, unchanged: int | None = None, deleted: int | None = None,
              duration: float | None = None, error: str | None = None) -> None:
    """Insert one ETL_Log row inside the caller's transaction."""
    conn.execute(insert_log_sql(conn.dialect), {
        "LogId": str(uuid.uuid4()), "RunId": RUN_ID, "TableName": table, "Batch": batch, "Mode": mode,
        "StepName": step, "Status": status, "RowsProcessed": rows, "RowsInserted": inserted,
        "RowsUpdated": updated, "RowsUnchanged": unchanged, "RowsDeleted": deleted,
        "DurationSeconds": round(duration, 3) if duration is not None else None,
        "ErrorMessage": (error or None) and str(error)[:4000], "LogTs": now(),
    })


def write_log_now(target: Target, table: str, step: str, status: str, **kw: Any) -> None:
    """Insert one ETL_Log row in its own transaction; never raises (logging must not mask the real error)."""
    try:
        with target.begin() as conn:
            write_log(conn, table, step, status, **kw)
    except Exception:
        log.exception("could not write etl.ETL_Log row (%s %s %s)", table, step, status)


def marker_id(table: str, batch: str) -> str:
    return f"MergeOds:{table}:{batch}"


def marker_exists(target: Target, table: str, batch: str) -> bool:
    d = target.dialect
    q = d.quote
    row = target.fetchone(
        f"SELECT 1 FROM {d.qualified(ETL_MARKERS.schema, ETL_MARKERS.name)} WHERE {q('MarkerId')} = :m",
        {"m": marker_id(table, batch)},
    )
    return row is not None


def write_marker(conn: Connection, table: str, batch: str, mode: str) -> None:
    d = conn.dialect
    q = d.quote
    conn.execute(
        f"INSERT INTO {d.qualified(ETL_MARKERS.schema, ETL_MARKERS.name)} "
        f"({q('MarkerId')}, {q('TableName')}, {q('Batch')}, {q('Mode')}, {q('RunId')}, {q('CompletedTs')}) "
        "VALUES (:m, :t, :b, :mode, :r, :ts)",
        {"m": marker_id(table, batch), "t": table, "b": batch, "mode": mode, "r": RUN_ID, "ts": now()},
    )
