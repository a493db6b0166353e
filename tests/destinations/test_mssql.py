"""The SQL Server dialect without a SQL Server: type mapping, quoting, the URLs SQLAlchemy 2.1 accepts for both
drivers, error classification (on the drivers' real exception classes), the overflow check and the
fast_executemany fallback (on real parquet files, the latter through a real ODBC driver: psqlODBC), the
own-connection staging protocol of load.stage (on a real DuckDB file), and the monitoring views' T-SQL run on
DuckDB through sqlglot's transpiler against the ANSI views they must equal.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
import sqlglot

from cbm_luigi.destinations import dialect_for_url, open_target
from cbm_luigi.destinations.client import Target
from cbm_luigi.destinations.duckdb import DuckDBDialect
from cbm_luigi.destinations.mssql import (
    MssqlDialect,
    _input_size,
    batch_rows,
    executemany_parquet,
    statement_head,
)
from cbm_luigi.errors import ConfigError, DataError, TargetError, TransientTargetError
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
from cbm_luigi.pipeline import stage as load
from cbm_luigi.pipeline.extract import Manifest
from cbm_luigi.store.schema import init_db, init_statements
from cbm_luigi.store.staging_state import staging_state
from cbm_luigi.store.views import monitoring_views

D = MssqlDialect()


# --- types and names ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("logical", "kw", "expected"), [
    (STRING, {"width": 1}, "nvarchar(1)"),
    (STRING, {"width": 4000}, "nvarchar(4000)"),
    (STRING, {"width": 4001}, "nvarchar(max)"),
    (STRING, {"width": None}, "nvarchar(max)"),
    (DECIMAL, {"precision": 17, "scale": 6}, "decimal(17,6)"),
    (DECIMAL, {"precision": 50, "scale": 10}, "decimal(38,10)"),  # Progress default width, capped at 38
    (DECIMAL, {"precision": None, "scale": None}, "decimal(38,10)"),  # undeclared: read as text (model/types.py)
    (DECIMAL, {"precision": 12, "scale": None}, "decimal(12,0)"),
    (DECIMAL, {"precision": 2, "scale": 5}, "decimal(5,5)"),
    (INTEGER, {}, "int"), (BIGINT, {}, "bigint"), (FLOAT, {}, "float"), (BOOLEAN, {}, "bit"),
    (DATE, {}, "date"), (TIMESTAMP, {}, "datetime2(3)"), (TIMESTAMP_TZ, {}, "datetimeoffset(3)"),
    (BINARY, {}, "varbinary(max)"),
])
def test_type_mapping(logical: str, kw: dict[str, Any], expected: str) -> None:
    assert D.column_type(logical, **kw) == expected


def test_technical_columns_and_unknown_types() -> None:
    tech = {c.name: c.type for c in D.technical_columns(with_batch=True)}
    assert tech == {"hashdiff": "char(64)", "ts_source": "datetime2(3)", "load_ts": "datetime2(3)",
                    "etl_batch": "nvarchar(64)"}
    with pytest.raises(TargetError, match="no SQL Server type"):
        D.column_type("interval")


def test_brackets_are_doubled_and_long_names_refused() -> None:
    assert D.quote("a]b") == "[a]]b]"
    assert D.qualified("stg", "order") == "[stg].[order]"
    with pytest.raises(TargetError, match="128"):
        D.quote("x" * 129)
    name = D.constraint_name("PK", "ods", "t" * 200)
    assert len(name) == 128 and name != D.constraint_name("PK", "ods", "t" * 199)


def _spec(*cols: ColumnSpec, pk: tuple[str, ...] = ("id",)) -> TableSpec:
    return TableSpec(table_name="t-1", sql_name="t-1", destination_table="ods.t-1", primary_key=pk,
                     has_timestamps=False, date_modif_col=None, date_modif_precision="datetime", columns=cols)


def test_a_primary_key_that_would_be_max_is_refused_with_the_fix() -> None:
    spec = _spec(ColumnSpec("id", "id", STRING, "varchar", width=None, position=1))
    with pytest.raises(TargetError, match=r"primary-key column id would be nvarchar\(max\).*CharMaxLength"):
        D.ods_columns(spec)


# --- URLs and drivers -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "driver", "path", "connect"), [
    ("mssql+pyodbc://etl:p%3Bw@sqlhost:1433/CBM_ETL?driver=ODBC+Driver+18+for+SQL+Server&TrustServerCertificate=yes",
     "pyodbc", "fast_executemany",
     "DRIVER={ODBC Driver 18 for SQL Server};Server=sqlhost,1433;Database=CBM_ETL;UID=etl;PWD={p;w};"
     "TrustServerCertificate=yes"),
    ("mssql+pyodbc://etl:pw@sqlhost:1433/CBM_ETL?driver=FreeTDS&TDS_Version=7.4", "pyodbc", "fast_executemany",
     "DRIVER={FreeTDS};Server=sqlhost,1433;Database=CBM_ETL;UID=etl;PWD=pw;TDS_Version=7.4"),
    ("mssql+pyodbc://@CBM_DSN", "pyodbc", "fast_executemany", "dsn=CBM_DSN;Trusted_Connection=Yes"),
    ("mssql://etl:pw@sqlhost/CBM_ETL?driver=ODBC+Driver+17+for+SQL+Server", "pyodbc", "fast_executemany",
     "DRIVER={ODBC Driver 17 for SQL Server};Server=sqlhost;Database=CBM_ETL;UID=etl;PWD=pw"),
    ("mssql+mssqlpython://etl:p%3Bw@sqlhost:1433/CBM_ETL?Encrypt=yes&TrustServerCertificate=yes", "mssqlpython",
     "bulkcopy", "Server=sqlhost,1433;Database=CBM_ETL;UID=etl;PWD={p;w};Encrypt=yes;TrustServerCertificate=yes"),
    ("mssql+mssqlpython://sqlhost/CBM_ETL?authentication=ActiveDirectoryIntegrated", "mssqlpython", "bulkcopy",
     "Server=sqlhost;Database=CBM_ETL;Authentication=ActiveDirectoryIntegrated"),
])
def test_urls_of_both_drivers(url: str, driver: str, path: str, connect: str) -> None:
    dialect = dialect_for_url(url)
    assert isinstance(dialect, MssqlDialect)
    assert (dialect.driver, dialect.bulk_path) == (driver, path)
    assert dialect.stages_on_own_connection is (path == "bulkcopy")
    engine = sa.create_engine(url)  # no connection is opened
    args, _ = engine.dialect.create_connect_args(sa.make_url(url))
    assert args[0] == connect


def test_other_sqlalchemy_mssql_drivers_are_refused_with_the_fix() -> None:
    with pytest.raises(ConfigError, match=r"mssql\+pymssql is not supported.*mssql\+pyodbc.*mssql\+mssqlpython"):
        dialect_for_url("mssql+pymssql://u:p@h/db")


def test_open_target_builds_an_engine_without_connecting() -> None:
    t = open_target("mssql+mssqlpython://u:p@127.0.0.1:1/none")
    try:
        assert isinstance(t.dialect, MssqlDialect) and t.engine.dialect.driver == "mssqlpython"
    finally:
        t.dispose()
        open_target.cache_clear()


# --- errors -----------------------------------------------------------------------------------------------------


def _pyodbc_error(cls_name: str, state: str, text: str, native: int) -> BaseException:
    import pyodbc

    cls = getattr(pyodbc, cls_name)
    return cls(state, f"[{state}] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]{text} ({native}) "
                      "(SQLExecDirectW)")


def _wrapped(orig: BaseException, statement: str = "MERGE INTO [ods].[t] WITH (HOLDLOCK) AS o") -> BaseException:
    return sa.exc.DBAPIError.instance(statement, {}, orig, Exception)


@pytest.mark.parametrize(("exc", "transient"), [
    (_pyodbc_error("OperationalError", "40001", "Transaction (Process ID 52) was deadlocked on lock resources "
                   "with another process and has been chosen as the deadlock victim. Rerun the transaction.", 1205),
     True),
    (_pyodbc_error("OperationalError", "08S01", "TCP Provider: An existing connection was forcibly closed by the "
                   "remote host.", 10054), True),
    (_pyodbc_error("Error", "42000", "Database 'CBM_ETL' on server 'x' is not currently available.", 40613), True),
    (_pyodbc_error("Error", "42000", "The service is currently busy. Retry the request after 10 seconds.", 40501),
     True),
    (_pyodbc_error("Error", "42000", "Resource ID : 1. The request limit for the database is 60 and has been "
                   "reached.", 10928), True),
    (_pyodbc_error("Error", "42000", "Cannot process request. Not enough resources to process request.", 49918),
     True),
    (_pyodbc_error("OperationalError", "HYT00", "Query timeout expired", 0), True),
    (_pyodbc_error("ProgrammingError", "42S02", "Invalid object name 'ods.t'.", 208), False),
    (_pyodbc_error("IntegrityError", "23000", "Violation of PRIMARY KEY constraint 'PK_ods_t'.", 2627), False),
    (_pyodbc_error("DataError", "22003", "Arithmetic overflow error converting numeric to data type numeric.", 8115),
     False),
    (RuntimeError("Sql Error: 1205: Class 13: State 51: Transaction (Process ID 60) was deadlocked"), True),
    (RuntimeError("Sql Error: 4815: Class 16: State 1: Received an invalid column length from the bcp client"),
     False),
    (TimeoutError("Bulk copy operation timed out after 30 seconds (0 rows copied)"), True),
    (ValueError("Cannot insert NULL value into non-nullable column 'hashdiff'"), False),
])
def test_transient_errors_are_told_apart(exc: BaseException, transient: bool) -> None:
    assert D.is_transient(exc) is transient
    assert D.is_transient(_wrapped(exc)) is transient


def test_mssql_python_errors_are_classified_by_the_sqlstate_they_name() -> None:
    from mssql_python import exceptions as mx

    lost = mx.OperationalError(driver_error="Communication link failure",
                               ddbc_error="[Microsoft][SQL Server]TCP Provider: Error code 0x68")
    deadlock = mx.DatabaseError(driver_error="An error occurred with SQLSTATE code: 40001",
                                ddbc_error="[Microsoft][SQL Server]Transaction (Process ID 52) was deadlocked")
    missing = mx.ProgrammingError(driver_error="Syntax error or access violation",
                                  ddbc_error="[Microsoft][SQL Server]Invalid object name 'stg.t'.")
    assert D.is_transient(lost) and D.is_transient(_wrapped(deadlock)) and not D.is_transient(missing)


def test_translate_error_names_table_step_number_and_statement() -> None:
    merge = D.merge_sql(_spec(ColumnSpec("id", "id", INTEGER, "integer", position=1)))
    err = D.translate_error(_wrapped(_pyodbc_error("ProgrammingError", "42S02", "Invalid object name 'stg.t-1'.",
                                                   208), merge), table="t-1", step="merge_ods")
    assert isinstance(err, TargetError) and not isinstance(err, TransientTargetError)
    assert str(err) == ("table t-1, step merge_ods: SQL Server error 208 [42S02]: Invalid object name 'stg.t-1'. "
                        "in statement: MERGE INTO [ods].[t-1] WITH (HOLDLOCK) AS o")
    dead = D.translate_error(_wrapped(_pyodbc_error("OperationalError", "40001", "Transaction (Process ID 5) was "
                                                    "deadlocked on lock resources", 1205)), table="t", step="x")
    assert isinstance(dead, TransientTargetError) and dead.transient and "SQL Server error 1205" in str(dead)


def test_statement_head_skips_the_batch_preamble() -> None:
    assert statement_head("SET NOCOUNT ON;\nDECLARE @a TABLE (x int);\n-- c\nMERGE INTO x\nUSING y") == "MERGE INTO x"


# --- overflow check and the pyodbc fallback ---------------------------------------------------------------------------


def _write(path: Path, columns: dict[str, pa.Array]) -> Path:
    pq.write_table(pa.table(columns), path)
    return path


def test_overflow_check_names_the_column_and_the_fix(tmp_path: Path) -> None:
    spec = _spec(ColumnSpec("id", "id", INTEGER, "integer", position=1),
                 ColumnSpec("name", "name", STRING, "varchar", width=5, position=2),
                 # Progress's default decimal: 50 digits, 10 decimals -> decimal(38,10), 28 integer digits
                 ColumnSpec("amount", "amount", DECIMAL, "decimal", precision=50, scale=10, position=3))
    ok = _write(tmp_path / "ok.parquet", {"id": pa.array([1], pa.int32()), "name": pa.array(["héllo"]),
                                          "amount": pa.array([Decimal("9" * 28)], pa.decimal128(38, 10))})
    D.check_overflow(spec, [ok], ["id", "name", "amount"])
    # a 29-digit Progress value read into the capped decimal128(38,10): Arrow and parquet keep it whole
    big = pa.array([Decimal("1"), Decimal("-1" + "0" * 28 + ".5")], pa.decimal256(40, 10)).cast(
        pa.decimal128(38, 10), safe=False)
    wide = _write(tmp_path / "wide.parquet", {"id": pa.array([1, 2], pa.int32()),
                                              "name": pa.array(["x", "toolong"]), "amount": big})
    with pytest.raises(DataError) as err:
        D.check_overflow(spec, [ok, wide], ["id", "name", "amount"])
    text = str(err.value)
    assert "table t-1: column name (nvarchar(5)) holds values of up to 7 characters" in text
    assert "column amount (decimal(38,10)) holds values with up to 29 integer digits (at most 28 fit)" in text
    assert "config.ETL_Columns" in text and "Nothing was loaded" in text
    D.check_overflow(spec, [wide], ["id"])  # only the loaded columns are checked


def test_chunk_size_follows_the_row_width() -> None:
    assert D.executemany_chunk_rows(["int", "bigint"]) == D.executemany_max_rows
    assert D.executemany_chunk_rows(["nvarchar(4000)"] * 20) == 419  # 64 MiB / (20 x 8002 bytes)
    assert D.executemany_chunk_rows(["nvarchar(4000)"] * 1000) == D.executemany_min_rows


def test_input_sizes_for_fast_executemany() -> None:
    import pyodbc

    assert _input_size("nvarchar(30)") == (pyodbc.SQL_WVARCHAR, 30, 0)
    assert _input_size("nvarchar(max)") == (pyodbc.SQL_WVARCHAR, 0, 0)  # 0: sent as data-at-execution
    assert _input_size("char(64)") == (pyodbc.SQL_VARCHAR, 64, 0)
    assert _input_size("decimal(38,10)") == (pyodbc.SQL_DECIMAL, 38, 10)
    assert _input_size("datetimeoffset(3)") == (pyodbc.SQL_TYPE_TIMESTAMP, 27, 7)
    assert _input_size("varbinary(max)") == (pyodbc.SQL_VARBINARY, 0, 0)


def test_batch_rows_turns_zoned_timestamps_into_utc_wall_time() -> None:
    batch = pa.record_batch({
        "ts": pa.array([dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC), None], pa.timestamp("us", tz="UTC")),
        "d": pa.array([Decimal("1.50"), None], pa.decimal128(5, 2)),
        "b": pa.array([b"\x00", None]),
    })
    assert batch_rows(batch) == [(dt.datetime(2026, 1, 2, 3, 4, 5), Decimal("1.50"), b"\x00"), (None, None, None)]


@pytest.mark.postgres
@pytest.mark.odbc
def test_fast_executemany_path_sends_every_row_through_a_real_odbc_driver(pg_conninfo: str, odbc_driver: str,
                                                                        tmp_path: Path) -> None:
    """executemany_parquet, chunked, with the input sizes given: psqlODBC stands in for SQL Server's driver
    (it takes ANSI quoting and finite sizes; the (max) data-at-execution path is left to SQL Server's driver)."""
    import psycopg
    import pyodbc
    from conftest import pg_params

    table = f"cbm_fe_{uuid.uuid4().hex[:8]}"
    n = 2_345
    names = ["id", "name", "amount", "ts", "tz", "day", "flag", "blob", "f"]
    files = []
    for part in range(2):
        ids = list(range(part * n, (part + 1) * n))
        files.append(_write(tmp_path / f"p{part}.parquet", {
            "id": pa.array(ids, pa.int64()),
            "name": pa.array([None if i % 7 == 0 else f"é{i}" for i in ids]),
            "amount": pa.array([Decimal(i) / 100 for i in ids], pa.decimal128(12, 2)),
            "ts": pa.array([dt.datetime(2026, 1, 1, 0, 0, 0, 123000) + dt.timedelta(minutes=i) for i in ids],
                           pa.timestamp("us")),
            "tz": pa.array([dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)] * n, pa.timestamp("us", tz="UTC")),
            "day": pa.array([dt.date(2026, 1, 1)] * n, pa.date32()),
            "flag": pa.array([i % 2 == 0 for i in ids]),
            "blob": pa.array([bytes([i % 256]) for i in ids]),
            "f": pa.array([i / 3 for i in ids]),
        }))
    with psycopg.connect(pg_conninfo, autocommit=True) as c:
        c.execute(f'CREATE TABLE "{table}" (id bigint, name varchar(20), amount numeric(12,2), ts timestamp(3), '
                  'tz timestamp(3), day date, flag boolean, blob bytea, f double precision)')
    p = pg_params(pg_conninfo)
    cnxn = pyodbc.connect(f"DRIVER={{{odbc_driver}}};SERVER={p.get('host', '127.0.0.1')};"
                          f"PORT={p.get('port', '5432')};DATABASE={p['dbname']};UID={p.get('user', 'postgres')}",
                          autocommit=False)
    try:
        sizes = [_input_size(t) for t in ("bigint", "nvarchar(20)", "decimal(12,2)", "datetime2(3)",
                                          "datetimeoffset(3)", "date", "bit", "varbinary(10)", "float")]
        cursor = cnxn.cursor()
        sql = f'INSERT INTO "{table}" ({", ".join(names)}) VALUES ({", ".join("?" for _ in names)})'
        assert executemany_parquet(cursor, sql, files, names, sizes, chunk_rows=1_000) == 2 * n
        cnxn.commit()
        with psycopg.connect(pg_conninfo) as c:
            got = c.execute(f'SELECT count(*), count(name), sum(amount), min(ts), max(tz), '
                            f'sum(CASE WHEN flag THEN 1 ELSE 0 END), min(day) FROM "{table}"').fetchone()
            row = c.execute(f"SELECT name, amount, ts, blob FROM \"{table}\" WHERE id = 1000").fetchone()
    finally:
        cnxn.close()
        with psycopg.connect(pg_conninfo, autocommit=True) as c:
            c.execute(f'DROP TABLE IF EXISTS "{table}"')
    ids = range(2 * n)
    assert got == (2 * n, sum(1 for i in ids if i % 7), sum(Decimal(i) / 100 for i in ids),
                   dt.datetime(2026, 1, 1, 0, 0, 0, 123000), dt.datetime(2026, 1, 1, 12), n, dt.date(2026, 1, 1))
    assert row == ("é1000", Decimal("10.00"), dt.datetime(2026, 1, 1, 16, 40, 0, 123000), bytes([1000 % 256]))


