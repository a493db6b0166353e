"""``cbm-etl run``: a thin wrapper over ``luigi.build`` with an exit code for cron.

    cbm-etl run produit --mode incremental          # one table
    cbm-etl run --all --mode incremental            # LoadAll
    cbm-etl run produit --batch-id 2026-11-25T14 --workers 2 --scheduler-host 127.0.0.1

``--batch-id`` is the run key (``--batch`` is accepted as an alias), the ``luigi`` command's ``--batch-id``.

Exit code: 0 when every requested table is loaded (or already was, for this batch: its merge marker exists,
whoever merged it, another run or another worker of the central scheduler), 1 when any table failed or was not
run, 2 for a configuration error found before the run (e.g. a dependency cycle).  The summary names
each table's outcome: loaded, already loaded, FAILED at <step>, or NOT RUN and why (a dependency that did not
load, or the critical gate), and its duration (docs/OPERATIONS.md, Durations).  The run also logs to its own file
under CBM_LOG_DIR; ``--all`` also writes the night report (``cbm-etl report``), never failing the run if it cannot.
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import TYPE_CHECKING, Any

from cbm_luigi.model.plan import Outcome, Plan, table_outcomes

if TYPE_CHECKING:
    import luigi
    import luigi.execution_summary

    from cbm_luigi.tasks.wrappers import LoadAll, LoadTable

log = logging.getLogger(__name__)


def add_parser(sub: Any) -> None:
    p = sub.add_parser("run", help="load one table (or --all) through the Luigi graph")
    p.add_argument("table", nargs="?", help="table to load (omit with --all)")
    p.add_argument("--all", action="store_true", help="every active table, by priority tier")
    p.add_argument("--mode", choices=("full", "incremental"), default="incremental")
    p.add_argument("--batch-id", "--batch", dest="batch_id", default="",
                   help="run key (default: today, or this hour); --batch is an alias")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--continue-on-error", action="store_true")
    p.add_argument("--scheduler-host", help="use the central scheduler (luigid) at this host")
    p.add_argument("--scheduler-port", type=int, default=8082)
    p.set_defaults(func=cmd_run, log_file=True)


def build_result(tasks: list[luigi.Task], workers: int = 1, scheduler_host: str | None = None,
                 scheduler_port: int = 8082) -> luigi.execution_summary.LuigiRunResult:
    """Run tasks through Luigi (the central scheduler when a host is given, else a local one)."""
    import luigi  # deferred: start-up of cbm-etl

    kwargs: dict[str, Any] = {"workers": workers, "detailed_summary": True}
    if scheduler_host:
        kwargs.update(scheduler_host=scheduler_host, scheduler_port=scheduler_port)
    else:
        kwargs["local_scheduler"] = True
    return luigi.build(tasks, **kwargs)


def build(tasks: list[luigi.Task], workers: int = 1, scheduler_host: str | None = None,
          scheduler_port: int = 8082) -> bool:
    """Run tasks through Luigi; True when everything asked for is complete."""
    return succeeded(build_result(tasks, workers, scheduler_host, scheduler_port))


def succeeded(result: luigi.execution_summary.LuigiRunResult) -> bool:
    import luigi.execution_summary  # deferred: start-up of cbm-etl

    return bool(result.scheduling_succeeded) and result.status in (
        luigi.execution_summary.LuigiStatusCode.SUCCESS,
        luigi.execution_summary.LuigiStatusCode.SUCCESS_WITH_RETRY,
    )


#: how often a run waits for the tasks of its batch that another worker of the central scheduler runs
OTHER_WORKERS_POLL_SECONDS = 2.0
#: while the same tasks of the batch run elsewhere, a waiting run schedules the batch again at most this seldom
OTHER_WORKERS_RESCHEDULE_SECONDS = 60.0


def running_elsewhere(host: str, port: int, batch: str) -> frozenset[str] | None:
    """The ids of the batch's tasks that the central scheduler has RUNNING, in one request (scheduling the batch
    again means an add_task per task and every task's completeness check on the target); None when it cannot
    say (unreachable, or too many tasks to list)."""
    import luigi.rpc  # deferred: start-up of cbm-etl

    try:
        # task_list is one of the methods luigi.rpc adds to RemoteScheduler from luigi.scheduler.RPC_METHODS
        tasks = luigi.rpc.RemoteScheduler(f"http://{host}:{port}").task_list(  # type: ignore[attr-defined]
            status="RUNNING", upstream_status="", search=f"batch_id={batch}")
    except Exception as exc:  # noqa: BLE001 - then the run schedules again, as it would without asking
        log.debug("could not list the running tasks of batch %s: %s", batch, exc)
        return None
    if not isinstance(tasks, dict) or "num_tasks" in tasks:
        return None
    return frozenset(tid for tid, t in tasks.items() if str((t.get("params") or {}).get("batch_id")) == batch)


def run_by_other_workers(result: luigi.execution_summary.LuigiRunResult) -> bool:
    """True when the run ended with tasks it asked for still running in another worker (or waiting on one)."""
    import luigi.execution_summary  # deferred: start-up of cbm-etl

    worker = getattr(result, "worker", None)
    if worker is None:
        return False
    summary = luigi.execution_summary._summary_dict(worker)
    # "not granted run permission by the scheduler" (not_run): the scheduler gives the task to the worker running
    # it, or holds it for a resource another worker has: waiting is right there too
    return bool(summary.get("run_by_other_worker") or summary.get("upstream_run_by_other_worker")
                or summary.get("not_run"))


def cmd_run(args: argparse.Namespace) -> int:
    if bool(args.table) == bool(args.all):
        raise SystemExit("cbm-etl run: give a TABLE or --all (not both)")
    from cbm_luigi.config.options import cbm_option, check_ops_options  # deferred: start-up of cbm-etl
    from cbm_luigi.pipeline.sources import check_source_settings  # deferred: start-up of cbm-etl
    from cbm_luigi.store import runlog  # deferred: start-up of cbm-etl
    from cbm_luigi.tasks.context import (  # deferred: start-up of cbm-etl
        canonical_table,
        current_plan,
        settings,
    )
    from cbm_luigi.tasks.wrappers import LoadAll, LoadTable  # deferred: start-up of cbm-etl

    url = settings().target
    plan = current_plan(url)
    task: LoadAll | LoadTable
    if args.all:
        task = LoadAll(mode=args.mode, batch_id=args.batch_id, continue_on_error=args.continue_on_error)
        tables = list(plan.tables)
        plan.check()  # a cycle or a bad dependency: refused before anything runs, naming it
    else:
        task = LoadTable(table=args.table, mode=args.mode, batch_id=args.batch_id)
        tables = [canonical_table(url, args.table)]
        plan.check(tables)
    # a source setting that cannot work is refused here, exit 2, instead of failing every extract (exit 1)
    check_source_settings(settings())
    check_ops_options()  # a bad [cbm_ops] value: exit 2 now, not a failed table later
    from cbm_luigi.pipeline.extract import check_cache_dir  # deferred: start-up of cbm-etl

    check_cache_dir(settings().cache_dir)  # a cache that is a file or read-only: exit 2, naming CBM_CACHE_DIR
    log.info("run %s: %s, mode %s, batch %s, %d worker(s), %s", runlog.RUN_ID, "all tables" if args.all else
             tables[0], args.mode, task.batch_id, args.workers,
             f"scheduler {args.scheduler_host}:{args.scheduler_port}" if args.scheduler_host else "local scheduler")
    from cbm_luigi.ops.night_report import (  # deferred: start-up of cbm-etl
        write_after_run,
        written_at_the_end,
    )

    try:
        with written_at_the_end():  # the report is written below, whatever the outcome
            result = build_result([task], args.workers, args.scheduler_host, args.scheduler_port)
            # A worker of the central scheduler leaves ([worker] keep_alive=false) when what is left of the batch
            # runs in another worker: wait for it, scheduling again (and taking over what it leaves undone).
            # Scheduled again when the tasks running elsewhere change (one ended: what waited on it may be free),
            # or every OTHER_WORKERS_RESCHEDULE_SECONDS; in between one cheap request to luigid per poll.
            deadline = time.monotonic() + float(cbm_option("other_workers_timeout", 21600.0))
            if args.scheduler_host and run_by_other_workers(result):
                log.info("tasks of batch %s are run by another worker: waiting for them (asking luigid every %.0fs)",
                         task.batch_id, OTHER_WORKERS_POLL_SECONDS)
                running = running_elsewhere(args.scheduler_host, args.scheduler_port, task.batch_id)
                scheduled = time.monotonic()
                while run_by_other_workers(result) and time.monotonic() < deadline:
                    time.sleep(OTHER_WORKERS_POLL_SECONDS)
                    now_running = running_elsewhere(args.scheduler_host, args.scheduler_port, task.batch_id)
                    if (now_running and now_running == running
                            and time.monotonic() - scheduled < OTHER_WORKERS_RESCHEDULE_SECONDS):
                        continue  # the same tasks still run elsewhere: nothing new to take over
                    log.info("batch %s: %d task(s) running in other workers; scheduling what is left again",
                             task.batch_id, len(now_running or ()))
                    result = build_result([task], args.workers, args.scheduler_host, args.scheduler_port)
                    running = running_elsewhere(args.scheduler_host, args.scheduler_port, task.batch_id)
                    scheduled = time.monotonic()
    except Exception as exc:  # noqa: BLE001 - e.g. the central scheduler is unreachable: say so, exit non-zero
        log.error("the run could not complete: %s: %s", type(exc).__name__, exc)
        print(f"cbm-etl run: {type(exc).__name__}: {exc}")
        return 1
    outcomes = print_outcomes(plan, tables, task.batch_id, continue_on_error=args.continue_on_error, gate=args.all)
    # whether the requested batch is loaded, whoever loaded it: the markers (Luigi's status only without them)
    ok = all(o.ok for o in outcomes) if outcomes is not None else succeeded(result)
    # the night report (cbm-etl report); an error writing it is logged, never fails the load
    if args.all and (report := write_after_run()) is not None:
        print(f"night report: {report.latest}")
    return 0 if ok else 1


def first_line(text: str) -> str:
    """The whole first line of an error (the summary shows it uncut: it names the object and the fix)."""
    return (text.strip().splitlines() or [""])[0]


def outcomes_of_run(plan: Plan, tables: list[str], batch: str, *, continue_on_error: bool,
                    gate: bool = True) -> list[Outcome]:
    """Each table's outcome in this run, from etl.ETL_Log (this run id and batch) and the merge markers."""
    from cbm_luigi.destinations import open_target  # deferred: start-up of cbm-etl
    from cbm_luigi.store import markers, runlog  # deferred: start-up of cbm-etl
    from cbm_luigi.tasks.context import settings  # deferred: start-up of cbm-etl

    target = open_target(settings().target)
    rows = runlog.rows_of_run(target, runlog.RUN_ID, batch)
    wanted = plan.closure(tables)
    complete = {t: markers.marker_exists(target, t, batch) for t in wanted}
    return table_outcomes(plan, tables, rows, complete, continue_on_error=continue_on_error, gate=gate)


