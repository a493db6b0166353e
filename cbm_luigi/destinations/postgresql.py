"""PostgreSQL destination: COPY (CSV from Arrow) into staging, MERGE (PostgreSQL 15+) into the ODS.

Staging and ODS tables are created ``WITH (toast_tuple_target = 8160)``: an ERP row of a few hundred short columns
is wider than PostgreSQL's default 2 KB toast threshold, and trying to compress each of its small values made the
COPY 3x and the first MERGE 5x slower (docs/PERFORMANCE.md).  Staging can be loaded while the extract is written
(:meth:`PostgresDialect.open_staging_stream`), or from the parquet files (:meth:`PostgresDialect.load_staging`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from cbm_luigi.destinations.client import Connection
from cbm_luigi.destinations.dialect import Dialect
from cbm_luigi.destinations.history import HIST
from cbm_luigi.destinations.types import ColumnDef
from cbm_luigi.model.binary import hex_text
from cbm_luigi.model.specs import TableSpec
from cbm_luigi.model.types import IS_CURRENT

#: rows wider than this are toasted; 8160 is the largest value PostgreSQL accepts (a heap page holds one such row)
TOAST_TUPLE_TARGET = 8160

# SQLSTATE classes worth a retry: connection exceptions, serialization failure, deadlock, lock timeout,
# too many connections, admin shutdown / cannot connect now.
_TRANSIENT_SQLSTATES = {"40001", "40P01", "55P03", "53300", "57P01", "57P02", "57P03"}


class PostgresDialect(Dialect):
    name = "postgresql"
    title = "PostgreSQL"
    max_decimal_precision = 1000

    def decimal_type(self, precision: int, scale: int) -> str:
        # strings stay TEXT (the base rule): it costs nothing more than VARCHAR(n) here and never truncates
        return f"NUMERIC({precision},{scale})"

    def truncate_sql(self, schema: str, table: str) -> str:
        return f"TRUNCATE TABLE {self.qualified(schema, table)}"

    def create_table_sql(self, schema: str, table: str, columns: Sequence[ColumnDef],
                         primary_key: Sequence[str] = ()) -> str:
        sql = super().create_table_sql(schema, table, columns, primary_key)
        if schema in ("stg", "ods", HIST):
            sql += f" WITH (toast_tuple_target = {TOAST_TUPLE_TARGET})"
        return sql

    def current_version_index_sql(self, spec: TableSpec) -> str:
        # index names share the schema's namespace with its tables (hence "__"), at most 63 bytes (the server
        # would cut a longer one)
        name = self.quote(f"{spec.sql_name[:54]}__current")
        keys = ", ".join(self.quote(k) for k in spec.primary_key)
        return (f"CREATE UNIQUE INDEX IF NOT EXISTS {name} ON {self.qualified(HIST, spec.sql_name)} ({keys}) "
                f"WHERE {self.quote(IS_CURRENT)}")

    def copy_sql(self, spec: TableSpec, columns: Sequence[str]) -> str:
        cols = ", ".join(self.quote(c) for c in columns)
        return f"COPY {self.qualified('stg', spec.sql_name)} ({cols}) FROM STDIN WITH (FORMAT csv)"

    streams_staging = True

    def open_staging_stream(self, conn: Connection, spec: TableSpec, columns: Sequence[str]) -> CopyStream:
        """A COPY into the (created, emptied) staging table, fed batch by batch in the caller's transaction."""
        return CopyStream(conn, self.copy_sql(spec, columns), list(columns))

    def load_staging(self, conn: Connection, spec: TableSpec, files: Sequence[Path], columns: Sequence[str]) -> int:
        """Stream the parquet files as CSV into COPY (NULL is an unquoted empty field, '' is quoted)."""
        stream = self.open_staging_stream(conn, spec, columns)
        try:
            for path in files:
                for batch in pq.ParquetFile(path).iter_batches(columns=list(columns), batch_size=10_000):
                    stream.write(stream.encode(batch))
        except BaseException as exc:
            stream.abort(exc)
            raise
        return stream.close()

    def load_keys(self, conn: Connection, spec: TableSpec, files: Sequence[Path]) -> int:
        """The key scan's parquet files COPYed into the keys table, in the caller's transaction."""
        cols = list(spec.primary_key)
        sql = (f"COPY {self.qualified('stg', self.keys_table(spec))} ({', '.join(self.quote(c) for c in cols)}) "
               "FROM STDIN WITH (FORMAT csv)")
        stream = CopyStream(conn, sql, cols)
        try:
            for path in files:
                for batch in pq.ParquetFile(path).iter_batches(columns=cols, batch_size=100_000):
                    stream.write(stream.encode(batch))
        except BaseException as exc:
            stream.abort(exc)
            raise
        return stream.close()

    def row_lock_clauses(self) -> tuple[str, str]:
        return "", " FOR UPDATE"

    def table_lock_sql(self) -> str:
        # a transaction-scoped advisory lock on a 64-bit hash of the name, released at COMMIT or ROLLBACK
        return "SELECT pg_advisory_xact_lock(hashtextextended(:lock, 0))"

    def is_transient(self, exc: BaseException) -> bool:
        orig = getattr(exc, "orig", exc)
        state = getattr(orig, "sqlstate", None) or ""
        if state in _TRANSIENT_SQLSTATES or state.startswith("08"):
            return True
        return bool(getattr(exc, "connection_invalidated", False))


