"""Identifiers and types of a destination: quoting, logical type -> DDL type, the columns of staging and ODS
tables, and the rule of schema drift (:func:`needs_widening`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from cbm_luigi.errors import TargetError
from cbm_luigi.model.naming import quote_ident
from cbm_luigi.model.specs import ColumnSpec, TableSpec
from cbm_luigi.model.types import (
    BIGINT,
    BINARY,
    BOOLEAN,
    DATE,
    DECIMAL,
    ETL_BATCH,
    ETL_DELETED,
    FLOAT,
    HASHDIFF,
    INTEGER,
    LOAD_TS,
    STRING,
    TIMESTAMP,
    TIMESTAMP_TZ,
    TS_SOURCE,
    UNKNOWN_DECIMAL_SCALE,
)

if TYPE_CHECKING:
    pass


@dataclass(frozen=True)
class ColumnDef:
    """A column of a table to create: name (unquoted), DDL type, nullability."""

    name: str
    type: str
    nullable: bool = True


_DDL_TYPE = re.compile(r"^\s*([A-Za-z ]+?)\s*(?:\(\s*(\w+)\s*(?:,\s*(\d+)\s*)?\))?\s*$")


_INTEGER_NAMES = {"integer", "int", "int4", "smallint", "int2"}


def needs_widening(wanted: str, data_type: Any, char_length: Any, precision: Any, scale: Any) -> bool:
    """True when the wanted DDL type holds more than the existing column: a decimal with more digits (same
    scale), a longer bounded string (or an unbounded one), an integer that became a bigint.  Never narrows,
    never changes a type family."""
    m = _DDL_TYPE.match(wanted)
    if not m:
        return False
    base, size, wanted_scale = m.group(1).strip().lower(), m.group(2), m.group(3)
    have = str(data_type or "").strip().lower()
    if base in ("decimal", "numeric") and size and size.isdigit():
        if not have.startswith(("decimal", "numeric")) or precision is None:
            return False
        # wider when neither the digits before the point nor the scale shrink (a raised NumericScale, too:
        # merging DECIMAL(38,10) staging rows into a DECIMAL(28,6) column would round them silently)
        p, s, want_p, want_s = int(precision), int(scale or 0), int(size), int(wanted_scale or 0)
        return want_s >= s and want_p - want_s >= p - s and (want_p, want_s) != (p, s)
    if base in ("nvarchar", "varchar", "nchar", "char") and char_length not in (None, -1):
        if not have.startswith(("nvarchar", "varchar", "nchar", "char", "character")):
            return False
        return size is not None and (size.lower() == "max" or (size.isdigit() and int(size) > int(char_length)))
    if base == "bigint":
        return have in _INTEGER_NAMES
    return False


def decimal_would_round(wanted: str, data_type: Any, precision: Any, scale: Any) -> bool:
    """True when the wanted DDL type is a decimal with more decimals than the existing decimal column, and the
    column cannot be widened to it (:func:`needs_widening`): merged into it, the values would be rounded."""
    m = _DDL_TYPE.match(wanted)
    if not m or m.group(1).strip().lower() not in ("decimal", "numeric") or scale is None:
        return False
    if not str(data_type or "").strip().lower().startswith(("decimal", "numeric")):
        return False
    return int(m.group(3) or 0) > int(scale) and not needs_widening(wanted, data_type, None, precision, scale)


class TypeMapping:
    """How a dialect quotes names and spells the logical types."""

    #: how messages name the database
    title = "SQL"

    max_decimal_precision = 38

    # -- identifiers ------------------------------------------------------------------------------------------
    def quote(self, ident: str) -> str:
        if not ident:
            raise ValueError("empty identifier")
        return quote_ident(ident)

    def qualified(self, schema: str, name: str) -> str:
        return f"{self.quote(schema)}.{self.quote(name)}"

    # -- types ------------------------------------------------------------------------------------------------
    #: DDL type of each logical type that takes no length or precision (strings and decimals are built below)
    type_names: ClassVar[dict[str, str]] = {
        INTEGER: "INTEGER", BIGINT: "BIGINT", FLOAT: "DOUBLE PRECISION", BOOLEAN: "BOOLEAN", DATE: "DATE",
        TIMESTAMP: "TIMESTAMP", TIMESTAMP_TZ: "TIMESTAMP WITH TIME ZONE", BINARY: "BYTEA",
    }

    def column_type(self, logical: str, width: int | None = None, precision: int | None = None,
                    scale: int | None = None) -> str:
        if logical == STRING:
            return self.string_type(width)
        if logical == DECIMAL:
            return self.decimal_type(*self.decimal_precision(precision, scale))
        try:
            return self.type_names[logical]
        except KeyError:
            raise TargetError(f"no {self.title} type for logical type {logical!r}") from None

    def string_type(self, width: int | None) -> str:
        """Unbounded by default: no truncation, whatever the catalog says (Progress does not enforce widths)."""
        return "TEXT"

    def decimal_type(self, precision: int, scale: int) -> str:
        return f"DECIMAL({precision},{scale})"

    def decimal_precision(self, precision: int | None, scale: int | None) -> tuple[int, int]:
        """Progress decimals default to 50 digits with scale 10: cap the precision, keep the scale."""
        p = precision or self.max_decimal_precision
        # neither declared (an unconstrained numeric): the scale the extract reads it with (model/types.py)
        s = scale if scale is not None else (UNKNOWN_DECIMAL_SCALE if precision is None else 0)
        p = min(max(p, s, 1), self.max_decimal_precision)
        return p, min(s, p)

    def spec_column_type(self, col: ColumnSpec) -> str:
        return self.column_type(col.logical_type, col.width, col.precision, col.scale)

    def hashdiff_type(self) -> str:
        return "CHAR(64)"

    def technical_columns(self, with_batch: bool) -> list[ColumnDef]:
        ts = self.column_type(TIMESTAMP)
        cols = [ColumnDef(HASHDIFF, self.hashdiff_type(), False), ColumnDef(TS_SOURCE, ts),
                ColumnDef(LOAD_TS, ts, False)]
        if with_batch:
            cols.append(ColumnDef(ETL_BATCH, self.column_type(STRING, 64), True))
        return cols

    def staging_columns(self, spec: TableSpec) -> list[ColumnDef]:
        return [ColumnDef(c.sql_name, self.spec_column_type(c)) for c in spec.stored_columns] + \
            self.technical_columns(with_batch=False)

    def ods_columns(self, spec: TableSpec) -> list[ColumnDef]:
        pk = set(spec.primary_key)
        cols = [ColumnDef(c.sql_name, self.spec_column_type(c), c.sql_name not in pk) for c in spec.stored_columns]
        cols += self.technical_columns(with_batch=True)
        if spec.delete_detection:
            cols.append(ColumnDef(ETL_DELETED, self.column_type(TIMESTAMP), True))
        return cols
