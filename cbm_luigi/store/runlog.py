"""The run log ``etl.ETL_Log`` and the completion markers ``etl.ETL_Markers``.

One RunId (UUID) per process invocation: the ``cbm-etl``/``luigi`` command that started the run (set
``CBM_RUN_ID`` to share one id across machines).  Steps: extract, transform, load_staging, merge_ods,
flow_complete; statuses: started, success, failed, skipped (the batch was merged by another run meanwhile).
Success rows of the merge are written in the merge's own
transaction; failure rows in a transaction of their own (the failed one was rolled back).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from cbm_luigi.config.run import RUN_ID
from cbm_luigi.destinations.client import Connection, Target
from cbm_luigi.destinations.type_changes import TypeChange
from cbm_luigi.store.schema import ETL_LOG

log = logging.getLogger(__name__)

STEPS = ("extract", "transform", "load_staging", "merge_ods", "flow_complete")
#: the Status of a merge_ods row whose batch another run had merged meanwhile (two runs at once): that run of the
#: table is left out of vw_LastRuns and vw_TablePerformance (store/views.py)
SKIPPED = "skipped"


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
              duration: float | None = None, error: str | None = None) -> str:
    """Insert one ETL_Log row inside the caller's transaction; returns its LogId."""
    log_id = str(uuid.uuid4())
    conn.execute(insert_log_sql(conn.dialect), {
        "LogId": log_id, "RunId": RUN_ID, "TableName": table, "Batch": batch, "Mode": mode,
        "StepName": step, "Status": status, "RowsProcessed": rows, "RowsInserted": inserted,
        "RowsUpdated": updated, "RowsUnchanged": unchanged, "RowsDeleted": deleted,
        "DurationSeconds": round(duration, 3) if duration is not None else None,
        "ErrorMessage": (error or None) and str(error)[:4000], "LogTs": now(),
    })
    return log_id


#: A commit that took longer than this is added to the run-log rows its transaction wrote (:func:`add_commit_time`)
COMMIT_NOTED_SECONDS = 0.05


def add_commit_time(target: Target, log_ids: Sequence[str], written_at: float) -> None:
    """After the commit of a step's transaction: the rows it wrote (last, so before the commit) get the commit's
    time added to their DurationSeconds, and LogTs moved to its end, when it took longer than
    ``COMMIT_NOTED_SECONDS``.  DuckDB writes a large load at its commit (1-3 s of a 40,000 x 300 staging or merge:
    docs/PERFORMANCE.md), which the step's duration must show.  ``written_at``: ``time.perf_counter()`` when the
    rows were written.  Never raises: the step itself succeeded."""
    seconds = time.perf_counter() - written_at
    if seconds < COMMIT_NOTED_SECONDS or not log_ids:
        return
    try:
        with target.begin() as conn:
            d = conn.dialect
            q = d.quote
            ids = {f"id{i}": v for i, v in enumerate(log_ids)}
            conn.execute(
                f"UPDATE {d.qualified(ETL_LOG.schema, ETL_LOG.name)} SET {q('DurationSeconds')} = "
                f"COALESCE({q('DurationSeconds')}, 0) + :s, {q('LogTs')} = :ts "
                f"WHERE {q('LogId')} IN ({', '.join(':' + k for k in ids)})",
                {"s": round(seconds, 3), "ts": now(), **ids})
    except Exception:
        log.warning("could not add the commit's %.2fs to etl.ETL_Log rows %s", seconds, ", ".join(log_ids),
                    exc_info=True)


def first_step_start(conn: Connection, table: str, batch: str) -> datetime | None:
    """When this run's first logged step of (table, batch) began: the earliest ``LogTs - DurationSeconds`` of
    this run's rows (a row is written when its step ends), or None when the run logged nothing for them yet."""
    d = conn.dialect
    q = d.quote
    rows = conn.fetchall(
        f"SELECT {q('LogTs')}, {q('DurationSeconds')} FROM {d.qualified(ETL_LOG.schema, ETL_LOG.name)} "
        f"WHERE {q('RunId')} = :r AND {q('TableName')} = :t AND {q('Batch')} = :b",
        {"r": RUN_ID, "t": table, "b": batch},
    )
    starts = [ts - timedelta(seconds=float(secs or 0)) for ts, secs in rows if isinstance(ts, datetime)]
    return min(starts, default=None)


def type_change_warning(conn: Connection, table: str, changes: Sequence[TypeChange]) -> str | None:
    """The text kept in the merge_ods row (``WARNING: ...``, shown by the run summary) for the type changes the
    widen policy let through: every column altered now, and each column kept as it is (it already holds the new
    values) the first time only: an earlier merge_ods row of the table that says the same is not repeated."""
    if not changes:
        return None
    texts = [c.warning() for c in changes if c.alter]
    kept = [c.warning() for c in changes if not c.alter]
    if kept:
        d = conn.dialect
        q = d.quote
        said = [str(r[0]) for r in conn.fetchall(
            f"SELECT {q('ErrorMessage')} FROM {d.qualified(ETL_LOG.schema, ETL_LOG.name)} WHERE {q('TableName')} = "
            f":t AND {q('StepName')} = :step AND {q('Status')} = :ok AND {q('ErrorMessage')} LIKE :warning",
            {"t": table, "step": "merge_ods", "ok": "success", "warning": "WARNING: %"})]
        texts += [k for k in kept if not any(k in s for s in said)]
    return f"WARNING: {'; '.join(texts)}" if texts else None


