"""PostgreSQL destination: COPY (CSV from Arrow) into staging, MERGE (PostgreSQL 15+) into the ODS."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from cbm_luigi.destinations.base import Connection, Dialect
from cbm_luigi.metadata import TableSpec

# SQLSTATE classes worth a retry: connection exceptions, serialization failure, deadlock, lock timeout,
# too many connections, admin shutdown / cannot connect now.
_TRANSIENT_SQLSTATES = {"40001", "40P01", "55P03", "53300", "57P01", "57P02", "57P03"}


class PostgresDialect(Dialect):
    name = "postgresql"
    max_decimal_precision = 1000

    def column_type(self, logical: str, width: int | None = None, precision: int | None = None,
                    scale: int | None = None) -> str:
        # TEXT costs nothing more than VARCHAR(n) in PostgreSQL and never truncates.
        return super().column_type(logical, width, precision, scale).replace("DECIMAL", "NUMERIC")

    def truncate_sql(self, schema: str, table: str) -> str:
        return f"TRUNCATE TABLE {self.qualified(schema, table)}"

    def copy_sql(self, spec: TableSpec, columns: Sequence[str]) -> str:
        cols = ", ".join(self.quote(c) for c in columns)
        return f"COPY {self.qualified('stg', spec.sql_name)} ({cols}) FROM STDIN WITH (FORMAT csv)"

    def load_staging(self, conn: Connection, spec: TableSpec, files: Sequence[Path], columns: Sequence[str]) -> int:
        """Stream each parquet row group as CSV into COPY (NULL is an unquoted empty field, '' is quoted)."""
        rows = 0
        raw = conn.driver_connection
        options = pcsv.WriteOptions(include_header=False, quoting_style="needed")
        with raw.cursor() as cur, cur.copy(self.copy_sql(spec, columns)) as copy:
            for path in files:
                pf = pq.ParquetFile(path)
                for batch in pf.iter_batches(columns=list(columns), batch_size=20_000):
                    batch = _bytea_as_hex(batch)
                    buf = io.BytesIO()
                    pcsv.write_csv(batch, buf, options)
                    copy.write(buf.getbuffer())
                    rows += batch.num_rows
        return rows

    def lock_staging_state_sql(self) -> str | None:
        return ('SELECT "Batch", "Mode", "RowsStaged", "SourceClockTs" FROM "etl"."ETL_StagingState" '
                'WHERE "TableName" = :t FOR UPDATE')

    def is_transient(self, exc: BaseException) -> bool:
        orig = getattr(exc, "orig", exc)
        state = getattr(orig, "sqlstate", None) or ""
        if state in _TRANSIENT_SQLSTATES or state.startswith("08"):
            return True
        return bool(getattr(exc, "connection_invalidated", False))


def _bytea_as_hex(batch: pa.RecordBatch) -> pa.RecordBatch:
    """COPY CSV reads bytea as ``\\x`` + hex; Arrow writes raw bytes, so convert binary columns first."""
    if not any(pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type) for f in batch.schema):
        return batch
    arrays = []
    for arr, f in zip(batch.columns, batch.schema, strict=True):
        if pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type):
            hexed = pa.array([None if v is None else "\\x" + v.hex() for v in arr.to_pylist()], pa.string())
            arrays.append(pc.cast(hexed, pa.string()))
        else:
            arrays.append(arr)
    return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)
