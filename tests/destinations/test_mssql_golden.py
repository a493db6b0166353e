"""Golden T-SQL of the SQL Server dialect: no SQL Server runs here, so every statement it emits is pinned and
parsed as T-SQL (sqlglot, ``read="tsql"``), and the DBA scripts in sql/mssql/ must equal what it generates.

Regenerate after a deliberate change with ``CBM_UPDATE_GOLDEN=1 python -m pytest tests/destinations/test_mssql_golden.py``
(rewrites tests/golden/mssql/ and sql/mssql/*.sql) and review the diff.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlglot
from sqlglot import exp

from cbm_luigi.destinations.client import Connection, Target
from cbm_luigi.destinations.mssql import MssqlDialect
from cbm_luigi.destinations.types import ColumnDef
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
from cbm_luigi.pipeline import merge as load
from cbm_luigi.pipeline.extract import Manifest
from cbm_luigi.store import alerts_log, runlog, staging_state
from cbm_luigi.store.mssql_scripts import scripts
from cbm_luigi.store.schema import init_statements
from cbm_luigi.store.views import monitoring_views

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "mssql"
SCRIPTS = ROOT / "sql" / "mssql"
UPDATE = os.environ.get("CBM_UPDATE_GOLDEN") == "1"
D = MssqlDialect()


def order_line() -> TableSpec:
    """Hyphenated, reserved-word and bracket-holding names, a composite key, every logical type."""
    cols = (
        ColumnSpec("order-num", "order-num", INTEGER, "integer", position=1, nullable=False),
        ColumnSpec("line", "line", INTEGER, "integer", position=2, nullable=False),
        ColumnSpec("select", "select", STRING, "varchar", width=8, position=3),
        ColumnSpec("desc", "desc", STRING, "varchar", width=4000, position=4),
        ColumnSpec("long-text", "long-text", STRING, "varchar", width=4001, position=5),
        ColumnSpec("price$", "price$", DECIMAL, "decimal", precision=50, scale=10, position=6),
        ColumnSpec("qty]x", "qty]x", DECIMAL, "decimal", precision=9, scale=2, position=7),
        ColumnSpec("rate", "rate", FLOAT, "float", position=8),
        ColumnSpec("big", "big", BIGINT, "bigint", position=9),
        ColumnSpec("is-open", "is-open", BOOLEAN, "bit", position=10),
        ColumnSpec("ship-date", "ship-date", DATE, "date", position=11),
        ColumnSpec("dat-mod", "dat-mod", TIMESTAMP, "timestamp", position=12),
        ColumnSpec("stamp-tz", "stamp-tz", TIMESTAMP_TZ, "timestamp_timezone", position=13),
        ColumnSpec("blob", "blob", BINARY, "varbinary", position=14),
        ColumnSpec("obsolete", "obsolete", STRING, "varchar", width=8, position=15, is_excluded=True),
    )
    return TableSpec(
        table_name="order-line", sql_name="order-line", destination_table="ods.order-line",
        primary_key=("order-num", "line"), has_timestamps=True, date_modif_col="dat-mod",
        date_modif_precision="datetime", columns=cols,
    )


SPEC = order_line()
#: a dimension with delete detection and SCD2 history (hist.order-line)
HIST_SPEC = replace(SPEC, is_dimension=True, delete_detection=True, keep_history=True)
#: an OpenEdge extent field (a decimal array of 3) split into [qty-month_1] .. [qty-month_3] (text elements)
SPLIT_SPEC = replace(SPEC, split_extents=True, columns=(*SPEC.columns, ColumnSpec(
    "qty-month", "qty-month", DECIMAL, "decimal", width=60, precision=12, scale=2, position=16, extent=3)))
#: the columns of its ODS and hist tables, both already there
HIST_EXISTING = [*(c.name for c in D.ods_columns(HIST_SPEC)), "valid_from", "valid_to", "is_current"]
COLUMNS = [*SPEC.business_columns, "hashdiff", "ts_source", "load_ts"]
MANIFEST = Manifest(
    table=SPEC.table_name, batch="2026-11-25", mode="incremental", source_clock="2026-11-25T02:00:00",
    window="since watermark", window_since="2026-11-24T02:00:00", rows=10, files=["part-00000.parquet"],
    columns=list(SPEC.business_columns), hash_columns=list(SPEC.business_columns), run_id="run",
    extract_seconds=1.0, transform_seconds=0.5,
)


class Recorder:
    """Stands in for a SQL Server connection inside one transaction: records what is sent, in order."""

    def __init__(self, log: list[tuple[str, list[str]]], answers: Mapping[str, tuple[Any, ...]]) -> None:
        self.dialect = D
        self.log = log
        self.answers = answers

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> int:
        self.log.append((sql, sorted(params or {})))
        return 1

    def fetchall(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        self.log.append((sql, sorted(params or {})))
        return []

    def fetchone(self, sql: str, params: Mapping[str, Any] | None = None) -> tuple[Any, ...] | None:
        self.log.append((sql, sorted(params or {})))
        return next((row for key, row in self.answers.items() if key in sql), None)

    def scalar(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        row = self.fetchone(sql, params)
        return row[0] if row else None

    def lock_table(self, table: str) -> None:
        Connection.lock_table(self, table)  # type: ignore[arg-type]  # the real one, recorded


class RecordingTarget(Target):
    """A Target whose transactions are recorded (``BEGIN`` / ``COMMIT`` markers), for the merge step."""

    def __init__(self, existing_ods: Sequence[str], newest_version: datetime | None = None) -> None:
        super().__init__("mssql+pyodbc://recorded", D, None)  # type: ignore[arg-type]
        self.log: list[tuple[str, list[str]]] = []
        self.existing_ods = list(existing_ods)
        self.newest_version = newest_version  # of hist.<table> (None: no version yet, seeded)

    @contextmanager
    def begin(self, **_context: Any) -> Iterator[Any]:
        self.log.append(("BEGIN TRANSACTION", []))
        answers: dict[str, tuple[Any, ...]] = {"[ETL_StagingState]": ("2026-11-25", "incremental", 10, None),
                                               "FROM @actions": (4, 3)}
        if self.newest_version is not None:
            answers["MAX([valid_from])"] = (self.newest_version,)
        yield Recorder(self.log, answers)
        self.log.append(("COMMIT", []))

    def existing_column_types(self, conn: Any, schema: str, table: str) -> list[tuple[Any, ...]]:
        conn.fetchall(self.dialect.existing_columns_sql(), {"schema": schema, "table": table})
        return [(name, None, None, None, None) for name in self.existing_ods]


def render_log(log: Sequence[tuple[str, list[str]]]) -> str:
    out = []
    for sql, params in log:
        out.append(sql.rstrip() + ("\n-- params: " + ", ".join(params) if params else "") + "\n")
    return "\n".join(out)


def merge_transaction(existing_ods: Sequence[str], spec: TableSpec = SPEC,
                      newest_version: datetime | None = None) -> str:
    target = RecordingTarget(existing_ods, newest_version)
    counts = load.merge(target, spec, MANIFEST)
    assert (counts.inserted, counts.updated, counts.unchanged) == (4, 3, 3)
    return render_log(target.log)


#: an incremental batch of a DeleteScan table, with its key scan (stg.order-line__keys, 12 keys)
SCAN_SPEC = replace(SPEC, delete_detection=True, delete_scan=True)
SCAN_MANIFEST = replace(MANIFEST, key_files=["keys-00000.parquet"], key_rows=12)


class KeyScanTarget(RecordingTarget):
    """The merge of SCAN_MANIFEST: the keys table holds the scan's 12 keys; 1 of the 20 active ODS rows lacks its
    key (5 %, under the guard's 10 %)."""

    @contextmanager
    def begin(self, **_context: Any) -> Iterator[Any]:
        self.log.append(("BEGIN TRANSACTION", []))
        yield Recorder(self.log, {"[ETL_StagingState]": ("2026-11-25", "incremental", 10, None),
                                  "FROM @actions": (4, 3), "NOT EXISTS": (1,),
                                  "COUNT(*) FROM [stg].[order-line__keys]": (12,), "[etl_deleted_ts] IS NULL": (20,)})
        self.log.append(("COMMIT", []))


def key_scan_merge_transaction() -> str:
    target = KeyScanTarget([c.name for c in D.ods_columns(SCAN_SPEC)])
    counts = load.merge(target, SCAN_SPEC, SCAN_MANIFEST)
    assert (counts.inserted, counts.updated, counts.deleted) == (4, 3, 1)
    return render_log(target.log)


def staging_statements() -> str:
    log: list[tuple[str, list[str]]] = []
    conn = Recorder(log, {})
    staging_state.clear_staging_state(conn, SPEC.table_name)  # type: ignore[arg-type]
    staging_state.set_staging_state(conn, SPEC.table_name, batch=MANIFEST.batch, mode=MANIFEST.mode, rows=MANIFEST.rows, source_clock_ts=MANIFEST.source_clock_ts)  # type: ignore[arg-type]
    runlog.write_log(conn, SPEC.table_name, "load_staging", "success", batch="b", mode="full",  # type: ignore[arg-type]
                     rows=10, duration=1.0)
    return render_log(log)


def statements() -> dict[str, str]:
    ods_cols = [c.name for c in D.ods_columns(SPEC)]
    return {
        "init": ";\nGO\n".join(init_statements(D)),
        "create_staging": D.create_table_sql("stg", SPEC.sql_name, D.staging_columns(SPEC)),
        "create_ods": D.create_table_sql("ods", SPEC.sql_name, D.ods_columns(SPEC), SPEC.primary_key),
        "add_column": D.add_column_sql("ods", SPEC.sql_name, ColumnDef("new-col", D.column_type(STRING, 30))),
        "existing_columns": D.existing_columns_sql(),
        "widen_column": D.alter_column_type_sql("ods", SPEC.sql_name, ColumnDef("price$", "decimal(24,6)")),
        # a type change in the source under TypeChangePolicy widen: integer -> text, converted by ALTER COLUMN
        "convert_column": D.convert_column_type_sql("ods", SPEC.sql_name, ColumnDef("qty]x", "nvarchar(max)")),
        "truncate_staging": D.truncate_sql("stg", SPEC.sql_name),
        "count_staged": D.count_staged_sql(SPEC),
        "insert_staging_pyodbc": D.insert_staging_sql(SPEC, COLUMNS),
        "duplicate_keys": D.duplicate_keys_sql(SPEC),
        "lock_staging_state": staging_state.read_sql(D, lock=True),
        "table_lock": D.table_lock_sql(),
        "merge": D.merge_sql(SPEC),
        "create_ods_split_extents": D.create_table_sql("ods", SPLIT_SPEC.sql_name, D.ods_columns(SPLIT_SPEC),
                                                       SPLIT_SPEC.primary_key),
        "merge_split_extents": D.merge_sql(SPLIT_SPEC),
        "soft_delete": D.soft_delete_sql(SPEC),
        "revive_deleted": D.revive_sql(SPEC),
        "count_deletions": D.count_deletions_sql(SPEC),
        "create_keys_staging": D.create_table_sql("stg", D.keys_table(SPEC), D.keys_columns(SPEC)),
        "insert_keys_pyodbc": D.insert_keys_pyodbc_sql(SPEC),
        "insert_keys": D.insert_keys_sql(SPEC),
        "count_keys": D.count_keys_sql(SPEC),
        "count_deletions_key_scan": D.count_deletions_sql(SPEC, D.keys_table(SPEC)),
        "soft_delete_key_scan": D.soft_delete_sql(SPEC, D.keys_table(SPEC)),
        "revive_key_scan": D.revive_sql(SPEC, D.keys_table(SPEC)),
        "merge_transaction_key_scan": key_scan_merge_transaction(),
        "staging_state": staging_statements(),
        # a failure another host of the same batch alerted already (alerts/notify.py)
        "failure_alerted_by_another_run": alerts_log.failure_alerted_sql(D),
        "merge_transaction_new_table": merge_transaction([]),
        "merge_transaction_drift": merge_transaction([c for c in ods_cols if c != "blob"]),
        "create_hist": D.create_table_sql("hist", HIST_SPEC.sql_name, D.history_columns(HIST_SPEC),
                                          D.history_key(HIST_SPEC)),
        "hist_current_index": D.current_version_index_sql(HIST_SPEC),
        "hist_newest_version": D.newest_version_sql(HIST_SPEC),
        "hist_seed": D.seed_history_sql(HIST_SPEC),
        "hist_close_changed": D.close_changed_sql(HIST_SPEC),
        "hist_open_versions": D.open_versions_sql(HIST_SPEC),
        "hist_close_deleted": D.close_deleted_sql(HIST_SPEC),
        "merge_transaction_history_seed": merge_transaction([], HIST_SPEC),
        "merge_transaction_history": merge_transaction(HIST_EXISTING, HIST_SPEC, datetime(2026, 11, 24, 2)),
        **{name: D.create_view_sql("etl", name, select) for name, select in monitoring_views(D).items()},
    }


@pytest.mark.parametrize("name", sorted(statements()))
def test_mssql_sql_matches_golden(name: str) -> None:
    text = statements()[name].rstrip() + "\n"
    path = GOLDEN / f"{name}.sql"
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8", newline="\n")
    assert path.exists(), f"missing golden file {path}: run with CBM_UPDATE_GOLDEN=1 and review it"
    assert text == path.read_text(encoding="utf-8"), f"{name}: T-SQL changed; review, then CBM_UPDATE_GOLDEN=1"


# --- parsing as T-SQL -------------------------------------------------------------------------------------------

# Statements sqlglot 30 has no T-SQL grammar for: it falls back to an opaque exp.Command (no error, nothing
# checked).  They appear only in 05_roles.sql and are checked by pattern below instead.
_NO_GRAMMAR = re.compile(r"^(GRANT |ALTER ROLE )")
_EXEC_PAYLOAD = re.compile(r"EXEC\(N'((?:[^']|'')*)'\)")
_LOG_ONLY = re.compile(r"^(BEGIN TRANSACTION|COMMIT)$")


def batches(text: str) -> list[str]:
    """Statements of a golden file or script: GO-separated batches, recorded transactions split on blank lines."""
    body = "\n".join(line for line in text.splitlines()
                     if not line.startswith("--") or line.startswith("-- params"))
    parts = re.split(r"^GO$", body, flags=re.M)
    out = []
    for part in parts:
        for chunk in re.split(r"\n\s*\n", part) if "-- params" in part or "BEGIN TRANSACTION" in part else [part]:
            chunk = re.sub(r"^-- params:.*$", "", chunk, flags=re.M).strip().rstrip(";").strip()
            if chunk and not _LOG_ONLY.match(chunk):
                out.append(chunk)
    return out


def parse_tsql(sql: str) -> list[exp.Expression]:
    """Parse as T-SQL; a parse error raises.  Opaque fallbacks (exp.Command) are refused unless allowed."""
    trees = [t for t in sqlglot.parse(sql, read="tsql") if t is not None]
    assert trees, f"nothing parsed from {sql[:80]!r}"
    for tree in trees:
        commands = list(tree.find_all(exp.Command))
        if commands and not _NO_GRAMMAR.match(sql.lstrip()):
            raise AssertionError(f"sqlglot could not really parse (fell back to Command): {sql[:120]!r}")
    # CREATE SCHEMA / CREATE ROLE run through EXEC(N'...') (they must be alone in their batch).  sqlglot reads
    # "IF <cond> EXEC(N'...')" without error but takes EXEC for an alias of the condition, so the payload is not
    # checked by the outer parse: parse it on its own.
    for payload in _EXEC_PAYLOAD.findall(sql):
        inner = payload.replace("''", "'")
        if not inner.startswith("CREATE ROLE "):  # no CREATE ROLE grammar in sqlglot either
            parse_tsql(inner)
    return trees


ALL_SQL = {**{f"golden:{k}": v for k, v in statements().items()}, **{f"script:{k}": v for k, v in scripts().items()}}


@pytest.mark.parametrize("name", sorted(ALL_SQL))
def test_every_statement_parses_as_tsql(name: str) -> None:
    stmts = batches(ALL_SQL[name])
    assert stmts, name
    for sql in stmts:
        parse_tsql(sql)


def test_the_parse_check_can_fail() -> None:
    merge = D.merge_sql(SPEC)
    broken = merge.replace("VALUES (", "VALUES ", 1)
    with pytest.raises(sqlglot.errors.ParseError):
        parse_tsql(broken)
    with pytest.raises(AssertionError, match="fell back to Command"):
        parse_tsql("CREATE ROLE [x]")


def test_statements_without_grammar_are_the_grants_only() -> None:
    roles = batches(scripts()["05_roles.sql"])
    opaque = [s for s in roles if _NO_GRAMMAR.match(s)]
    assert opaque and all(re.fullmatch(r"(GRANT [A-Z ,]+( ON SCHEMA::\[\w+\])? TO \[\w+\]|"
                                       r"ALTER ROLE \[\w+\] ADD MEMBER \[\w+\])", s) for s in opaque), opaque


# --- what the SQL must say ---------------------------------------------------------------------------------------


def test_merge_holds_its_lock_updates_changed_rows_only_and_counts_from_output() -> None:
    sql = D.merge_sql(SPEC)
    assert "MERGE INTO [ods].[order-line] WITH (HOLDLOCK) AS o" in sql
    assert "ON o.[order-num] = s.[order-num] AND o.[line] = s.[line]" in sql
    assert "WHEN MATCHED AND o.[hashdiff] <> s.[hashdiff] THEN" in sql
    assert "OUTPUT $action INTO @actions;" in sql  # the MERGE statement ends with ';'
    assert "[qty]]x] = s.[qty]]x]" in sql and "[obsolete]" not in sql
    update_set = sql.split("UPDATE SET", 1)[1].split("WHEN NOT MATCHED", 1)[0]
    assert "[order-num]" not in update_set and "[line]" not in update_set  # key columns are never updated
    assert sql.count(":batch") == 2


def test_marker_watermark_and_run_log_are_in_the_merge_transaction() -> None:
    text = merge_transaction([c.name for c in D.ods_columns(SPEC)])
    body = text.split("BEGIN TRANSACTION", 1)[1]
    assert text.count("BEGIN TRANSACTION") == 1 and body.rstrip().endswith("COMMIT")
    order = ["EXEC @cbm_lock_rc = sp_getapplock", "FROM [etl].[ETL_Markers]", "WITH (UPDLOCK, HOLDLOCK)", "MERGE INTO", "UPDATE [config].[ETL_Tables] SET [LastSuccessTs]",
             "INSERT INTO [etl].[ETL_Markers]", "INSERT INTO [etl].[ETL_Log]", "INSERT INTO [etl].[ETL_Log]"]
    pos = 0
    for piece in order:
        pos = body.index(piece, pos) + 1
    assert "CREATE TABLE" not in body and "ALTER TABLE" not in body


def test_table_lock_is_an_applock_owned_by_the_transaction() -> None:
    sql = D.table_lock_sql()
    assert "sp_getapplock @Resource = :lock, @LockMode = 'Exclusive', @LockOwner = 'Transaction'" in sql
    assert sql.rstrip().endswith("SELECT @cbm_lock_rc AS [rc];")  # the return code is the only result


def test_schema_drift_adds_the_missing_column_nullable() -> None:
    text = merge_transaction([c.name for c in D.ods_columns(SPEC) if c.name != "blob"])
    assert "ALTER TABLE [ods].[order-line] ADD [blob] varbinary(max) NULL" in text


def test_history_is_written_in_the_merge_transaction_after_the_deletes_before_the_marker() -> None:
    text = merge_transaction(HIST_EXISTING, HIST_SPEC, datetime(2026, 11, 24, 2))
    body = text.split("BEGIN TRANSACTION", 1)[1]
    assert text.count("BEGIN TRANSACTION") == 1 and body.rstrip().endswith("COMMIT")
    order = ["SELECT MAX([valid_from]) AS [at] FROM [hist].[order-line]", "MERGE INTO", "UPDATE o SET o.[etl_deleted_ts]",
             "UPDATE h SET h.[valid_to] = :ts, h.[is_current] = 0\nFROM [hist].[order-line] AS h",
             "INSERT INTO [hist].[order-line]", "EXISTS (SELECT 1 FROM [ods].[order-line] AS o WHERE o.[order-num] "
             "= h.[order-num] AND o.[line] = h.[line] AND o.[etl_deleted_ts] IS NOT NULL)",
             "UPDATE [config].[ETL_Tables] SET [LastSuccessTs]", "INSERT INTO [etl].[ETL_Markers]"]
    pos = 0
    for piece in order:
        pos = body.index(piece, pos) + 1
    assert "CREATE TABLE" not in body and "ALTER TABLE" not in body and "UPDATE [hist]" not in body


def test_a_new_history_table_gets_its_schema_a_filtered_unique_index_and_the_ods_rows() -> None:
    text = merge_transaction([], HIST_SPEC)
    assert "IF SCHEMA_ID(N'hist') IS NULL EXEC(N'CREATE SCHEMA [hist]')" in text
    assert ("CONSTRAINT [PK_hist_order-line] PRIMARY KEY CLUSTERED ([order-num], [line], [valid_from])"
            in text)
    assert "[valid_from] datetime2(3) NOT NULL" in text and "[is_current] bit NOT NULL" in text
    assert ("CREATE UNIQUE NONCLUSTERED INDEX [UX_hist_order-line_current] ON [hist].[order-line] "
            "([order-num], [line]) WHERE [is_current] = 1") in text
    seed = text.split("INSERT INTO [hist].[order-line]", 1)[1].split("\n\n", 1)[0]
    assert "FROM [ods].[order-line] o\nWHERE o.[etl_deleted_ts] IS NULL" in seed and "-- params: batch, ts" in seed
    assert "UPDATE h SET" not in text  # seeded from the ODS as merged: nothing to close


def test_a_key_scan_merge_checks_its_keys_then_marks_against_them_in_the_merge_transaction() -> None:
    text = key_scan_merge_transaction()
    body = text.split("BEGIN TRANSACTION", 1)[1]
    assert text.count("BEGIN TRANSACTION") == 1 and body.rstrip().endswith("COMMIT")
    scan = "(SELECT 1 FROM [stg].[order-line__keys] "
    order = ["FROM [etl].[ETL_StagingState]", "SELECT COUNT(*) FROM [stg].[order-line__keys]",
             f"AND NOT EXISTS {scan}", "MERGE INTO [ods].[order-line]", f"IS NOT NULL AND EXISTS {scan}",
             f"SET o.[etl_deleted_ts] = :ts FROM [ods].[order-line] AS o WITH (HOLDLOCK) WHERE o.[etl_deleted_ts] "
             f"IS NULL AND NOT EXISTS {scan}", "INSERT INTO [etl].[ETL_Markers]"]
    pos = 0
    for piece in order:
        pos = body.index(piece, pos) + 1
    assert "EXISTS (SELECT 1 FROM [stg].[order-line] " not in body  # staging holds the window only


def test_ddl_is_idempotent_tsql() -> None:
    assert D.create_schema_sql("stg") == "IF SCHEMA_ID(N'stg') IS NULL EXEC(N'CREATE SCHEMA [stg]')"
    ods = D.create_table_sql("ods", SPEC.sql_name, D.ods_columns(SPEC), SPEC.primary_key)
    assert ods.startswith("IF OBJECT_ID(N'[ods].[order-line]', N'U') IS NULL\nCREATE TABLE [ods].[order-line] (")
    assert "CONSTRAINT [PK_ods_order-line] PRIMARY KEY CLUSTERED ([order-num], [line])" in ods
    stg = D.create_table_sql("stg", SPEC.sql_name, D.staging_columns(SPEC))
    assert "PRIMARY KEY" not in stg  # a heap: bulk loaded WITH (TABLOCK)


def test_scripts_in_sql_mssql_are_what_the_dialect_generates() -> None:
    generated = scripts()
    if UPDATE:
        from cbm_luigi.store.mssql_scripts import write_scripts

        write_scripts(SCRIPTS)
    committed = sorted(p.name for p in SCRIPTS.glob("*.sql"))
    assert committed == sorted(generated), "sql/mssql/*.sql differ from the generated set (CBM_UPDATE_GOLDEN=1)"
    for name, text in generated.items():
        assert (SCRIPTS / name).read_text(encoding="utf-8") == text, (
            f"sql/mssql/{name} drifted from the dialect: CBM_UPDATE_GOLDEN=1 python -m pytest tests/destinations/test_mssql_golden.py"
        )
    readme = (SCRIPTS / "README.md").read_text(encoding="utf-8")
    for name in generated:
        assert name in readme, f"sql/mssql/README.md does not mention {name}"


def test_scripts_hold_every_metadata_table_and_view() -> None:
    text = "\n".join(scripts().values())
    for table in ("ETL_Tables", "ETL_Columns", "ETL_Dependencies", "ETL_Log", "ETL_Markers", "ETL_StagingState",
                  "ETL_Alerts", "Validation_Log", "DataQuality_Log", "vw_LastRuns", "vw_TablePerformance",
                  "vw_SLABreach"):
        assert f"].[{table}]" in text, table