def write_log_now(target: Target, table: str, step: str, status: str, **kw: Any) -> None:
    """Insert one ETL_Log row in its own transaction; never raises (logging must not mask the real error)."""
    try:
        with target.begin() as conn:
            write_log(conn, table, step, status, **kw)
    except Exception:
        log.exception("could not write etl.ETL_Log row (%s %s %s)", table, step, status)


def previous_run_rows(target: Target, table: str, mode: str, batch: str) -> tuple[int, str] | None:
    """Rows of the table's last successful run in this mode, other than ``batch`` (from etl.ETL_Log)."""
    d = target.dialect
    q = d.quote
    t = d.qualified(ETL_LOG.schema, ETL_LOG.name)
    cond = (f"{q('TableName')} = :t AND {q('StepName')} = :step AND {q('Status')} = :ok AND {q('Mode')} = :m "
            f"AND {q('Batch')} <> :b")
    params = {"t": table, "step": "flow_complete", "ok": "success", "m": mode, "b": batch}
    with target.begin() as conn:
        last = conn.scalar(f"SELECT MAX({q('LogTs')}) FROM {t} WHERE {cond}", params)
        if last is None:
            return None
        row = conn.fetchone(f"SELECT {q('RowsProcessed')}, {q('Batch')} FROM {t} WHERE {cond} AND {q('LogTs')} = :ts",
                            {**params, "ts": last})
    return (int(row[0] or 0), str(row[1])) if row else None


def last_success_by_table(target: Target) -> dict[str, Any]:
    """TableName -> LogTs of its last successful flow_complete row."""
    d = target.dialect
    q = d.quote
    return dict(target.fetchall(
        f"SELECT {q('TableName')}, MAX({q('LogTs')}) FROM {d.qualified(ETL_LOG.schema, ETL_LOG.name)} "
        f"WHERE {q('StepName')} = :step AND {q('Status')} = :ok GROUP BY {q('TableName')}",
        {"step": "flow_complete", "ok": "success"},
    ))


def outcome_rows_between(target: Target, since: datetime, until: datetime) -> list[tuple[Any, ...]]:
    """Failed rows and successful flow_complete rows logged in [since, until], oldest first: (RunId, TableName,
    StepName, Status, RowsProcessed, RowsInserted, RowsUpdated, DurationSeconds, ErrorMessage, LogTs)."""
    d = target.dialect
    q = d.quote
    return target.fetchall(
        f"SELECT {q('RunId')}, {q('TableName')}, {q('StepName')}, {q('Status')}, {q('RowsProcessed')}, "
        f"{q('RowsInserted')}, {q('RowsUpdated')}, {q('DurationSeconds')}, {q('ErrorMessage')}, {q('LogTs')} "
        f"FROM {d.qualified(ETL_LOG.schema, ETL_LOG.name)} WHERE {q('LogTs')} >= :since AND {q('LogTs')} <= :until "
        f"AND ({q('Status')} = :failed OR ({q('StepName')} = :step AND {q('Status')} = :ok)) "
        f"ORDER BY {q('LogTs')}",
        {"since": since, "until": until, "failed": "failed", "step": "flow_complete", "ok": "success"},
    )


def count_rows(target: Target) -> int:
    """Rows in etl.ETL_Log (the demo checks that a re-run writes none)."""
    d = target.dialect
    row = target.fetchone(f"SELECT COUNT(*) FROM {d.qualified(ETL_LOG.schema, ETL_LOG.name)}")
    return int(row[0]) if row else 0


RUN_ROW_COLUMNS = ("TableName", "StepName", "Status", "RowsProcessed", "RowsInserted", "RowsUpdated",
                   "RowsUnchanged", "DurationSeconds", "ErrorMessage", "Batch")


def rows_of_run(target: Target, run_id: str, batch: str | None = None) -> list[dict[str, Any]]:
    """The ETL_Log rows of one run (and batch), oldest first, as dicts keyed by column name."""
    d = target.dialect
    q = d.quote
    where = f"{q('RunId')} = :r" + (f" AND {q('Batch')} = :b" if batch is not None else "")
    params = {"r": run_id, **({"b": batch} if batch is not None else {})}
    rows = target.fetchall(
        f"SELECT {', '.join(q(c) for c in RUN_ROW_COLUMNS)} FROM {d.qualified(ETL_LOG.schema, ETL_LOG.name)} "
        f"WHERE {where} ORDER BY {q('LogTs')}", params,
    )
    return [dict(zip(RUN_ROW_COLUMNS, r, strict=True)) for r in rows]

