"""The merge step: ``stg.<table>`` -> MERGE into ``ods.<table>``, with delete detection, the SCD2 history of
dimensions with KeepHistory (``hist.<table>``, pipeline/history.py), the watermark, the completion marker and the
run-log rows in ONE transaction.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import datetime

from cbm_luigi.config.faults import kill_point
from cbm_luigi.destinations.client import Connection, Target
from cbm_luigi.destinations.merge import MergeCounts
from cbm_luigi.destinations.type_changes import TypeChange
from cbm_luigi.errors import DataError, TargetError
from cbm_luigi.model.specs import TableSpec
from cbm_luigi.pipeline.extract import Manifest
from cbm_luigi.pipeline.history import prepare_history, record_history
from cbm_luigi.store import runlog
from cbm_luigi.store.config_tables import advance_watermark
from cbm_luigi.store.markers import marker_run, write_marker
from cbm_luigi.store.staging_state import staging_state

log = logging.getLogger(__name__)

#: what a merge of a batch merged meanwhile by another run says (its run-log row, the run summary)
ALREADY_LOADED = "already loaded"


def deletion_keys(conn: Connection, spec: TableSpec, manifest: Manifest) -> str | None:
    """The stg table listing every source key of this batch, for delete detection; None when the extract says
    nothing about deletes (no DeleteDetection, or an incremental read without key scan).

    Staging itself for a full extract, and for an incremental run of a DeleteScan table whose window read the
    whole table (no timestamps, first load); ``stg.<table>__keys`` for an incremental run with a key scan.  That
    table is loaded in the transaction that records the batch staging holds (checked by the merge before this):
    its count is checked against the manifest's, so the merge only ever uses the keys of its own batch.
    """
    if not spec.delete_detection:
        return None
    if manifest.mode == "full" or (spec.delete_scan and manifest.window_since is None):
        return spec.sql_name
    if not manifest.key_files:
        return None
    d = conn.dialect
    keys_table = d.keys_table(spec)
    held = int(conn.scalar(d.count_keys_sql(spec)) or 0)
    if held != manifest.key_rows:
        raise TargetError(
            f"table {spec.table_name}: stg.{keys_table} holds {held:,} keys but the key scan of batch "
            f"{manifest.batch} read {manifest.key_rows:,} (something else wrote to it): nothing was merged or "
            "marked deleted; run a new batch (cbm-etl run ... --batch-id <new>): its staging reloads both tables"
        )
    return keys_table


def check_deletions(conn: Connection, spec: TableSpec, manifest: Manifest, keys: str | None = None) -> int:
    """How many active ODS rows are missing from ``keys`` (:func:`deletion_keys`; 0 when it is None).

    Only a full extract, or an incremental one with a key scan (DeleteScan), lists every source key; an
    incremental one alone says nothing about deletes.  Above the table's DeleteGuardPct of the active rows, the
    whole merge is refused: a partial read (a crashed export, a wrong FilterClause, an empty table by mistake)
    must not look like a mass delete.
    """
    if keys is None:
        return 0
    d = conn.dialect
    missing = int(conn.scalar(d.count_deletions_sql(spec, keys)) or 0)
    if not missing:
        return 0
    active = int(conn.scalar(d.count_active_sql(spec)) or 0)
    share = 100.0 * missing / active if active else 100.0
    if share > spec.delete_guard_pct:
        scanned = keys != spec.sql_name
        what = "the key scan" if scanned else f"the {'full ' if manifest.mode == 'full' else ''}extract"
        raise DataError(
            f"table {spec.table_name}: {what} of batch {manifest.batch} lacks {missing:,} of the "
            f"{active:,} keys in the ODS ({share:.1f} %), above DeleteGuardPct={spec.delete_guard_pct:g} %: nothing "
            "was merged or marked deleted (a partial read must not look like a mass delete). If the source really "
            f"lost these rows, raise the guard (cbm-etl add-table ... --detect-deletes{' --delete-scan' * scanned} "
            "--delete-guard-pct N) and run a new batch."
        )
    return missing


def flow_start(conn: Connection, spec: TableSpec, manifest: Manifest, merge_started: datetime) -> datetime:
    """When this run's flow of the table began (docs/OPERATIONS.md, "Durations").

    The extract step's start, recorded in the manifest, when this run extracted; when the extract came from an
    earlier run (which failed later), the start of this run's first logged step of the table and batch, or of
    the merge step itself, whichever is earlier.
    """
    if manifest.started and manifest.run_id == runlog.RUN_ID:
        return datetime.fromisoformat(manifest.started)
    first = runlog.first_step_start(conn, spec.table_name, manifest.batch)
    return min(first, merge_started) if first is not None else merge_started


def merge(target: Target, spec: TableSpec, manifest: Manifest, started: datetime | None = None) -> MergeCounts:
    """MERGE staging into the ODS with watermark, marker and run-log rows in one transaction.

    Under the table's lock; when the batch's marker already exists (another run of the batch merged it), nothing
    is merged: a ``skipped`` merge_ods row is logged and the counts say ``already_loaded``.

    ``started``: when the merge step began (its data-quality check included; default now).  The flow_complete
    row's DurationSeconds is the table's flow, from :func:`flow_start` to this transaction's last statement.
    """
    d = target.dialect
    merge_started = started or runlog.now()
    started_clock = time.perf_counter()
    with target.begin(table=spec.table_name, step="merge_ods") as conn:
        # The table's lock first: a merge of the same batch by another run (two runs at once) has committed when
        # it is granted, so its marker is seen here and this one finishes as "already loaded", ODS untouched.
        conn.lock_table(spec.table_name)
        if (by := marker_run(conn, spec.table_name, manifest.batch)) is not None:
            runlog.write_log(conn, spec.table_name, "merge_ods", runlog.SKIPPED, batch=manifest.batch,
                             mode=manifest.mode, error=f"{ALREADY_LOADED} by run {by}")
            log.info("%s: batch %s already merged by run %s: nothing to do", spec.table_name, manifest.batch, by)
            return MergeCounts(staged=0, inserted=0, updated=0, already_loaded=True)
        state = staging_state(target, spec.table_name, conn)
        if state is None or state.batch != manifest.batch:
            held = state.batch if state else "nothing"
            raise TargetError(
                f"table {spec.table_name}: staging holds {held}, not batch {manifest.batch}; "
                "run the same command again: the staging step reloads it from the parquet cache"
            )
        kill_point("merge.begun")
        type_changes: list[TypeChange] = []  # widened (or kept) columns whose type changed in the source
        target.ensure_table(conn, "ods", spec.sql_name, d.ods_columns(spec), spec.primary_key,
                            type_change_policy=spec.type_change_policy, type_changes=type_changes)
        history = prepare_history(target, conn, spec, manifest) if spec.keep_history else None
        keys = deletion_keys(conn, spec, manifest)  # staging, the key scan (stg.<table>__keys) or None
        deletions = check_deletions(conn, spec, manifest, keys)
        counts = d.merge(conn, spec, manifest.batch, state.rows)
        if spec.delete_detection:
            conn.execute(d.revive_sql(spec, keys))
            if deletions:
                conn.execute(d.soft_delete_sql(spec, keys), {"ts": manifest.source_clock_ts})
            counts = replace(counts, deleted=deletions)
        if history is not None:  # after the ODS and its delete marks: hist.<table> follows them
            versions = record_history(conn, spec, manifest, history)
            counts = replace(counts, history_opened=versions.opened, history_closed=versions.closed)
        kill_point("merge.merged")
        advance_watermark(conn, spec.table_name, manifest.source_clock_ts)
        write_marker(conn, spec.table_name, manifest.batch, manifest.mode)
        began = flow_start(conn, spec, manifest, merge_started)
        merge_seconds = time.perf_counter() - started_clock
        merge_row = runlog.write_log(
            conn, spec.table_name, "merge_ods", "success", batch=manifest.batch, mode=manifest.mode,
            rows=counts.staged, inserted=counts.inserted, updated=counts.updated, unchanged=counts.unchanged,
            deleted=counts.deleted, duration=merge_seconds,
            error=runlog.type_change_warning(conn, spec.table_name, type_changes))
        # the last statement before the commit: the marker and this row become visible together
        flow_seconds = max(0.0, (runlog.now() - began).total_seconds())
        flow_row = runlog.write_log(
            conn, spec.table_name, "flow_complete", "success", batch=manifest.batch, mode=manifest.mode,
            rows=counts.staged, inserted=counts.inserted, updated=counts.updated, unchanged=counts.unchanged,
            deleted=counts.deleted, duration=flow_seconds)
        kill_point("merge.marked")
        written = time.perf_counter()
    kill_point("merge.committed")
    runlog.add_commit_time(target, [merge_row, flow_row], written)  # DuckDB writes a large merge at its commit
    log.info("%s: merged batch %s: %d inserted, %d updated, %d unchanged, %d marked deleted in %.2fs",
             spec.table_name, manifest.batch, counts.inserted, counts.updated, counts.unchanged, counts.deleted,
             merge_seconds)
    if spec.keep_history:
        log.info("%s: history of batch %s: %d version(s) opened, %d closed in hist.%s", spec.table_name,
                 manifest.batch, counts.history_opened, counts.history_closed, spec.sql_name)
    return counts