# --- the own-connection staging protocol of load.stage ----------------------------------------------------------------


class OwnConnectionDuckDB(DuckDBDialect):
    """DuckDB loading staging like SQL Server's bulk copy: on a second connection, committed on its own."""

    def __init__(self, catalog: str | None, fail_after: int | None = None, drop: int = 0) -> None:
        super().__init__(catalog)
        self.fail_after, self.drop = fail_after, drop

    @property
    def stages_on_own_connection(self) -> bool:
        return True

    def load_staging(self, conn: Any, spec: TableSpec, files: Sequence[Path], columns: Sequence[str]) -> int:
        raise AssertionError("the in-transaction path must not run")

    def bulk_load_staging(self, target: Target, spec: TableSpec, files: Sequence[Path],
                          columns: Sequence[str]) -> int:
        raw = target.engine.raw_connection()
        try:
            cur = raw.cursor()
            cols = ", ".join(self.quote(c) for c in columns)
            cur.execute(f"INSERT INTO {self.qualified('stg', spec.sql_name)} ({cols}) SELECT {cols} "
                        f"FROM read_parquet(?) LIMIT ?", [[str(f) for f in files], 10**9 if self.fail_after is None
                                                          else self.fail_after])
            raw.commit()
            if self.fail_after is not None:
                raise OSError("connection lost during the bulk copy")
            if self.drop:  # a bulk copy that reports success but lost rows
                cur.execute(f"DELETE FROM {self.qualified('stg', spec.sql_name)} WHERE rowid < ?", [self.drop])
                raw.commit()
        finally:
            raw.close()
        return 10 - self.drop if self.drop else 10


