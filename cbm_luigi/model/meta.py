"""A neutral description of a metadata table (rendered as DDL by each destination dialect).
"""

from __future__ import annotations

from dataclasses import dataclass


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
