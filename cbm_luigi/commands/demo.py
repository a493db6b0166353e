"""``cbm-etl demo``: the whole job on the embedded default, end to end, on a fresh machine.

Creates a Progress-like SQLite source (five tables in a ``PUB`` namespace, hyphenated and reserved-word columns,
composite keys), a DuckDB ODS file, registers the tables, runs a full load, changes source rows, runs an
incremental load and prints what was inserted, updated and left unchanged, checked against what was changed.
Everything lives under ``data/demo/`` (``--dir`` to change: ``erp.sqlite``, ``cbm_demo.duckdb``, ``cache/``); the
demo never touches CBM_TARGET.  At the end it prints how to query its ODS and the ``export`` line that points
cbm-etl at its source and ODS (for ``cbm-etl status``, ``cbm-etl validate``...).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import shutil
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cbm_luigi.destinations.client import Target

#: the demo's ODS file, under --dir.  Not ``ods.duckdb``: DuckDB names the catalog after the file, and a catalog
#: ``ods`` would make ``SELECT * FROM ods.client`` ambiguous between the catalog and the schema ``ods``.
DEMO_ODS = "cbm_demo.duckdb"


def add_parser(sub: Any) -> None:
    p = sub.add_parser("demo", help="run the demo: SQLite Progress-like source -> DuckDB ODS, full then incremental")
    p.add_argument("--dir", default="data/demo", help="where the demo source, cache and ODS go")
    p.add_argument("--scale", type=float, default=1.0, help="multiply the demo row counts")
    p.set_defaults(func=cmd_demo)


def configure_demo_env(base: Path) -> None:
    from cbm_luigi.tasks.context import clear_caches  # deferred: start-up of cbm-etl

    os.environ.update({
        "CBM_SOURCE": f"sqlite:///{base / 'erp.sqlite'}", "CBM_SOURCE_FLAVOR": "sqlite", "CBM_SOURCE_SCHEMA": "PUB",
        "CBM_TARGET": f"duckdb:///{base / DEMO_ODS}", "CBM_CACHE_DIR": str(base / "cache"),
    })
    clear_caches()


def count_log_rows(target: Target) -> int:
    from cbm_luigi.store import runlog  # deferred: start-up of cbm-etl

    return runlog.count_rows(target)


def _typed(path: Path) -> str:
    """A path as the operator would type it: relative to the current directory when it is under it."""
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def next_steps(base: Path) -> dict[str, str]:
    """The shell lines printed at the end of the demo: query its ODS, point cbm-etl at its source and ODS."""
    src, ods, cache = (_typed(base / name) for name in ("erp.sqlite", DEMO_ODS, "cache"))
    code = f'import duckdb; duckdb.connect({json.dumps(ods)}, read_only=True).sql("SELECT * FROM ods.client").show()'
    env = {"CBM_SOURCE": f"sqlite:///{src}", "CBM_SOURCE_FLAVOR": "sqlite", "CBM_TARGET": f"duckdb:///{ods}",
           "CBM_CACHE_DIR": cache}
    return {
        "query": f"python -c {shlex.quote(code)}",
        "query_cli": f'duckdb {shlex.quote(ods)} "SELECT * FROM ods.client"',
        "env": "export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()),
        "status": "cbm-etl status",
        "validate": "cbm-etl validate",
    }


def print_next_steps(base: Path) -> None:
    steps = next_steps(base)
    print(f"\nQuery the demo's ODS (DuckDB: catalog {Path(DEMO_ODS).stem}, schemas ods, stg, etl, config):")
    print(f"  {steps['query']}")
    print(f"  {steps['query_cli']}   # with the duckdb CLI, if installed")
    print("\nPoint cbm-etl at the demo's source and ODS (this shell only), then e.g. status and validate:")
    for key in ("env", "status", "validate"):
        print(f"  {steps[key]}")


def cmd_demo(args: argparse.Namespace) -> int:
    if getattr(args, "verbose", False):
        return run_demo(args)
    # the demo prints its own tables; Luigi's and the steps' lines are there with -v
    quiet = [logging.getLogger(name) for name in ("luigi-interface", "luigi", "cbm_luigi")]
    levels = [lg.level for lg in quiet]
    for lg in quiet:
        lg.setLevel(logging.WARNING)
    try:
        return run_demo(args)
    finally:
        for lg, level in zip(quiet, levels, strict=True):
            lg.setLevel(level)


def run_demo(args: argparse.Namespace) -> int:
    from cbm_luigi.commands.run import build, run_summary  # deferred: start-up of cbm-etl
    from cbm_luigi.commands.setup import print_table, sync_tables  # deferred: start-up of cbm-etl
    from cbm_luigi.demo import data as demo_data  # deferred: start-up of cbm-etl
    from cbm_luigi.destinations import open_target  # deferred: start-up of cbm-etl
    from cbm_luigi.store import runlog  # deferred: start-up of cbm-etl
    from cbm_luigi.store.config_tables import MetadataStore  # deferred: start-up of cbm-etl
    from cbm_luigi.store.schema import init_db  # deferred: start-up of cbm-etl
    from cbm_luigi.tasks.context import clear_caches, settings  # deferred: start-up of cbm-etl
    from cbm_luigi.tasks.wrappers import LoadAll  # deferred: start-up of cbm-etl

    base = Path(args.dir).resolve()
    if base.exists():
        shutil.rmtree(base)
    base.mkdir(parents=True)
    configure_demo_env(base)
    counts = demo_data.create_sqlite_source(base / "erp.sqlite", scale=args.scale)
    print(f"demo source {base / 'erp.sqlite'}: " + ", ".join(f"{t} {n}" for t, n in counts.items()))

    target = open_target(settings().target)
    init_db(target)
    for report in sync_tables([t.name for t in demo_data.DEMO_TABLES]):
        print("  " + report.describe())
    store = MetadataStore(target)
    for t in demo_data.DEMO_TABLES:
        store.register_table(
            t.name, primary_key=list(t.primary_key), date_modif_col=t.date_modif_col,
            precision=t.date_modif_precision, lookback=t.lookback, priority=t.priority,
            is_dimension=t.is_dimension, is_fact=not t.is_dimension, notes="demo table",
        )
    clear_caches()

    stamp = datetime.now().strftime("%Y%m%dT%H%M%S")
    print("\n== full load ==")
    if not build([LoadAll(mode="full", batch_id=f"demo-{stamp}-full")]):
        return 1
    full = {r[0]: r for r in run_summary(runlog.RUN_ID)}
    print_table(("table", "batch", "outcome", "rows", "inserted", "updated", "unchanged", "seconds"),
                list(full.values()))

    changes = demo_data.apply_sqlite_changes(base / "erp.sqlite", change_ts=datetime.now().replace(microsecond=0))
    print("\n== source changed: " + ", ".join(
        f"{t} +{len(c.inserted_keys)}/~{len(c.updated_keys)}" for t, c in changes.tables.items()) + " ==")

    incr_batch = f"demo-{stamp}-incr"
    if not build([LoadAll(mode="incremental", batch_id=incr_batch)]):
        return 1
    rows = [r for r in run_summary(runlog.RUN_ID) if r[1] == incr_batch]
    check = []
    ok = True
    for r in rows:
        c = changes.tables[r[0]]
        good = r[4] == len(c.inserted_keys) and r[5] == len(c.updated_keys)
        ok &= good
        check.append((*r[:7], f"{len(c.inserted_keys)}/{len(c.updated_keys)}", "ok" if good else "MISMATCH"))
    print("\n== incremental load ==")
    print_table(("table", "batch", "outcome", "rows read", "inserted", "updated", "unchanged",
                 "expected ins/upd", "check"), check)

    print("\n== same batch again: nothing runs ==")
    logged = count_log_rows(target)
    again_ok = build([LoadAll(mode="incremental", batch_id=incr_batch)])
    again = count_log_rows(target) - logged
    print(f"{'ok' if again_ok and again == 0 else 'UNEXPECTED'}: {again} run-log row(s) written "
          f"(batch {incr_batch} is complete for every table)")
    ok &= again_ok and again == 0
    print(f"\nODS: {base / DEMO_ODS} (schemas ods, stg, etl, config); cache: {base / 'cache'}")
    print_next_steps(base)
    return 0 if ok and len(rows) == len(changes.tables) else 1
