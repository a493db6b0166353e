"""Extraction: source SELECT -> Arrow record batches -> transform -> snappy parquet files + manifest.

Reads the table spec and the source; writes ``<cache>/<table>/<batch>__<mode>/`` holding ``part-NNNNN.parquet``
files (and ``keys-NNNNN.parquet``, the key scan of an incremental run with DeleteScan) and ``_manifest.json``.
Everything is written into a temporary sibling directory and renamed when
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
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime
from pathlib import Path
from queue import Queue
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from cbm_luigi.config.faults import kill_point
from cbm_luigi.errors import ConfigError, DataError, SourceError
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
    UNKNOWN_DECIMAL_SCALE,
)
from cbm_luigi.pipeline import openedge, transform
from cbm_luigi.pipeline.sources import Source
from cbm_luigi.pipeline.sources.errors import explain as explain_source_error
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
        # neither precision nor scale in the catalog (an unconstrained numeric): read as text, DECIMAL(38, 10)
        s = col.scale if col.scale is not None else (UNKNOWN_DECIMAL_SCALE if col.precision is None else 0)
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
    """The Arrow schema the source's rows are read into: one field per loaded column.  An extent column (its
    ';'-joined text) and a DATETIME-TZ column (selected as its text, :meth:`SourceFlavor.column_expression`) are
    read as strings, then reshaped into :func:`stored_schema` (``pipeline/openedge.py``)."""
    return pa.schema([pa.field(c.sql_name, pa.string() if c.extent > 0 or c.logical_type == TIMESTAMP_TZ
                               else arrow_type(c)) for c in spec.loaded_columns])


def stored_schema(spec: TableSpec) -> pa.Schema:
    """The Arrow schema of the business columns in the parquet cache, staging and the ODS (``stored_columns``)."""
    return pa.schema([pa.field(c.sql_name, arrow_type(c)) for c in spec.stored_columns])


def scans_keys(spec: TableSpec, window: Window) -> bool:
    """True when the extract also reads the source's keys (docs/OPERATIONS.md, "Deletes on incremental runs"):
    DeleteScan on a table with DeleteDetection, and a window that reads part of the table (a full read lists
    every key itself)."""
    return spec.delete_scan and spec.delete_detection and window.since is not None


def key_spec(spec: TableSpec) -> TableSpec:
    """The table reduced to its key columns: the key scan reads, reshapes and cleans them as the extraction does."""
    return replace(spec, columns=tuple(spec.column(k) for k in spec.primary_key))


#: rows per batch of the key scan (at least): a few narrow columns, so far more rows than a data batch
KEY_BATCH_ROWS = 100_000


def scan_keys(spec: TableSpec, source: Source, directory: Path, *, min_date: date, max_date: date,
              batch_rows: int = KEY_BATCH_ROWS, rows_per_file: int = 1_000_000) -> tuple[list[str], int]:
    """Read the primary key of every source row the FilterClause keeps into ``keys-NNNNN.parquet`` files under
    ``directory``; returns (file names, rows).

    Streamed batch by batch (memory bounded by one batch, whatever the table size) and cleaned by the
    extraction's own rules, so that a key compares equal to the one the ODS holds.  At least one file is written
    (an empty one carrying the schema when the source holds no row)."""
    sql, params = source.flavor.select_keys_sql(spec, source.schema)
    log.debug("%s: key scan %s", spec.table_name, sql)
    keys = key_spec(spec)
    schema = source_schema(keys)
    widths = sql_widths(keys)

    def clean(rb: pa.RecordBatch) -> pa.RecordBatch:
        shaped = openedge.reshape_batch(rb, keys).select(list(spec.primary_key))
        cleaned, _ = transform.clean_batch(shaped, min_date=min_date, max_date=max_date, widths=widths,
                                           truncate_too_wide=spec.width_policy == "truncate")
        return cleaned

    files: list[str] = []
    rows = rows_in_file = 0
    writer: pq.ParquetWriter | None = None
    try:
        try:
            for rb in source.read_batches(sql, params, schema, max(batch_rows, 1)):
                cleaned = clean(rb)
                if writer is None or rows_in_file >= rows_per_file:
                    if writer is not None:
                        writer.close()
                    files.append(f"keys-{len(files):05d}.parquet")
                    writer = _parquet_writer(directory / files[-1], cleaned.schema)
                    rows_in_file = 0
                writer.write_batch(cleaned)
                rows += cleaned.num_rows
                rows_in_file += cleaned.num_rows
        except SourceError as exc:  # a key column gone, a FilterClause refused: named with the fix
            better = explain_source_error(spec, source.schema, exc)
            if better is None:
                raise
            raise better from exc
        except transform.ValueTooWide as exc:  # a key (any row, not only the window's) too wide: as the data read
            raise SourceError(too_wide_message(spec, exc)) from exc
        if writer is None:
            empty = clean(pa.RecordBatch.from_arrays([pa.array([], f.type) for f in schema], schema=schema))
            files.append("keys-00000.parquet")
            writer = _parquet_writer(directory / files[-1], empty.schema)
            writer.write_batch(empty)
    finally:
        if writer is not None:
            writer.close()
    return files, rows


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
    #: bytes of each file when written: a file changed since (a corrupt or truncated copy) invalidates the extract
    sizes: dict[str, int] = field(default_factory=dict)
    #: the key scan of an incremental run with DeleteScan (``keys-NNNNN.parquet``, the primary key of every source
    #: row the FilterClause keeps, read after the data): empty when there was none (full runs, older manifests)
    key_files: list[str] = field(default_factory=list)
    key_rows: int = 0
    key_seconds: float = 0.0  # the key scan's time, included in extract_seconds

    @property
    def source_clock_ts(self) -> datetime:
        return datetime.fromisoformat(self.source_clock)

    def paths(self, directory: Path) -> list[Path]:
        return [directory / f for f in self.files]

    def key_paths(self, directory: Path) -> list[Path]:
        """The key scan's files (none when the run scanned no keys)."""
        return [directory / f for f in self.key_files]

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