def _staging_case(tmp_path: Path, dialect: DuckDBDialect) -> tuple[Target, TableSpec, Manifest, list[Path]]:
    spec = _spec(ColumnSpec("id", "id", INTEGER, "integer", position=1, nullable=False),
                 ColumnSpec("name", "name", STRING, "varchar", width=10, position=2))
    files = [_write(tmp_path / "part-00000.parquet", {
        "id": pa.array(range(10), pa.int32()), "name": pa.array([f"n{i}" for i in range(10)]),
        "hashdiff": pa.array(["0" * 64] * 10), "ts_source": pa.array([None] * 10, pa.timestamp("us")),
        "load_ts": pa.array([dt.datetime(2026, 1, 1)] * 10, pa.timestamp("us")),
    })]
    manifest = Manifest(table=spec.table_name, batch="b1", mode="full", source_clock="2026-01-01T00:00:00",
                        window="full", window_since=None, rows=10, files=[files[0].name], columns=["id", "name"],
                        hash_columns=["id", "name"], run_id="r", extract_seconds=0.1, transform_seconds=0.1)
    db = tmp_path / "ods.duckdb"
    target = Target(f"duckdb:///{db}", dialect, sa.create_engine(f"duckdb:///{db}", poolclass=sa.pool.NullPool))
    init_db(target)
    with target.begin() as conn:  # staging holds an older batch
        target.ensure_table(conn, "stg", spec.sql_name, dialect.staging_columns(spec))
        conn.execute(f"INSERT INTO {dialect.qualified('etl', 'ETL_StagingState')} VALUES "
                     "('t-1', 'b0', 'full', 3, NULL, 'r0', TIMESTAMP '2026-01-01')")
    return target, spec, manifest, files


