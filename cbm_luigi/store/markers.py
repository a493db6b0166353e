"""``etl.ETL_Markers``: one row per merged (table, batch), written in the merge's transaction (Luigi's target).
"""

from __future__ import annotations

from cbm_luigi.config.run import RUN_ID
from cbm_luigi.destinations.client import Connection, Target
from cbm_luigi.store.runlog import now
from cbm_luigi.store.schema import ETL_MARKERS


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


def marker_run(conn: Connection, table: str, batch: str) -> str | None:
    """The RunId that merged (table, batch), read in the caller's transaction (the merge's, under the table's
    lock: a merge of the same batch that committed meanwhile is seen); None when the batch is not merged."""
    d = conn.dialect
    q = d.quote
    row = conn.fetchone(
        f"SELECT {q('RunId')} FROM {d.qualified(ETL_MARKERS.schema, ETL_MARKERS.name)} WHERE {q('MarkerId')} = :m",
        {"m": marker_id(table, batch)},
    )
    return None if row is None else str(row[0] or "")


def write_marker(conn: Connection, table: str, batch: str, mode: str) -> None:
    d = conn.dialect
    q = d.quote
    conn.execute(
        f"INSERT INTO {d.qualified(ETL_MARKERS.schema, ETL_MARKERS.name)} "
        f"({q('MarkerId')}, {q('TableName')}, {q('Batch')}, {q('Mode')}, {q('RunId')}, {q('CompletedTs')}) "
        "VALUES (:m, :t, :b, :mode, :r, :ts)",
        {"m": marker_id(table, batch), "t": table, "b": batch, "mode": mode, "r": RUN_ID, "ts": now()},
    )


def finished_batches(target: Target) -> set[str]:
    """MarkerIds of every finished (merged) batch."""
    d = target.dialect
    rows = target.fetchall(f"SELECT {d.quote('MarkerId')} FROM {d.qualified(ETL_MARKERS.schema, ETL_MARKERS.name)}")
    return {str(r[0]) for r in rows}
