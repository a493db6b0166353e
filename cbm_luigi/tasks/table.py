"""Per-table tasks.  Each ``run()`` only orders calls into extract.py / load.py."""

from __future__ import annotations

import logging
import multiprocessing
import re
import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import luigi
import luigi.worker

from cbm_luigi.alerts.notify import notify_failure
from cbm_luigi.config.options import cbm_option
from cbm_luigi.destinations.locking import release_kept
from cbm_luigi.destinations.merge import MergeCounts
from cbm_luigi.model.plan import TIER_PRIORITY
from cbm_luigi.model.specs import TableSpec
from cbm_luigi.ops.quality import check_before_merge
from cbm_luigi.pipeline.extract import (
    MANIFEST,
    Manifest,
    check_cache_dir,
    cleaning_warning,
    empty_full_extract_warning,
    extract_dir,
    extract_problem,
    extract_to_parquet,
)
from cbm_luigi.pipeline.isolation import CAN_FORK, crash_message, crash_point, run_isolated, signal_name
from cbm_luigi.pipeline.merge import merge
from cbm_luigi.pipeline.partitions import (
    PartitionPlan,
    bounds_path,
    combine_parts,
    part_dir,
    plan_partitions,
    write_plan,
)
from cbm_luigi.pipeline.retry import SourceBreaker, call_with_retry, is_transient, probe_source
from cbm_luigi.pipeline.sources import open_source
from cbm_luigi.pipeline.sources.flavors import Window, incremental_window
from cbm_luigi.pipeline.stage import stage, staging_while_extracting
from cbm_luigi.store import runlog
from cbm_luigi.store.config_tables import MetadataStore
from cbm_luigi.tasks.context import (
    canonical_table,
    current_plan,
    settings,
    table_spec,
    target,
    writer_resources,
)
from cbm_luigi.tasks.labels import table_family
from cbm_luigi.tasks.params import MODES, BatchParameter
from cbm_luigi.tasks.targets import MarkerTarget, StagingTarget

log = logging.getLogger(__name__)


class TableStep(luigi.Task):
    """Parameters shared by the three steps of one table."""

    table = luigi.Parameter(description="source table name (e.g. produit, Order-Line or order_line)")
    mode = luigi.ChoiceParameter(choices=MODES, default="incremental", description="full | incremental")
    batch_id = BatchParameter(default="", description="run key; default: today (or this hour)")
    # Set by LoadAll (stop-on-critical): the table's first task waits for every critical table.  Not part of the
    # task id: the work is the same, so two runs asking for it share one task in the central scheduler.
    after_critical = luigi.BoolParameter(default=False, significant=False,
                                         description="wait for the critical tier (set by LoadAll)")

    step_name = "flow"

    @property
    def task_family(self) -> str:
        """``produit.MergeOds``: the node's name in the scheduler's web view (the task id is unchanged; see
        tasks/labels.py)."""
        return table_family(type(self), self.table)

    @property
    def spec(self) -> TableSpec:
        return table_spec(settings().target, self.table)

    def extract_path(self) -> Path:
        return extract_dir(settings().cache_dir, self.table, self.batch_id, self.mode)

    def manifest(self) -> Manifest:
        return Manifest.read(self.extract_path())

    def status(self, message: str) -> None:
        """The status line shown in the scheduler's web view (set by the worker while the task runs)."""
        setter = getattr(self, "set_status_message", None)
        if callable(setter):
            setter(message)

    def percent(self, value: float) -> None:
        """The progress bar shown in the scheduler's web view (0-100)."""
        setter = getattr(self, "set_progress_percentage", None)
        if callable(setter):
            setter(max(0, min(100, int(value))))

    def retrying(self, attempt: int, delay: float, exc: BaseException) -> None:
        self.status(f"{self.table}: {self.step_name} attempt {attempt} failed ({type(exc).__name__}); "
                    f"retrying in {delay:.0f}s")


@TableStep.event_handler(luigi.Event.START)
def _note_start(task: TableStep) -> None:
    task._cbm_started = time.monotonic()  # type: ignore[attr-defined]  # read by the failure alert


