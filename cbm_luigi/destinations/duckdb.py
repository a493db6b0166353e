"""DuckDB destination (the embedded default): staging read straight from the parquet files, MERGE into the ODS.

DuckDB allows one writing process per database file: :attr:`DuckDBDialect.single_writer` tells the orchestrator
to serialise the tasks that write to it, and connections are never pooled (each task opens and closes its own).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import sqlalchemy as sa

from cbm_luigi.destinations.client import Connection
from cbm_luigi.destinations.dialect import Dialect
from cbm_luigi.destinations.merge import MergeCounts
from cbm_luigi.errors import TargetError
from cbm_luigi.model.specs import TableSpec
from cbm_luigi.model.types import (
    BINARY,
    ETL_BATCH,
    ETL_DELETED,
    FLOAT,
    HASHDIFF,
    LOAD_TS,
    TIMESTAMP_TZ,
    TS_SOURCE,
)


class DuckDBDialect(Dialect):
    name = "duckdb"
    title = "DuckDB"
    single_writer = True

    #: DuckDB's own default is 80 % of the machine's memory, which a staging load or a merge of a big table takes
    #: (the memory of the load then follows the table size): capped while loading and merging, unless the target
    #: URL sets its own (``duckdb:///data/cbm_ods.duckdb?memory_limit=2GB``); DuckDB spills to disk beyond it.
    default_memory_limit = "512MB"

    def __init__(self, catalog: str | None = None, memory_limit: str | None = None) -> None:
        # DuckDB names the catalog after the file: with a file named ods.duckdb (the default before
        # cbm_ods.duckdb), "ods"."t" would be ambiguous between the catalog and the schema, so names are
        # qualified with the catalog too; any file name works.
        self.catalog = catalog
        self.memory_limit = memory_limit

    @classmethod
    def for_url(cls, url: sa.URL) -> Dialect:
        db = url.database or ":memory:"
        limit = None if "memory_limit" in url.query else cls.default_memory_limit
        return cls("memory" if db == ":memory:" else Path(db).stem, limit)

    def limit_memory(self, conn: Connection) -> None:
        if self.memory_limit and re.fullmatch(r"\d+(\.\d+)?\s*[KMGT]?i?B", self.memory_limit):
            conn.execute(f"SET memory_limit = '{self.memory_limit}'")

    def qualified(self, schema: str, name: str) -> str:
        prefix = f"{self.quote(self.catalog)}." if self.catalog else ""
        return f"{prefix}{self.quote(schema)}.{self.quote(name)}"

    def create_schema_sql(self, schema: str) -> str:
        prefix = f"{self.quote(self.catalog)}." if self.catalog else ""
        return f"CREATE SCHEMA IF NOT EXISTS {prefix}{self.quote(schema)}"

    def existing_columns_sql(self) -> str:
        cat = " AND table_catalog = :catalog" if self.catalog else ""
        return ("SELECT column_name, data_type, character_maximum_length, numeric_precision, numeric_scale "
                "FROM information_schema.columns "
                f"WHERE table_schema = :schema AND table_name = :table{cat} ORDER BY ordinal_position")

    def existing_columns_params(self) -> dict[str, str]:
        return {"catalog": self.catalog} if self.catalog else {}

    type_names: ClassVar[dict[str, str]] = {
        **Dialect.type_names, FLOAT: "DOUBLE", BINARY: "BLOB", TIMESTAMP_TZ: "TIMESTAMPTZ",
    }

    def string_type(self, width: int | None) -> str:
        return "VARCHAR"

    def hashdiff_type(self) -> str:
        return "VARCHAR"

    def insert_from_parquet_sql(self, spec: TableSpec, columns: Sequence[str]) -> str:
        cols = ", ".join(self.quote(c) for c in columns)
        return f"INSERT INTO {self.qualified('stg', spec.sql_name)} ({cols}) SELECT {cols} FROM read_parquet(:files)"

    def load_staging(self, conn: Connection, spec: TableSpec, files: Sequence[Path], columns: Sequence[str]) -> int:
        if not files:
            return 0
        self.limit_memory(conn)
        return conn.execute(self.insert_from_parquet_sql(spec, columns), {"files": [str(f) for f in files]})

    def load_keys(self, conn: Connection, spec: TableSpec, files: Sequence[Path]) -> int:
        """The key scan's parquet files read by DuckDB itself, in the caller's transaction."""
        if not files:
            return 0
        cols = ", ".join(self.quote(k) for k in spec.primary_key)
        return conn.execute(f"INSERT INTO {self.qualified('stg', self.keys_table(spec))} ({cols}) "
                            f"SELECT {cols} FROM read_parquet(:files)", {"files": [str(f) for f in files]})

    # -- merge: DuckDB updates wide rows slowly (an UPDATE of 300 columns rewrites every column); replacing the
    # changed rows (DELETE, then INSERT with the new ones) gives the same ODS 3x faster (docs/PERFORMANCE.md).
    def delete_changed_sql(self, spec: TableSpec) -> str:
        h = self.quote(HASHDIFF)
        return (f"DELETE FROM {self.qualified('ods', spec.sql_name)} o USING {self.qualified('stg', spec.sql_name)} s\n"
                f"WHERE {self._key_join(spec, 'o', 's')} AND o.{h} <> s.{h}")

    def insert_missing_sql(self, spec: TableSpec, every_row: bool = False) -> str:
        """Staging rows whose key is not in the ODS (new keys, and changed rows once deleted); ``:batch`` bound.

        ``every_row``: every staged row is new or changed, so no join is needed.  A plain INSERT ... SELECT streams;
        one fed by a join holds the rows it inserts in memory (200,000 x 300 columns failed under a 256 MB
        memory_limit that the plain INSERT kept to).
        """
        q = self.quote
        cols = [*(c.sql_name for c in spec.stored_columns), HASHDIFF, TS_SOURCE, LOAD_TS]
        ods = self.qualified("ods", spec.sql_name)
        sql = (f"INSERT INTO {ods} ({', '.join(q(c) for c in cols)}, {q(ETL_BATCH)})\n"
               f"SELECT {', '.join('s.' + q(c) for c in cols)}, :batch\n"
               f"FROM {self.qualified('stg', spec.sql_name)} s")
        if every_row:
            return sql
        return sql + f"\nWHERE NOT EXISTS (SELECT 1 FROM {ods} o WHERE {self._key_join(spec, 'o', 's')})"

    def merge(self, conn: Connection, spec: TableSpec, batch: str, staged: int) -> MergeCounts:
        """Same result as the MERGE of :meth:`merge_sql`: new keys inserted, rows whose hashdiff changed replaced
        by the staged row (with ``etl_batch``), unchanged rows untouched.  Rows are replaced only when the ODS
        table has exactly the columns a MERGE would write; otherwise (columns kept after leaving the source,
        columns of other features) the MERGE itself runs, so that those columns keep their values."""
        if staged == 0:
            return MergeCounts(staged=0, inserted=0, updated=0)
        self.limit_memory(conn)
        row = conn.fetchone(self.count_changes_sql(spec))
        inserted, updated = (int(row[0] or 0), int(row[1] or 0)) if row else (0, 0)
        if inserted + updated == 0:
            return MergeCounts(staged=staged, inserted=0, updated=0)
        if updated and not self._replaceable(conn, spec):
            touched = [conn.execute(self.merge_sql(spec), {"batch": batch})]
            expected = [inserted + updated]
        else:
            touched = [conn.execute(self.delete_changed_sql(spec))] if updated else []
            every_row = inserted + updated == staged
            touched.append(conn.execute(self.insert_missing_sql(spec, every_row), {"batch": batch}))
            expected = [updated, inserted + updated] if updated else [inserted]
        if any(n >= 0 and n != e for n, e in zip(touched, expected, strict=True)):
            raise TargetError(
                f"table {spec.table_name}: the merge touched {touched} rows but {inserted} new and {updated} changed "
                "were counted; rolled back (is another process writing to the ODS table?)"
            )
        return MergeCounts(staged=staged, inserted=inserted, updated=updated)

    def _replaceable(self, conn: Connection, spec: TableSpec) -> bool:
        written = {c.sql_name.lower() for c in spec.stored_columns} | {HASHDIFF, TS_SOURCE, LOAD_TS, ETL_BATCH}
        if spec.delete_detection:  # a replaced row is in the source: inserted with etl_deleted_ts NULL, as wanted
            written.add(ETL_DELETED)
        params = {"schema": "ods", "table": spec.sql_name, **self.existing_columns_params()}
        return {str(r[0]).lower() for r in conn.fetchall(self.existing_columns_sql(), params)} == written

    def is_transient(self, exc: BaseException) -> bool:
        text = str(getattr(exc, "orig", exc))
        # Another process holds the database file (single writer), or a write-write conflict.
        return "Could not set lock" in text or "Conflict on" in text
