"""The metadata tables (``config.*``, ``etl.*``), described once neutrally and created by :func:`init_db`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from cbm_luigi.config.secrets import redact
from cbm_luigi.destinations.client import Target
from cbm_luigi.destinations.dialect import Dialect
from cbm_luigi.destinations.types import ColumnDef
from cbm_luigi.errors import MetadataError, TargetError
from cbm_luigi.model.meta import MetaColumn, MetaTable
from cbm_luigi.model.types import BIGINT, BOOLEAN, FLOAT, INTEGER, STRING, TIMESTAMP
from cbm_luigi.store.views import view_statements


def _c(name: str, t: str, width: int | None = None, nullable: bool = True, **kw: Any) -> MetaColumn:
    return MetaColumn(name, t, width, nullable, **kw)


ETL_TABLES = MetaTable(
    "config", "ETL_Tables",
    (
        _c("TableName", STRING, 128, False), _c("SqlName", STRING, 128, False),
        _c("DestinationTable", STRING, 256, False), _c("PrimaryKeyCols", STRING, 1000, False),
        _c("HasTimestamps", BOOLEAN, nullable=False), _c("DateModifCol", STRING, 128),
        _c("DateModifPrecision", STRING, 10), _c("IsDimension", BOOLEAN, nullable=False),
        _c("IsFact", BOOLEAN, nullable=False), _c("LookbackInterval", STRING, 20),
        _c("FilterClause", STRING, 4000), _c("LastSuccessTs", TIMESTAMP), _c("Notes", STRING, 4000),
        _c("PriorityTier", STRING, 10), _c("IsActive", BOOLEAN, nullable=False), _c("SLAHours", FLOAT),
        _c("DeleteDetection", BOOLEAN), _c("DeleteGuardPct", FLOAT),
        _c("LastProfilingTs", TIMESTAMP), _c("CreatedTs", TIMESTAMP), _c("UpdatedTs", TIMESTAMP),
        _c("DeleteScan", BOOLEAN), _c("KeepHistory", BOOLEAN), _c("TypeChangePolicy", STRING, 10),
        _c("WidthPolicy", STRING, 10), _c("OutOfRangeDates", STRING, 10), _c("SplitExtents", BOOLEAN),
        _c("ExtractPartitions", INTEGER),
    ),
    ("TableName",),
)


ETL_COLUMNS = MetaTable(
    "config", "ETL_Columns",
    (
        _c("TableName", STRING, 128, False), _c("ColumnName", STRING, 128, False), _c("SqlName", STRING, 128, False),
        _c("SourceExpression", STRING, 600), _c("DataType", STRING, 64), _c("LogicalType", STRING, 20),
        _c("CharMaxLength", INTEGER), _c("NumericPrecision", INTEGER), _c("NumericScale", INTEGER),
        _c("IsNullable", BOOLEAN), _c("OrdinalPosition", INTEGER), _c("Extent", INTEGER),
        _c("IsExcluded", BOOLEAN, nullable=False), _c("Notes", STRING, 4000), _c("IsInSource", BOOLEAN),
        _c("FirstSeenTs", TIMESTAMP), _c("LastSyncTs", TIMESTAMP),
    ),
    ("TableName", "ColumnName"),
)


ETL_DEPENDENCIES = MetaTable(
    "config", "ETL_Dependencies",
    (_c("TableName", STRING, 128, False), _c("DependsOn", STRING, 128, False), _c("IsActive", BOOLEAN, nullable=False)),
    ("TableName", "DependsOn"),
)


ETL_LOG = MetaTable(
    "etl", "ETL_Log",
    (
        _c("LogId", STRING, 36, False), _c("RunId", STRING, 36, False), _c("TableName", STRING, 128, False),
        _c("Batch", STRING, 64), _c("Mode", STRING, 12), _c("StepName", STRING, 32, False),
        _c("Status", STRING, 16, False), _c("RowsProcessed", BIGINT), _c("RowsInserted", BIGINT),
        _c("RowsUpdated", BIGINT), _c("RowsUnchanged", BIGINT), _c("RowsDeleted", BIGINT),
        _c("DurationSeconds", FLOAT),
        _c("ErrorMessage", STRING, 4000), _c("LogTs", TIMESTAMP, nullable=False),
    ),
    ("LogId",),
)


ETL_MARKERS = MetaTable(
    "etl", "ETL_Markers",
    (
        _c("MarkerId", STRING, 300, False), _c("TableName", STRING, 128, False), _c("Batch", STRING, 64, False),
        _c("Mode", STRING, 12, False), _c("RunId", STRING, 36), _c("CompletedTs", TIMESTAMP, nullable=False),
    ),
    ("MarkerId",),
)


ETL_STAGING_STATE = MetaTable(
    "etl", "ETL_StagingState",
    (
        _c("TableName", STRING, 128, False), _c("Batch", STRING, 64, False), _c("Mode", STRING, 12, False),
        _c("RowsStaged", BIGINT), _c("SourceClockTs", TIMESTAMP), _c("RunId", STRING, 36),
        _c("LoadedTs", TIMESTAMP, nullable=False),
    ),
    ("TableName",),
)


ETL_ALERTS = MetaTable(
    "etl", "ETL_Alerts",
    (
        _c("AlertId", STRING, 36, False), _c("AlertType", STRING, 32, False), _c("Severity", STRING, 16, False),
        _c("TableName", STRING, 128), _c("RunId", STRING, 36), _c("Channel", STRING, 32, False),
        _c("Title", STRING, 400), _c("Message", STRING, 4000), _c("Delivered", BOOLEAN),
        _c("DeliveryNote", STRING, 400), _c("SentTs", TIMESTAMP, nullable=False),
    ),
    ("AlertId",),
)


VALIDATION_LOG = MetaTable(
    "etl", "Validation_Log",
    (
        _c("ValidationId", STRING, 36, False), _c("RunId", STRING, 36), _c("TableName", STRING, 128, False),
        _c("SourceRows", BIGINT), _c("TargetRows", BIGINT), _c("MissingInTarget", BIGINT),
        _c("ExtraInTarget", BIGINT), _c("ContentMismatches", BIGINT), _c("Status", STRING, 16, False),
        _c("Details", STRING, 4000), _c("DurationSeconds", FLOAT), _c("ValidatedTs", TIMESTAMP, nullable=False),
    ),
    ("ValidationId",),
)


DATA_QUALITY_LOG = MetaTable(
    "etl", "DataQuality_Log",
    (
        _c("CheckId", STRING, 36, False), _c("RunId", STRING, 36), _c("TableName", STRING, 128, False),
        _c("Batch", STRING, 64), _c("RuleName", STRING, 128, False), _c("RuleType", STRING, 32, False),
        _c("ColumnName", STRING, 128), _c("Severity", STRING, 16, False), _c("Passed", BOOLEAN, nullable=False),
        _c("FailedRows", BIGINT), _c("Details", STRING, 4000), _c("CheckedTs", TIMESTAMP, nullable=False),
    ),
    ("CheckId",),
)


METADATA_TABLES: tuple[MetaTable, ...] = (
    ETL_TABLES, ETL_COLUMNS, ETL_DEPENDENCIES, ETL_LOG, ETL_MARKERS, ETL_STAGING_STATE, ETL_ALERTS,
    VALIDATION_LOG, DATA_QUALITY_LOG,
)


#: hist: the SCD2 versions of the dimensions with KeepHistory (also created by their first merge if missing)
SCHEMAS = ("config", "etl", "stg", "ods", "hist")


def init_statements(d: Dialect) -> list[str]:
    """Schemas and metadata tables, idempotent.  Views come from :func:`cbm_luigi.store.views.view_statements`."""
    return [*(d.create_schema_sql(s) for s in SCHEMAS), *(d.meta_table_sql(m) for m in METADATA_TABLES)]


def init_db(target: Target) -> list[str]:
    """Create schemas, metadata tables and views (idempotent); add metadata columns a newer version needs."""
    done = []
    with target.begin() as conn:
        for sql in [target.dialect.create_schema_sql(s) for s in SCHEMAS]:
            conn.execute(sql)
        for meta in METADATA_TABLES:
            cols = [ColumnDef(c.name, target.dialect.column_type(c.logical_type, c.width, c.precision, c.scale),
                              c.nullable) for c in meta.columns]
            target.ensure_table(conn, meta.schema, meta.name, cols, meta.primary_key)
            done.append(f"{meta.schema}.{meta.name}")
        for sql in view_statements(target.dialect):
            conn.execute(sql)
    return done


def has_metadata(target: Target) -> bool:
    """Whether ``cbm-etl init-db`` has run on the target (config.ETL_Tables exists); inside the caller's
    :meth:`~cbm_luigi.destinations.client.Target.reading` block when there is one."""
    d = target.dialect
    params = {"schema": ETL_TABLES.schema, "table": ETL_TABLES.name, **d.existing_columns_params()}
    return bool(target.fetchall(d.existing_columns_sql(), params))


def require_metadata(target: Target) -> None:
    """A MetadataError saying to run ``cbm-etl init-db`` when the target has no metadata tables."""
    if not has_metadata(target):
        raise MetadataError(f"the target {redact(target.url)} has no metadata tables ({ETL_TABLES.schema}."
                            f"{ETL_TABLES.name}...): run cbm-etl init-db first, then register tables "
                            "(cbm-etl sync-columns TABLE, cbm-etl add-table TABLE --pk ...)")


@contextmanager
def needs_metadata(target: Target) -> Iterator[None]:
    """Around reads of the metadata tables: a statement that fails because init-db never ran becomes the
    MetadataError of :func:`require_metadata` (checked only on that error path: no extra query otherwise)."""
    try:
        yield
    except TargetError as exc:
        if not exc.connecting:
            require_metadata(target)
        raise
