"""DuckDB destination (the embedded default): staging read straight from the parquet files, MERGE into the ODS.

DuckDB allows one writing process per database file: :attr:`DuckDBDialect.single_writer` tells the orchestrator
to serialise the tasks that write to it, and connections are never pooled (each task opens and closes its own).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa

from cbm_luigi.destinations.base import Connection, Dialect
from cbm_luigi.metadata import TableSpec


class DuckDBDialect(Dialect):
    name = "duckdb"
    single_writer = True

    def __init__(self, catalog: str | None = None) -> None:
        # DuckDB names the catalog after the file: with data/ods.duckdb, "ods"."t" would be ambiguous between
        # the catalog and the schema, so names are qualified with the catalog too.
        self.catalog = catalog

    @classmethod
    def for_url(cls, url: sa.URL) -> Dialect:
        db = url.database or ":memory:"
        return cls("memory" if db == ":memory:" else Path(db).stem)

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

    def column_type(self, logical: str, width: int | None = None, precision: int | None = None,
                    scale: int | None = None) -> str:
        t = super().column_type(logical, width, precision, scale)
        return {"TEXT": "VARCHAR", "DOUBLE PRECISION": "DOUBLE", "BYTEA": "BLOB",
                "TIMESTAMP WITH TIME ZONE": "TIMESTAMPTZ"}.get(t, t)

    def hashdiff_type(self) -> str:
        return "VARCHAR"

    def insert_from_parquet_sql(self, spec: TableSpec, columns: Sequence[str]) -> str:
        cols = ", ".join(self.quote(c) for c in columns)
        return f"INSERT INTO {self.qualified('stg', spec.sql_name)} ({cols}) SELECT {cols} FROM read_parquet(:files)"

    def load_staging(self, conn: Connection, spec: TableSpec, files: Sequence[Path], columns: Sequence[str]) -> int:
        if not files:
            return 0
        return conn.execute(self.insert_from_parquet_sql(spec, columns), {"files": [str(f) for f in files]})

    def is_transient(self, exc: BaseException) -> bool:
        text = str(getattr(exc, "orig", exc))
        # Another process holds the database file (single writer), or a write-write conflict.
        return "Could not set lock" in text or "Conflict on" in text
