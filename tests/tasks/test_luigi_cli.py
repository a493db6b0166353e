"""The ``luigi`` command lines the README and the docs show, run for real: the ``luigi`` executable with
``--local-scheduler``, the demo SQLite source and a fresh DuckDB file, checking the exit code (luigi.cfg's
``[retcode]``) and what reached the ODS.  Also: every task parameter works bare on that command line (the run key
is ``--batch-id``: a bare ``--batch`` is refused by Luigi), and failures say what failed."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from conftest import configure
from helpers import log_rows, luigi_executable, norm, ods_rows, register_demo_tables, spec_of

from cbm_luigi.demo import data as demo_data
from cbm_luigi.destinations import open_target
from cbm_luigi.store.markers import marker_exists
from cbm_luigi.store.staging_state import staging_state
from cbm_luigi.tasks.context import clear_caches, settings

REPO = Path(__file__).resolve().parents[2]
TABLES = [t.name for t in demo_data.DEMO_TABLES]
CRITICAL = sorted(t.name for t in demo_data.DEMO_TABLES if t.priority == "critical")

# Every `luigi --module cbm_luigi.tasks ...` line of the docs, as run below (without --local-scheduler).
DOCUMENTED = {
    "LoadTable --table produit --mode full",
    "LoadAll --mode incremental --batch-id 2026-11-25T14",
    "LoadAll --batch-id 2026-11-25",
    "LoadAll --mode incremental --continue-on-error",
    "LoadAll --mode incremental --workers 4",
    "LoadAll --mode incremental",
}
DOC_FILES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "cbm_luigi").rglob("*.py"))]


def luigi(args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``luigi --module cbm_luigi.tasks <args> --local-scheduler`` with this test's CBM_* settings."""
    env = {**os.environ, "LUIGI_CONFIG_PATH": str(REPO / "luigi.cfg")}
    return subprocess.run([luigi_executable(), "--module", "cbm_luigi.tasks", *args.split(), "--local-scheduler"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def sqlite_rows(path: Path, table: str) -> set[tuple[Any, ...]]:
    """The source rows as the ODS holds them (SQLite keeps decimals as REAL and booleans as 0/1)."""
    spec = spec_of(table)
    cols = ", ".join('"' + c.column_name + '"' for c in spec.loaded_columns)
    with sqlite3.connect(path) as con:
        rows = con.execute(f'SELECT {cols} FROM "{table}"').fetchall()

    def as_loaded(v: Any, col: Any) -> Any:
        if v is None:
            return None
        if col.logical_type == "boolean":
            return bool(v)
        if col.logical_type == "decimal":
            return Decimal(str(v)).quantize(Decimal(1).scaleb(-(col.scale or 0)))
        return v

    return {tuple(norm(as_loaded(v, c)) for v, c in zip(r, spec.loaded_columns, strict=True)) for r in rows}


def in_sync(db: Path, table: str) -> bool:
    clear_caches()
    return ods_rows(table) == sqlite_rows(db, table)


def flows(batch: str) -> dict[str, dict[str, Any]]:
    """Per table, its flow_complete row of ``batch`` in etl.ETL_Log."""
    return {r["TableName"]: r for r in log_rows() if r["Batch"] == batch and r["StepName"] == "flow_complete"
            and r["Status"] == "success"}


@pytest.fixture
def demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The demo SQLite source, registered in a fresh DuckDB ODS; yields the source file."""
    db = tmp_path / "erp.sqlite"
    demo_data.create_sqlite_source(db)
    configure(monkeypatch, source=f"sqlite:///{db}", flavor="sqlite", schema="PUB",
              target=f"duckdb:///{tmp_path / 'ods.duckdb'}")
    monkeypatch.setenv("CBM_BATCH_GRANULARITY", "day")
    register_demo_tables()
    return db


CHECK_PARAMS = r"""
import json, luigi.cmdline, luigi.retcodes
from luigi.task_register import Register

def flags():
    return {"--" + (p if bare else f"{task}_{p}").replace("_", "-") for task, bare, p, _ in Register.get_all_params()}

before = flags()  # what Luigi's first argument pass knows (our module is not loaded yet)
import cbm_luigi.tasks  # noqa: E402
after = flags()
ours = {name: cls for name, cls in ((n, Register.get_task_cls(n)) for n in Register.task_names())
        if cls.__module__.startswith("cbm_luigi.tasks")}
out = {}
for name, cls in sorted(ours.items()):
    for param, _ in cls.get_params():
        flag = "--" + param.replace("_", "-")
        clashes = sorted(f for f in before | after if f == flag or f.startswith(flag))
        out.setdefault(name, {})[param] = clashes
print(json.dumps(out))
"""


def test_every_task_parameter_works_bare_on_the_luigi_command_line():
    """No parameter's bare flag equals or abbreviates one of Luigi's own options (``--batch`` did:
    ``--batch-email-*``), checked in a fresh interpreter with what the ``luigi`` command imports."""
    r = subprocess.run([sys.executable, "-c", CHECK_PARAMS], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "LUIGI_CONFIG_PATH": str(REPO / "luigi.cfg")})
    assert r.returncode == 0, r.stderr[-3000:]
    params: dict[str, dict[str, list[str]]] = json.loads(r.stdout.strip().splitlines()[-1])
    assert {t: sorted(p) for t, p in params.items()} == {
        "CriticalGate": ["batch_id", "mode"],
        "ExtractParquet": ["after_critical", "batch_id", "mode", "table"],
        "ExtractPart": ["after_critical", "batch_id", "mode", "part", "parts", "table"],
        "LoadAll": ["batch_id", "continue_on_error", "mode"],
        "LoadStaging": ["after_critical", "batch_id", "mode", "table"],
        "LoadTable": ["batch_id", "mode", "table"],
        "MergeOds": ["after_critical", "batch_id", "mode", "table"],
        "PartitionBounds": ["after_critical", "batch_id", "mode", "parts", "table"],
        "TableStep": ["after_critical", "batch_id", "mode", "table"],
    }
    clashes = {f"{t}.{p}": c for t, ps in params.items() for p, c in ps.items() if c}
    assert clashes == {}


def test_the_documented_luigi_commands_are_the_ones_tested():
    found = set()
    for path in DOC_FILES:
        for m in re.finditer(r"luigi --module cbm_luigi\.tasks ((?:(?!`|\n).)*)", path.read_text(encoding="utf-8")):
            args = m.group(1).split("#")[0].replace("--local-scheduler", " ").split()
            if "..." not in args and "<task_args>" not in args:
                found.add(" ".join(args))
    assert found == DOCUMENTED


def test_documented_commands_load_the_ods(demo, tmp_path):
    # README: one table, full, the default batch (today)
    r = luigi("LoadTable --table produit --mode full", tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert in_sync(demo, "produit")
    today = {row["Batch"] for row in log_rows()}
    assert len(today) == 1 and re.fullmatch(r"\d{4}-\d\d-\d\d", next(iter(today)))
    today_batch = next(iter(today))

    # README: the run key as a bare option; every active table (never loaded: read in full)
    r = luigi("LoadAll --batch-id 2026-11-25", tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert sorted(flows("2026-11-25")) == sorted(TABLES)
    assert all(in_sync(demo, t) for t in TABLES)

    # README: an incremental batch after a day of source changes loads exactly those changes
    changes = demo_data.apply_sqlite_changes(demo, change_ts=datetime.now().replace(microsecond=0))
    r = luigi("LoadAll --mode incremental --batch-id 2026-11-25T14", tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    done = flows("2026-11-25T14")
    assert sorted(done) == sorted(TABLES)
    for t in TABLES:
        assert (done[t]["RowsInserted"], done[t]["RowsUpdated"]) == (changes.inserted(t), changes.updated(t)), t
        assert in_sync(demo, t), t
    assert changes.total_inserted + changes.total_updated > 0
    # the same batch again runs nothing
    logged = len(log_rows())
    r = luigi("LoadAll --mode incremental --batch-id 2026-11-25T14", tmp_path)
    assert r.returncode == 0 and "complete ones were encountered" in r.stderr, r.stderr[-3000:]
    assert "ran successfully" not in r.stderr and len(log_rows()) == logged

    # one table, full, a named batch: that table reloaded, the others left as they were
    more = demo_data.apply_sqlite_changes(demo, seed=8, change_ts=datetime.now().replace(microsecond=0))
    r = luigi("LoadTable --table produit --mode full --batch-id 2026-11-26", tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert list(flows("2026-11-26")) == ["produit"]
    assert flows("2026-11-26")["produit"]["Mode"] == "full"
    assert flows("2026-11-26")["produit"]["RowsUpdated"] == more.updated("produit")
    assert in_sync(demo, "produit")
    behind = [t for t in TABLES if more.inserted(t) + more.updated(t) and t != "produit"]
    assert behind and not any(in_sync(demo, t) for t in behind)

    # wrappers.py: --continue-on-error, today's batch; a critical table fails, the others load anyway
    with sqlite3.connect(demo) as con:
        con.execute('ALTER TABLE "client" RENAME TO "client_away"')
    r = luigi("LoadAll --mode incremental --continue-on-error", tmp_path)
    assert r.returncode == 30, r.stderr[-3000:]  # [retcode] task_failed
    failed = {row["TableName"]: row["StepName"] for row in log_rows()
              if row["Batch"] == today_batch and row["Status"] == "failed"}
    assert failed == {"client": "extract"}
    assert sorted(flows(today_batch)) == sorted(set(TABLES) - {"client"})  # produit from the first command
    assert "client" in CRITICAL

    # OPERATIONS.md / wrappers.py: four workers, today's batch: only the failed table is left to run
    with sqlite3.connect(demo) as con:
        con.execute('ALTER TABLE "client_away" RENAME TO "client"')
    r = luigi("LoadAll --mode incremental --workers 4", tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert sorted(flows(today_batch)) == sorted(TABLES)
    assert all(in_sync(demo, t) for t in TABLES)

    # README (SQL Server) / SQLSERVER.md: today's batch is complete: nothing runs
    r = luigi("LoadAll --mode incremental", tmp_path)
    assert r.returncode == 0 and "complete ones were encountered" in r.stderr, r.stderr[-3000:]
    assert "ran successfully" not in r.stderr


def test_each_step_runs_on_its_own_with_bare_options(demo, tmp_path):
    target = open_target(settings().target)
    r = luigi("LoadStaging --table fournis --mode full --batch-id steps", tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    state = staging_state(target, "fournis")
    assert state is not None and state.batch == "steps"
    assert not marker_exists(target, "fournis", "steps")  # staged, not merged
    r = luigi("MergeOds --table fournis --mode full --batch-id steps", tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert marker_exists(target, "fournis", "steps") and in_sync(demo, "fournis")

    # the first step of a gated table waits for the critical tier
    r = luigi("ExtractParquet --table hisprixa --mode full --batch-id steps --after-critical", tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert all(marker_exists(target, t, "steps") for t in CRITICAL)
    assert not marker_exists(target, "hisprixa", "steps")
    assert list((Path(settings().cache_dir) / "hisprixa").glob("steps__full/_manifest.json"))
    r = luigi("CriticalGate --mode full --batch-id steps", tmp_path)
    assert r.returncode == 0 and "complete ones were encountered" in r.stderr, r.stderr[-3000:]


def test_failures_name_the_cause_and_set_the_exit_code(demo, tmp_path):
    r = luigi("LoadTable --table nosuch --mode full --batch-id f1", tmp_path)
    assert r.returncode == 35, r.stderr[-3000:]  # [retcode] scheduling_error
    assert "table 'nosuch' is not registered in config.ETL_Tables" in r.stderr
    # why the run key is --batch-id: Luigi refuses a bare --batch before it loads our module
    r = luigi("LoadAll --batch 2026-11-25", tmp_path)
    assert r.returncode == 2
    assert "ambiguous option: --batch could match --batch-email-" in r.stderr
    r = luigi("LoadAll --batch-id bad!key", tmp_path)
    assert r.returncode == 40, r.stderr[-3000:]  # [retcode] unhandled_exception
    assert "batch 'bad!key' is not valid" in r.stderr
    r = luigi("LoadTable --table produit --mode sometimes", tmp_path)
    assert r.returncode == 40, r.stderr[-3000:]
    assert "sometimes is not a valid choice" in r.stderr
    assert log_rows() == []  # nothing ran


def test_a_load_never_imports_pandas(demo, tmp_path, monkeypatch):
    # pyarrow imports pandas at its first conversion of Python values (0.2-0.3 s a process) unless
    # cbm_luigi.model.arrow answers its question first: the luigi process and its extract child, import by import
    monkeypatch.setenv("PYTHONPROFILEIMPORTTIME", "1")
    r = luigi("LoadTable --table produit --mode full", tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert in_sync(demo, "produit")
    imported = {m.group(1) for m in re.finditer(r"^import time:.*\|\s*(\S+)$", r.stderr, re.M)}
    assert {"pyarrow", "cbm_luigi.tasks", "arrow_odbc"} <= imported, sorted(imported)[:50]
    # (a refused import prints its line too: pandas itself imported means its submodules imported)
    assert not {m for m in imported if m.startswith("pandas.")}


PANDAS_ON_DEMAND = r"""
import sys
import cbm_luigi.tasks  # noqa: F401  (holds pandas off)
import pyarrow as pa, pyarrow.compute as pc
assert pc.sum(pc.equal(pa.array([1, 2, None]), 1)).as_py() == 1 and pa.scalar("é").as_py() == "é"
assert "pandas" not in sys.modules, "converted Python values imported pandas"
import pandas as pd  # whoever imports it later: pyarrow's pandas integration as without the hold-off
assert pa.array(pd.Series([1, 2, None], dtype="Int64")).type == pa.int64()
stamps = pd.Series(pd.to_datetime(["2026-12-06 10:00:00.123456789"]).tz_localize("UTC"))
assert pa.array(stamps).type == pa.timestamp("ns", tz="UTC")
frame = pa.table({"a": [1, 2], "b": ["x", None]}).to_pandas()
back = pa.Table.from_pandas(frame, preserve_index=False)
assert back.column("a").to_pylist() == [1, 2] and back.column("b").to_pylist() == ["x", None], back
assert pa.array(pd.Series([1.5, None])).to_pylist() == [1.5, None]
print("ok")
"""


def test_pyarrow_still_reaches_pandas_when_asked_for_it():
    r = subprocess.run([sys.executable, "-c", PANDAS_ON_DEMAND], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-3000:]
