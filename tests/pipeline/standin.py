"""The OpenEdge stand-in of tests/pipeline/test_sql_width.py and test_out_of_range_dates.py: a SQLite file read over
the SQLite ODBC driver (dynamically typed, so a VARCHAR(5) holds 8 characters and a DATE holds '12000-01-01', as a
Progress database does), a DuckDB ODS, and the real ``cbm-etl`` command run on them."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import configure, unavailable

from cbm_luigi.destinations import open_target
from cbm_luigi.tasks.context import clear_caches, settings


def sqlite_odbc_driver() -> str:
    try:
        import pyodbc
    except ImportError as exc:
        unavailable(f"pyodbc cannot load unixODBC: {exc}")
    for name in ("SQLite3", "SQLite3 ODBC Driver"):
        if name in pyodbc.drivers():
            return name
    unavailable(f"SQLite3 ODBC driver not installed (installed: {pyodbc.drivers()}); apt-get install libsqliteodbc")
    return ""


@dataclass
class StandIn:
    """One stand-in site: the SQLite source file, the DuckDB ODS, the folder the commands run in."""

    root: Path
    source: Path

    def cbm(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        """The real command in a subprocess, with this test's CBM_* environment (as an operator runs it)."""
        return subprocess.run(["cbm-etl", *args], cwd=self.root, env=dict(os.environ), capture_output=True,
                              text=True, timeout=timeout, check=False)

    def source_sql(self, *statements: str, rows: Sequence[tuple[Any, ...]] = (), insert: str = "") -> None:
        with sqlite3.connect(self.source) as c:
            for s in statements:
                c.execute(s)
            if rows:
                c.executemany(insert, rows)

    def fetch(self, sql: str) -> list[tuple[Any, ...]]:
        clear_caches()
        return [tuple(r) for r in open_target(settings().target).fetchall(sql)]

    def extract_log(self, table: str, batch: str) -> list[str | None]:
        """ErrorMessage of the successful extract rows of (table, batch) in etl.ETL_Log."""
        rows = self.fetch('SELECT "ErrorMessage" FROM etl."ETL_Log" WHERE "TableName" = \'' + table + "' AND "
                          f"\"Batch\" = '{batch}' AND \"StepName\" = 'extract' AND \"Status\" = 'success'")
        return [r[0] for r in rows]


def sqlite_odbc_standin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StandIn:
    driver = sqlite_odbc_driver()
    db = tmp_path / "erp.sqlite"
    sqlite3.connect(db).close()
    configure(monkeypatch, source=f"DRIVER={{{driver}}};Database={db}", flavor="sqlite", schema="main",
              target=f"duckdb:///{tmp_path / 'cbm_ods.duckdb'}")
    monkeypatch.setenv("CBM_RETRY_ATTEMPTS", "1")
    monkeypatch.setenv("CBM_RETRY_DELAY", "0")
    monkeypatch.setenv("CBM_NIGHT_REPORT", "0")
    return StandIn(tmp_path, db)
