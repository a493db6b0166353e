"""Extraction: source SELECT -> Arrow record batches -> transform -> snappy parquet files + manifest.

Reads the table spec and the source; writes ``<cache>/<table>/<batch>__<mode>/`` holding ``part-NNNNN.parquet``
files and ``_manifest.json``.  Everything is written into a temporary sibling directory and renamed when
complete, so a half-written extract never counts as done.  Reading, transforming and writing overlap (a small
thread pipeline); memory is bounded by a few record batches, whatever the table size.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from pathlib import Path
from queue import Queue
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from cbm_luigi.errors import SourceError
from cbm_luigi.model.naming import sql_safe
from cbm_luigi.model.specs import ColumnSpec, TableSpec
from cbm_luigi.model.types import (
    BIGINT,
    BINARY,
    BOOLEAN,
    DATE,
    DECIMAL,
    FLOAT,
    INTEGER,
    STRING,
    TIMESTAMP,
    TIMESTAMP_TZ,
)
from cbm_luigi.pipeline import transform
from cbm_luigi.pipeline.sources import Source
from cbm_luigi.pipeline.sources.flavors import Window

log = logging.getLogger(__name__)
MANIFEST = "_manifest.json"


def arrow_type(col: ColumnSpec, max_precision: int = 38) -> pa.DataType:
    """The Arrow type a column is read into (the parquet cache's schema)."""
    t = col.logical_type
    if t == STRING:
        return pa.string()
    if t == INTEGER:
        return pa.int32()
    if t == BIGINT:
        return pa.int64()
    if t == DECIMAL:
        s = col.scale or 0
        p = min(max(col.precision or max_precision, s, 1), max_precision)
        return pa.decimal128(p, min(s, p))
    if t == FLOAT:
        return pa.float64()
    if t == BOOLEAN:
        return pa.bool_()
    if t == DATE:
        return pa.date32()
    if t == TIMESTAMP:
        return pa.timestamp("us")
    if t == TIMESTAMP_TZ:
        return pa.timestamp("us", tz="UTC")
    if t == BINARY:
        return pa.binary()
    raise SourceError(f"column {col.column_name}: unknown logical type {t!r}")


def source_schema(spec: TableSpec) -> pa.Schema:
    return pa.schema([pa.field(c.sql_name, arrow_type(c)) for c in spec.loaded_columns])


@dataclass
class Manifest:
    """What an extract holds; written last, read by the staging and merge steps."""

    table: str
    batch: str
    mode: str
    source_clock: str  # ISO, the source's clock when the extraction started: the next watermark
    window: str
    window_since: str | None
    rows: int
    files: list[str]
    columns: list[str]
    hash_columns: list[str]
    run_id: str
    extract_seconds: float
    transform_seconds: float
    cleaning: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    transform_work_seconds: float = 0.0  # transform work summed over the worker threads (overlaps the read)
    # ISO, local time (the clock of etl.ETL_Log.LogTs) the extract step started: the start of the table's flow,
    # from which the merge measures its duration (docs/OPERATIONS.md, "Durations").  '' in older manifests.
    started: str = ""

    @property
    def source_clock_ts(self) -> datetime:
        return datetime.fromisoformat(self.source_clock)

    def paths(self, directory: Path) -> list[Path]:
        return [directory / f for f in self.files]

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        data = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
        return cls(**data)


def table_cache_dir(cache_dir: Path, table: str) -> Path:
    """The cache folder of a table: its SQL-safe name in lower case (the same for every spelling of it)."""
    return cache_dir / sql_safe(table).lower()


def extract_dir(cache_dir: Path, table: str, batch: str, mode: str) -> Path:
    """Where the extract of (table, batch, mode) lives; computed from names only (no I/O)."""
    return table_cache_dir(cache_dir, table) / f"{batch.replace(':', '-')}__{mode}"


class BatchSink(Protocol):
    """Where transformed batches go besides the parquet files (a staging table loaded while extracting).

    ``encode`` runs in a transform worker thread (it must not touch shared state); ``write`` runs in the writing
    thread, in batch order.
    """

    def encode(self, batch: pa.RecordBatch) -> Any: ...

    def write(self, encoded: Any) -> None: ...


def extract_to_parquet(
    spec: TableSpec,
    source: Source,
    *,
    window: Window,
    out_dir: Path,
    batch: str,
    mode: str,
    run_id: str,
    min_date: date,
    max_date: date,
    batch_rows: int = 10_000,
    rows_per_file: int = 1_000_000,
    progress: Callable[[int, float], None] | None = None,
    workers: int = 2,
    sink: BatchSink | None = None,
    step_started: datetime | None = None,
) -> Manifest:
    """Run the extraction and write the extract atomically.  Returns its manifest.

    A pipeline of threads: this one pulls batches from the source (arrow-odbc fetches the next one on a thread of
    its own) and hands each to one of ``workers`` transform threads (pyarrow compute and hashlib release the GIL);
    a writer thread writes their results, in order, to the parquet files and to ``sink``.  At most
    ``2 * workers + 1`` batches are in flight: memory is bounded by the batch size, not the table size.
    ``transform_seconds`` in the manifest is the time the writer waited for transforms (the part not hidden behind
    the read); ``transform_work_seconds`` the transform work itself.  ``step_started``: when the extract step
    began (the task's start, before its watermark read and progress count), the manifest's ``started``; default
    now.
    """
    began = step_started or datetime.now()
    started = time.perf_counter()
    clock = source.clock()  # before the SELECT: rows changed during the read are caught by the next run
    sql, params = source.flavor.select_sql(spec, source.schema, window)
    log.info("%s: extracting (%s)", spec.table_name, window.reason)
    log.debug("%s: %s %s", spec.table_name, sql, params)
    schema = source_schema(spec)
    hash_cols = list(spec.business_columns)
    load_ts = datetime.now().replace(microsecond=0)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".tmp-{out_dir.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    files: list[str] = []
    rows = 0
    waited = 0.0  # writer blocked on a transform
    work = 0.0  # transform work, summed over the workers
    cleaning = transform.CleaningStats({}, {})
    writer: pq.ParquetWriter | None = None
    rows_in_file = 0

    def transform_one(rb: pa.RecordBatch) -> tuple[pa.RecordBatch, transform.CleaningStats, Any, float]:
        t0 = time.perf_counter()
        out, stats = transform.transform_batch(
            rb, hash_columns=hash_cols, date_modif_col=spec.date_modif_col, load_ts=load_ts,
            min_date=min_date, max_date=max_date,
        )
        encoded = sink.encode(out) if sink is not None else None
        return out, stats, encoded, time.perf_counter() - t0

    def write_one(result: tuple[pa.RecordBatch, transform.CleaningStats, Any, float]) -> None:
        nonlocal writer, rows, rows_in_file, work
        out, stats, encoded, seconds = result
        work += seconds
        cleaning.merge(stats)
        if writer is None or rows_in_file >= rows_per_file:
            if writer is not None:
                writer.close()
            files.append(f"part-{len(files):05d}.parquet")
            writer = _parquet_writer(tmp / files[-1], out.schema)
            rows_in_file = 0
        writer.write_batch(out)
        if sink is not None:
            sink.write(encoded)
        rows += out.num_rows
        rows_in_file += out.num_rows

    def wait(future: Future[tuple[pa.RecordBatch, transform.CleaningStats, Any, float]]
             ) -> tuple[pa.RecordBatch, transform.CleaningStats, Any, float]:
        nonlocal waited
        t0 = time.perf_counter()
        result = future.result()
        waited += time.perf_counter() - t0
        return result

    workers = max(1, workers)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cbm-transform")
    queue: Queue[Future[tuple[pa.RecordBatch, transform.CleaningStats, Any, float]] | None] = Queue(workers)
    failed: list[BaseException] = []

    def write_all() -> None:
        while (future := queue.get()) is not None:
            if failed:
                continue  # drain, so that the reader never blocks on a full queue
            try:
                write_one(wait(future))
            except BaseException as exc:  # noqa: BLE001 - handed to the reading thread
                failed.append(exc)

    writer_thread = threading.Thread(target=write_all, name="cbm-writer", daemon=True)
    writer_thread.start()
    try:
        try:
            for rb in source.read_batches(sql, params, schema, batch_rows):
                if failed:
                    break
                queue.put(pool.submit(transform_one, rb))
                if progress:  # from this thread: the task's status line is not for the writer thread to set
                    progress(rows, time.perf_counter() - started)
        finally:
            queue.put(None)
            writer_thread.join()
        if failed:
            raise failed[0]
        if writer is None:  # no rows: still write an empty file carrying the schema
            empty = transform.add_technical_columns(
                pa.RecordBatch.from_arrays([pa.array([], f.type) for f in schema], schema=schema),
                hash_columns=hash_cols, date_modif_col=spec.date_modif_col, load_ts=load_ts,
            )
            files.append("part-00000.parquet")
            writer = _parquet_writer(tmp / files[-1], empty.schema)
            writer.write_batch(empty)
        writer.close()
        writer = None
        manifest = Manifest(
            table=spec.table_name, batch=batch, mode=mode, source_clock=clock.isoformat(),
            window=window.reason, window_since=window.since.isoformat() if window.since else None, rows=rows,
            files=files, columns=[f.name for f in schema], hash_columns=hash_cols, run_id=run_id,
            extract_seconds=round(time.perf_counter() - started, 3),
            transform_seconds=round(waited, 3), cleaning=cleaning.as_dict(),
            created=datetime.now().isoformat(timespec="seconds"), transform_work_seconds=round(work, 3),
            started=began.isoformat(timespec="microseconds"),
        )
        (tmp / MANIFEST).write_text(json.dumps(asdict(manifest), indent=2), encoding="utf-8")
        if out_dir.exists():  # a leftover without manifest cannot be complete: replace it
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        if writer is not None:
            writer.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        # The staging and merge steps that follow in this process need memory of their own (DuckDB's buffer
        # pool): hand back what the batches used instead of keeping it in Arrow's allocator.
        pa.default_memory_pool().release_unused()
    if cleaning.total():
        log.warning("%s: cleaning changed values: %s", spec.table_name, cleaning.as_dict())
    log.info("%s: extracted %d rows in %.2fs (transform %.2fs, of which %.2fs not overlapped with the read)",
             spec.table_name, rows, manifest.extract_seconds, work, waited)
    return manifest


def _parquet_writer(path: Path, schema: pa.Schema) -> pq.ParquetWriter:
    """Snappy parquet; no dictionary encoding: ERP columns are mostly distinct values, and building the
    dictionaries cost more CPU than snappy itself (docs/PERFORMANCE.md)."""
    return pq.ParquetWriter(path, schema, compression="snappy", use_dictionary=False)
