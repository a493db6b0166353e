"""``etl.ETL_StagingState``: which batch ``stg.<table>`` holds, written in the transaction that staged it.

``LoadStaging``'s Luigi target exists when this row names its batch; the merge reads it again under a row lock
(where the dialect takes one) and refuses a foreign batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cbm_luigi.config.run import RUN_ID
from cbm_luigi.destinations.client import Connection, Target
from cbm_luigi.destinations.dialect import Dialect
from cbm_luigi.store.runlog import now
from cbm_luigi.store.schema import ETL_STAGING_STATE


@dataclass(frozen=True)
class StagingState:
    batch: str
    mode: str
    rows: int


def _table(d: Dialect) -> str:
    return d.qualified(ETL_STAGING_STATE.schema, ETL_STAGING_STATE.name)


def clear_staging_state(conn: Connection, table: str) -> None:
    """Staging holds nothing recorded (before an own-connection bulk load empties it)."""
    d = conn.dialect
    conn.execute(f"DELETE FROM {_table(d)} WHERE {d.quote('TableName')} = :t", {"t": table})


def set_staging_state(conn: Connection, table: str, *, batch: str, mode: str, rows: int,
                      source_clock_ts: datetime | None) -> None:
    """Record, in the staging transaction, that ``stg.<table>`` holds this batch."""
    d = conn.dialect
    q = d.quote
    t = _table(d)
    conn.execute(f"DELETE FROM {t} WHERE {q('TableName')} = :t", {"t": table})
    conn.execute(
        f"INSERT INTO {t} ({q('TableName')}, {q('Batch')}, {q('Mode')}, {q('RowsStaged')}, {q('SourceClockTs')}, "
        f"{q('RunId')}, {q('LoadedTs')}) VALUES (:t, :b, :m, :n, :c, :r, :ts)",
        {"t": table, "b": batch, "m": mode, "n": rows, "c": source_clock_ts, "r": RUN_ID, "ts": now()},
    )


def read_sql(d: Dialect, *, lock: bool = False) -> str:
    """The staging-state row of a table; with ``lock``, under the dialect's row lock (the merge's read)."""
    q = d.quote
    hint, suffix = d.row_lock_clauses() if lock else ("", "")
    return (f"SELECT {q('Batch')}, {q('Mode')}, {q('RowsStaged')}, {q('SourceClockTs')} FROM {_table(d)}{hint} "
            f"WHERE {q('TableName')} = :t{suffix}")


def staging_state(target: Target, table: str, conn: Connection | None = None) -> StagingState | None:
    """Which batch staging holds; inside ``conn`` (the merge's transaction) the row is locked."""
    sql = read_sql(target.dialect, lock=conn is not None)
    row = conn.fetchone(sql, {"t": table}) if conn is not None else target.fetchone(sql, {"t": table})
    return StagingState(str(row[0]), str(row[1]), int(row[2] or 0)) if row else None


def staged_batches(target: Target) -> set[tuple[str, str]]:
    """(table, batch) of every staging table's recorded batch (cache cleanup keeps their extracts)."""
    d = target.dialect
    q = d.quote
    rows = target.fetchall(f"SELECT {q('TableName')}, {q('Batch')} FROM {_table(d)}")
    return {(str(r[0]), str(r[1])) for r in rows}
