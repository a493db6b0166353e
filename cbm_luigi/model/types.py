"""Logical column types and the technical column names of staging and ODS tables.
"""

from __future__ import annotations

# Logical types: what a source column holds, independent of any database.  Flavours map catalog types to
# these; dialects map these to DDL; transform maps them to Arrow.
STRING, INTEGER, BIGINT, DECIMAL, FLOAT, BOOLEAN, DATE, TIMESTAMP, TIMESTAMP_TZ, BINARY = (
    "string", "integer", "bigint", "decimal", "float", "boolean", "date", "timestamp", "timestamp_tz", "binary",
)


LOGICAL_TYPES = (STRING, INTEGER, BIGINT, DECIMAL, FLOAT, BOOLEAN, DATE, TIMESTAMP, TIMESTAMP_TZ, BINARY)

#: Scale given to a decimal whose catalog declares neither precision nor scale (a PostgreSQL ``numeric``, a
#: Progress decimal of width 0): loaded as DECIMAL(38, 10), read from the source as text and refused, naming the
#: column, when a value needs more (docs/ARCHITECTURE.md, Decisions: "Decimals without a declared scale").
UNKNOWN_DECIMAL_SCALE = 10


#: Technical columns of staging and ODS tables (after the business columns).
HASHDIFF, TS_SOURCE, LOAD_TS, ETL_BATCH = "hashdiff", "ts_source", "load_ts", "etl_batch"


#: ODS technical column of tables with delete detection: when the row's key left the source (NULL: present)
ETL_DELETED = "etl_deleted_ts"


#: Technical columns of the SCD2 history of a dimension (``hist.<table>``, TableSpec.keep_history): the source
#: clock of the batch that opened the version, of the one that closed it (NULL while current), and the flag of
#: the one current version of a key
VALID_FROM, VALID_TO, IS_CURRENT = "valid_from", "valid_to", "is_current"
