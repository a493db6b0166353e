"""The run log ``etl.ETL_Log`` and the completion markers ``etl.ETL_Markers``.

One RunId (UUID) per process invocation: the ``cbm-etl``/``luigi`` command that started the run (set
``CBM_RUN_ID`` to share one id across machines).  Steps: extract, transform, load_staging, merge_ods,
flow_complete; statuses: started, success, failed.  Success rows of the merge are written in the merge's own
transaction; failure rows in a transaction of their own (the failed one was rolled back).
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any

from cbm_luigi.config.run import RUN_ID
from cbm_luigi.destinations.client import Connection, Target
from cbm_luigi.store.schema import ETL_LOG

log = logging.getLogger(__name__)

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