def _state(target: Target) -> list[tuple[Any, ...]]:
    return target.fetchall('SELECT "Batch", "RowsStaged" FROM ods.etl."ETL_StagingState"')


def test_own_connection_staging_records_the_batch_after_the_bulk_load(tmp_path: Path) -> None:
    target, spec, manifest, files = _staging_case(tmp_path, OwnConnectionDuckDB("ods"))
    assert load.stage(target, spec, manifest, files) == 10
    assert _state(target) == [("b1", 10)]
    assert target.fetchone('SELECT COUNT(*) FROM ods.stg."t-1"') == (10,)
    steps = target.fetchall('SELECT "StepName", "RowsProcessed" FROM ods.etl."ETL_Log"')
    assert steps == [("load_staging", 10)]
    target.dispose()


def test_a_failed_bulk_load_leaves_staging_recorded_as_holding_nothing(tmp_path: Path) -> None:
    target, spec, manifest, files = _staging_case(tmp_path, OwnConnectionDuckDB("ods", fail_after=4))
    with pytest.raises(OSError, match="connection lost"):
        load.stage(target, spec, manifest, files)
    assert _state(target) == []  # the merge refuses: "staging holds nothing, not batch b1"
    assert staging_state(target, "t-1") is None
    target.dispose()


def test_a_bulk_load_that_lost_rows_is_refused(tmp_path: Path) -> None:
    target, spec, manifest, files = _staging_case(tmp_path, OwnConnectionDuckDB("ods", drop=3))
    with pytest.raises(TargetError, match=r"bulk load reported 7 rows and staging holds 7.*extract holds 10"):
        load.stage(target, spec, manifest, files)
    assert _state(target) == []
    target.dispose()