@TableStep.event_handler(luigi.Event.FAILURE)
def _log_failure(task: TableStep, exc: BaseException) -> None:
    """Record the failure in etl.ETL_Log (own transaction) before Luigi reports it, then alert (once per
    failure: a retry of the same table and batch in this run is not re-sent; a notifier error is only logged)."""
    try:
        table = task.spec.table_name
    except Exception:  # noqa: BLE001 - the spec itself may be what failed
        table = task.table
    error = f"{type(exc).__name__}: {exc}"
    runlog.write_log_now(target(), table, task.step_name, "failed", batch=task.batch_id, mode=task.mode,
                         error=error)
    try:
        try:
            rows: int | None = task.manifest().rows
            if rows == 0:  # a full load of 0 rows over a loaded ODS (e.g. refused by the delete guard): say so
                warning = empty_full_extract_warning(target(), task.spec, task.manifest())
                error = f"{error}\n{warning}" if warning else error
        except Exception:  # noqa: BLE001 - no extract yet
            rows = None
        started = getattr(task, "_cbm_started", None)
        notify_failure(table=table, step=task.step_name, batch=task.batch_id, mode=task.mode, error=error,
                       run_id=runlog.RUN_ID, rows=rows, task_id=task.task_id, target=target(),
                       duration=time.monotonic() - started if started is not None else None)
    except Exception:  # an alert must never fail (or hide) the load's own error
        log.exception("%s: failure alert not sent", table)


@TableStep.event_handler(luigi.Event.SUCCESS)
@TableStep.event_handler(luigi.Event.FAILURE)
def _close_kept_target(task: TableStep, *_: Any) -> None:
    """A Luigi task process (``--workers N``) ends with ``os._exit`` right after its task, without ``atexit``:
    the DuckDB file it kept open between transactions is closed here, cleanly (destinations/locking.py)."""
    if multiprocessing.parent_process() is not None:
        release_kept()


@TableStep.event_handler(luigi.Event.PROCESS_FAILURE)
def _log_process_death(task: TableStep, error_msg: str) -> None:
    """A task process of Luigi's (``--workers N``, ``[worker] force_multiprocessing``) died by a signal: Luigi,
    in the parent, says "Task ... died unexpectedly with exit code -11"; the child wrote nothing, so the failure
    row is written here.  Luigi may report the same death twice: one row."""
    if getattr(task, "_cbm_death_logged", False):
        return
    task._cbm_death_logged = True  # type: ignore[attr-defined]
    found = re.search(r"exit code (-?\d+)", error_msg or "")
    code = int(found.group(1)) if found else 0
    if task.step_name == "extract":
        message = crash_message(task.table, code)
    else:
        how = f"signal {-code}, {signal_name(-code)}" if code < 0 else f"exit code {code}"
        message = (f"the task process died ({how}) during {task.step_name} of {task.table}; the other tables go "
                   "on; run again")
    log.error("%s (%s)", message, error_msg)
    try:
        runlog.write_log_now(target(), task.table, task.step_name, "failed", batch=task.batch_id, mode=task.mode,
                             error=f"DriverCrashError: {message}")
    except Exception:  # the console line above says it already
        log.exception("%s: failure row not written", task.table)


