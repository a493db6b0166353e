"""Table and column specifications, and the metadata tables that hold them.

Reads ``config.ETL_Tables`` / ``config.ETL_Columns`` into frozen :class:`TableSpec` / :class:`ColumnSpec`,
registers tables, and merges a source catalog into ``config.ETL_Columns`` without clobbering what a person
edited (``IsExcluded``, ``Notes``).  The DDL of every metadata table is described here once, neutrally
(:data:`METADATA_TABLES`), and rendered by each destination dialect.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from cbm_luigi.errors import MetadataError
from cbm_luigi.naming import assign_safe_names, match_name

if TYPE_CHECKING:
    from cbm_luigi.destinations.base import Target

log = logging.getLogger(__name__)

# Logical types: what a source column holds, independent of any database.  Flavours map catalog types to
# these; dialects map these to DDL; transform maps them to Arrow.
STRING, INTEGER, BIGINT, DECIMAL, FLOAT, BOOLEAN, DATE, TIMESTAMP, TIMESTAMP_TZ, BINARY = (
    "string", "integer", "bigint", "decimal", "float", "boolean", "date", "timestamp", "timestamp_tz", "binary",
)
LOGICAL_TYPES = (STRING, INTEGER, BIGINT, DECIMAL, FLOAT, BOOLEAN, DATE, TIMESTAMP, TIMESTAMP_TZ, BINARY)
PRIORITIES = ("critical", "high", "normal")
PRECISIONS = ("date", "datetime")
_LOOKBACK = re.compile(r"^\s*(\d+)\s*([dhm])\s*$", re.I)


def parse_lookback(text: str | None) -> timedelta:
    """``'1d'``, ``'12h'``, ``'30m'``, ``'0d'`` -> timedelta.  Empty means no lookback."""
    if text is None or not str(text).strip():
        return timedelta(0)
    m = _LOOKBACK.match(str(text))
    if not m:
        raise MetadataError(f"LookbackInterval {text!r} is not valid: use a number and d, h or m (e.g. 1d, 12h, 30m)")
    n, unit = int(m.group(1)), m.group(2).lower()
    return {"d": timedelta(days=n), "h": timedelta(hours=n), "m": timedelta(minutes=n)}[unit]


@dataclass(frozen=True)
class ColumnSpec:
    """One source column as registered in config.ETL_Columns."""

    column_name: str  # source form, e.g. gencod-v
    sql_name: str  # SQL-safe form, e.g. gencod_v
    logical_type: str
    source_type: str = ""
    width: int | None = None  # character length / Progress SQL width
    precision: int | None = None
    scale: int | None = None
    nullable: bool = True
    position: int = 0
    extent: int = 0  # Progress array extent (0 = scalar); extents arrive as ';'-joined text
    is_excluded: bool = False
    notes: str | None = None


@dataclass(frozen=True)
class TableSpec:
    """One table as registered in config.ETL_Tables, with its columns (watermark read separately)."""

    table_name: str  # source form, e.g. order-line
    sql_name: str  # SQL-safe form, e.g. order_line
    destination_table: str  # e.g. ods.order_line (informational; the ODS schema is always ods)
    primary_key: tuple[str, ...]  # SQL-safe column names
    has_timestamps: bool
    date_modif_col: str | None  # SQL-safe column name
    date_modif_precision: str
    is_dimension: bool = False
    is_fact: bool = False
    lookback: str = "0d"
    filter_clause: str | None = None
    priority: str = "normal"
    is_active: bool = True
    sla_hours: float = 24.0
    notes: str | None = None
    columns: tuple[ColumnSpec, ...] = field(default_factory=tuple)
    #: soft-delete ODS rows whose key is missing from a full extract (etl_deleted_ts), unless more than
    #: delete_guard_pct % of the active rows would go: a partial read must not look like a mass delete
    delete_detection: bool = False
    delete_guard_pct: float = 10.0

    @property
    def loaded_columns(self) -> tuple[ColumnSpec, ...]:
        """Columns that are extracted and loaded (not excluded), in source order."""
        return tuple(c for c in self.columns if not c.is_excluded)

    @property
    def business_columns(self) -> tuple[str, ...]:
        """SQL names of the hashed business columns."""
        return tuple(c.sql_name for c in self.loaded_columns)

    @property
    def is_incremental_capable(self) -> bool:
        """False when the table has no timestamps: it is then always extracted in full."""
        return self.has_timestamps and self.date_modif_col is not None

    def column(self, sql_name: str) -> ColumnSpec:
        for c in self.columns:
            if c.sql_name == sql_name:
                return c
        raise MetadataError(f"table {self.table_name}: no column {sql_name!r}")


# --- neutral description of the metadata tables ----------------------------------------------------------------


@dataclass(frozen=True)
class MetaColumn:
    name: str
    logical_type: str
    width: int | None = None
    nullable: bool = True
    precision: int | None = None
    scale: int | None = None


@dataclass(frozen=True)
class MetaTable:
    schema: str
    name: str
    columns: tuple[MetaColumn, ...]
    primary_key: tuple[str, ...] = ()


def _c(name: str, t: str, width: int | None = None, nullable: bool = True, **kw: Any) -> MetaColumn:
    return MetaColumn(name, t, width, nullable, **kw)


ETL_TABLES = MetaTable(
    "config", "ETL_Tables",
    (
        _c("TableName", STRING, 128, False), _c("SqlName", STRING, 128, False),
        _c("DestinationTable", STRING, 256, False), _c("PrimaryKeyCols", STRING, 1000, False),
        _c("HasTimestamps", BOOLEAN, nullable=False), _c("DateModifCol", STRING, 128),
        _c("DateModifPrecision", STRING, 10), _c("IsDimension", BOOLEAN, nullable=False),
        _c("IsFact", BOOLEAN, nullable=False), _c("LookbackInterval", STRING, 20),
        _c("FilterClause", STRING, 4000), _c("LastSuccessTs", TIMESTAMP), _c("Notes", STRING, 4000),
        _c("PriorityTier", STRING, 10), _c("IsActive", BOOLEAN, nullable=False), _c("SLAHours", FLOAT),
        _c("DeleteDetection", BOOLEAN), _c("DeleteGuardPct", FLOAT),
        _c("LastProfilingTs", TIMESTAMP), _c("CreatedTs", TIMESTAMP), _c("UpdatedTs", TIMESTAMP),
    ),
    ("TableName",),
)
ETL_COLUMNS = MetaTable(
    "config", "ETL_Columns",
    (
        _c("TableName", STRING, 128, False), _c("ColumnName", STRING, 128, False), _c("SqlName", STRING, 128, False),
        _c("SourceExpression", STRING, 600), _c("DataType", STRING, 64), _c("LogicalType", STRING, 20),
        _c("CharMaxLength", INTEGER), _c("NumericPrecision", INTEGER), _c("NumericScale", INTEGER),
        _c("IsNullable", BOOLEAN), _c("OrdinalPosition", INTEGER), _c("Extent", INTEGER),
        _c("IsExcluded", BOOLEAN, nullable=False), _c("Notes", STRING, 4000), _c("IsInSource", BOOLEAN),
        _c("FirstSeenTs", TIMESTAMP), _c("LastSyncTs", TIMESTAMP),
    ),
    ("TableName", "ColumnName"),
)
ETL_DEPENDENCIES = MetaTable(
    "config", "ETL_Dependencies",
    (_c("TableName", STRING, 128, False), _c("DependsOn", STRING, 128, False), _c("IsActive", BOOLEAN, nullable=False)),
    ("TableName", "DependsOn"),
)
ETL_LOG = MetaTable(
    "etl", "ETL_Log",
    (
        _c("LogId", STRING, 36, False), _c("RunId", STRING, 36, False), _c("TableName", STRING, 128, False),
        _c("Batch", STRING, 64), _c("Mode", STRING, 12), _c("StepName", STRING, 32, False),
        _c("Status", STRING, 16, False), _c("RowsProcessed", BIGINT), _c("RowsInserted", BIGINT),
        _c("RowsUpdated", BIGINT), _c("RowsUnchanged", BIGINT), _c("RowsDeleted", BIGINT),
        _c("DurationSeconds", FLOAT),
        _c("ErrorMessage", STRING, 4000), _c("LogTs", TIMESTAMP, nullable=False),
    ),
    ("LogId",),
)
ETL_MARKERS = MetaTable(
    "etl", "ETL_Markers",
    (
        _c("MarkerId", STRING, 300, False), _c("TableName", STRING, 128, False), _c("Batch", STRING, 64, False),
        _c("Mode", STRING, 12, False), _c("RunId", STRING, 36), _c("CompletedTs", TIMESTAMP, nullable=False),
    ),
    ("MarkerId",),
)
ETL_STAGING_STATE = MetaTable(
    "etl", "ETL_StagingState",
    (
        _c("TableName", STRING, 128, False), _c("Batch", STRING, 64, False), _c("Mode", STRING, 12, False),
        _c("RowsStaged", BIGINT), _c("SourceClockTs", TIMESTAMP), _c("RunId", STRING, 36),
        _c("LoadedTs", TIMESTAMP, nullable=False),
    ),
    ("TableName",),
)
ETL_ALERTS = MetaTable(
    "etl", "ETL_Alerts",
    (
        _c("AlertId", STRING, 36, False), _c("AlertType", STRING, 32, False), _c("Severity", STRING, 16, False),
        _c("TableName", STRING, 128), _c("RunId", STRING, 36), _c("Channel", STRING, 32, False),
        _c("Title", STRING, 400), _c("Message", STRING, 4000), _c("Delivered", BOOLEAN),
        _c("DeliveryNote", STRING, 400), _c("SentTs", TIMESTAMP, nullable=False),
    ),
    ("AlertId",),
)
VALIDATION_LOG = MetaTable(
    "etl", "Validation_Log",
    (
        _c("ValidationId", STRING, 36, False), _c("RunId", STRING, 36), _c("TableName", STRING, 128, False),
        _c("SourceRows", BIGINT), _c("TargetRows", BIGINT), _c("MissingInTarget", BIGINT),
        _c("ExtraInTarget", BIGINT), _c("ContentMismatches", BIGINT), _c("Status", STRING, 16, False),
        _c("Details", STRING, 4000), _c("DurationSeconds", FLOAT), _c("ValidatedTs", TIMESTAMP, nullable=False),
    ),
    ("ValidationId",),
)
DATA_QUALITY_LOG = MetaTable(
    "etl", "DataQuality_Log",
    (
        _c("CheckId", STRING, 36, False), _c("RunId", STRING, 36), _c("TableName", STRING, 128, False),
        _c("Batch", STRING, 64), _c("RuleName", STRING, 128, False), _c("RuleType", STRING, 32, False),
        _c("ColumnName", STRING, 128), _c("Severity", STRING, 16, False), _c("Passed", BOOLEAN, nullable=False),
        _c("FailedRows", BIGINT), _c("Details", STRING, 4000), _c("CheckedTs", TIMESTAMP, nullable=False),
    ),
    ("CheckId",),
)
METADATA_TABLES: tuple[MetaTable, ...] = (
    ETL_TABLES, ETL_COLUMNS, ETL_DEPENDENCIES, ETL_LOG, ETL_MARKERS, ETL_STAGING_STATE, ETL_ALERTS,
    VALIDATION_LOG, DATA_QUALITY_LOG,
)
SCHEMAS = ("config", "etl", "stg", "ods")


@dataclass(frozen=True)
class CatalogColumn:
    """A column as the source catalog describes it (input of :func:`sync_columns`)."""

    column_name: str
    source_type: str
    logical_type: str
    width: int | None
    precision: int | None
    scale: int | None
    nullable: bool
    position: int
    extent: int = 0


@dataclass(frozen=True)
class SyncReport:
    table_name: str
    added: tuple[str, ...]
    updated: tuple[str, ...]
    missing_in_source: tuple[str, ...]
    clashes: tuple[str, ...]

    def describe(self) -> str:
        parts = [f"{self.table_name}: {len(self.added)} column(s) added, {len(self.updated)} updated"]
        if self.missing_in_source:
            parts.append(f"no longer in source (kept): {', '.join(self.missing_in_source)}")
        if self.clashes:
            parts.append("name clashes: " + "; ".join(self.clashes))
        return "; ".join(parts)


def _wider(catalog: int | None, current: int | None) -> int | None:
    if catalog is None or current is None:
        return catalog
    return max(catalog, current)


def _truthy(v: Any) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("1", "true", "yes", "y", "t")
    return bool(v)


class MetadataStore:
    """Reads and writes the config tables through a :class:`~cbm_luigi.destinations.base.Target`."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.d = target.dialect

    # -- reading ------------------------------------------------------------------------------------------------
    def _t(self, meta: MetaTable) -> str:
        return self.d.qualified(meta.schema, meta.name)

    def table_names(self, active_only: bool = False) -> list[str]:
        q = self.d.quote
        sql = f"SELECT {q('TableName')}, {q('IsActive')} FROM {self._t(ETL_TABLES)} ORDER BY {q('TableName')}"
        rows = self.target.fetchall(sql)
        return [r[0] for r in rows if not active_only or _truthy(r[1])]

    def resolve_table(self, name: str) -> str:
        """Return the registered TableName for ``name`` in source or SQL-safe form, case-insensitive."""
        q = self.d.quote
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
        table = self.resolve_table(name)
        q = self.d.quote
        cols = [c.name for c in ETL_TABLES.columns]
        row = self.target.fetchone(
            f"SELECT {', '.join(q(c) for c in cols)} FROM {self._t(ETL_TABLES)} WHERE {q('TableName')} = :t",
            {"t": table},
        )
        assert row is not None
        r = dict(zip(cols, row, strict=True))
        columns = self.column_specs(table)
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
            r["Notes"], _truthy(r["IsDimension"]), _truthy(r["IsFact"])
        )
        if priority not in PRIORITIES:
            raise MetadataError(f"table {table}: PriorityTier {priority!r} must be one of {', '.join(PRIORITIES)}")
        lookback = str(r["LookbackInterval"] or "0d")
        parse_lookback(lookback)
        return TableSpec(
            table_name=table,
            sql_name=str(r["SqlName"]),
            destination_table=str(r["DestinationTable"]),
            primary_key=pk,
            has_timestamps=_truthy(r["HasTimestamps"]),
            date_modif_col=dmc_sql,
            date_modif_precision=precision,
            is_dimension=_truthy(r["IsDimension"]),
            is_fact=_truthy(r["IsFact"]),
            lookback=lookback,
            filter_clause=(str(r["FilterClause"]).strip() or None) if r["FilterClause"] else None,
            priority=priority,
            is_active=_truthy(r["IsActive"]),
            sla_hours=float(r["SLAHours"]) if r["SLAHours"] is not None else 24.0,
            delete_detection=_truthy(r["DeleteDetection"]) if r["DeleteDetection"] is not None else False,
            delete_guard_pct=float(r["DeleteGuardPct"]) if r["DeleteGuardPct"] is not None else 10.0,
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
                scale=r["NumericScale"], nullable=_truthy(r["IsNullable"]) if r["IsNullable"] is not None else True,
                position=int(r["OrdinalPosition"] or 0), extent=int(r["Extent"] or 0),
                # A column gone from the source is no longer extracted (its ODS column is kept).
                is_excluded=_truthy(r["IsExcluded"]) or (r["IsInSource"] is not None and not _truthy(r["IsInSource"])),
                notes=r["Notes"],
            ))
        return tuple(out)

    def watermark(self, table: str) -> datetime | None:
        q = self.d.quote
        row = self.target.fetchone(
            f"SELECT {q('LastSuccessTs')} FROM {self._t(ETL_TABLES)} WHERE {q('TableName')} = :t", {"t": table}
        )
        return _as_datetime(row[0]) if row else None

    def dependencies(self) -> list[tuple[str, str]]:
        q = self.d.quote
        rows = self.target.fetchall(
            f"SELECT {q('TableName')}, {q('DependsOn')}, {q('IsActive')} FROM {self._t(ETL_DEPENDENCIES)}"
        )
        return [(r[0], r[1]) for r in rows if _truthy(r[2])]

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
                    "p": _wider(c.precision, prev.precision if prev else None), "sc": c.scale, "n": c.nullable,
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
        from cbm_luigi.naming import sql_safe

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
            "UpdatedTs": now,
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
        return {r[0] for r in rows if r[1] is None or _truthy(r[1])}

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
        return _as_datetime(row[0]) if row else None


def default_priority(notes: Any, is_dimension: bool, is_fact: bool) -> str:
    """The reference's rule when PriorityTier is not set: Notes keywords, then dimension/fact flags."""
    text = str(notes or "").lower()
    if "critical" in text or "critique" in text:
        return "critical"
    if "high" in text or "haute" in text or is_dimension:
        return "high"
    return "normal"


def _as_datetime(v: Any) -> datetime | None:
    if v is None:
        return None
    if isinstance(v, datetime):
        return v.replace(tzinfo=None)
    return datetime.fromisoformat(str(v))
