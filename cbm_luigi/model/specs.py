"""Table and column specifications, and the metadata tables that hold them.

Reads ``config.ETL_Tables`` / ``config.ETL_Columns`` into frozen :class:`TableSpec` / :class:`ColumnSpec`,
registers tables, and merges a source catalog into ``config.ETL_Columns`` without clobbering what a person
edited (``IsExcluded``, ``Notes``).  The DDL of every metadata table is described here once, neutrally
(:data:`METADATA_TABLES`), and rendered by each destination dialect.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field, replace
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from cbm_luigi.errors import MetadataError
from cbm_luigi.model.types import (
    BIGINT,
    DECIMAL,
    ETL_BATCH,
    ETL_DELETED,
    HASHDIFF,
    INTEGER,
    LOAD_TS,
    STRING,
    TIMESTAMP_TZ,
    TS_SOURCE,
)

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

PRIORITIES = ("critical", "high", "normal")
PRECISIONS = ("date", "datetime")
#: config.ETL_Tables.TypeChangePolicy: a column whose type family changed in the source (int -> text...) is
#: refused naming the column, or its ODS column widened to a type that holds both (docs/OPERATIONS.md)
TYPE_CHANGE_POLICIES = ("refuse", "widen")
#: config.ETL_Tables.WidthPolicy: a character value longer than its SQL width (Progress's "exceeding its max
#: length or precision") fails the extract naming the column, or is cut to the width (counted, logged)
WIDTH_POLICIES = ("refuse", "truncate")
#: config.ETL_Tables.OutOfRangeDates: a date outside the target's range is nulled (counted, reported with the
#: column) or fails the extract naming the column and the value
OUT_OF_RANGE_POLICIES = ("null", "refuse")
#: which active tables ``cbm-etl validate --filter`` selects (here, below the commands, so that the command line
#: offers the choices without importing the validation module)
TABLE_FILTERS = ("all", "dimensions", "facts", "critical")
MAX_LOOKBACK_DAYS = 3650
_LOOKBACK = re.compile(r"^\s*(\d+)\s*([dhm])\s*$", re.I)


def parse_lookback(text: str | None) -> timedelta:
    """``'1d'``, ``'12h'``, ``'30m'``, ``'0d'`` -> timedelta.  Empty means no lookback."""
    if text is None or not str(text).strip():
        return timedelta(0)
    m = _LOOKBACK.match(str(text))
    if not m:
        raise MetadataError(f"LookbackInterval {text!r} is not valid: use a number and d, h or m (e.g. 1d, 12h, 30m)")
    n, unit = int(m.group(1)), m.group(2).lower()
    per_day = {"d": 1, "h": 24, "m": 1440}[unit]
    if n > MAX_LOOKBACK_DAYS * per_day:  # timedelta(days=9999999) exists, but watermark - it is before year 1
        raise MetadataError(f"LookbackInterval {text!r} is too long: at most {MAX_LOOKBACK_DAYS}d (ten years); "
                            "set it to what the source may modify late (e.g. 1d), or run --mode full to reread all")
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
    #: incremental runs also read the source's keys (keys only, chunked) so that delete detection sees deletes
    delete_scan: bool = False
    #: SCD2 history in hist.<table> (valid_from / valid_to / is_current), for dimensions
    keep_history: bool = False
    type_change_policy: str = "refuse"
    width_policy: str = "refuse"
    out_of_range_dates: str = "null"
    #: extent (array) columns split into <col>_1 .. <col>_n instead of one ';'-joined text
    split_extents: bool = False
    #: a full load reads the table as this many ranges of its first key column, each over its own source
    #: connection (docs/OPERATIONS.md, "Partitioned extraction"); 1: one SELECT
    extract_partitions: int = 1

    @property
    def loaded_columns(self) -> tuple[ColumnSpec, ...]:
        """Columns that are extracted and loaded (not excluded), in source order."""
        return tuple(c for c in self.columns if not c.is_excluded)

    @cached_property
    def stored_columns(self) -> tuple[ColumnSpec, ...]:
        """The business columns of staging and the ODS, in order: :attr:`loaded_columns` as the source gives them,
        except an extent column split into ``<col>_1`` .. ``<col>_n`` (``split_extents``; text elements) or kept
        as its ``;``-joined text, and a DATETIME-TZ column followed by ``<col>_tz_offset`` (minutes east of UTC).
        Raises MetadataError naming the clash and the fix when a derived name is already taken."""
        return stored_columns(self.table_name, self.columns, self.split_extents)

    @property
    def business_columns(self) -> tuple[str, ...]:
        """SQL names of the hashed business columns (the stored ones)."""
        return tuple(c.sql_name for c in self.stored_columns)

    @property
    def is_incremental_capable(self) -> bool:
        """False when the table has no timestamps: it is then always extracted in full."""
        return self.has_timestamps and self.date_modif_col is not None

    def column(self, sql_name: str) -> ColumnSpec:
        for c in self.columns:
            if c.sql_name == sql_name:
                return c
        for c in self.stored_columns:  # an extent element (qty_2) or a DATETIME-TZ offset column
            if c.sql_name == sql_name:
                return c
        raise MetadataError(f"table {self.table_name}: no column {sql_name!r}")


#: suffix of the column holding a DATETIME-TZ value's offset from UTC, in minutes (docs/OPERATIONS.md)
TZ_OFFSET_SUFFIX = "_tz_offset"


def extent_element_name(sql_name: str, index: int) -> str:
    """The SQL name of element ``index`` (1-based) of a split extent column: ``qty`` -> ``qty_1``."""
    return f"{sql_name}_{index}"


def stored_columns(table: str, columns: tuple[ColumnSpec, ...], split_extents: bool) -> tuple[ColumnSpec, ...]:
    """See :attr:`TableSpec.stored_columns`.  Excluded columns are left out; a name clash (a derived name equal
    to another column's SqlName, or to a technical column) is refused, naming both and the fix."""
    out: list[ColumnSpec] = []
    derived: dict[str, str] = {}  # derived sql name -> source column it comes from
    for c in columns:
        if c.is_excluded:
            continue
        if c.extent > 0 and split_extents:
            for i in range(1, c.extent + 1):
                name = extent_element_name(c.sql_name, i)
                derived[name] = c.column_name
                out.append(replace(c, column_name=f"{c.column_name}[{i}]", sql_name=name, logical_type=STRING,
                                   precision=None, scale=None, nullable=True, extent=0))
        elif c.extent > 0:  # one ';'-joined text, whatever the element type
            out.append(replace(c, logical_type=STRING, precision=None, scale=None) if c.logical_type != STRING
                       else c)
        elif c.logical_type == TIMESTAMP_TZ:
            name = c.sql_name + TZ_OFFSET_SUFFIX
            derived[name] = c.column_name
            out.extend((c, ColumnSpec(column_name=c.column_name + TZ_OFFSET_SUFFIX, sql_name=name,
                                      logical_type=INTEGER, source_type="offset minutes", nullable=c.nullable,
                                      position=c.position)))
        else:
            out.append(c)
    taken = {c.sql_name.lower(): c.column_name for c in columns}
    taken.update({t: f"the technical column {t}" for t in (HASHDIFF, TS_SOURCE, LOAD_TS, ETL_BATCH, ETL_DELETED)})
    seen: set[str] = set()
    for name, origin in derived.items():
        other = taken.get(name.lower())
        if other is None and name.lower() not in seen:
            seen.add(name.lower())
            continue
        what = (f"extent element {name} of {origin}" if not name.endswith(TZ_OFFSET_SUFFIX)
                else f"the offset column {name} of the DATETIME-TZ column {origin}")
        fix = ("set another SqlName for that column in config.ETL_Columns, or exclude it (IsExcluded = 1)"
               if other is not None and not other.startswith("the technical") else "rename the source column")
        if not name.endswith(TZ_OFFSET_SUFFIX):
            fix += f", or load {origin} as one text (cbm-etl add-table {table} ... without --split-extents)"
        raise MetadataError(f"table {table}: {what} would clash with {other or 'another derived column'} "
                            f"(SQL name {name}): {fix}")
    return tuple(out)


# --- neutral description of the metadata tables ----------------------------------------------------------------


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




#: the most key ranges a partitioned extract reads (each one is a source connection while it reads)
MAX_EXTRACT_PARTITIONS = 32


def check_partitions(table: str, partitions: int, key: ColumnSpec | None, *, option: str) -> None:
    """ExtractPartitions must be 1..MAX_EXTRACT_PARTITIONS, and above 1 the first key column an integer: a
    partitioned extract splits the table into ranges of it (docs/OPERATIONS.md, "Partitioned extraction")."""
    if not 1 <= partitions <= MAX_EXTRACT_PARTITIONS:
        raise MetadataError(f"table {table}: {option} {partitions} must be between 1 (one SELECT) and "
                            f"{MAX_EXTRACT_PARTITIONS}")
    if partitions == 1 or key is None:
        return
    if key.extent or not (key.logical_type in (INTEGER, BIGINT) or (key.logical_type == DECIMAL and key.scale == 0)):
        raise MetadataError(
            f"table {table}: {option} {partitions} splits the table into ranges of its first key column, which "
            f"must be an integer; {key.column_name} is {key.source_type or key.logical_type}: put an integer key "
            f"column first (cbm-etl add-table {table} --pk <integer column>,... --partitions {partitions}), or read "
            f"it over one connection (--partitions 1)")


def default_priority(notes: Any, is_dimension: bool, is_fact: bool) -> str:
    """The reference's rule when PriorityTier is not set: Notes keywords, then dimension/fact flags."""
    text = str(notes or "").lower()
    if "critical" in text or "critique" in text:
        return "critical"
    if "high" in text or "haute" in text or is_dimension:
        return "high"
    return "normal"