class ExtractParquet(TableStep):
    """Source rows of the batch's window -> snappy parquet with hashdiff and technical columns.

    A table with ExtractPartitions N > 1, in a full load, is read by N :class:`ExtractPart` tasks (one source
    connection each) and this task only combines their files (pipeline/partitions.py): it holds no source
    connection then."""

    step_name = "extract"

    @property
    def partitions(self) -> int:
        """How many key ranges this extract is read as (1: one SELECT).  Only full loads are partitioned: an
        incremental window is a small read."""
        if self.mode != "full":
            return 1
        try:
            return self.spec.extract_partitions
        except Exception:  # noqa: BLE001 - an unknown table fails in run(), with its message
            return 1

    @property
    def resources(self) -> dict[str, int]:  # type: ignore[override]
        return {} if self.partitions > 1 else {"source_connections": 1}

    def requires(self) -> list[luigi.Task]:
        if self.partitions > 1:
            return [ExtractPart(table=self.table, mode=self.mode, batch_id=self.batch_id,
                                after_critical=self.after_critical, part=i, parts=self.partitions)
                    for i in range(self.partitions)]
        if not self.after_critical:
            return []
        return [CriticalGate(mode=self.mode, batch_id=self.batch_id)]

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget(str(self.extract_path() / MANIFEST))

    def complete(self) -> bool:
        """Done when the manifest is there and its files match it (sizes, parquet footers, rows).  An unusable
        extract of a batch not yet merged (a corrupt or truncated file) is removed, so this run extracts again."""
        return sound_extract(self.extract_path(), self.table, self.batch_id)

    def run(self) -> None:
        step_started = runlog.now()  # the table's flow starts here (its duration: docs/OPERATIONS.md, Durations)
        spec = self.spec
        tgt = target()
        if self.partitions > 1:
            plan = PartitionPlan.read(bounds_path(self.extract_path(), self.partitions))
            self.status(f"{spec.table_name}: combining {plan.parts} partitions")
            manifest = combine_parts(spec, plan, self.extract_path(), batch=self.batch_id, mode=self.mode,
                                     run_id=runlog.RUN_ID)
            self.status(f"{spec.table_name}: {manifest.rows:,} rows extracted in {plan.parts} partitions")
        else:
            s = settings()
            check_cache_dir(s.cache_dir)  # a cache that is a file or read-only: name CBM_CACHE_DIR (luigi too)
            SourceBreaker.for_run(s).check(probe=lambda: probe_source(s))  # a source already known down: fail now
            store = MetadataStore(tgt)
            watermark = call_with_retry(lambda: store.watermark(spec.table_name),
                                        what=f"{spec.table_name}: watermark", dialect=tgt.dialect,
                                        on_retry=self.retrying)
            window = incremental_window(spec, self.mode, watermark)
            progress = ExtractProgress(self, spec.table_name)
            manifest = read_extract(self, spec, window, self.extract_path(), progress=progress,
                                    step_started=step_started, stage=True)
            progress.done(manifest.rows, manifest.extract_seconds)
        log_extract(self, spec, manifest)


def sound_extract(path: Path, table: str, batch_id: str) -> bool:
    """An extract (or a part of one) is complete when its manifest is there and its files match it; an unusable
    one of a batch not yet merged is removed, so that this run reads it again."""
    if not (path / MANIFEST).exists():
        return False
    problem = extract_problem(path)
    if problem is None or MarkerTarget(settings().target, table, batch_id).exists():
        return True
    log.warning("%s: the extract %s is unusable (%s): removed, extracting it again", table, path, problem)
    shutil.rmtree(path, ignore_errors=True)
    return False


def read_extract(task: TableStep, spec: TableSpec, window: Window, out_dir: Path, *, progress: ExtractProgress,
                 step_started: datetime, stage: bool) -> Manifest:
    """Read ``window`` of the table into the extract ``out_dir``: in a child process (a driver crash fails this
    table only), transient errors retried, the source breaker told of a failure.  ``stage``: load staging while
    extracting where the target streams (PostgreSQL COPY); a part of a partitioned extract does not."""
    tgt = target()
    s = settings()
    breaker = SourceBreaker.for_run(s)

    def attempt() -> Manifest:
        breaker.check(probe=lambda: probe_source(s))  # another table may have found the source down
        # PostgreSQL: staging is loaded (COPY) while the extract is written, committed once it is complete.
        # target(), not tgt: in the extract's own process, an engine of its own (never the parent's pool)
        with open_source(s) as source, staging_while_extracting(target(), spec, stage and s.stage_while_extracting
                                                                ) as sink:
            progress.start(source, spec, window)
            manifest = extract_to_parquet(
                spec, source, window=window, out_dir=out_dir, batch=task.batch_id, mode=task.mode,
                run_id=runlog.RUN_ID, min_date=tgt.dialect.min_date, max_date=tgt.dialect.max_date,
                batch_rows=s.extract_batch_rows, rows_per_file=s.rows_per_parquet_file, progress=progress,
                workers=s.transform_workers, sink=sink, step_started=step_started,
            )
            if sink is not None:
                sink.commit(manifest, manifest.paths(out_dir))
            return manifest

    def isolated() -> Manifest:
        """The read in a child process (pipeline/isolation.py): a crash of the ODBC driver fails this table
        only, as DriverCrashError (not retried: run again)."""
        if not (CAN_FORK and cbm_option("isolate_extracts", True)):
            return attempt()
        # Luigi's fork_lock keeps the fork away from the keep-alive thread's ping; a Luigi task process
        # (--workers N) has no such thread, and its copy of the lock was taken by the fork that made it
        in_task_process = multiprocessing.parent_process() is not None
        return run_isolated(attempt, table=spec.table_name,
                            lock=None if in_task_process else luigi.worker.fork_lock)

    return breaker.call(isolated, table=spec.table_name, what="extract", probe=lambda: probe_source(s),
                        on_retry=task.retrying)


