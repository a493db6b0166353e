"""Per-table tasks.  Each ``run()`` only orders calls into extract.py / load.py."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import luigi

from cbm_luigi import runlog
from cbm_luigi.errors import CbmError
from cbm_luigi.extract import MANIFEST, Manifest, extract_dir, extract_to_parquet
from cbm_luigi.load import merge, stage
from cbm_luigi.metadata import MetadataStore, TableSpec
from cbm_luigi.naming import sql_safe
from cbm_luigi.sources import open_source
from cbm_luigi.sources.flavors import incremental_window
from cbm_luigi.tasks.common import (
    MODES, PRIORITY_VALUES, BatchParameter, MarkerTarget, StagingTarget, settings, table_spec, target,
)

log = logging.getLogger(__name__)


class TableStep(luigi.Task):
    """Parameters shared by the three steps of one table."""

    table = luigi.Parameter(description="source table name (e.g. produit, Order-Line or order_line)")
    mode = luigi.ChoiceParameter(choices=MODES, default="incremental", description="full | incremental")
    batch = BatchParameter(default="", description="run key; default: today (or this hour)")

    step_name = "flow"

    @property
    def spec(self) -> TableSpec:
        return table_spec(settings().target, self.table)

    def extract_path(self) -> Path:
        # No I/O here: the path comes from the name as typed, made SQL-safe and lower-cased.
        safe = sql_safe(self.table).lower()
        return settings().cache_dir / safe / f"{self.batch.replace(':', '-')}__{self.mode}"

    def manifest(self) -> Manifest:
        return Manifest.read(self.extract_path())

    def status(self, message: str) -> None:
        """The status line shown in the scheduler's web view (set by the worker while the task runs)."""
        setter = getattr(self, "set_status_message", None)
        if callable(setter):
            setter(message)


@TableStep.event_handler(luigi.Event.FAILURE)
def _log_failure(task: TableStep, exc: BaseException) -> None:
    """Record the failure in etl.ETL_Log (own transaction) before Luigi reports it."""
    try:
        table = task.spec.table_name
    except Exception:  # noqa: BLE001 - the spec itself may be what failed
        table = task.table
    runlog.write_log_now(target(), table, task.step_name, "failed", batch=task.batch, mode=task.mode,
                         error=f"{type(exc).__name__}: {exc}")


class ExtractParquet(TableStep):
    """Source rows of the batch's window -> snappy parquet with hashdiff and technical columns."""

    step_name = "extract"
    resources = {"source_connections": 1}  # noqa: RUF012 - Luigi reads a class attribute

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget(str(self.extract_path() / MANIFEST))

    def run(self) -> None:
        spec = self.spec
        tgt = target()
        store = MetadataStore(tgt)
        window = incremental_window(spec, self.mode, store.watermark(spec.table_name))
        s = settings()

        def progress(rows: int, seconds: float) -> None:
            rate = rows / seconds if seconds > 0 else 0.0
            self.status(f"{spec.table_name}: {rows:,} rows read ({rate:,.0f} rows/s)")

        with open_source(s) as source:
            manifest = extract_to_parquet(
                spec, source, window=window, out_dir=self.extract_path(), batch=self.batch, mode=self.mode,
                run_id=runlog.RUN_ID, min_date=tgt.dialect.min_date, max_date=tgt.dialect.max_date,
                batch_rows=s.extract_batch_rows, rows_per_file=s.rows_per_parquet_file, progress=progress,
            )
        with tgt.begin() as conn:
            runlog.write_log(conn, spec.table_name, "extract", "success", batch=self.batch, mode=self.mode,
                             rows=manifest.rows, duration=manifest.extract_seconds - manifest.transform_seconds)
            runlog.write_log(conn, spec.table_name, "transform", "success", batch=self.batch, mode=self.mode,
                             rows=manifest.rows, duration=manifest.transform_seconds,
                             error=str(manifest.cleaning) if any(manifest.cleaning.values()) else None)


class LoadStaging(TableStep):
    """The extract bulk loaded into stg.<table>, replacing what it held, in one transaction."""

    step_name = "load_staging"

    def requires(self) -> ExtractParquet:
        return ExtractParquet(table=self.table, mode=self.mode, batch=self.batch)

    def output(self) -> StagingTarget:
        return StagingTarget(settings().target, self.table, self.batch)

    def run(self) -> None:
        manifest = self.manifest()
        self.status(f"{self.spec.table_name}: staging {manifest.rows:,} rows")
        try:
            stage(target(), self.spec, manifest, manifest.paths(self.extract_path()))
        except CbmError:
            raise
        except Exception as exc:
            raise target().dialect.translate_error(exc, table=self.spec.table_name, step=self.step_name) from exc


class MergeOds(TableStep):
    """stg.<table> merged into ods.<table>; watermark, marker and run log in the same transaction."""

    step_name = "merge_ods"

    @property
    def priority(self) -> int:  # type: ignore[override]
        try:
            return PRIORITY_VALUES[self.spec.priority]
        except Exception:  # noqa: BLE001 - an unknown table fails in run(), with its message
            return 0

    def requires(self) -> LoadStaging:
        return LoadStaging(table=self.table, mode=self.mode, batch=self.batch)

    def output(self) -> MarkerTarget:
        return MarkerTarget(settings().target, self.table, self.batch)

    def run(self) -> None:
        started = time.perf_counter()
        manifest = self.manifest()
        try:
            counts = merge(target(), self.spec, manifest,
                           flow_seconds=manifest.extract_seconds + (time.perf_counter() - started))
        except CbmError:
            raise
        except Exception as exc:
            raise target().dialect.translate_error(exc, table=self.spec.table_name, step=self.step_name) from exc
        self.status(
            f"{self.spec.table_name}: {counts.inserted} inserted, {counts.updated} updated, "
            f"{counts.unchanged} unchanged"
        )
