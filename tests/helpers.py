"""Test helpers: register the demo tables, read source and ODS rows as comparable values, find the cbm-etl and
luigi commands, probe a lock file."""

from __future__ import annotations

import datetime as dt
import shutil
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

from cbm_luigi.commands.setup import sync_tables
from cbm_luigi.demo import data as demo_data
from cbm_luigi.destinations import open_target
from cbm_luigi.model.specs import TableSpec
from cbm_luigi.store.config_tables import MetadataStore
from cbm_luigi.store.schema import init_db
from cbm_luigi.tasks.context import clear_caches, settings


def register_demo_tables(tables: list[str] | None = None) -> MetadataStore:
    """init-db, sync-columns and add-table for the demo tables, with the demo's own configuration."""
    target = open_target(settings().target)
    init_db(target)
    names = tables or [t.name for t in demo_data.DEMO_TABLES]
    sync_tables(names)
    store = MetadataStore(target)
    for name in names:
        t = demo_data.demo_table(name)
        store.register_table(
            t.name, primary_key=list(t.primary_key), date_modif_col=t.date_modif_col,
            precision=t.date_modif_precision, lookback=t.lookback, priority=t.priority,
            is_dimension=t.is_dimension, is_fact=not t.is_dimension,
        )
    clear_caches()
    return store


def norm(v: Any) -> Any:
    """A value in a form equal across databases and drivers."""
    if v is None:
        return None
    if isinstance(v, bool):
        return v
    if isinstance(v, Decimal):
        return format(v.normalize(), "f") if v != 0 else "0"
    if isinstance(v, float):
        return format(Decimal(repr(v)).normalize(), "f") if v != 0 else "0"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, dt.datetime):
        return v.replace(tzinfo=None).isoformat(sep=" ")
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, str):
        return v.rstrip(" ")  # char(n) columns come back space-padded from PostgreSQL
    return v


def spec_of(table: str) -> TableSpec:
    return MetadataStore(open_target(settings().target)).table_spec(table)


def ods_rows(table: str) -> set[tuple[Any, ...]]:
    spec = spec_of(table)
    target = open_target(settings().target)
    d = target.dialect
    cols = ", ".join(d.quote(c.sql_name) for c in spec.loaded_columns)
    return {tuple(norm(v) for v in r) for r in target.fetchall(f"SELECT {cols} FROM {d.qualified('ods', spec.sql_name)}")}


def pg_source_rows(pg_source: Any, table: str) -> set[tuple[Any, ...]]:
    spec = spec_of(table)
    cols = ", ".join('"' + c.column_name + '"' for c in spec.loaded_columns)
    rows = pg_source.execute(f'SELECT {cols} FROM "{pg_source.schema}"."{table}"')
    return {tuple(norm(v) for v in r) for r in rows}


def log_rows(run_id: str | None = None) -> list[dict[str, Any]]:
    target = open_target(settings().target)
    d = target.dialect
    names = ["RunId", "TableName", "Batch", "Mode", "StepName", "Status", "RowsProcessed", "RowsInserted",
             "RowsUpdated", "RowsUnchanged", "RowsDeleted", "ErrorMessage", "LogTs"]
    sql = f"SELECT {', '.join(d.quote(n) for n in names)} FROM {d.qualified('etl', 'ETL_Log')}"
    rows = [dict(zip(names, r, strict=True)) for r in target.fetchall(sql)]
    rows.sort(key=lambda r: r["LogTs"])
    return [r for r in rows if run_id is None or r["RunId"] == run_id]


def cbm_etl_command() -> list[str]:
    """The installed console script (``pip install -e .``), else the same entry point through this Python."""
    script = Path(sys.executable).with_name("cbm-etl")
    if script.exists():
        return [str(script)]
    found = shutil.which("cbm-etl")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from cbm_luigi.cli import main; sys.exit(main())"]


def luigi_executable() -> str:
    """The ``luigi`` command installed beside this Python (or on the PATH)."""
    beside = Path(sys.executable).with_name("luigi")
    found = str(beside) if beside.exists() else shutil.which("luigi")
    assert found, "the `luigi` executable is not installed"
    return found


def os_lock_free(path: Path) -> bool:
    """Whether another open file description can take the lock now (flock is per description)."""
    import fcntl  # POSIX only: the tests that probe a lock skip on Windows

    with open(path, "a+", encoding="utf-8") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        return True