def log_extract(task: TableStep, spec: TableSpec, manifest: Manifest) -> None:
    """The extract's and the transform's rows in etl.ETL_Log, with the 0-row and cleaning warnings."""
    tgt = target()
    empty = empty_full_extract_warning(tgt, spec, manifest)  # kept in the run log: the summary shows it
    # dates nulled (OutOfRangeDates=null) and values cut to their SQL width (WidthPolicy=truncate): the same
    cleaned = cleaning_warning(spec, manifest, tgt.dialect.min_date, tgt.dialect.max_date)
    warnings = "\n".join(w for w in (empty, cleaned) if w) or None

    def write_log() -> None:
        with tgt.begin() as conn:
            runlog.write_log(conn, spec.table_name, "extract", "success", batch=task.batch_id, mode=task.mode,
                             rows=manifest.rows, duration=manifest.extract_seconds - manifest.transform_seconds,
                             error=warnings)
            runlog.write_log(conn, spec.table_name, "transform", "success", batch=task.batch_id, mode=task.mode,
                             rows=manifest.rows, duration=manifest.transform_seconds,
                             error=str(manifest.cleaning) if any(manifest.cleaning.values()) else None)

    call_with_retry(write_log, what=f"{spec.table_name}: run log", dialect=tgt.dialect, on_retry=task.retrying)


class PartitionBounds(TableStep):
    """The plan of a partitioned full load (pipeline/partitions.py): the source's clock, MIN and MAX of the first
    key column, the ranges of the parts.  One source connection, briefly."""

    step_name = "extract"
    parts = luigi.IntParameter(description="number of key ranges")
    resources = {"source_connections": 1}  # noqa: RUF012 - Luigi reads a class attribute

    def requires(self) -> list[luigi.Task]:
        if not self.after_critical:
            return []
        return [CriticalGate(mode=self.mode, batch_id=self.batch_id)]

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget(str(bounds_path(self.extract_path(), self.parts)))

    def run(self) -> None:
        started = runlog.now()
        spec = self.spec
        s = settings()
        check_cache_dir(s.cache_dir)
        breaker = SourceBreaker.for_run(s)
        breaker.check(probe=lambda: probe_source(s))
        window = incremental_window(spec, self.mode, None)  # only full loads are partitioned
        self.status(f"{spec.table_name}: planning {self.parts} key ranges")

        def attempt() -> PartitionPlan:
            with open_source(s) as source:
                return plan_partitions(spec, source, window, self.parts, started=started)

        plan = breaker.call(attempt, table=spec.table_name, what="partition bounds", probe=lambda: probe_source(s),
                            on_retry=self.retrying)
        write_plan(plan, Path(self.output().path))
        self.status(f"{spec.table_name}: {self.parts} key ranges of {plan.key_column} ({plan.key_min}.."
                    f"{plan.key_max})")


class ExtractPart(TableStep):
    """One key range of a partitioned full load, read over its own source connection into a part of the extract;
    a part already read (by this run, an earlier one or another host) is not read again."""

    step_name = "extract"
    part = luigi.IntParameter(description="0-based index of the key range")
    parts = luigi.IntParameter(description="number of key ranges")
    resources = {"source_connections": 1}  # noqa: RUF012 - Luigi reads a class attribute

    def requires(self) -> PartitionBounds:
        return PartitionBounds(table=self.table, mode=self.mode, batch_id=self.batch_id,
                               after_critical=self.after_critical, parts=self.parts)

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget(str(part_dir(self.extract_path(), self.part, self.parts) / MANIFEST))

    def complete(self) -> bool:
        if ExtractParquet(table=self.table, mode=self.mode, batch_id=self.batch_id).complete():
            return True  # already combined (its folder is gone)
        return sound_extract(part_dir(self.extract_path(), self.part, self.parts), self.table, self.batch_id)

    def run(self) -> None:
        spec = self.spec
        plan = PartitionPlan.read(bounds_path(self.extract_path(), self.parts))
        label = f"{spec.table_name} part {self.part + 1}/{self.parts}"
        progress = ExtractProgress(self, label)
        manifest = read_extract(self, spec, plan.part_window(self.part),
                                part_dir(self.extract_path(), self.part, self.parts), progress=progress,
                                step_started=datetime.fromisoformat(plan.started), stage=False)
        progress.done(manifest.rows, manifest.extract_seconds)