class CopyStream:
    """A running ``COPY ... FROM STDIN (FORMAT csv)`` on the connection of the caller's transaction.

    ``encode`` (CSV bytes of a batch, any thread) and ``write`` (in order, one thread) are separate so that the
    extract pipeline encodes in its transform workers; psycopg's queued writer sends the bytes from a thread of
    its own (at most 1024 x 128 KB queued), so the writer does not wait for the server between batches.
    """

    def __init__(self, conn: Connection, sql: str, columns: list[str]) -> None:
        from psycopg.copy import (
            QueuedLibpqWriter,  # deferred: PostgreSQL driver, loaded only for a PostgreSQL target
        )

        self.columns = columns
        self.rows = 0
        self._cursor = conn.driver_connection.cursor()
        self._context = self._cursor.copy(sql, writer=QueuedLibpqWriter(self._cursor))
        self._copy = self._context.__enter__()
        self._options = pcsv.WriteOptions(include_header=False, quoting_style="needed")

    def encode(self, batch: pa.RecordBatch) -> tuple[Any, int]:
        if batch.schema.names != self.columns:
            batch = batch.select(self.columns)
        sink = pa.BufferOutputStream()
        pcsv.write_csv(_bytea_as_hex(batch), sink, self._options)
        return memoryview(sink.getvalue()), batch.num_rows

    def write(self, encoded: tuple[Any, int]) -> None:
        data, rows = encoded
        if rows:
            self._copy.write(data)
            self.rows += rows

    def close(self) -> int:
        """End the COPY (the server has every row when this returns); returns the rows sent."""
        self._context.__exit__(None, None, None)
        self._cursor.close()
        return self.rows

    def abort(self, exc: BaseException) -> None:
        try:
            self._context.__exit__(type(exc), exc, exc.__traceback__)
        finally:
            self._cursor.close()


def _bytea_as_hex(batch: pa.RecordBatch) -> pa.RecordBatch:
    """COPY CSV reads bytea as ``\\x`` + hex; Arrow writes raw bytes, so convert binary columns first."""
    if not any(pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type) for f in batch.schema):
        return batch
    arrays = []
    for arr, f in zip(batch.columns, batch.schema, strict=True):
        if pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type):
            hexed = pc.binary_join_element_wise(pa.scalar("\\x"), pc.cast(hex_text(arr), pa.string()), "")
            arrays.append(hexed)
        else:
            arrays.append(arr)
    return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)
