"""``cbm-etl run``: a thin wrapper over ``luigi.build`` with an exit code for cron.

    cbm-etl run produit --mode incremental          # one table
    cbm-etl run --all --mode incremental            # LoadAll
    cbm-etl run produit --batch 2026-11-25T14 --workers 2 --scheduler-host 127.0.0.1
"""

from __future__ import annotations

import argparse
from typing import Any

import luigi

from cbm_luigi import runlog
from cbm_luigi.destinations import open_target
from cbm_luigi.metadata import ETL_LOG
from cbm_luigi.tasks import LoadAll, LoadTable
from cbm_luigi.tasks.common import settings


def add_parser(sub: Any) -> None:
    p = sub.add_parser("run", help="load one table (or --all) through the Luigi graph")
    p.add_argument("table", nargs="?", help="table to load (omit with --all)")
    p.add_argument("--all", action="store_true", help="every active table, by priority tier")
    p.add_argument("--mode", choices=("full", "incremental"), default="incremental")
    p.add_argument("--batch", default="", help="run key (default: today, or this hour)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--continue-on-error", action="store_true")
    p.add_argument("--scheduler-host", help="use the central scheduler (luigid) at this host")
    p.add_argument("--scheduler-port", type=int, default=8082)
    p.set_defaults(func=cmd_run)


def build(tasks: list[luigi.Task], workers: int = 1, scheduler_host: str | None = None,
          scheduler_port: int = 8082) -> bool:
    """Run tasks through Luigi; True when everything asked for is complete."""
    kwargs: dict[str, Any] = {"workers": workers, "detailed_summary": True}
    if scheduler_host:
        kwargs.update(scheduler_host=scheduler_host, scheduler_port=scheduler_port)
    else:
        kwargs["local_scheduler"] = True
    result = luigi.build(tasks, **kwargs)
    return bool(result.scheduling_succeeded) and result.status in (
        luigi.execution_summary.LuigiStatusCode.SUCCESS,
        luigi.execution_summary.LuigiStatusCode.SUCCESS_WITH_RETRY,
    )


def cmd_run(args: argparse.Namespace) -> int:
    if bool(args.table) == bool(args.all):
        raise SystemExit("cbm-etl run: give a TABLE or --all (not both)")
    if args.all:
        task: luigi.Task = LoadAll(mode=args.mode, batch=args.batch, continue_on_error=args.continue_on_error)
    else:
        task = LoadTable(table=args.table, mode=args.mode, batch=args.batch)
    ok = build([task], args.workers, args.scheduler_host, args.scheduler_port)
    print_run_summary(runlog.RUN_ID)
    return 0 if ok else 1


def run_summary(run_id: str) -> list[tuple[Any, ...]]:
    """Per table of this run: outcome, rows, inserted, updated, unchanged, seconds (from etl.ETL_Log)."""
    target = open_target(settings().target)
    d = target.dialect
    q = d.quote
    rows = target.fetchall(
        f"SELECT {q('TableName')}, {q('StepName')}, {q('Status')}, {q('RowsProcessed')}, {q('RowsInserted')}, "
        f"{q('RowsUpdated')}, {q('RowsUnchanged')}, {q('DurationSeconds')}, {q('ErrorMessage')}, {q('Batch')} "
        f"FROM {d.qualified(ETL_LOG.schema, ETL_LOG.name)} WHERE {q('RunId')} = :r ORDER BY {q('LogTs')}",
        {"r": run_id},
    )
    out: dict[str, tuple[Any, ...]] = {}
    for table, step, status, n, ins, upd, unch, secs, err, batch in rows:
        if step == "flow_complete" and status == "success":
            out[table] = (table, batch, "loaded", n, ins, upd, unch, f"{secs:.1f}" if secs else "")
        elif status == "failed":
            out[table] = (table, batch, f"FAILED at {step}", "", "", "", "", (err or "")[:80])
    return list(out.values())


def print_run_summary(run_id: str) -> None:
    from cbm_luigi.commands.setup import print_table

    try:
        rows = run_summary(run_id)
    except Exception:  # noqa: BLE001 - the target may be what failed; Luigi's summary said it already
        return
    if not rows:
        print("nothing to do: every requested table is already loaded for this batch")
        return
    print_table(("table", "batch", "outcome", "rows", "inserted", "updated", "unchanged", "seconds/error"), rows)