class ExtractProgress:
    """Status line and progress bar of a running extract: rows so far, rows/s, and a percentage where it is worth
    it (``progress_count``, default on; docs/OPERATIONS.md).  A full window's total is the row count of the
    table's previous full load (etl.ETL_Log, divided among the parts of a partitioned one), so the source is not
    read twice; only a table's first full load is counted with a COUNT(*).  An incremental window is neither
    counted nor estimated: a nightly window is small, and counting it would cost the source a second query about
    as long as the read itself (the no-change run's own cost, docs/PERFORMANCE.md)."""

    def __init__(self, task: TableStep, table: str, min_interval: float = 1.0) -> None:
        self.task, self.table, self.min_interval = task, table, min_interval
        self.total: int | None = None
        self.estimated = False  # the total is the previous full load's (about), not a COUNT(*)
        self._last = 0.0

    def start(self, source: Any, spec: TableSpec, window: Any) -> None:
        self.task.percent(0)
        if not cbm_option("progress_count", True) or window.since is not None:
            self.task.status(f"{self.table}: extracting ({window.reason})")
            return
        self.total = self._previous_full_rows(spec)
        self.estimated = self.total is not None
        if self.total is None:
            self.task.status(f"{self.table}: counting the rows to read ({window.reason})")
            try:
                sql, params = source.flavor.count_sql(spec, source.schema, window)
                self.total = int(source.scalar(sql, params) or 0)
            except Exception as exc:  # the count is only for the progress bar
                if is_transient(exc):
                    raise  # the source itself is unreachable: the extract would fail the same way
                log.warning("%s: no progress percentage (the COUNT(*) failed: %s)", self.table, exc)
                self.total = None
        self.task.status(f"{self.table}: extracting {self._of()}rows ({window.reason})" if self.total is not None
                         else f"{self.table}: extracting ({window.reason})")

    def _previous_full_rows(self, spec: TableSpec) -> int | None:
        """Rows of the table's previous successful load of a full window in this mode (a part: its share), or
        None (none yet, or the run log cannot be read: the COUNT(*) then)."""
        try:
            previous = runlog.previous_run_rows(target(), spec.table_name, self.task.mode, self.task.batch_id)
        except Exception as exc:  # noqa: BLE001 - only for the progress bar
            log.debug("%s: no previous full load for the progress bar (%s)", self.table, exc)
            return None
        if previous is None or previous[0] <= 0:
            return None
        return max(1, previous[0] // max(1, int(getattr(self.task, "parts", 1) or 1)))

    def _of(self) -> str:
        return f"{'about ' if self.estimated else ''}{self.total:,} " if self.total is not None else ""

    def __call__(self, rows: int, seconds: float) -> None:
        crash_point(self.table)  # tests only: a real signal in the middle of the read (CBM_TEST_CRASH_EXTRACT)
        now = time.monotonic()
        if now - self._last < self.min_interval:
            return
        self._last = now
        rate = rows / seconds if seconds > 0 else 0.0
        if self.total:
            self.task.percent(min(99, rows * 100 / self.total))
            self.task.status(f"{self.table}: {rows:,} of {self._of()}rows read ({rate:,.0f} rows/s)")
        else:
            self.task.status(f"{self.table}: {rows:,} rows read ({rate:,.0f} rows/s)")

    def done(self, rows: int, seconds: float) -> None:
        self.task.percent(100)
        rate = rows / seconds if seconds > 0 else 0.0
        self.task.status(f"{self.table}: {rows:,} rows extracted in {seconds:.1f}s ({rate:,.0f} rows/s)")


class LoadStaging(TableStep):
    """The extract bulk loaded into stg.<table>, replacing what it held, in one transaction."""

    step_name = "load_staging"

    @property
    def resources(self) -> dict[str, int]:  # type: ignore[override]
        return writer_resources()

    def requires(self) -> ExtractParquet:
        return ExtractParquet(table=self.table, mode=self.mode, batch_id=self.batch_id,
                              after_critical=self.after_critical)

    def output(self) -> StagingTarget:
        return StagingTarget(settings().target, self.table, self.batch_id)

    def run(self) -> None:
        if self.output().exists():  # staged while extracting (PostgreSQL), in the extract step's transaction
            self.status(f"{self.spec.table_name}: staged while extracting")
            return
        manifest = self.manifest()
        self.status(f"{self.spec.table_name}: staging {manifest.rows:,} rows")
        self.percent(0)
        started = time.perf_counter()

        def attempt() -> None:
            stage(target(), self.spec, manifest, manifest.paths(self.extract_path()))

        call_with_retry(attempt, what=f"{self.spec.table_name}: staging", on_retry=self.retrying)
        seconds = time.perf_counter() - started
        self.percent(100)
        self.status(f"{self.spec.table_name}: {manifest.rows:,} rows staged in {seconds:.1f}s "
                    f"({manifest.rows / seconds if seconds > 0 else 0:,.0f} rows/s)")


class MergeOds(TableStep):
    """stg.<table> merged into ods.<table>; watermark, marker and run log in the same transaction."""

    step_name = "merge_ods"

    @property
    def priority(self) -> int:  # type: ignore[override]
        try:
            return TIER_PRIORITY[self.spec.priority]
        except Exception:  # noqa: BLE001 - an unknown table fails in run(), with its message
            return 0

    @property
    def resources(self) -> dict[str, int]:  # type: ignore[override]
        return writer_resources()

    def requires(self) -> list[TableStep]:
        """Its own staging, and the merges of the tables it depends on (config.ETL_Dependencies)."""
        url = settings().target
        plan = current_plan(url)
        table = canonical_table(url, self.table)
        plan.check([table])  # a cycle or a bad dependency: refused at scheduling, naming it
        deps: list[TableStep] = [
            MergeOds(table=d, mode=self.mode, batch_id=self.batch_id,
                     after_critical=self.after_critical and d not in plan.pre_gate)
            for d in plan.deps(table)
        ]
        return [LoadStaging(table=self.table, mode=self.mode, batch_id=self.batch_id,
                            after_critical=self.after_critical),
                *deps]

    def output(self) -> MarkerTarget:
        return MarkerTarget(settings().target, self.table, self.batch_id)

    def run(self) -> None:
        started = runlog.now()  # the merge step's start (the flow's, when the extract came from an earlier run)
        manifest = self.manifest()
        # Data-quality rules on the staged rows (= the extract's files): a failed critical rule stops here.
        check_before_merge(target(), self.spec, manifest, manifest.paths(self.extract_path()))
        self.status(f"{self.spec.table_name}: merging {manifest.rows:,} staged rows")
        self.percent(0)

        def attempt() -> MergeCounts:
            return merge(target(), self.spec, manifest, started=started)

        counts = call_with_retry(attempt, what=f"{self.spec.table_name}: merge", on_retry=self.retrying)
        self.percent(100)
        if counts.already_loaded:  # another run of the batch merged it meanwhile: its marker is this output
            self.status(f"{self.spec.table_name}: already loaded (merged by another run of batch {self.batch_id})")
            return
        history = (f"; history: {counts.history_opened} version(s) opened, {counts.history_closed} closed"
                   if self.spec.keep_history else "")
        self.status(
            f"{self.spec.table_name}: {counts.inserted} inserted, {counts.updated} updated, "
            f"{counts.unchanged} unchanged{history}"
        )


class CriticalGate(luigi.WrapperTask):
    """Complete when every critical table of the batch is merged.  The other tables' extracts wait for it."""

    mode = luigi.ChoiceParameter(choices=MODES, default="incremental")
    batch_id = BatchParameter(default="", description="run key; default: today (or this hour)")
    priority = TIER_PRIORITY["critical"]

    def requires(self) -> list[MergeOds]:
        plan = current_plan(settings().target)
        return [MergeOds(table=t, mode=self.mode, batch_id=self.batch_id) for t in plan.critical]
