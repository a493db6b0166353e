"""A column whose type family changed in the source (integer -> text, date -> timestamp, text -> number...):
the family of a destination type name, and the type that holds both an existing column's values and the new
ones (the lattice of ``TypeChangePolicy = 'widen'``, docs/OPERATIONS.md "A column changed type in the source").

Type names are read as each database spells them: the DDL the dialects write (``INTEGER``, ``NUMERIC(18,4)``,
``nvarchar(max)``, ``datetime2(3)``...) and what information_schema / sys.columns report for existing columns
(``integer``, ``timestamp without time zone``, ``DECIMAL(18,4)``, ``datetimeoffset``...).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from cbm_luigi.destinations.types import TypeMapping
from cbm_luigi.model.types import FLOAT, TIMESTAMP

INTEGER_FAMILY, DECIMAL_FAMILY, FLOAT_FAMILY, BOOLEAN_FAMILY = "integer", "decimal", "floating point", "boolean"
DATE_FAMILY, TIMESTAMP_FAMILY, TIMESTAMP_TZ_FAMILY = "date", "timestamp", "timestamp with time zone"
TEXT_FAMILY, BINARY_FAMILY = "text", "binary"

#: decimal digits of each integer type (information_schema gives the precision of integers in bits)
_INTEGER_DIGITS = {"tinyint": 3, "smallint": 5, "int2": 5, "int": 10, "integer": 10, "int4": 10, "mediumint": 10,
                   "bigint": 19, "int8": 19, "hugeint": 39}
_FAMILIES: dict[str, str] = {
    **dict.fromkeys(_INTEGER_DIGITS, INTEGER_FAMILY),
    **dict.fromkeys(("decimal", "numeric", "money", "smallmoney"), DECIMAL_FAMILY),
    **dict.fromkeys(("real", "float", "float4", "float8", "double", "double precision"), FLOAT_FAMILY),
    **dict.fromkeys(("boolean", "bool", "bit"), BOOLEAN_FAMILY),
    "date": DATE_FAMILY,
    **dict.fromkeys(("timestamp", "timestamp without time zone", "datetime", "datetime2", "smalldatetime",
                     "timestamp_s", "timestamp_ms", "timestamp_ns"), TIMESTAMP_FAMILY),
    **dict.fromkeys(("timestamp with time zone", "timestamptz", "datetimeoffset"), TIMESTAMP_TZ_FAMILY),
    **dict.fromkeys(("char", "character", "character varying", "varchar", "nvarchar", "nchar", "text", "ntext",
                     "string", "clob", "bpchar"), TEXT_FAMILY),
    **dict.fromkeys(("bytea", "blob", "varbinary", "binary", "image"), BINARY_FAMILY),
}
_NAME = re.compile(r"^\s*([A-Za-z_ 0-9]+?)\s*(?:\(\s*(\w+)\s*(?:,\s*(\d+)\s*)?\))?\s*$")
_NUMBERS = {INTEGER_FAMILY, DECIMAL_FAMILY, FLOAT_FAMILY}
_DATES = {DATE_FAMILY, TIMESTAMP_FAMILY}


def type_family(type_name: Any) -> str | None:
    """The family of a type name in any dialect's spelling, or None for a type the product never creates
    (``time``, ``uuid``, ``json``...: such a column was made by hand, and is left alone)."""
    m = _NAME.match(str(type_name or ""))
    if not m:
        return None
    return _FAMILIES.get(re.sub(r"\s+", " ", m.group(1).strip().lower()))


def _base(type_name: str) -> str:
    m = _NAME.match(type_name)
    return re.sub(r"\s+", " ", m.group(1).strip().lower()) if m else type_name.lower()


def _decimal_digits(type_name: str, precision: Any, scale: Any) -> tuple[int, int] | None:
    """(digits before the point, scale) of a decimal: from the reported precision and scale, else the name."""
    if precision is not None:
        p, s = int(precision), int(scale or 0)
        return p - s, s
    m = _NAME.match(type_name)
    if m and m.group(2) and m.group(2).isdigit():
        p, s = int(m.group(2)), int(m.group(3) or 0)
        return p - s, s
    return None


@dataclass(frozen=True)
class TypeChange:
    """A column whose type family differs between the existing table and config.ETL_Columns."""

    schema: str
    table: str
    column: str
    old_type: str
    old_family: str
    new_type: str
    new_family: str
    #: the type that holds both (None: none that every database converts to safely; see :func:`widened_type`)
    widened_to: str | None = None
    #: True when the column must be altered to ``widened_to`` (False: it already holds both)
    alter: bool = False
    #: why no type holds both (``widened_to`` None)
    reason: str = ""

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.table}.{self.column}"

    def describe(self) -> str:
        return f"{self.old_type} ({self.old_family}) -> {self.new_type} ({self.new_family})"

    def warning(self) -> str:
        """What the log and the run log say of a type change the widen policy let through."""
        if self.alter:
            return (f"{self.qualified} changed type in the source ({self.describe()}): altered to "
                    f"{self.widened_to}, which holds both (existing values converted; TypeChangePolicy widen)")
        return (f"{self.qualified} changed type in the source ({self.describe()}): kept as {self.old_type}, "
                f"which holds both (new values converted on merge; TypeChangePolicy widen)")


def widened_type(d: TypeMapping, old_family: str, old: tuple[Any, ...], new_family: str, new_type: str
                 ) -> tuple[str | None, str]:
    """The type that holds an existing column's values (``old``: name, type, char length, precision, scale) and
    those of ``new_type``, and why when there is none.

    The lattice: integer + decimal -> DECIMAL with the digits of both (beyond the dialect's precision: text);
    any number + floating point -> the dialect's DOUBLE; date + timestamp -> TIMESTAMP; text with anything, and
    every other pair (a boolean with a number or a date, a date with a number...) -> unbounded text.  No type
    for: a timestamp with time zone and one without, or a date (the zone of the naive values is not known, and
    each database would assume another), binary and anything else (SQL Server reads bytes as UTF-16 text).
    """
    pair = {old_family, new_family}
    old_type = str(old[1])
    if BINARY_FAMILY in pair:
        return None, ("binary values have no text or number form that every database converts the same way "
                      "(SQL Server reads the bytes as UTF-16 text)")
    if TIMESTAMP_TZ_FAMILY in pair and pair & _DATES:
        return None, ("the time zone of the values without one is not known (each database would assume "
                      "another: the session's, or UTC)")
    if pair <= _NUMBERS and FLOAT_FAMILY in pair:
        return d.column_type(FLOAT), ""
    if pair == {INTEGER_FAMILY, DECIMAL_FAMILY}:
        int_type, dec = (old_type, None) if old_family == INTEGER_FAMILY else (new_type, old)
        digits = _INTEGER_DIGITS.get(_base(int_type), 19)
        sides = _decimal_digits(old_type, old[3], old[4]) if dec is not None else _decimal_digits(new_type, None,
                                                                                                   None)
        if sides is not None:
            before, scale = max(sides[0], digits), sides[1]
            if before + scale <= d.max_decimal_precision:
                return d.decimal_type(before + scale, scale), ""
        return d.string_type(None), ""
    if pair == _DATES:
        return d.column_type(TIMESTAMP), ""
    return d.string_type(None), ""


def holds(old: tuple[Any, ...], old_family: str, wanted: str) -> bool:
    """True when the existing column (``old``: name, type, char length, precision, scale) is already of the
    ``wanted`` widened type or wider (same family; an unbounded text; a decimal with as many digits)."""
    if type_family(wanted) != old_family:
        return False
    if old_family == TEXT_FAMILY:
        return old[2] in (None, -1)
    if old_family == DECIMAL_FAMILY:
        have = _decimal_digits(str(old[1]), old[3], old[4])
        want = _decimal_digits(wanted, None, None)
        return have is not None and want is not None and have[0] >= want[0] and have[1] >= want[1]
    return True
