"""The sqlite flavour: the stdlib path the demo uses (``sqlite:///file``) and the SQLite ODBC driver."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from conftest import build, configure, unavailable
from helpers import norm, ods_rows, register_demo_tables, spec_of

from cbm_luigi.demo import data as demo_data
from cbm_luigi.tasks.wrappers import LoadAll

TABLES = [t.name for t in demo_data.DEMO_TABLES]


def sqlite_rows(path: Path, table: str) -> set[tuple[Any, ...]]:
    spec = spec_of(table)
    cols = ", ".join('"' + c.column_name + '"' for c in spec.loaded_columns)
    with sqlite3.connect(path) as con:
        rows = con.execute(f'SELECT {cols} FROM "{table}"').fetchall()
    def as_loaded(v: Any, col: Any) -> Any:
        # SQLite keeps DECIMAL(p,s) as REAL and booleans as 0/1: compare at the declared type
        if v is None:
            return None
        if col.logical_type == "boolean":
            return bool(v)
        if col.logical_type == "decimal":
            return Decimal(str(v)).quantize(Decimal(1).scaleb(-(col.scale or 0)))
        return v

    return {tuple(norm(as_loaded(v, c)) for v, c in zip(r, spec.loaded_columns, strict=True)) for r in rows}


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


@pytest.mark.parametrize("access", ["stdlib", pytest.param("odbc", marks=pytest.mark.odbc)])
def test_sqlite_source_full_then_incremental(access, tmp_path, monkeypatch):
    db = tmp_path / "erp.sqlite"
    demo_data.create_sqlite_source(db)
    if access == "stdlib":
        configure(monkeypatch, source=f"sqlite:///{db}", flavor="sqlite", schema="PUB",
                  target=f"duckdb:///{tmp_path / 'ods.duckdb'}")
    else:
        driver = sqlite_odbc_driver()
        configure(monkeypatch, source=f"DRIVER={{{driver}}};Database={db}", flavor="sqlite", schema="main",
                  target=f"duckdb:///{tmp_path / 'ods.duckdb'}")
    register_demo_tables()
    assert build(LoadAll(mode="full", batch_id="b1")).scheduling_succeeded
    for t in TABLES:
        assert ods_rows(t) == sqlite_rows(db, t), t
    demo_data.apply_sqlite_changes(db, change_ts=datetime.now().replace(microsecond=0))
    assert build(LoadAll(mode="incremental", batch_id="b2")).scheduling_succeeded
    for t in TABLES:
        assert ods_rows(t) == sqlite_rows(db, t), t
