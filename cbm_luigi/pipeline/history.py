"""The SCD2 history of a dimension (``hist.<table>``, TableSpec.keep_history), written by the merge in its own
transaction: a rerun of a batch never doubles a version (docs/OPERATIONS.md, "History of dimensions (SCD2)").

:func:`prepare_history` runs before the ODS merge: it creates the table (and the schema, on a target initialised
before ``hist`` existed) or adds the columns a drift brought, and refuses a batch older than the history.
:func:`record_history` runs after the ODS merge and the delete marking: it seeds an empty history from the ODS,
or closes and opens the versions the batch changed.
"""

from __future__ import annotations

from dataclasses import dataclass

from cbm_luigi.destinations.client import Connection, Target
from cbm_luigi.destinations.history import HIST
from cbm_luigi.errors import DataError, MetadataError
from cbm_luigi.model.specs import TableSpec
from cbm_luigi.model.types import IS_CURRENT, VALID_FROM, VALID_TO
from cbm_luigi.model.values import naive_datetime
from cbm_luigi.pipeline.extract import Manifest


@dataclass(frozen=True)
class HistoryPlan:
    """What :func:`record_history` does: seed an empty history from the ODS, or apply the batch's changes."""

    seed: bool


@dataclass(frozen=True)
class HistoryCounts:
    opened: int
    closed: int


def prepare_history(target: Target, conn: Connection, spec: TableSpec, manifest: Manifest) -> HistoryPlan:
    """Create or evolve ``hist.<table>``; seed when it holds no version.  A batch whose source clock is not
    after the newest change (a version opened or closed: an old batch merged late, or two batches read at the
    same instant) is refused: its versions would end before they begin, or overlap a closed one."""
    d = target.dialect
    validity = (VALID_FROM, VALID_TO, IS_CURRENT)
    clash = next((c for c in spec.loaded_columns if c.sql_name.lower() in validity), None)
    if clash is not None:
        raise MetadataError(
            f"table {spec.table_name}: column {clash.column_name} (SqlName {clash.sql_name}) has the name of a "
            f"column {HIST}.{spec.sql_name} adds ({', '.join(validity)}): nothing was merged. Give it another "
            f"SqlName in config.ETL_Columns (e.g. {clash.sql_name}_src), or exclude it (IsExcluded = 1), or turn "
            f"history off (cbm-etl add-table {spec.table_name} ... without --history), then run again"
        )
    created = not target.existing_columns(conn, HIST, spec.sql_name)
    if created:
        conn.execute(d.create_schema_sql(HIST))  # a target initialised before hist existed
    target.ensure_table(conn, HIST, spec.sql_name, d.history_columns(spec), d.history_key(spec),
                        type_change_policy=spec.type_change_policy)  # hist follows the ODS column's type change
    if created and (index := d.current_version_index_sql(spec)):
        conn.execute(index)
    newest = naive_datetime(conn.scalar(d.newest_version_sql(spec)))
    if newest is None:
        return HistoryPlan(seed=True)
    if newest >= manifest.source_clock_ts:
        raise DataError(
            f"table {spec.table_name}: batch {manifest.batch} was read from the source at "
            f"{manifest.source_clock_ts.isoformat(sep=' ')}, not after the newest change in {HIST}.{spec.sql_name} "
            f"(a version opened or closed at {newest.isoformat(sep=' ')}): its versions would end before they "
            "begin, so nothing was "
            f"merged. Run a new batch (cbm-etl run {spec.table_name} --batch-id <new>), which reads the source again"
        )
    return HistoryPlan(seed=False)


def record_history(conn: Connection, spec: TableSpec, manifest: Manifest, plan: HistoryPlan) -> HistoryCounts:
    """The versions of this batch, all valid from its source clock (``manifest.source_clock_ts``).

    Seeding: one current version per active ODS row.  Otherwise, in order: close the current versions whose key
    is staged with another hashdiff; open one for every staged key without a current version (new, just closed,
    back after a delete), unless its ODS row is marked deleted (gone between the data read and the key scan: no
    version of no length); close those whose ODS row is marked deleted.  The same staging again changes nothing.
    """
    d = conn.dialect
    ts, batch = manifest.source_clock_ts, manifest.batch
    if plan.seed:
        return HistoryCounts(opened=max(0, conn.execute(d.seed_history_sql(spec), {"ts": ts, "batch": batch})),
                             closed=0)
    closed = max(0, conn.execute(d.close_changed_sql(spec), {"ts": ts}))
    opened = max(0, conn.execute(d.open_versions_sql(spec), {"ts": ts, "batch": batch}))
    if spec.delete_detection:
        closed += max(0, conn.execute(d.close_deleted_sql(spec), {"ts": ts}))
    return HistoryCounts(opened=opened, closed=closed)
