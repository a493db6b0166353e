"""Staging and merge steps: parquet extract -> ``stg.<table>`` -> MERGE into ``ods.<table>``.

``stage``: checks keys (no duplicates, no NULLs) on the parquet files, then in ONE transaction creates or
evolves ``stg.<table>``, empties it, bulk loads it, and records which batch it holds (etl.ETL_StagingState).
``merge``: in ONE transaction checks that staging holds its batch, creates or evolves ``ods.<table>``, merges,
moves the watermark forward, writes the completion marker and the run-log rows.  A crash anywhere rolls back
to the state before the step; re-running finishes exactly what is missing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import duckdb

from cbm_luigi import runlog
from cbm_luigi.destinations.base import ColumnDef, Connection, MergeCounts, Target
from cbm_luigi.errors import DataError, TargetError
from cbm_luigi.extract import Manifest
from cbm_luigi.metadata import ETL_STAGING_STATE, ETL_TABLES, TableSpec
from cbm_luigi.naming import quote_ident as _dq
from cbm_luigi.transform import TECHNICAL_COLUMNS

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


@dataclass(frozen=True)
class StagingState:
    batch: str
    mode: str
    rows: int


def _manifest_columns(spec: TableSpec, manifest: Manifest) -> list[ColumnDef]:
    """Staging columns of this extract (the spec may have changed since the extract was taken)."""
    d_cols = {c.sql_name: c for c in spec.columns}
    missing = [c for c in manifest.columns if c not in d_cols]
    if missing:
        raise TargetError(
            f"table {spec.table_name}: extract of batch {manifest.batch} has column(s) {', '.join(missing)} "
            "unknown to config.ETL_Columns; remove the extract (cbm-etl cleanup-cache) and run again"
        )
    return [ColumnDef(c, "") for c in manifest.columns]


def stage(target: Target, spec: TableSpec, manifest: Manifest, files: Sequence[Path]) -> int:
    """Load ``stg.<table>`` with this extract, atomically; returns the number of rows staged."""
    check_keys(spec, files)
    d = target.dialect
    started = time.perf_counter()
    _manifest_columns(spec, manifest)
    columns = [*manifest.columns, *TECHNICAL_COLUMNS]
    if d.stages_on_own_connection:
        return _stage_on_own_connection(target, spec, manifest, files, columns, started)
    with target.begin() as conn:
        target.ensure_table(conn, "stg", spec.sql_name, d.staging_columns(spec))
        conn.execute(d.truncate_sql("stg", spec.sql_name))
        rows = d.load_staging(conn, spec, files, columns)
        if rows >= 0 and rows != manifest.rows:
            raise TargetError(
                f"table {spec.table_name}: staged {rows} rows but the extract holds {manifest.rows}; rolled back"
            )
        record_staged(conn, spec, manifest, started)
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
    with target.begin() as conn:
        target.ensure_table(conn, "stg", spec.sql_name, d.staging_columns(spec))
        _clear_staging_state(conn, spec)
        conn.execute(d.truncate_sql("stg", spec.sql_name))
    loaded = d.bulk_load_staging(target, spec, files, columns)
    with target.begin() as conn:
        held = int(conn.scalar(d.count_staged_sql(spec)) or 0)
        if held != manifest.rows or (loaded >= 0 and loaded != manifest.rows):
            raise TargetError(
                f"table {spec.table_name}: bulk load reported {loaded} rows and staging holds {held}, but the "
                f"extract holds {manifest.rows}; staging is recorded as holding nothing: run again to reload it"
            )
        record_staged(conn, spec, manifest, started)
    log.info("%s: staged %d rows in %.2fs", spec.table_name, manifest.rows, time.perf_counter() - started)
    return manifest.rows


def _clear_staging_state(conn: Connection, spec: TableSpec) -> None:
    d = conn.dialect
    t = d.qualified(ETL_STAGING_STATE.schema, ETL_STAGING_STATE.name)
    conn.execute(f"DELETE FROM {t} WHERE {d.quote('TableName')} = :t", {"t": spec.table_name})


class StagingWhileExtracting:
    """``stg.<table>`` loaded while the extract is written, for dialects with a streaming bulk path (PostgreSQL COPY).

    One transaction, opened before the first batch: create or evolve staging, empty it, stream every transformed
    batch into it (the extract pipeline's :class:`cbm_luigi.extract.BatchSink`).  :meth:`commit`, called once the
    extract is complete on disk, checks the keys on the parquet files and the row count, records the batch and the
    load_staging run-log row, and commits: the same result, in the same single transaction, as ``stage``.  Anything
    that goes wrong rolls it back and leaves staging to the LoadStaging step (which then loads the parquet files,
    or reports the duplicate keys).  The LoadStaging step finds the batch staged and does nothing.
    """

    def __init__(self, target: Target, spec: TableSpec) -> None:
        d = target.dialect
        self.spec = spec
        self._stack = ExitStack()
        try:
            self.conn = self._stack.enter_context(target.begin())
            target.ensure_table(self.conn, "stg", spec.sql_name, d.staging_columns(spec))
            self.conn.execute(d.truncate_sql("stg", spec.sql_name))
            columns = [*(c.sql_name for c in spec.loaded_columns), *TECHNICAL_COLUMNS]
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
            record_staged(self.conn, spec, manifest, started)
            self._open = False
            self._stack.close()  # commit
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


def record_staged(conn: Connection, spec: TableSpec, manifest: Manifest, started: float) -> None:
    """In the transaction that staged the rows: which batch staging holds, and the load_staging run-log row."""
    _set_staging_state(conn, spec, manifest)
    runlog.write_log(conn, spec.table_name, "load_staging", "success", batch=manifest.batch, mode=manifest.mode,
                     rows=manifest.rows, duration=time.perf_counter() - started)


def _set_staging_state(conn: Connection, spec: TableSpec, manifest: Manifest) -> None:
    d = conn.dialect
    q = d.quote
    t = d.qualified(ETL_STAGING_STATE.schema, ETL_STAGING_STATE.name)
    conn.execute(f"DELETE FROM {t} WHERE {q('TableName')} = :t", {"t": spec.table_name})
    conn.execute(
        f"INSERT INTO {t} ({q('TableName')}, {q('Batch')}, {q('Mode')}, {q('RowsStaged')}, {q('SourceClockTs')}, "
        f"{q('RunId')}, {q('LoadedTs')}) VALUES (:t, :b, :m, :n, :c, :r, :ts)",
        {"t": spec.table_name, "b": manifest.batch, "m": manifest.mode, "n": manifest.rows,
         "c": manifest.source_clock_ts, "r": runlog.RUN_ID, "ts": runlog.now()},
    )


def staging_state(target: Target, table: str, conn: Connection | None = None) -> StagingState | None:
    d = target.dialect
    q = d.quote
    sql = d.lock_staging_state_sql() if conn is not None else None
    sql = sql or (f"SELECT {q('Batch')}, {q('Mode')}, {q('RowsStaged')} FROM "
                  f"{d.qualified(ETL_STAGING_STATE.schema, ETL_STAGING_STATE.name)} WHERE {q('TableName')} = :t")
    row = conn.fetchone(sql, {"t": table}) if conn is not None else target.fetchone(sql, {"t": table})
    return StagingState(str(row[0]), str(row[1]), int(row[2] or 0)) if row else None


def check_deletions(conn: Connection, spec: TableSpec, manifest: Manifest) -> int:
    """How many active ODS rows a full extract no longer holds (0 when delete detection does not apply).

    Only a full extract lists every source key; an incremental one says nothing about deletes.  Above the
    table's DeleteGuardPct of the active rows, the whole merge is refused: a partial read (a crashed export, a
    wrong FilterClause, an empty table by mistake) must not look like a mass delete.
    """
    if not spec.delete_detection or manifest.mode != "full":
        return 0
    d = conn.dialect
    missing = int(conn.scalar(d.count_deletions_sql(spec)) or 0)
    if not missing:
        return 0
    active = int(conn.scalar(d.count_active_sql(spec)) or 0)
    share = 100.0 * missing / active if active else 100.0
    if share > spec.delete_guard_pct:
        raise DataError(
            f"table {spec.table_name}: the full extract of batch {manifest.batch} lacks {missing:,} of the "
            f"{active:,} keys in the ODS ({share:.1f} %), above DeleteGuardPct={spec.delete_guard_pct:g} %: nothing "
            "was merged or marked deleted (a partial read must not look like a mass delete). If the source really "
            "lost these rows, raise the guard (cbm-etl add-table ... --detect-deletes --delete-guard-pct N) and run "
            "a new batch."
        )
    return missing


def merge(target: Target, spec: TableSpec, manifest: Manifest, flow_seconds: float | None = None) -> MergeCounts:
    """MERGE staging into the ODS with watermark, marker and run-log rows in one transaction."""
    d = target.dialect
    q = d.quote
    started = time.perf_counter()
    with target.begin() as conn:
        state = staging_state(target, spec.table_name, conn)
        if state is None or state.batch != manifest.batch:
            held = state.batch if state else "nothing"
            raise TargetError(
                f"table {spec.table_name}: staging holds {held}, not batch {manifest.batch}; "
                "run the same command again: the staging step reloads it from the parquet cache"
            )
        target.ensure_table(conn, "ods", spec.sql_name, d.ods_columns(spec), spec.primary_key)
        deletions = check_deletions(conn, spec, manifest)
        counts = d.merge(conn, spec, manifest.batch, state.rows)
        if spec.delete_detection:
            conn.execute(d.revive_sql(spec))
            if deletions:
                conn.execute(d.soft_delete_sql(spec), {"ts": manifest.source_clock_ts})
            counts = replace(counts, deleted=deletions)
        t = d.qualified(ETL_TABLES.schema, ETL_TABLES.name)
        conn.execute(
            f"UPDATE {t} SET {q('LastSuccessTs')} = :ts WHERE {q('TableName')} = :t "
            f"AND ({q('LastSuccessTs')} IS NULL OR {q('LastSuccessTs')} < :ts)",
            {"ts": manifest.source_clock_ts, "t": spec.table_name},
        )
        runlog.write_marker(conn, spec.table_name, manifest.batch, manifest.mode)
        merge_seconds = time.perf_counter() - started
        runlog.write_log(conn, spec.table_name, "merge_ods", "success", batch=manifest.batch, mode=manifest.mode,
                         rows=counts.staged, inserted=counts.inserted, updated=counts.updated,
                         unchanged=counts.unchanged, deleted=counts.deleted, duration=merge_seconds)
        runlog.write_log(conn, spec.table_name, "flow_complete", "success", batch=manifest.batch,
                         mode=manifest.mode, rows=counts.staged, inserted=counts.inserted, updated=counts.updated,
                         unchanged=counts.unchanged, deleted=counts.deleted, duration=flow_seconds)
    log.info("%s: merged batch %s: %d inserted, %d updated, %d unchanged, %d marked deleted in %.2fs",
             spec.table_name, manifest.batch, counts.inserted, counts.updated, counts.unchanged, counts.deleted,
             merge_seconds)
    return counts
