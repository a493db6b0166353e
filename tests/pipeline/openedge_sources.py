"""Stand-in sources for the OpenEdge specifics (extent fields, DATETIME-TZ): a small SQLite file or a PostgreSQL
schema, the table registered through the real commands, the real ``cbm-etl`` in a subprocess."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cbm_luigi.destinations import open_target
from cbm_luigi.store.schema import ETL_COLUMNS
from cbm_luigi.tasks.context import clear_caches, settings


def sqlite_source(path: Path, ddl: str, rows: Sequence[Sequence[Any]], table: str = "article") -> str:
    """A SQLite file holding one table (``ddl`` its column list); returns its CBM_SOURCE."""
    with sqlite3.connect(path) as c:
        c.execute(f'CREATE TABLE "{table}" ({ddl})')
        if rows:
            c.executemany(f'INSERT INTO "{table}" VALUES ({", ".join("?" * len(rows[0]))})', rows)
    return f"sqlite:///{path}"


def sqlite_exec(source: str, sql: str, params: Sequence[Any] = ()) -> None:
    with sqlite3.connect(source[len("sqlite:///"):]) as c:
        c.execute(sql, tuple(params))


def set_column(table: str, column: str, **values: Any) -> None:
    """An operator's edit of config.ETL_Columns (Extent, LogicalType), e.g. set_column("article", "qty", Extent=3)."""
    target = open_target(settings().target)
    d = target.dialect
    sets = ", ".join(f"{d.quote(k)} = :{k}" for k in values)
    with target.begin() as conn:
        conn.execute(f"UPDATE {d.qualified(ETL_COLUMNS.schema, ETL_COLUMNS.name)} SET {sets} "
                     f"WHERE {d.quote('TableName')} = :t AND {d.quote('ColumnName')} = :c",
                     {**values, "t": table, "c": column})
    clear_caches()


def ods(sql_table: str, columns: Sequence[str], order_by: str) -> list[tuple[Any, ...]]:
    target = open_target(settings().target)
    d = target.dialect
    return [tuple(r) for r in target.fetchall(
        f"SELECT {', '.join(d.quote(c) for c in columns)} FROM {d.qualified('ods', sql_table)} "
        f"ORDER BY {d.quote(order_by)}")]


def ods_column_names(sql_table: str) -> list[str]:
    target = open_target(settings().target)
    with target.begin() as conn:
        return [c.lower() for c in target.existing_columns(conn, "ods", sql_table)]


def cbm(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real command, with this test's CBM_* environment (the in-process connections released first, so that
    a DuckDB file is free for the child)."""
    target = open_target(settings().target)
    target.dispose()
    open_target.cache_clear()
    clear_caches()
    env = {**os.environ, "CBM_NIGHT_REPORT": "0", "CBM_RETRY_ATTEMPTS": "1", "CBM_RETRY_DELAY": "0"}
    return subprocess.run(["cbm-etl", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
                          check=False)
