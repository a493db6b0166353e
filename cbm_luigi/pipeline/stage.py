"""Staging and merge steps: parquet extract -> ``stg.<table>`` -> MERGE into ``ods.<table>``.

``stage``: checks keys (no duplicates, no NULLs) on the parquet files, then in ONE transaction, under the table's
lock (``Connection.lock_table``: two runs at once never create or load the same staging table together), creates
or evolves ``stg.<table>``, empties it, bulk loads it, and records which batch it holds (etl.ETL_StagingState).
``merge``: in ONE transaction checks that staging holds its batch, creates or evolves ``ods.<table>``, merges,
moves the watermark forward, writes the completion marker and the run-log rows.  A crash anywhere rolls back
to the state before the step; re-running finishes exactly what is missing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import duckdb

from cbm_luigi.config.faults import kill_point
from cbm_luigi.destinations.client import Connection, Target, is_driver_error
from cbm_luigi.destinations.types import ColumnDef
from cbm_luigi.errors import DataError, TargetError
from cbm_luigi.model.naming import quote_ident as _dq
from cbm_luigi.model.specs import TableSpec
from cbm_luigi.pipeline.extract import Manifest
from cbm_luigi.pipeline.transform import TECHNICAL_COLUMNS
from cbm_luigi.store import runlog
from cbm_luigi.store.staging_state import clear_staging_state, set_staging_state

log = logging.getLogger(__name__)


def check_keys(spec: TableSpec, files: Sequence[Path], sample: int = 5) -> None:
    """Refuse an extract whose primary key has duplicates or NULLs, naming sample keys."""
    if not files:
        return
    keys = ", ".join(_dq(k) for k in spec.primary_key)
    con = duckdb.connect()
    try:
        rel = "read_parquet(?)"
        paths = [str(f) for f in files]
        null_cond = " OR ".join(f"{_dq(k)} IS NULL" for k in spec.primary_key)
        nulls = con.execute(f"SELECT COUNT(*) FROM {rel} WHERE {null_cond}", [paths]).fetchone()
        if nulls and nulls[0]:
            raise DataError(
                f"table {spec.table_name}: {nulls[0]} row(s) have a NULL in the primary key "
                f"({', '.join(spec.primary_key)}); fix the source or PrimaryKeyCols. ODS left untouched."
            )
        dups = con.execute(
            f"SELECT {keys}, COUNT(*) AS n FROM {rel} GROUP BY {keys} HAVING COUNT(*) > 1 "
            f"ORDER BY n DESC, {keys} LIMIT {int(sample)}", [paths],
        ).fetchall()
        if dups:
            total = con.execute(
                f"SELECT COUNT(*) FROM (SELECT {keys} FROM {rel} GROUP BY {keys} HAVING COUNT(*) > 1)", [paths]
            ).fetchone()
            shown = "; ".join(
                ", ".join(f"{k}={v!r}" for k, v in zip(spec.primary_key, row[:-1], strict=True)) + f" (x{row[-1]})"
                for row in dups
            )
            raise DataError(
                f"table {spec.table_name}: {total[0] if total else len(dups)} duplicate primary key(s) "
                f"({', '.join(spec.primary_key)}) in the extract, e.g. {shown}. "
                "Check PrimaryKeyCols in config.ETL_Tables. The ODS was left untouched."
            )
    finally:
        con.close()


def _manifest_columns(spec: TableSpec, manifest: Manifest) -> list[ColumnDef]:
    """Staging columns of this extract (the spec may have changed since the extract was taken)."""
    d_cols = {c.sql_name: c for c in (*spec.columns, *spec.stored_columns)}
    missing = [c for c in manifest.columns if c not in d_cols]
    if missing:
        raise TargetError(
            f"table {spec.table_name}: extract of batch {manifest.batch} has column(s) {', '.join(missing)} "
            "unknown to config.ETL_Columns; remove the extract (cbm-etl cleanup-cache) and run again"
        )
    return [ColumnDef(c, "") for c in manifest.columns]


def stage_keys(target: Target, conn: Connection, spec: TableSpec, manifest: Manifest, files: Sequence[Path]) -> None:
    """The extract's key scan (incremental runs with DeleteScan) into ``stg.<table>__keys``, emptied first; nothing
    when the extract has none.  ``files``: the extract's data files (the key files lie next to them).

    Called in the transaction that records which batch staging holds: the merge only merges that batch, so it
    never compares the ODS with the keys of another batch, nor with a scan half loaded by a killed run.
    """
    if not manifest.key_files:
        return
    d = target.dialect
    keys_table = d.keys_table(spec)
    target.ensure_table(conn, "stg", keys_table, d.keys_columns(spec))
    conn.execute(d.truncate_sql("stg", keys_table))
    loaded = d.load_keys(conn, spec, manifest.key_paths(Path(files[0]).parent) if files else [])
    if loaded >= 0 and loaded != manifest.key_rows:
        raise TargetError(f"table {spec.table_name}: loaded {loaded} keys into stg.{keys_table} but the key scan of "
                          f"batch {manifest.batch} holds {manifest.key_rows}; rolled back")
    log.info("%s: %d keys of the key scan staged in stg.%s", spec.table_name, manifest.key_rows, keys_table)


def stage(target: Target, spec: TableSpec, manifest: Manifest, files: Sequence[Path]) -> int:
    """Load ``stg.<table>`` with this extract (and ``stg.<table>__keys`` with its key scan), atomically; returns
    the number of rows staged."""
    check_keys(spec, files)
    d = target.dialect
    started = time.perf_counter()
    _manifest_columns(spec, manifest)
    columns = [*manifest.columns, *TECHNICAL_COLUMNS]
    if d.stages_on_own_connection:
        return _stage_on_own_connection(target, spec, manifest, files, columns, started)
    with target.begin(table=spec.table_name, step="load_staging") as conn:
        conn.lock_table(spec.table_name)  # two runs at once: one creates or evolves staging, then the other
        target.ensure_table(conn, "stg", spec.sql_name, d.staging_columns(spec))
        conn.execute(d.truncate_sql("stg", spec.sql_name))
        kill_point("stage.emptied")
        rows = d.load_staging(conn, spec, files, columns)
        if rows >= 0 and rows != manifest.rows:
            raise TargetError(
                f"table {spec.table_name}: staged {rows} rows but the extract holds {manifest.rows}; rolled back"
            )
        stage_keys(target, conn, spec, manifest, files)
        log_id, written = record_staged(conn, spec, manifest, started)
        kill_point("stage.loaded")
    kill_point("stage.committed")
    runlog.add_commit_time(target, [log_id], written)
    log.info("%s: staged %d rows in %.2fs", spec.table_name, manifest.rows, time.perf_counter() - started)
    return manifest.rows


def _stage_on_own_connection(target: Target, spec: TableSpec, manifest: Manifest, files: Sequence[Path],
                             columns: Sequence[str], started: float) -> int:
    """Staging for bulk paths that open their own connection (SQL Server bulk copy with mssql-python).

    Such a connection cannot see (and would block on) a staging table created or emptied in an uncommitted
    transaction.  So: one committed transaction creates or evolves ``stg.<table>``, forgets which batch it held
    and empties it; the dialect bulk loads it; then the step's transaction counts the rows and records the batch.
    The merge only merges a batch recorded by that last transaction: a failure or crash in between leaves
    staging recorded as holding nothing, and the next run reloads it from the parquet cache.
    """
    d = target.dialect
    with target.begin(table=spec.table_name, step="load_staging") as conn:
        conn.lock_table(spec.table_name)
        target.ensure_table(conn, "stg", spec.sql_name, d.staging_columns(spec))
        clear_staging_state(conn, spec.table_name)
        conn.execute(d.truncate_sql("stg", spec.sql_name))
    try:
        loaded = d.bulk_load_staging(target, spec, files, columns)
    except Exception as exc:
        if not is_driver_error(exc):
            raise
        raise d.translate_error(exc, table=spec.table_name, step="load_staging",
                                statement=f"bulk copy into stg.{spec.sql_name}") from exc
    with target.begin(table=spec.table_name, step="load_staging") as conn:
        conn.lock_table(spec.table_name)
        held = int(conn.scalar(d.count_staged_sql(spec)) or 0)
        if held != manifest.rows or (loaded >= 0 and loaded != manifest.rows):
            raise TargetError(
                f"table {spec.table_name}: bulk load reported {loaded} rows and staging holds {held}, but the "
                f"extract holds {manifest.rows}; staging is recorded as holding nothing: run again to reload it"
            )
        stage_keys(target, conn, spec, manifest, files)
        log_id, written = record_staged(conn, spec, manifest, started)
    runlog.add_commit_time(target, [log_id], written)
    log.info("%s: staged %d rows in %.2fs", spec.table_name, manifest.rows, time.perf_counter() - started)
    return manifest.rows


class StagingWhileExtracting:
    """``stg.<table>`` loaded while the extract is written, for dialects with a streaming bulk path (PostgreSQL COPY).

    One transaction, opened before the first batch: create or evolve staging, empty it, stream every transformed
    batch into it (the extract pipeline's :class:`cbm_luigi.pipeline.extract.BatchSink`).  :meth:`commit`, called once the
    extract is complete on disk, checks the keys on the parquet files and the row count, records the batch and the
    load_staging run-log row, and commits: the same result, in the same single transaction, as ``stage``.  Anything
    that goes wrong rolls it back and leaves staging to the LoadStaging step (which then loads the parquet files,
    or reports the duplicate keys).  The LoadStaging step finds the batch staged and does nothing.
    """

    def __init__(self, target: Target, spec: TableSpec) -> None:
        d = target.dialect
        self.spec = spec
        self.target = target
        self._stack = ExitStack()
        try:
            self.conn = self._stack.enter_context(target.begin(table=spec.table_name, step="load_staging"))
            self.conn.lock_table(spec.table_name)  # held to the commit: another run of the table waits here
            target.ensure_table(self.conn, "stg", spec.sql_name, d.staging_columns(spec))
            self.conn.execute(d.truncate_sql("stg", spec.sql_name))
            columns = [*(c.sql_name for c in spec.stored_columns), *TECHNICAL_COLUMNS]
            self.stream = d.open_staging_stream(self.conn, spec, columns)
        except BaseException as exc:
            self._stack.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self._open = True
        self._failed: BaseException | None = None

    # A staging error must not fail the extract: it is rolled back, and the staging step reports it.
    def encode(self, batch: Any) -> Any:
        if self._failed is not None:
            return None
        try:
            return self.stream.encode(batch)
        except Exception as exc:  # noqa: BLE001 - kept, reported by commit()
            self._failed = exc
            return None

    def write(self, encoded: Any) -> None:
        if self._failed is not None or encoded is None:
            return
        try:
            self.stream.write(encoded)
        except Exception as exc:  # noqa: BLE001 - kept, reported by commit()
            self._failed = exc
            self.abort(exc)

    def commit(self, manifest: Manifest, files: Sequence[Path]) -> bool:
        """Finish the COPY and commit staging with its batch; False (rolled back) when LoadStaging must do it."""
        started = time.perf_counter()
        spec = self.spec
        if self._failed is not None:
            self.abort(self._failed)
            log.warning("%s: staging while extracting failed (%s: %s); the staging step loads the extract",
                        spec.table_name, type(self._failed).__name__, self._failed)
            return False
        try:
            check_keys(spec, files)
            _manifest_columns(spec, manifest)
            rows = self.stream.close()
            if rows != manifest.rows:
                raise TargetError(f"table {spec.table_name}: streamed {rows} rows to staging, the extract holds "
                                  f"{manifest.rows}")
            stage_keys(self.target, self.conn, spec, manifest, files)
            log_id, written = record_staged(self.conn, spec, manifest, started)
            self._open = False
            self._stack.close()  # commit
            runlog.add_commit_time(self.target, [log_id], written)
        except Exception as exc:  # noqa: BLE001 - the LoadStaging step redoes it from the parquet files
            self.abort(exc)
            log.warning("%s: staging while extracting rolled back (%s: %s); the staging step loads the extract",
                        spec.table_name, type(exc).__name__, exc)
            return False
        log.info("%s: staged %d rows while extracting (%.2fs after the extract)", spec.table_name, manifest.rows,
                 time.perf_counter() - started)
        return True

    def abort(self, exc: BaseException | None = None) -> None:
        """Roll back (idempotent)."""
        if not self._open:
            return
        self._open = False
        error = exc or TargetError("staging while extracting abandoned")
        try:
            self.stream.abort(error)
        except Exception:  # rolling back anyway
            log.debug("COPY abort failed", exc_info=True)
        try:
            self._stack.__exit__(type(error), error, error.__traceback__)
        except Exception:  # the transaction is gone either way
            log.debug("staging rollback failed", exc_info=True)


@contextmanager
def staging_while_extracting(target: Target, spec: TableSpec, enabled: bool = True
                             ) -> Iterator[StagingWhileExtracting | None]:
    """A :class:`StagingWhileExtracting` when enabled and the dialect streams, else None; rolled back unless
    committed."""
    d = target.dialect
    if not enabled or not d.streams_staging or d.stages_on_own_connection:
        yield None
        return
    try:
        stream = StagingWhileExtracting(target, spec)
    except Exception as exc:  # noqa: BLE001 - the extract goes on; the staging step stages or reports it
        log.warning("%s: cannot stage while extracting (%s: %s)", spec.table_name, type(exc).__name__, exc)
        yield None
        return
    try:
        yield stream
    except BaseException as exc:
        stream.abort(exc)
        raise
    finally:
        stream.abort()


def record_staged(conn: Connection, spec: TableSpec, manifest: Manifest, started: float) -> tuple[str, float]:
    """In the transaction that staged the rows: which batch staging holds, and the load_staging run-log row;
    returns its LogId and when it was written (for :func:`~cbm_luigi.store.runlog.add_commit_time`)."""
    set_staging_state(conn, spec.table_name, batch=manifest.batch, mode=manifest.mode, rows=manifest.rows,
                      source_clock_ts=manifest.source_clock_ts)
    log_id = runlog.write_log(conn, spec.table_name, "load_staging", "success", batch=manifest.batch,
                              mode=manifest.mode, rows=manifest.rows, duration=time.perf_counter() - started)
    return log_id, time.perf_counter()