def print_outcomes(plan: Plan, tables: list[str], batch: str, *, continue_on_error: bool,
                   gate: bool = True) -> list[Outcome] | None:
    """Print (and log) the run summary; None when the target cannot be read (Luigi's summary said why)."""
    from cbm_luigi.commands.setup import print_table  # deferred: start-up of cbm-etl
    from cbm_luigi.store import runlog  # deferred: start-up of cbm-etl

    try:
        outcomes = outcomes_of_run(plan, tables, batch, continue_on_error=continue_on_error, gate=gate)
    except Exception as exc:  # noqa: BLE001 - the target may be what failed; Luigi's summary said it already
        log.error("no run summary: the target cannot be read (%s)", exc)
        return None
    rows = []
    for o in outcomes:
        seconds = f"{o.seconds:.1f}" if o.seconds else ""
        rows.append((o.table, o.tier, o.describe(), *(("" if v is None else v) for v in
                     (o.rows, o.inserted, o.updated, o.unchanged)), seconds, first_line(o.detail)))
        if o.ok:
            log.info("%s: %s %s", o.table, o.describe(), o.detail)
        else:
            log.error("%s: %s %s", o.table, o.describe(), o.detail)
    print(f"\nrun {runlog.RUN_ID} batch {batch}: {sum(o.ok for o in outcomes)} of {len(outcomes)} table(s) loaded")
    print_table(("table", "tier", "outcome", "rows", "inserted", "updated", "unchanged", "seconds", "detail"), rows)
    return outcomes


