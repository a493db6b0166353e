"""The merge step: ``stg.<table>`` -> MERGE into ``ods.<table>``, with delete detection, the watermark, the
completion marker and the run-log rows in ONE transaction.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import datetime

from cbm_luigi.config.faults import kill_point
from cbm_luigi.destinations.client import Connection, Target
from cbm_luigi.destinations.merge import MergeCounts
from cbm_luigi.errors import DataError, TargetError
from cbm_luigi.model.specs import TableSpec
from cbm_luigi.pipeline.extract import Manifest
from cbm_luigi.store import runlog
from cbm_luigi.store.config_tables import advance_watermark
from cbm_luigi.store.markers import marker_run, write_marker
from cbm_luigi.store.staging_state import staging_state

log = logging.getLogger(__name__)

#: what a merge of a batch merged meanwhile by another run says (its run-log row, the run summary)
ALREADY_LOADED = "already loaded"


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
        target.ensure_table(conn, "ods", spec.sql_name, d.ods_columns(spec), spec.primary_key)
        deletions = check_deletions(conn, spec, manifest)
        counts = d.merge(conn, spec, manifest.batch, state.rows)
        if spec.delete_detection:
            conn.execute(d.revive_sql(spec))
            if deletions:
                conn.execute(d.soft_delete_sql(spec), {"ts": manifest.source_clock_ts})
            counts = replace(counts, deleted=deletions)
        kill_point("merge.merged")
        advance_watermark(conn, spec.table_name, manifest.source_clock_ts)
        write_marker(conn, spec.table_name, manifest.batch, manifest.mode)
        began = flow_start(conn, spec, manifest, merge_started)
        merge_seconds = time.perf_counter() - started_clock
        runlog.write_log(conn, spec.table_name, "merge_ods", "success", batch=manifest.batch, mode=manifest.mode,
                         rows=counts.staged, inserted=counts.inserted, updated=counts.updated,
                         unchanged=counts.unchanged, deleted=counts.deleted, duration=merge_seconds)
        # the last statement before the commit: the marker and this row become visible together
        flow_seconds = max(0.0, (runlog.now() - began).total_seconds())
        runlog.write_log(conn, spec.table_name, "flow_complete", "success", batch=manifest.batch,
                         mode=manifest.mode, rows=counts.staged, inserted=counts.inserted, updated=counts.updated,
                         unchanged=counts.unchanged, deleted=counts.deleted, duration=flow_seconds)
        kill_point("merge.marked")
    kill_point("merge.committed")
    log.info("%s: merged batch %s: %d inserted, %d updated, %d unchanged, %d marked deleted in %.2fs",
             spec.table_name, manifest.batch, counts.inserted, counts.updated, counts.unchanged, counts.deleted,
             merge_seconds)
    return counts
