"""The config tables: ``config.ETL_Tables``, ``config.ETL_Columns``, ``config.ETL_Dependencies``.

Reads them into frozen specs and plans, registers tables, moves the watermark, and merges a source catalog into
``config.ETL_Columns`` without clobbering what a person edited (``IsExcluded``, ``Notes``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from cbm_luigi.destinations.client import Connection, Target
from cbm_luigi.errors import MetadataError
from cbm_luigi.model.meta import MetaTable
from cbm_luigi.model.naming import assign_safe_names, match_name, sql_safe
from cbm_luigi.model.plan import Plan, build_plan
from cbm_luigi.model.specs import (
    OUT_OF_RANGE_POLICIES,
    PRECISIONS,
    PRIORITIES,
    TYPE_CHANGE_POLICIES,
    WIDTH_POLICIES,
    CatalogColumn,
    ColumnSpec,
    SyncReport,
    TableSpec,
    check_partitions,
    default_priority,
    parse_lookback,
    stored_columns,
)
from cbm_luigi.model.types import STRING
from cbm_luigi.model.values import naive_datetime, truthy
from cbm_luigi.store.schema import (
    ETL_COLUMNS,
    ETL_DEPENDENCIES,
    ETL_TABLES,
    has_metadata,
    needs_metadata,
    require_metadata,
)

log = logging.getLogger(__name__)


def _wider(catalog: int | None, current: int | None) -> int | None:
    if catalog is None or current is None:
        return catalog
    return max(catalog, current)


class MetadataStore:
    """Reads and writes the config tables through a :class:`~cbm_luigi.destinations.dialect.Target`."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.d = target.dialect

    # -- reading ------------------------------------------------------------------------------------------------
    def _t(self, meta: MetaTable) -> str:
        return self.d.qualified(meta.schema, meta.name)

    def table_names(self, active_only: bool = False) -> list[str]:
        q = self.d.quote
        sql = f"SELECT {q('TableName')}, {q('IsActive')} FROM {self._t(ETL_TABLES)} ORDER BY {q('TableName')}"
        with needs_metadata(self.target):
            rows = self.target.fetchall(sql)
        return [r[0] for r in rows if not active_only or truthy(r[1])]

    def resolve_table(self, name: str) -> str:
        """Return the registered TableName for ``name`` in source or SQL-safe form, case-insensitive."""
        q = self.d.quote
        with needs_metadata(self.target):
            rows = self.target.fetchall(f"SELECT {q('TableName')}, {q('SqlName')} FROM {self._t(ETL_TABLES)}")
        found = match_name(name, [(r[0], r[1]) for r in rows])
        if found is None:
            known = ", ".join(sorted(r[0] for r in rows)) or "none"
            raise MetadataError(
                f"table {name!r} is not registered in config.ETL_Tables (registered: {known}); "
                f"run: cbm-etl sync-columns {name} && cbm-etl add-table {name} --pk ..."
            )
        return found

    def table_spec(self, name: str) -> TableSpec:
        """Load one table's spec (columns included).  Raises MetadataError with the fix when incomplete."""
        q = self.d.quote
        cols = [c.name for c in ETL_TABLES.columns]
        with self.target.reading():  # the three reads in one transaction (one opening of a DuckDB file)
            table = self.resolve_table(name)
            row = self.target.fetchone(
                f"SELECT {', '.join(q(c) for c in cols)} FROM {self._t(ETL_TABLES)} WHERE {q('TableName')} = :t",
                {"t": table},
            )
            columns = self.column_specs(table)
        assert row is not None
        r = dict(zip(cols, row, strict=True))
        if not columns:
            raise MetadataError(
                f"table {table}: no columns in config.ETL_Columns; run: cbm-etl sync-columns {table}"
            )
        pairs = [(c.column_name, c.sql_name) for c in columns]
        by_source = {c.column_name: c for c in columns}

        def resolve_col(name: str, what: str) -> str:
            found = match_name(name, pairs)
            if found is None:
                raise MetadataError(
                    f"table {table}: {what} {name!r} is not a column of the table "
                    f"(columns: {', '.join(c.column_name for c in columns)}); fix config.ETL_Tables"
                )
            return by_source[found].sql_name

        pk_text = str(r["PrimaryKeyCols"] or "").strip()
        if not pk_text:
            raise MetadataError(f"table {table}: PrimaryKeyCols is empty; set it (one column or 'a,b')")
        pk = tuple(resolve_col(p.strip(), "primary-key column") for p in pk_text.split(",") if p.strip())
        for p in pk:
            col = next(c for c in columns if c.sql_name == p)
            if col.is_excluded:
                raise MetadataError(f"table {table}: primary-key column {col.column_name!r} is excluded; include it")
        dmc = str(r["DateModifCol"] or "").strip() or None
        dmc_sql = resolve_col(dmc, "DateModifCol") if dmc else None
        precision = str(r["DateModifPrecision"] or "datetime").strip().lower()
        if precision not in PRECISIONS:
            raise MetadataError(f"table {table}: DateModifPrecision {precision!r} must be 'date' or 'datetime'")
        priority = str(r["PriorityTier"] or "").strip().lower() or default_priority(
            r["Notes"], truthy(r["IsDimension"]), truthy(r["IsFact"])
        )
        if priority not in PRIORITIES:
            raise MetadataError(f"table {table}: PriorityTier {priority!r} must be one of {', '.join(PRIORITIES)}")
        lookback = str(r["LookbackInterval"] or "0d")
        try:
            parse_lookback(lookback)
        except MetadataError as exc:  # the spec knows the table: name it and where the setting is
            raise MetadataError(f"table {table}: config.ETL_Tables.{exc}") from exc

        def policy(column: str, allowed: tuple[str, ...], option: str) -> str:
            value = str(r[column] or "").strip().lower() or allowed[0]
            if value not in allowed:
                raise MetadataError(
                    f"table {table}: config.ETL_Tables.{column} {r[column]!r} must be one of {', '.join(allowed)} "
                    f"(empty: {allowed[0]}); fix it, or run cbm-etl add-table {table} ... {option} {allowed[0]}")
            return value

        delete_detection = truthy(r["DeleteDetection"]) if r["DeleteDetection"] is not None else False
        delete_scan = truthy(r["DeleteScan"])
        if delete_scan and not delete_detection:
            raise MetadataError(f"table {table}: config.ETL_Tables.DeleteScan = 1 needs DeleteDetection = 1 (the "
                                f"key scan feeds delete detection): set both, or run cbm-etl add-table {table} ... "
                                "--detect-deletes --delete-scan")
        stored_columns(table, columns, truthy(r["SplitExtents"]))  # extent elements, offsets: no name clash
        partitions = int(r["ExtractPartitions"]) if r["ExtractPartitions"] is not None else 1
        check_partitions(table, partitions, next(c for c in columns if c.sql_name == pk[0]),
                         option="config.ETL_Tables.ExtractPartitions")
        return TableSpec(
            table_name=table,
            sql_name=str(r["SqlName"]),
            destination_table=str(r["DestinationTable"]),
            primary_key=pk,
            has_timestamps=truthy(r["HasTimestamps"]),
            date_modif_col=dmc_sql,
            date_modif_precision=precision,
            is_dimension=truthy(r["IsDimension"]),
            is_fact=truthy(r["IsFact"]),
            lookback=lookback,
            filter_clause=(str(r["FilterClause"]).strip() or None) if r["FilterClause"] else None,
            priority=priority,
            is_active=truthy(r["IsActive"]),
            sla_hours=float(r["SLAHours"]) if r["SLAHours"] is not None else 24.0,
            delete_detection=delete_detection,
            delete_guard_pct=float(r["DeleteGuardPct"]) if r["DeleteGuardPct"] is not None else 10.0,
            delete_scan=delete_scan,
            keep_history=truthy(r["KeepHistory"]),
            type_change_policy=policy("TypeChangePolicy", TYPE_CHANGE_POLICIES, "--type-change"),
            width_policy=policy("WidthPolicy", WIDTH_POLICIES, "--width-policy"),
            out_of_range_dates=policy("OutOfRangeDates", OUT_OF_RANGE_POLICIES, "--out-of-range-dates"),
            split_extents=truthy(r["SplitExtents"]),
            extract_partitions=partitions,
            notes=r["Notes"],
            columns=columns,
        )

    def column_specs(self, table: str) -> tuple[ColumnSpec, ...]:
        q = self.d.quote
        names = ["ColumnName", "SqlName", "LogicalType", "DataType", "CharMaxLength", "NumericPrecision",
                 "NumericScale", "IsNullable", "OrdinalPosition", "Extent", "IsExcluded", "Notes", "IsInSource"]
        rows = self.target.fetchall(
            f"SELECT {', '.join(q(n) for n in names)} FROM {self._t(ETL_COLUMNS)} "
            f"WHERE {q('TableName')} = :t ORDER BY {q('OrdinalPosition')}, {q('ColumnName')}",
            {"t": table},
        )
        out = []
        for row in rows:
            r = dict(zip(names, row, strict=True))
            out.append(ColumnSpec(
                column_name=r["ColumnName"], sql_name=r["SqlName"], logical_type=r["LogicalType"] or STRING,
                source_type=r["DataType"] or "", width=r["CharMaxLength"], precision=r["NumericPrecision"],
                scale=r["NumericScale"], nullable=truthy(r["IsNullable"]) if r["IsNullable"] is not None else True,
                position=int(r["OrdinalPosition"] or 0), extent=int(r["Extent"] or 0),
                # A column gone from the source is no longer extracted (its ODS column is kept).
                is_excluded=truthy(r["IsExcluded"]) or (r["IsInSource"] is not None and not truthy(r["IsInSource"])),
                notes=r["Notes"],
            ))
        return tuple(out)

    def watermark(self, table: str) -> datetime | None:
        q = self.d.quote
        row = self.target.fetchone(
            f"SELECT {q('LastSuccessTs')} FROM {self._t(ETL_TABLES)} WHERE {q('TableName')} = :t", {"t": table}
        )
        return naive_datetime(row[0]) if row else None

    def dependencies(self) -> list[tuple[str, str]]:
        q = self.d.quote
        rows = self.target.fetchall(
            f"SELECT {q('TableName')}, {q('DependsOn')}, {q('IsActive')} FROM {self._t(ETL_DEPENDENCIES)}"
        )
        return [(r[0], r[1]) for r in rows if truthy(r[2])]

    # -- writing ------------------------------------------------------------------------------------------------
    def sync_columns(self, table_name: str, catalog: Sequence[CatalogColumn], source_expression: Any) -> SyncReport:
        """Merge the source catalog into config.ETL_Columns.

        New columns are added; catalog facts of known columns are refreshed; IsExcluded and Notes are never
        overwritten; columns gone from the source are kept with IsInSource = false (reported).
        ``source_expression(column_name, sql_name)`` renders the flavour's ``"col-x" AS "col_x"``.
        """
        if not catalog:
            raise MetadataError(
                f"table {table_name!r} has no columns in the source catalog: check the name and CBM_SOURCE_SCHEMA"
            )
        q = self.d.quote
        existing = {c.column_name: c for c in self.column_specs(table_name)}
        # Keep SqlNames already assigned (renaming a loaded column would break the ODS); assign the rest.
        order = [c.column_name for c in sorted(catalog, key=lambda c: c.position)]
        fixed = {n: existing[n].sql_name for n in order if n in existing}
        fresh, clash_objs = assign_safe_names([n for n in order if n not in fixed],
                                              reserved=[*fixed.values(), "hashdiff", "ts_source", "load_ts"])
        names = {**fixed, **fresh}
        now = datetime.now().replace(microsecond=0)
        added, updated = [], []
        t = self._t(ETL_COLUMNS)
        with self.target.begin() as conn:
            for c in catalog:
                # A width or precision widened by an operator (Progress does not enforce them) is kept.
                prev = existing.get(c.column_name)
                params = {
                    "t": table_name, "c": c.column_name, "s": names[c.column_name],
                    "e": source_expression(c.column_name, names[c.column_name]), "dt": c.source_type,
                    "lt": c.logical_type, "w": _wider(c.width, prev.width if prev else None),
                    "p": _wider(c.precision, prev.precision if prev else None), "n": c.nullable,
                    # a decimal the catalog declares no scale for keeps the NumericScale an operator gave it (with
                    # NumericPrecision NULL); figures from an older sync (psqlODBC's made-up 28,6) are dropped
                    "sc": c.scale if c.scale is not None or prev is None or prev.precision is not None
                    else prev.scale,
                    "pos": c.position, "x": c.extent, "now": now,
                }
                if c.column_name in existing:
                    conn.execute(
                        f"UPDATE {t} SET {q('SourceExpression')} = :e, {q('DataType')} = :dt, "
                        f"{q('LogicalType')} = :lt, {q('CharMaxLength')} = :w, {q('NumericPrecision')} = :p, "
                        f"{q('NumericScale')} = :sc, {q('IsNullable')} = :n, {q('OrdinalPosition')} = :pos, "
                        f"{q('Extent')} = :x, {q('IsInSource')} = :true, {q('LastSyncTs')} = :now "
                        f"WHERE {q('TableName')} = :t AND {q('ColumnName')} = :c",
                        {**params, "true": True},
                    )
                    updated.append(c.column_name)
                else:
                    conn.execute(
                        f"INSERT INTO {t} ({q('TableName')}, {q('ColumnName')}, {q('SqlName')}, "
                        f"{q('SourceExpression')}, {q('DataType')}, {q('LogicalType')}, {q('CharMaxLength')}, "
                        f"{q('NumericPrecision')}, {q('NumericScale')}, {q('IsNullable')}, {q('OrdinalPosition')}, "
                        f"{q('Extent')}, {q('IsExcluded')}, {q('Notes')}, {q('IsInSource')}, {q('FirstSeenTs')}, "
                        f"{q('LastSyncTs')}) VALUES (:t, :c, :s, :e, :dt, :lt, :w, :p, :sc, :n, :pos, :x, "
                        ":false, :notes, :true, :now, :now)",
                        {**params, "false": False, "true": True,
                         "notes": next((cl.describe() for cl in clash_objs if cl.source_name == c.column_name), None)},
                    )
                    added.append(c.column_name)
            gone = [n for n in existing if n not in names]
            for n in gone:
                conn.execute(
                    f"UPDATE {t} SET {q('IsInSource')} = :false, {q('LastSyncTs')} = :now "
                    f"WHERE {q('TableName')} = :t AND {q('ColumnName')} = :c",
                    {"false": False, "now": now, "t": table_name, "c": n},
                )
        report = SyncReport(table_name, tuple(added), tuple(updated), tuple(gone),
                            tuple(c.describe() for c in clash_objs))
        for cl in clash_objs:
            log.warning("table %s: %s", table_name, cl.describe())
        return report

    def register_table(
        self,
        table_name: str,
        *,
        primary_key: Sequence[str],
        date_modif_col: str | None = None,
        precision: str = "datetime",
        lookback: str = "0d",
        priority: str | None = None,
        is_dimension: bool = False,
        is_fact: bool = False,
        filter_clause: str | None = None,
        sla_hours: float = 24.0,
        notes: str | None = None,
        active: bool = True,
        delete_detection: bool = False,
        delete_guard_pct: float = 10.0,
        delete_scan: bool = False,
        keep_history: bool = False,
        type_change_policy: str = "refuse",
        width_policy: str = "refuse",
        out_of_range_dates: str = "null",
        split_extents: bool = False,
        extract_partitions: int = 1,
    ) -> TableSpec:
        """Insert or update the config.ETL_Tables row; columns must be synced first.  Returns the spec."""
        cols = self.column_specs(table_name)
        if not cols:
            raise MetadataError(
                f"table {table_name!r}: no columns in config.ETL_Columns; run: cbm-etl sync-columns {table_name}"
            )
        pairs = [(c.column_name, c.sql_name) for c in cols]
        for name, what in [*((p, "--pk column") for p in primary_key), ((date_modif_col, "--date-modif-col"))]:
            if name and match_name(name, pairs) is None:
                raise MetadataError(
                    f"table {table_name}: {what} {name!r} is not a column "
                    f"(columns: {', '.join(c.column_name for c in cols)})"
                )
        if precision not in PRECISIONS:
            raise MetadataError(f"--precision {precision!r} must be 'date' or 'datetime'")
        if priority is not None and priority not in PRIORITIES:
            raise MetadataError(f"--priority {priority!r} must be one of {', '.join(PRIORITIES)}")
        parse_lookback(lookback)
        if not 0 <= delete_guard_pct <= 100:
            raise MetadataError(f"--delete-guard-pct {delete_guard_pct} must be between 0 and 100")
        if delete_scan and not delete_detection:
            raise MetadataError(f"table {table_name}: --delete-scan needs --detect-deletes (the key scan feeds "
                                "delete detection): add --detect-deletes")
        stored_columns(table_name, cols, split_extents)  # refused before anything is written
        first_key = match_name(primary_key[0], pairs) if primary_key else None
        check_partitions(table_name, extract_partitions, next((c for c in cols if c.column_name == first_key), None),
                         option="--partitions")
        if keep_history and not is_dimension:
            raise MetadataError(f"table {table_name}: --history (SCD2 versions in hist.{sql_safe(table_name)}) is for "
                                "dimensions: add --dimension, or leave --history out")
        for value, allowed, option in ((type_change_policy, TYPE_CHANGE_POLICIES, "--type-change"),
                                       (width_policy, WIDTH_POLICIES, "--width-policy"),
                                       (out_of_range_dates, OUT_OF_RANGE_POLICIES, "--out-of-range-dates")):
            if value not in allowed:
                raise MetadataError(f"{option} {value!r} must be one of {', '.join(allowed)}")

        sql_name = sql_safe(table_name)
        q = self.d.quote
        t = self._t(ETL_TABLES)
        now = datetime.now().replace(microsecond=0)
        values = {
            "TableName": table_name, "SqlName": sql_name, "DestinationTable": f"ods.{sql_name}",
            "PrimaryKeyCols": ",".join(primary_key), "HasTimestamps": date_modif_col is not None,
            "DateModifCol": date_modif_col, "DateModifPrecision": precision, "IsDimension": is_dimension,
            "IsFact": is_fact, "LookbackInterval": lookback, "FilterClause": filter_clause,
            "Notes": notes, "PriorityTier": priority, "IsActive": active, "SLAHours": sla_hours,
            "DeleteDetection": delete_detection, "DeleteGuardPct": delete_guard_pct,
            "DeleteScan": delete_scan, "KeepHistory": keep_history, "TypeChangePolicy": type_change_policy,
            "WidthPolicy": width_policy, "OutOfRangeDates": out_of_range_dates, "SplitExtents": split_extents,
            "ExtractPartitions": extract_partitions, "UpdatedTs": now,
        }
        keys = list(values)
        with self.target.begin() as conn:
            exists = conn.fetchone(f"SELECT 1 FROM {t} WHERE {q('TableName')} = :TableName", {"TableName": table_name})
            if exists:
                sets = ", ".join(f"{q(k)} = :{k}" for k in keys if k != "TableName")
                conn.execute(f"UPDATE {t} SET {sets} WHERE {q('TableName')} = :TableName", values)
            else:
                values["CreatedTs"] = now
                keys.append("CreatedTs")
                conn.execute(
                    f"INSERT INTO {t} ({', '.join(q(k) for k in keys)}) VALUES ({', '.join(':' + k for k in keys)})",
                    values,
                )
        return self.table_spec(table_name)

    def set_dependencies(self, table: str, depends_on: Iterable[str]) -> None:
        q = self.d.quote
        t = self._t(ETL_DEPENDENCIES)
        with self.target.begin() as conn:
            conn.execute(f"DELETE FROM {t} WHERE {q('TableName')} = :t", {"t": table})
            for dep in depends_on:
                conn.execute(
                    f"INSERT INTO {t} ({q('TableName')}, {q('DependsOn')}, {q('IsActive')}) VALUES (:t, :d, :a)",
                    {"t": table, "d": dep, "a": True},
                )

    def columns_in_source(self, table: str) -> set[str]:
        """ColumnNames of the table that the last sync saw in the source (IsInSource not false)."""
        q = self.d.quote
        rows = self.target.fetchall(
            f"SELECT {q('ColumnName')}, {q('IsInSource')} FROM {self._t(ETL_COLUMNS)} WHERE {q('TableName')} = :t",
            {"t": table},
        )
        return {r[0] for r in rows if r[1] is None or truthy(r[1])}

    def exclude_columns(self, table: str, notes: dict[str, str]) -> list[str]:
        """Set IsExcluded on the given columns (ColumnName -> note appended to Notes), in one transaction.

        Primary-key and modification columns are refused (MetadataError), so a caller cannot break the load.
        """
        spec = self.table_spec(table)
        protected = {spec.column(k).column_name for k in spec.primary_key}
        if spec.date_modif_col:
            protected.add(spec.column(spec.date_modif_col).column_name)
        by_name = {c.column_name: c for c in spec.columns}
        for name in notes:
            if name not in by_name:
                raise MetadataError(f"table {spec.table_name}: no column {name!r} in config.ETL_Columns")
            if name in protected:
                raise MetadataError(
                    f"table {spec.table_name}: column {name!r} is a primary-key or modification column; "
                    "it cannot be excluded"
                )
        q = self.d.quote
        t = self._t(ETL_COLUMNS)
        with self.target.begin() as conn:
            for name, note in notes.items():
                old = by_name[name].notes
                conn.execute(
                    f"UPDATE {t} SET {q('IsExcluded')} = :x, {q('Notes')} = :n "
                    f"WHERE {q('TableName')} = :t AND {q('ColumnName')} = :c",
                    {"x": True, "n": (f"{old}; {note}" if old else note)[:4000], "t": spec.table_name, "c": name},
                )
        return list(notes)

    def set_last_profiling(self, table: str, ts: datetime) -> None:
        """Record when the table was last profiled (config.ETL_Tables.LastProfilingTs)."""
        q = self.d.quote
        with self.target.begin() as conn:
            conn.execute(
                f"UPDATE {self._t(ETL_TABLES)} SET {q('LastProfilingTs')} = :ts WHERE {q('TableName')} = :t",
                {"ts": ts, "t": table},
            )

    def last_profiling(self, table: str) -> datetime | None:
        q = self.d.quote
        row = self.target.fetchone(
            f"SELECT {q('LastProfilingTs')} FROM {self._t(ETL_TABLES)} WHERE {q('TableName')} = :t", {"t": table}
        )
        return naive_datetime(row[0]) if row else None