def remove_leftovers(out_dir: Path) -> list[Path]:
    """Remove the temporary folders of earlier extracts of the same (table, batch, mode) that never finished
    (a process killed by SIGKILL, or a driver crash, runs no cleanup).  Only one extract of a (table, batch,
    mode) runs at a time (the scheduler runs a task once), so any such folder is dead."""
    removed = []
    for p in out_dir.parent.glob(f".tmp-{out_dir.name}-*"):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    if removed:
        log.info("%s: removed %d unfinished extract folder(s) of an earlier run: %s", out_dir.parent.name,
                 len(removed), ", ".join(p.name for p in removed))
    return removed


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
    stored = stored_schema(spec)
    hash_cols = list(spec.business_columns)
    load_ts = datetime.now().replace(microsecond=0)

    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # the cache itself: name the setting
        check_cache_dir(out_dir.parent.parent)
        raise ConfigError(f"table {spec.table_name}: cannot write its extract under {out_dir.parent} "
                          f"(CBM_CACHE_DIR): {exc}") from exc
    remove_leftovers(out_dir)
    tmp = out_dir.parent / f".tmp-{out_dir.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    files: list[str] = []
    rows = 0
    waited = 0.0  # writer blocked on a transform
    work = 0.0  # transform work, summed over the workers
    cleaning = transform.CleaningStats({}, {})
    writer: pq.ParquetWriter | None = None
    rows_in_file = 0

    widths = sql_widths(spec)

    def transform_one(rb: pa.RecordBatch) -> tuple[pa.RecordBatch, transform.CleaningStats, Any, float]:
        t0 = time.perf_counter()
        try:
            out, stats = transform.transform_batch(  # extents split, DATETIME-TZ as instant + offset first
                openedge.reshape_batch(rb, spec), hash_columns=hash_cols, date_modif_col=spec.date_modif_col,
                load_ts=load_ts, min_date=min_date, max_date=max_date, widths=widths,
                truncate_too_wide=spec.width_policy == "truncate", refuse_out_of_range=spec.out_of_range_dates == "refuse",
            )
        except transform.ValueTooWide as exc:  # WidthPolicy=refuse (docs/OPERATIONS.md, "OpenEdge: SQL width")
            raise SourceError(too_wide_message(spec, exc)) from exc
        except transform.DateOutOfRange as exc:  # OutOfRangeDates=refuse
            raise DataError(out_of_range_message(spec, exc)) from exc
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
        kill_point("extract.batch")

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
        except SourceError as exc:  # the driver's words in the table's terms (object named, fix said)
            better = explain_source_error(spec, source.schema, exc)
            if better is None:
                raise
            raise better from exc
        finally:
            queue.put(None)
            writer_thread.join()
        if failed:
            raise failed[0]
        if writer is None:  # no rows: still write an empty file carrying the schema
            empty = transform.add_technical_columns(
                pa.RecordBatch.from_arrays([pa.array([], f.type) for f in stored], schema=stored),
                hash_columns=hash_cols, date_modif_col=spec.date_modif_col, load_ts=load_ts,
            )
            files.append("part-00000.parquet")
            writer = _parquet_writer(tmp / files[-1], empty.schema)
            writer.write_batch(empty)
        writer.close()
        writer = None
        key_files: list[str] = []
        key_rows = 0
        key_seconds = 0.0
        if scans_keys(spec, window):  # after the data: a row the data read holds is in the scan unless deleted since
            t0 = time.perf_counter()
            key_files, key_rows = scan_keys(spec, source, tmp, min_date=min_date, max_date=max_date,
                                            batch_rows=max(batch_rows, KEY_BATCH_ROWS), rows_per_file=rows_per_file)
            key_seconds = time.perf_counter() - t0
            log.info("%s: key scan read %d keys in %.2fs", spec.table_name, key_rows, key_seconds)
        manifest = Manifest(
            table=spec.table_name, batch=batch, mode=mode, source_clock=clock.isoformat(),
            window=window.reason, window_since=window.since.isoformat() if window.since else None, rows=rows,
            files=files, columns=[f.name for f in stored_schema(spec)], hash_columns=hash_cols, run_id=run_id,
            extract_seconds=round(time.perf_counter() - started, 3),
            transform_seconds=round(waited, 3), cleaning=cleaning.as_dict(),
            created=datetime.now().isoformat(timespec="seconds"), transform_work_seconds=round(work, 3),
            started=began.isoformat(timespec="microseconds"),
            sizes={f: (tmp / f).stat().st_size for f in [*files, *key_files]},
            key_files=key_files, key_rows=key_rows, key_seconds=round(key_seconds, 3),
        )
        (tmp / MANIFEST).write_text(json.dumps(asdict(manifest), indent=2), encoding="utf-8")
        kill_point("extract.before_rename")
        if out_dir.exists():  # a leftover without manifest cannot be complete: replace it
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
        kill_point("extract.after_rename")
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


