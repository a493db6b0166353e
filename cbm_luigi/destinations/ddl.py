"""Neutral DDL pieces: a column to create (:class:`ColumnDef`) and the rule of schema drift (:func:`needs_widening`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any


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
        return int(size) > int(precision) and int(wanted_scale or 0) == int(scale or 0)
    if base in ("nvarchar", "varchar", "nchar", "char") and char_length not in (None, -1):
        if not have.startswith(("nvarchar", "varchar", "nchar", "char", "character")):
            return False
        return size is not None and (size.lower() == "max" or (size.isdigit() and int(size) > int(char_length)))
    if base == "bigint":
        return have in _INTEGER_NAMES
    return False
