"""The SCD2 history of a dimension, ``hist.<table>`` (TableSpec.keep_history): its columns and the statements the
merge runs in its own transaction, after the ODS merge and delete marking (docs/OPERATIONS.md, "History of
dimensions (SCD2)").

A version is a row of the ODS as it was between two batches: the business columns, ``hashdiff``, ``ts_source``,
``load_ts``, ``etl_batch`` (the batch that opened it), ``valid_from`` (that batch's source clock), ``valid_to``
(the source clock of the batch that closed it; NULL while current) and ``is_current``.  Primary key: the key
columns and ``valid_from``.  Every statement binds ``:ts`` (the batch's source clock) and, when it opens
versions, ``:batch``; each one touches only what the previous ones left to do, so running them again on the same
staging opens and closes nothing.
"""

from __future__ import annotations

from cbm_luigi.destinations.merge import MergeSql
from cbm_luigi.destinations.types import ColumnDef
from cbm_luigi.model.specs import TableSpec
from cbm_luigi.model.types import (
    BOOLEAN,
    ETL_BATCH,
    ETL_DELETED,
    HASHDIFF,
    IS_CURRENT,
    LOAD_TS,
    TIMESTAMP,
    TS_SOURCE,
    VALID_FROM,
    VALID_TO,
)

#: the schema of the history tables
HIST = "hist"


class HistorySql(MergeSql):
    """DDL and DML of ``hist.<table>``; a dialect overrides the spellings that differ (SQL Server)."""

    def false_sql(self) -> str:
        return "FALSE"

    def history_columns(self, spec: TableSpec) -> list[ColumnDef]:
        """The ODS columns (without ``etl_deleted_ts``: a deleted key has no current version) + the validity."""
        ts = self.column_type(TIMESTAMP)
        cols = [c for c in self.ods_columns(spec) if c.name != ETL_DELETED]
        return [*cols, ColumnDef(VALID_FROM, ts, False), ColumnDef(VALID_TO, ts, True),
                ColumnDef(IS_CURRENT, self.column_type(BOOLEAN), False)]

    def history_key(self, spec: TableSpec) -> tuple[str, ...]:
        return (*spec.primary_key, VALID_FROM)

    def _version_columns(self, spec: TableSpec) -> list[str]:
        """What a new version copies: the business columns and the technical ones staging and the ODS both hold."""
        return [*spec.business_columns, HASHDIFF, TS_SOURCE, LOAD_TS]

    def _is_current(self, alias: str) -> str:
        return f"{alias}.{self.quote(IS_CURRENT)} = {self.true_sql()}"

    def _close_set(self, alias: str = "") -> str:
        """The SET list that closes a version at ``:ts`` (``alias.`` before the names where the dialect wants it)."""
        prefix = f"{alias}." if alias else ""
        return (f"{prefix}{self.quote(VALID_TO)} = :ts, "
                f"{prefix}{self.quote(IS_CURRENT)} = {self.false_sql()}")

    def newest_version_sql(self, spec: TableSpec) -> str:
        """The latest instant the table holds, a ``valid_from`` or a ``valid_to`` (a batch that only closed versions,
        deletes, opened none); NULL: no version yet, the history is seeded from the ODS."""
        q, hist, at = self.quote, self.qualified(HIST, spec.sql_name), self.quote("at")
        return (f"SELECT MAX(c.{at}) FROM (SELECT MAX({q(VALID_FROM)}) AS {at} FROM {hist} "
                f"UNION ALL SELECT MAX({q(VALID_TO)}) FROM {hist}) AS c")

    def seed_history_sql(self, spec: TableSpec) -> str:
        """One current version per active ODS row, opened at ``:ts`` by ``:batch`` (history turned on, or empty)."""
        q = self.quote
        cols = self._version_columns(spec)
        active = f"\nWHERE o.{q(ETL_DELETED)} IS NULL" if spec.delete_detection else ""
        return (f"INSERT INTO {self.qualified(HIST, spec.sql_name)} "
                f"({', '.join(q(c) for c in [*cols, ETL_BATCH, VALID_FROM, VALID_TO, IS_CURRENT])})\n"
                f"SELECT {', '.join('o.' + q(c) for c in cols)}, :batch, :ts, NULL, {self.true_sql()}\n"
                f"FROM {self.qualified('ods', spec.sql_name)} o{active}")

    def close_changed_sql(self, spec: TableSpec) -> str:
        """Close (``valid_to = :ts``) the current versions whose key is staged with another hashdiff."""
        h = self.quote(HASHDIFF)
        return (f"UPDATE {self.qualified(HIST, spec.sql_name)} AS h SET {self._close_set()}\n"
                f"WHERE {self._is_current('h')} AND EXISTS (SELECT 1 FROM {self.qualified('stg', spec.sql_name)} s "
                f"WHERE {self._key_join(spec, 's', 'h')} AND s.{h} <> h.{h})")

    def open_versions_sql(self, spec: TableSpec) -> str:
        """A current version (from ``:ts``, by ``:batch``) for every staged key that has none: new keys, the keys
        just closed, keys back after a delete.  With delete detection, not for a staged key its ODS row has marked
        deleted (read by the data, gone by the key scan that follows it): it would be closed at the same instant."""
        q = self.quote
        cols = self._version_columns(spec)
        hist = self.qualified(HIST, spec.sql_name)
        gone = (f"\nAND NOT EXISTS (SELECT 1 FROM {self.qualified('ods', spec.sql_name)} o "
                f"WHERE {self._key_join(spec, 'o', 's')} AND o.{q(ETL_DELETED)} IS NOT NULL)"
                if spec.delete_detection else "")
        return (f"INSERT INTO {hist} "
                f"({', '.join(q(c) for c in [*cols, ETL_BATCH, VALID_FROM, VALID_TO, IS_CURRENT])})\n"
                f"SELECT {', '.join('s.' + q(c) for c in cols)}, :batch, :ts, NULL, {self.true_sql()}\n"
                f"FROM {self.qualified('stg', spec.sql_name)} s\n"
                f"WHERE NOT EXISTS (SELECT 1 FROM {hist} h WHERE {self._key_join(spec, 'h', 's')} "
                f"AND {self._is_current('h')}){gone}")

    def close_deleted_sql(self, spec: TableSpec) -> str:
        """Close (``valid_to = :ts``) the current versions whose ODS row is marked deleted."""
        return (f"UPDATE {self.qualified(HIST, spec.sql_name)} AS h SET {self._close_set()}\n"
                f"WHERE {self._is_current('h')} AND EXISTS (SELECT 1 FROM {self.qualified('ods', spec.sql_name)} o "
                f"WHERE {self._key_join(spec, 'o', 'h')} AND o.{self.quote(ETL_DELETED)} IS NOT NULL)")

    def current_version_index_sql(self, spec: TableSpec) -> str:
        """A unique index on the key of the current versions, created with the table, so that the database itself
        refuses two current versions of one key; "" where it has no partial index (DuckDB)."""
        return ""
