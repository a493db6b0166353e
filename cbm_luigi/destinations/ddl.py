"""DDL and the SQL pieces the store builds on: schemas, tables, added and widened columns, views, row locks,
the time functions of the monitoring views.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from cbm_luigi.model.meta import MetaTable
from cbm_luigi.model.types import (
    FLOAT,
)

if TYPE_CHECKING:
    pass

from cbm_luigi.destinations.types import ColumnDef, TypeMapping


class DdlSql(TypeMapping):
    """CREATE / ALTER statements and the small expressions other SQL is built from."""

    # -- DDL --------------------------------------------------------------------------------------------------
    def create_schema_sql(self, schema: str) -> str:
        return f"CREATE SCHEMA IF NOT EXISTS {self.quote(schema)}"

    def create_table_sql(self, schema: str, table: str, columns: Sequence[ColumnDef],
                         primary_key: Sequence[str] = ()) -> str:
        lines = [f"    {self.quote(c.name)} {c.type}{'' if c.nullable else ' NOT NULL'}" for c in columns]
        if primary_key:
            lines.append(f"    PRIMARY KEY ({', '.join(self.quote(k) for k in primary_key)})")
        body = ",\n".join(lines)
        return f"CREATE TABLE IF NOT EXISTS {self.qualified(schema, table)} (\n{body}\n)"

    def add_column_sql(self, schema: str, table: str, column: ColumnDef) -> str:
        return f"ALTER TABLE {self.qualified(schema, table)} ADD COLUMN {self.quote(column.name)} {column.type}"

    def meta_table_sql(self, meta: MetaTable) -> str:
        cols = [ColumnDef(c.name, self.column_type(c.logical_type, c.width, c.precision, c.scale), c.nullable)
                for c in meta.columns]
        return self.create_table_sql(meta.schema, meta.name, cols, meta.primary_key)

    # -- monitoring views (ANSI; a dialect overrides the time functions or the whole SELECT) --------------------
    def now_sql(self) -> str:
        """The current local time, as naive as etl.ETL_Log.LogTs (written from the loading host's clock)."""
        return "LOCALTIMESTAMP"

    def seconds_between_sql(self, start: str, end: str) -> str:
        return f"CAST(EXTRACT(EPOCH FROM ({end} - {start})) AS {self.column_type(FLOAT)})"

    def days_ago_sql(self, days: int) -> str:
        return f"{self.now_sql()} - INTERVAL '{int(days)} days'"

    def true_sql(self) -> str:
        return "TRUE"

    def create_view_sql(self, schema: str, name: str, select: str) -> str:
        return f"CREATE OR REPLACE VIEW {self.qualified(schema, name)} AS\n{select}"

    def existing_columns_sql(self) -> str:
        """Columns of a table: name, type name, character length, numeric precision, numeric scale."""
        return ("SELECT column_name, data_type, character_maximum_length, numeric_precision, numeric_scale "
                "FROM information_schema.columns "
                "WHERE table_schema = :schema AND table_name = :table ORDER BY ordinal_position")

    def alter_column_type_sql(self, schema: str, table: str, column: ColumnDef) -> str:
        return (f"ALTER TABLE {self.qualified(schema, table)} ALTER COLUMN {self.quote(column.name)} "
                f"TYPE {column.type}")

    def convert_column_type_sql(self, schema: str, table: str, column: ColumnDef) -> str:
        """Alter a column to a type of another family, its values converted by the database (a type change in the
        source, docs/OPERATIONS.md); PostgreSQL needs the USING for pairs without an assignment cast."""
        return (f"{self.alter_column_type_sql(schema, table, column)} "
                f"USING CAST({self.quote(column.name)} AS {column.type})")

    def existing_columns_params(self) -> dict[str, str]:
        return {}

    def row_lock_clauses(self) -> tuple[str, str]:
        """(table hint, statement suffix) that make a SELECT lock the rows it reads until the transaction ends:
        ``FOR UPDATE`` on PostgreSQL, ``WITH (UPDLOCK, HOLDLOCK)`` on SQL Server; none where one writer at a time
        is the rule (DuckDB)."""
        return "", ""

    def table_lock_sql(self) -> str:
        """A statement that takes an exclusive lock named ``:lock`` until the transaction ends ("" when one writer
        at a time is the rule, DuckDB).  The staging and merge steps of a table take it first, so two runs of one
        batch serialise their DDL (CREATE TABLE IF NOT EXISTS is not safe concurrently on PostgreSQL) and the
        second merge sees the first one's marker (docs/OPERATIONS.md, "Running twice at once").  A statement that
        returns a number (SQL Server's sp_getapplock code) fails the step when it is negative."""
        return ""
