"""The MERGE of staging into the ODS (counted first, touching only new keys and changed hashdiffs) and the SQL
of delete detection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cbm_luigi.destinations.staging import StagingSql
from cbm_luigi.errors import TargetError
from cbm_luigi.model.specs import TableSpec
from cbm_luigi.model.types import (
    ETL_BATCH,
    ETL_DELETED,
    HASHDIFF,
    LOAD_TS,
    TS_SOURCE,
)

if TYPE_CHECKING:
    from cbm_luigi.destinations.client import Connection


@dataclass(frozen=True)
class MergeCounts:
    staged: int
    inserted: int
    updated: int
    deleted: int = 0  # ODS rows marked deleted (delete detection: full extracts, key scans)
    #: the batch was already merged (by another run of it): nothing was merged, the counts are 0
    already_loaded: bool = False
    #: versions of hist.<table> opened and closed (tables with KeepHistory; docs/OPERATIONS.md, SCD2)
    history_opened: int = 0
    history_closed: int = 0

    @property
    def unchanged(self) -> int:
        return self.staged - self.inserted - self.updated


class MergeSql(StagingSql):
    """MERGE on the primary key and soft deletes."""

    # -- delete detection (tables with DeleteDetection: full extracts, and key scans with DeleteScan) -------------
    def count_active_sql(self, spec: TableSpec) -> str:
        return (f"SELECT COUNT(*) FROM {self.qualified('ods', spec.sql_name)} o "
                f"WHERE o.{self.quote(ETL_DELETED)} IS NULL")

    # ``keys``: the stg table listing the source's keys: staging itself (a full extract; the default) or the key
    # scan of an incremental run with DeleteScan (:meth:`keys_table`)
    def count_deletions_sql(self, spec: TableSpec, keys: str | None = None) -> str:
        """Active ODS rows whose key is not in staging (the full extract) or in the key scan."""
        return (f"{self.count_active_sql(spec)} AND NOT EXISTS "
                f"(SELECT 1 FROM {self.qualified('stg', keys or spec.sql_name)} s "
                f"WHERE {self._key_join(spec, 's', 'o')})")

    def soft_delete_sql(self, spec: TableSpec, keys: str | None = None) -> str:
        """Mark (``:ts``) the active ODS rows whose key is not in staging (or the key scan); never removed."""
        d = self.quote(ETL_DELETED)
        return (f"UPDATE {self.qualified('ods', spec.sql_name)} AS o SET {d} = :ts WHERE o.{d} IS NULL AND NOT EXISTS "
                f"(SELECT 1 FROM {self.qualified('stg', keys or spec.sql_name)} s "
                f"WHERE {self._key_join(spec, 's', 'o')})")

    def revive_sql(self, spec: TableSpec, keys: str | None = None) -> str:
        """Rows marked deleted whose key is back in the source (in staging, or in the key scan)."""
        d = self.quote(ETL_DELETED)
        return (f"UPDATE {self.qualified('ods', spec.sql_name)} AS o SET {d} = NULL WHERE o.{d} IS NOT NULL AND EXISTS "
                f"(SELECT 1 FROM {self.qualified('stg', keys or spec.sql_name)} s "
                f"WHERE {self._key_join(spec, 's', 'o')})")

    # -- merge ------------------------------------------------------------------------------------------------
    def _key_join(self, spec: TableSpec, left: str, right: str) -> str:
        return " AND ".join(f"{left}.{self.quote(k)} = {right}.{self.quote(k)}" for k in spec.primary_key)

    def count_changes_sql(self, spec: TableSpec) -> str:
        """New keys and changed rows of staging, in one join (the MERGE's own join, counted first)."""
        key = self.quote(spec.primary_key[0])
        h = self.quote(HASHDIFF)
        return (f"SELECT COUNT(*) FILTER (WHERE o.{key} IS NULL), "
                f"COUNT(*) FILTER (WHERE o.{key} IS NOT NULL AND o.{h} <> s.{h})\n"
                f"FROM {self.qualified('stg', spec.sql_name)} s\n"
                f"LEFT JOIN {self.qualified('ods', spec.sql_name)} o ON {self._key_join(spec, 'o', 's')}")

    def merge_sql(self, spec: TableSpec) -> str:
        """MERGE on the primary key; a matched row is updated only when its hashdiff changed.

        ``:batch`` is bound to the batch key, stored in ``etl_batch``.
        """
        q = self.quote
        pk = set(spec.primary_key)
        data_cols = [c.sql_name for c in spec.stored_columns] + [HASHDIFF, TS_SOURCE, LOAD_TS]
        sets = ",\n        ".join(f"{q(c)} = s.{q(c)}" for c in data_cols if c not in pk)
        sets += f",\n        {q(ETL_BATCH)} = :batch"
        ins_cols = ", ".join(q(c) for c in [*data_cols, ETL_BATCH])
        ins_vals = ", ".join([*(f"s.{q(c)}" for c in data_cols), ":batch"])
        return (
            f"MERGE INTO {self.qualified('ods', spec.sql_name)} AS o\n"
            f"USING {self.qualified('stg', spec.sql_name)} AS s\n"
            f"    ON {self._key_join(spec, 'o', 's')}\n"
            f"WHEN MATCHED AND o.{q(HASHDIFF)} <> s.{q(HASHDIFF)} THEN\n"
            f"    UPDATE SET\n        {sets}\n"
            f"WHEN NOT MATCHED THEN\n"
            f"    INSERT ({ins_cols})\n    VALUES ({ins_vals})"
        )

    def merge(self, conn: Connection, spec: TableSpec, batch: str, staged: int) -> MergeCounts:
        """Nothing staged: nothing to read.  Else one counting join, then the MERGE (checked against it)."""
        if staged == 0:
            return MergeCounts(staged=0, inserted=0, updated=0)
        row = conn.fetchone(self.count_changes_sql(spec))
        inserted, updated = (int(row[0] or 0), int(row[1] or 0)) if row else (0, 0)
        if inserted + updated == 0:
            return MergeCounts(staged=staged, inserted=0, updated=0)
        affected = conn.execute(self.merge_sql(spec), {"batch": batch})
        if affected >= 0 and affected != inserted + updated:
            raise TargetError(
                f"table {spec.table_name}: MERGE touched {affected} rows but {inserted} new and {updated} changed "
                "were counted; rolled back (is another process writing to the ODS table?)"
            )
        return MergeCounts(staged=staged, inserted=inserted, updated=updated)