def run_summary(run_id: str) -> list[tuple[Any, ...]]:
    """Per table of this run: outcome, rows, inserted, updated, unchanged, seconds (from etl.ETL_Log)."""
    from cbm_luigi.destinations import open_target  # deferred: start-up of cbm-etl
    from cbm_luigi.store import runlog  # deferred: start-up of cbm-etl
    from cbm_luigi.tasks.context import settings  # deferred: start-up of cbm-etl

    target = open_target(settings().target)
    out: dict[str, tuple[Any, ...]] = {}
    for r in runlog.rows_of_run(target, run_id):
        table, step, status, n, ins, upd, unch, secs, err, batch = (
            r["TableName"], r["StepName"], r["Status"], r["RowsProcessed"], r["RowsInserted"], r["RowsUpdated"],
            r["RowsUnchanged"], r["DurationSeconds"], r["ErrorMessage"], r["Batch"])
        if step == "flow_complete" and status == "success":
            out[table] = (table, batch, "loaded", n, ins, upd, unch, f"{secs:.2f}" if secs is not None else "")
        elif status == "failed":
            out[table] = (table, batch, f"FAILED at {step}", "", "", "", "", first_line(err or ""))
    return list(out.values())


def print_run_summary(run_id: str) -> None:
    from cbm_luigi.commands.setup import print_table  # deferred: start-up of cbm-etl

    try:
        rows = run_summary(run_id)
    except Exception:  # noqa: BLE001 - the target may be what failed; Luigi's summary said it already
        return
    if not rows:
        print("nothing to do: every requested table is already loaded for this batch")
        return
    print_table(("table", "batch", "outcome", "rows", "inserted", "updated", "unchanged", "seconds/error"), rows)