def read_plan_rows(target: Target) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    d = target.dialect
    q = d.quote
    tcols = ["TableName", "SqlName", "IsActive", "PriorityTier", "Notes", "IsDimension", "IsFact"]
    dcols = ["TableName", "DependsOn", "IsActive"]
    with target.reading():  # one transaction
        trows = target.fetchall(f"SELECT {', '.join(q(c) for c in tcols)} "
                                f"FROM {d.qualified(ETL_TABLES.schema, ETL_TABLES.name)}")
        drows = target.fetchall(f"SELECT {', '.join(q(c) for c in dcols)} "
                                f"FROM {d.qualified(ETL_DEPENDENCIES.schema, ETL_DEPENDENCIES.name)}")
    return ([dict(zip(tcols, r, strict=True)) for r in trows], [dict(zip(dcols, r, strict=True)) for r in drows])


def load_plan(target: Target) -> Plan:
    """Read the plan from the target's config tables: whether they exist, then two queries, in one transaction."""
    with target.reading():
        rows = read_plan_rows(target) if has_metadata(target) else None
    if rows is None:
        require_metadata(target)  # the MetadataError saying to run cbm-etl init-db
        rows = read_plan_rows(target)
    return build_plan(*rows)


def advance_watermark(conn: Connection, table: str, source_clock_ts: datetime) -> None:
    """Move ``LastSuccessTs`` to the extract's source clock, in the merge's transaction, only forward."""
    d = conn.dialect
    q = d.quote
    conn.execute(
        f"UPDATE {d.qualified(ETL_TABLES.schema, ETL_TABLES.name)} SET {q('LastSuccessTs')} = :ts "
        f"WHERE {q('TableName')} = :t AND ({q('LastSuccessTs')} IS NULL OR {q('LastSuccessTs')} < :ts)",
        {"ts": source_clock_ts, "t": table},
    )


def sla_table_rows(target: Target) -> list[tuple[Any, ...]]:
    """(TableName, PriorityTier, SLAHours, IsActive, Notes, IsDimension, IsFact) of every registered table."""
    d = target.dialect
    q = d.quote
    return target.fetchall(
        f"SELECT {q('TableName')}, {q('PriorityTier')}, {q('SLAHours')}, {q('IsActive')}, {q('Notes')}, "
        f"{q('IsDimension')}, {q('IsFact')} FROM {d.qualified(ETL_TABLES.schema, ETL_TABLES.name)} "
        f"ORDER BY {q('TableName')}"
    )


def synced_table_names(target: Target) -> set[str]:
    """TableNames that have columns in config.ETL_Columns (synced, registered or not)."""
    d = target.dialect
    with needs_metadata(target):
        rows = target.fetchall(
            f"SELECT DISTINCT {d.quote('TableName')} FROM {d.qualified(ETL_COLUMNS.schema, ETL_COLUMNS.name)}")
    return {str(r[0]) for r in rows}

