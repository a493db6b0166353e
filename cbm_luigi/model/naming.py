"""SQL-safe names for Progress tables and columns.

Progress allows ``-``, ``#``, ``$``, ``%`` and ``&`` in names (``gencod-v``, ``order-line``); SQL Server and
most tools do not like them.  Every source identifier is kept in its original form for the SELECT (double
quoted by the source flavour) and aliased to a SQL-safe name used everywhere downstream.

Rules (deterministic, documented in docs/ARCHITECTURE.md):

* every character outside ``[A-Za-z0-9_]`` becomes ``_``; a name starting with a digit gets a ``c_`` prefix;
* names are compared case-insensitively (SQL Server and DuckDB are case-insensitive);
* when two source names give the same safe name, or a safe name equals a reserved technical column
  (``hashdiff``, ``ts_source``, ``load_ts``), names are assigned in source order (ordinal position): a name
  that is already safe keeps it first, the others get ``_2``, ``_3``... and the clash is reported.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_UNSAFE = re.compile(r"[^A-Za-z0-9_]")
RESERVED_TECHNICAL = frozenset({"hashdiff", "ts_source", "load_ts"})


def quote_ident(ident: str) -> str:
    """ANSI double-quoted identifier (embedded quotes doubled): Progress, PostgreSQL, DuckDB, SQLite."""
    return '"' + ident.replace('"', '""') + '"'


def sql_safe(name: str) -> str:
    """Return the SQL-safe form of one source name (no clash handling)."""
    if not name:
        raise ValueError("an empty name cannot be made SQL-safe")
    safe = _UNSAFE.sub("_", name)
    if safe[0].isdigit():
        safe = "c_" + safe
    return safe


@dataclass(frozen=True)
class NameClash:
    """A source name that could not keep its natural safe name."""

    source_name: str
    natural: str
    assigned: str

    def describe(self) -> str:
        return f"{self.source_name!r} would be {self.natural!r}, which is taken; named {self.assigned!r}"


def assign_safe_names(
    source_names: Sequence[str], reserved: Iterable[str] = RESERVED_TECHNICAL
) -> tuple[dict[str, str], list[NameClash]]:
    """Map each source name (in source order) to a unique SQL-safe name.

    Returns the mapping and the clashes that were resolved, for the caller to report.
    """
    taken = {r.lower() for r in reserved}
    result: dict[str, str] = {}
    clashes: list[NameClash] = []
    # Names that are already safe claim their name first, so `gencod_v` keeps it even if `gencod-v` comes first.
    order = sorted(range(len(source_names)), key=lambda i: (sql_safe(source_names[i]) != source_names[i], i))
    for i in order:
        name = source_names[i]
        natural = sql_safe(name)
        candidate, n = natural, 1
        while candidate.lower() in taken:
            n += 1
            candidate = f"{natural}_{n}"
        taken.add(candidate.lower())
        result[name] = candidate
        if candidate != natural:
            clashes.append(NameClash(name, natural, candidate))
    return {name: result[name] for name in source_names}, clashes


def match_name(wanted: str, candidates: Iterable[tuple[str, str]]) -> str | None:
    """Find ``wanted`` among ``(source_name, sql_name)`` pairs, case-insensitively, in either form.

    Returns the source name, or None.  An operator may type ``Order-Line`` or ``order_line``.
    """
    w = wanted.strip().lower()
    for source_name, sql_name in candidates:
        if w in (source_name.lower(), sql_name.lower()):
            return source_name
    return None
