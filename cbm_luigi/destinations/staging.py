"""Staging: emptying ``stg.<table>`` and the bulk paths that load it (in the step's transaction, streamed during
the extract, or over a connection of the dialect's own).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow.parquet as pq

from cbm_luigi.destinations.ddl import DdlSql
from cbm_luigi.destinations.types import ColumnDef
from cbm_luigi.model.specs import TableSpec

if TYPE_CHECKING:
    from cbm_luigi.destinations.client import Connection, Target


#: ``stg.<table>__keys``: the key scan of an incremental run with DeleteScan (docs/OPERATIONS.md)
KEYS_TABLE_SUFFIX = "__keys"
#: rows per executemany of the portable key load
KEY_CHUNK_ROWS = 10_000


class StagingSql(DdlSql):
    """Bulk loading of staging; each dialect overrides its own path."""

    # -- staging ----------------------------------------------------------------------------------------------
    def truncate_sql(self, schema: str, table: str) -> str:
        return f"DELETE FROM {self.qualified(schema, table)}"

    def load_staging(self, conn: Connection, spec: TableSpec, files: Sequence[Path], columns: Sequence[str]) -> int:
        raise NotImplementedError

    @property
    def stages_on_own_connection(self) -> bool:
        """True when staging is bulk loaded over a connection the dialect opens itself (SQL Server bulk copy):
        ``load.stage`` then commits the emptied staging table first, calls :meth:`bulk_load_staging`, and
        records the batch afterwards.  False: :meth:`load_staging` runs inside the step's transaction."""
        return False

    #: True when the dialect can stream record batches into staging inside the step's transaction while the
    #: extract is written (:meth:`open_staging_stream`, used by ``load.StagingWhileExtracting``)
    streams_staging = False

    def open_staging_stream(self, conn: Connection, spec: TableSpec, columns: Sequence[str]) -> Any:
        """A stream with ``encode(batch)``, ``write(encoded)``, ``close() -> rows`` and ``abort(exc)``."""
        raise NotImplementedError(f"{self.title} does not stream into staging")

    def bulk_load_staging(self, target: Target, spec: TableSpec, files: Sequence[Path],
                          columns: Sequence[str]) -> int:
        """Load the committed, empty staging table on a connection of its own; returns the rows loaded."""
        raise NotImplementedError

    def count_staged_sql(self, spec: TableSpec) -> str:
        """Rows in staging, counted in the transaction that records the batch (own-connection bulk paths)."""
        return f"SELECT COUNT(*) FROM {self.qualified('stg', spec.sql_name)}"

    def duplicate_keys_sql(self, spec: TableSpec) -> str:
        keys = ", ".join(self.quote(k) for k in spec.primary_key)
        return (f"SELECT {keys}, COUNT(*) AS n FROM {self.qualified('stg', spec.sql_name)} "
                f"GROUP BY {keys} HAVING COUNT(*) > 1 ORDER BY {keys} LIMIT 5")

    # -- the key scan (incremental runs with DeleteScan): stg.<table>__keys, loaded with staging ------------------
    def keys_table(self, spec: TableSpec) -> str:
        """The name, in the ``stg`` schema, of the table holding the key scan of the batch staging holds."""
        return f"{spec.sql_name}{KEYS_TABLE_SUFFIX}"

    def keys_columns(self, spec: TableSpec) -> list[ColumnDef]:
        """The key columns, typed as in staging (no primary key: a heap, emptied and bulk loaded per batch)."""
        by_name = {c.name: c for c in self.staging_columns(spec)}
        return [by_name[k] for k in spec.primary_key]

    def insert_keys_sql(self, spec: TableSpec) -> str:
        cols = ", ".join(self.quote(k) for k in spec.primary_key)
        marks = ", ".join(f":k{i}" for i in range(len(spec.primary_key)))
        return f"INSERT INTO {self.qualified('stg', self.keys_table(spec))} ({cols}) VALUES ({marks})"

    def count_keys_sql(self, spec: TableSpec) -> str:
        return f"SELECT COUNT(*) FROM {self.qualified('stg', self.keys_table(spec))}"

    def load_keys(self, conn: Connection, spec: TableSpec, files: Sequence[Path]) -> int:
        """Load the key files into the (created, emptied) keys table in the caller's transaction; returns the
        rows sent.  Portable: bound rows, :data:`KEY_CHUNK_ROWS` per executemany (keys are narrow)."""
        sql = self.insert_keys_sql(spec)
        rows = 0
        for path in files:
            for batch in pq.ParquetFile(path).iter_batches(columns=list(spec.primary_key), batch_size=KEY_CHUNK_ROWS):
                if not batch.num_rows:
                    continue
                values = [batch.column(k).to_pylist() for k in spec.primary_key]
                conn.execute(sql, [{f"k{i}": v for i, v in enumerate(row)} for row in zip(*values, strict=True)])
                rows += batch.num_rows
        return rows