def check_cache_dir(cache_dir: Path) -> None:
    """Refuse a cache that is not a writable directory, naming CBM_CACHE_DIR (``cbm-etl run`` checks it before any
    table runs, exit 2, instead of every extract failing on a raw ``NotADirectoryError``)."""
    where = f"CBM_CACHE_DIR ({cache_dir})"
    existing = next((p for p in (cache_dir, *cache_dir.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        what = "is a file" if existing == cache_dir else f"is under {existing}, which is a file"
        raise ConfigError(f"{where} {what}, not a directory: point CBM_CACHE_DIR at a directory (in .env or "
                          "[cbm] cache_dir), or move the file away")
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        probe = cache_dir / f".write-test-{uuid.uuid4().hex[:8]}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"{where} is not writable by this user ({exc.strerror or exc}): fix its permissions "
                          "(chmod/chown) or point CBM_CACHE_DIR at a writable directory") from exc


def extract_problem(directory: Path) -> str | None:
    """Why the extract in ``directory`` cannot be used (its manifest unreadable, a file (data or key scan) missing,
    of another size than recorded, unreadable as parquet, or rows that do not add up to the manifest's), or None
    when it is sound.
    Reads only the manifest and each file's parquet footer."""
    try:
        manifest = Manifest.read(directory)
    except (OSError, ValueError, TypeError) as exc:
        return f"{MANIFEST} unreadable ({type(exc).__name__}: {exc})"
    rows = {"data": 0, "keys": 0}
    for kind, names in (("data", manifest.files), ("keys", manifest.key_files)):
        for name in names:
            path = directory / name
            try:
                size = path.stat().st_size
                if name in manifest.sizes and size != manifest.sizes[name]:
                    return f"{name} is {size} bytes, the manifest recorded {manifest.sizes[name]}"
                rows[kind] += pq.read_metadata(path).num_rows
            except FileNotFoundError:
                return f"{name} is missing"
            except (OSError, pa.ArrowException) as exc:
                return f"{name} is not a readable parquet file ({(str(exc).splitlines() or [''])[0]})"
    if rows["data"] != manifest.rows:
        return f"its files hold {rows['data']} rows, the manifest recorded {manifest.rows}"
    if rows["keys"] != manifest.key_rows:
        return f"its key files hold {rows['keys']} keys, the manifest recorded {manifest.key_rows}"
    return None


#: the prefix of a warning kept in a successful step's ErrorMessage (the run summary shows it)
WARNING_PREFIX = "WARNING: "


def empty_full_extract_warning(target: Any, spec: TableSpec, manifest: Manifest) -> str | None:
    """A full extract that read no row of a table whose ODS holds rows: most likely a failed export, a table
    emptied by mistake or a wrong FilterClause.  The load proceeds (delete detection refuses it beyond its guard);
    the warning goes to the log, the run log and the run summary."""
    if manifest.mode != "full" or manifest.rows:
        return None
    try:
        held = int(target.fetchall(f"SELECT COUNT(*) FROM {target.dialect.qualified('ods', spec.sql_name)}")[0][0])
    except Exception:  # noqa: BLE001 - no ODS table yet (first load): nothing to compare with
        return None
    if not held:
        return None
    text = (f"{WARNING_PREFIX}table {spec.table_name}: the full load read 0 rows from the source but "
            f"ods.{spec.sql_name} holds {held}: check the source table and its FilterClause in config.ETL_Tables "
            "(the ODS rows are kept; with delete detection the guard refuses marking them)")
    log.warning("%s", text)
    return text


# --- OpenEdge: SQL width and out-of-range dates (docs/OPERATIONS.md, "OpenEdge: SQL width and out-of-range dates")


def sql_widths(spec: TableSpec) -> dict[str, int]:
    """The SQL width (characters) of each character column that has one, by SQL name: what every batch is checked
    against (WidthPolicy).  Extent columns are left out: their ';'-joined text is not bound by one element's
    width."""
    return {c.sql_name: int(c.width) for c in spec.loaded_columns
            if c.logical_type == STRING and c.width and c.width > 0 and not c.extent}


def _source_name(spec: TableSpec, sql_name: str) -> str:
    return next((c.column_name for c in spec.loaded_columns if c.sql_name == sql_name), sql_name)


def too_wide_message(spec: TableSpec, exc: transform.ValueTooWide) -> str:
    """WidthPolicy=refuse: the column, the longest value, the SQL width and both fixes."""
    table, column = spec.table_name, _source_name(spec, exc.column)
    return (f"table {table}: column {column} holds values longer than its SQL width of {exc.width} characters "
            f"({exc.count} in one batch, the longest {exc.longest} characters): Progress's ABL does not enforce the "
            f"SQL width (_Field._Width) and its SQL engine refuses such rows (\"has value exceeding its max length "
            f"or precision\"). Fix: the DBA widens the SQL width with dbtool (option 2, 'SQL Width Scan w/Fix "
            f"Option'; option 1 reports first), then run cbm-etl sync-columns {table}; or load the values cut to "
            f"the width: WidthPolicy = 'truncate' for this table in config.ETL_Tables (cbm-etl add-table {table} "
            f"--pk {','.join(spec.primary_key)} --width-policy truncate, with its other options)")


def out_of_range_message(spec: TableSpec, exc: transform.DateOutOfRange) -> str:
    """OutOfRangeDates=refuse: the column, the first value, the target's range and both fixes."""
    table, column = spec.table_name, _source_name(spec, exc.column)
    return (f"table {table}: column {column} holds dates outside the target's range {exc.min_date}..{exc.max_date} "
            f"({exc.count} in one batch, the first {exc.first}): OutOfRangeDates is 'refuse', so nothing is loaded. "
            f"Fix: correct the value in the source (the DBA's dbtool 'SQL Width & Date Scan w/Report Option' lists "
            f"them), or set OutOfRangeDates = 'null' for this table in config.ETL_Tables (cbm-etl add-table "
            f"{table} --pk {','.join(spec.primary_key)} --out-of-range-dates null, with its other options): "
            "they are then loaded as NULL and reported")


def cleaning_warning(spec: TableSpec, manifest: Manifest, min_date: date, max_date: date) -> str | None:
    """Dates nulled for being outside the target's range (each column, its count and first value) and values cut
    to their SQL width (WidthPolicy=truncate): a warning for the run log's extract row, which the run summary
    shows, like the 0-row warning.  None when the extract changed no such value."""
    nulled = manifest.cleaning.get("nulled_out_of_range") or {}
    first = manifest.cleaning.get("first_out_of_range") or {}
    cut = manifest.cleaning.get("truncated_too_wide") or {}
    if not nulled and not cut:
        return None
    widths = sql_widths(spec)
    parts = []
    if nulled:
        cols = ", ".join(f"{_source_name(spec, c)} ({n} value(s)" + (f", the first {first[c]})" if c in first else ")")
                         for c, n in sorted(nulled.items()))
        parts.append(f"dates outside the target's range {min_date}..{max_date} loaded as NULL: {cols} (correct "
                     "them in the source, or OutOfRangeDates = 'refuse' to fail instead)")
    if cut:
        cols = ", ".join(f"{_source_name(spec, c)} ({n} value(s) cut to {widths.get(c, '?')} characters)"
                         for c, n in sorted(cut.items()))
        parts.append(f"values longer than their SQL width truncated (WidthPolicy = 'truncate'): {cols}")
    text = f"{WARNING_PREFIX}table {spec.table_name}: " + "; ".join(parts)
    log.warning("%s", text)
    return text