# --- monitoring views: the T-SQL means what the ANSI views mean -------------------------------------------------------


def test_tsql_views_equal_the_ansi_views_on_the_same_log(tmp_path: Path) -> None:
    """The T-SQL text, transpiled by sqlglot to DuckDB, returns what DuckDB's own views return (the views'
    semantics are pinned; SQL Server itself is not run).  sqlglot maps T-SQL ``float`` to REAL, hence the
    tolerance on float columns."""
    con = duckdb.connect()
    ansi = DuckDBDialect(None)
    for sql in init_statements(ansi):
        con.execute(sql)
    now = dt.datetime.now().replace(microsecond=0)

    def log(table: str, run: str, batch: str | None, step: str, status: str, hours_ago: float,
            rows: int | None = None, ins: int | None = None, dur: float = 1.0, err: str | None = None) -> None:
        con.execute('INSERT INTO etl."ETL_Log" VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)',
                    [str(uuid.uuid4()), run, table, batch, "full", step, status, rows, ins,
                     None if ins is None else 0, None if ins is None else rows - ins, None, dur, err,
                     now - dt.timedelta(hours=hours_ago)])

    for step, h in (("extract", 30.0), ("load_staging", 29.95), ("merge_ods", 29.9)):
        log("client", "r1", "b1", step, "success", h, rows=10, ins=4 if step == "merge_ods" else None)
    log("client", "r1", "b1", "flow_complete", "success", 29.9, rows=10, ins=4, dur=9.0)
    log("client", "r2", "b2", "extract", "success", 3, rows=5)
    log("client", "r2", "b2", "load_staging", "failed", 2.5, err="first failure")
    log("client", "r2", "b2", "merge_ods", "failed", 2, err="second failure")
    log("produit", "r3", None, "extract", "success", 1, rows=3)
    log("stock", "r4", "b9", "flow_complete", "success", 200, rows=1, ins=1)
    con.execute("""INSERT INTO config."ETL_Tables" ("TableName", "SqlName", "DestinationTable", "PrimaryKeyCols",
        "HasTimestamps", "IsDimension", "IsFact", "IsActive", "SLAHours", "Notes", "PriorityTier") VALUES
        ('client', 'client', 'ods.client', 'id', true, true, false, true, 24, NULL, NULL),
        ('produit', 'produit', 'ods.produit', 'id', true, false, true, true, 12, 'Critique', NULL),
        ('stock', 'stock', 'ods.stock', 'id', true, false, true, true, NULL, NULL, 'Normal'),
        ('old', 'old', 'ods.old', 'id', true, false, true, false, 1, NULL, NULL)""")

    def norm(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        return sorted((tuple(round(v, 2) if isinstance(v, float) else v for v in r) for r in rows), key=str)

    for name, select in monitoring_views(D).items():
        tsql = D.create_view_sql("etl", name, select)
        body = sqlglot.parse_one(tsql, read="tsql").expression.sql("duckdb")
        ours, theirs = con.execute(body).fetchall(), con.execute(monitoring_views(ansi)[name]).fetchall()
        assert ours and len(ours) == len(theirs), name
        for a, b in zip(norm(ours), norm(theirs), strict=True):
            for x, y in zip(a, b, strict=True):
                assert (abs(x - y) < 0.05) if isinstance(x, float) and isinstance(y, float) else x == y, (name, a, b)
    last = {r[0]: r for r in con.execute(
        sqlglot.parse_one(D.create_view_sql("etl", "v", monitoring_views(D)["vw_LastRuns"]),
                          read="tsql").expression.sql("duckdb")).fetchall()}
    assert last["client"][4] == "failed" and last["client"][-1] == "first failure"
    assert last["produit"][4] == "running"
