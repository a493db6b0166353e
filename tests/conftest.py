"""Shared fixtures: real databases (the machine's PostgreSQL, DuckDB files), ODBC sources, Luigi resets.

PostgreSQL and ODBC tests skip locally when the service or driver is missing, with the reason; with CI=true a
missing service is an error instead (CI must run them).  SQL Server cases run only with CBM_TEST_MSSQL_URL.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import luigi
import pytest

from cbm_luigi.destinations.locking import set_keep_open
from cbm_luigi.tasks.context import clear_caches

# Real servers (HTTP recorder, SMTP sink) and luigi.cfg overrides shared by the alert, health and preflight tests
pytest_plugins = ["alert_servers"]

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PG_CONNINFO = os.environ.get("CBM_TEST_PG_CONNINFO", "host=127.0.0.1 port=5432 dbname=test user=postgres")
PG_ODBC_DRIVER = os.environ.get("CBM_TEST_PG_ODBC_DRIVER", "PostgreSQL Unicode")


def unavailable(reason: str) -> None:
    """Skip, or fail in CI where every PostgreSQL / ODBC test must run."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: this test must run; .ci/run installs and starts what it needs)")
    pytest.skip(reason)


def pg_params(conninfo: str = PG_CONNINFO) -> dict[str, str]:
    return dict(kv.split("=", 1) for kv in conninfo.split())


@pytest.fixture(scope="session")
def pg_conninfo() -> str:
    try:
        import psycopg

        with psycopg.connect(PG_CONNINFO, connect_timeout=5) as c:
            c.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable", said in the skip
        unavailable(f"PostgreSQL not reachable at {PG_CONNINFO!r}: {exc}")
    return PG_CONNINFO


@pytest.fixture(scope="session")
def odbc_driver() -> str:
    try:
        import pyodbc
    except ImportError as exc:
        unavailable(f"pyodbc cannot load unixODBC: {exc}")
    if PG_ODBC_DRIVER not in pyodbc.drivers():
        unavailable(f"ODBC driver {PG_ODBC_DRIVER!r} not installed (installed: {pyodbc.drivers()})")
    return PG_ODBC_DRIVER


PROGRESS_EMULATION = """
CREATE SCHEMA IF NOT EXISTS sysprogress;
CREATE OR REPLACE VIEW sysprogress.syscalctable AS SELECT LOCALTIMESTAMP AS systimestamp;
CREATE OR REPLACE VIEW sysprogress.syscolumns_full AS
SELECT c.column_name::varchar AS col, c.table_name::varchar AS tbl, c.table_schema::varchar AS owner,
       CASE c.data_type
            WHEN 'character varying' THEN 'varchar' WHEN 'character' THEN 'varchar' WHEN 'text' THEN 'varchar'
            WHEN 'integer' THEN 'integer' WHEN 'smallint' THEN 'integer' WHEN 'bigint' THEN 'bigint'
            WHEN 'numeric' THEN 'decimal' WHEN 'date' THEN 'date'
            WHEN 'timestamp without time zone' THEN 'timestamp'
            WHEN 'timestamp with time zone' THEN 'timestamp_timezone'
            WHEN 'boolean' THEN 'bit' WHEN 'double precision' THEN 'float' WHEN 'real' THEN 'real'
            WHEN 'bytea' THEN 'varbinary' ELSE 'varchar' END::varchar AS coltype,
       COALESCE(c.character_maximum_length, c.numeric_precision, 0)::integer AS width,
       COALESCE(c.numeric_scale, 0)::integer AS scale,
       (CASE c.is_nullable WHEN 'YES' THEN 'Y' ELSE 'N' END)::varchar AS nullflag,
       c.ordinal_position::integer AS id, 0::integer AS array_extent
FROM information_schema.columns c;
"""


@dataclass(frozen=True)
class PgSource:
    """A Progress-like schema in the machine's PostgreSQL, reached over ODBC."""

    conninfo: str
    schema: str
    odbc: str

    def execute(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.conninfo, autocommit=True) as c:
            cur = c.execute(sql, params)
            return cur.fetchall() if cur.description else []


@pytest.fixture
def pg_source(pg_conninfo: str, odbc_driver: str) -> Iterator[PgSource]:
    """The demo tables in a fresh schema ``PUB_<random>`` plus the SYSPROGRESS catalog emulation."""
    import psycopg

    from cbm_luigi.demo import data as demo_data

    schema = f"PUB_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_conninfo, autocommit=True) as c, c.transaction():
        # one CREATE OR REPLACE VIEW at a time: two test processes (pytest -n 2) replacing the same view together
        # fail with "tuple concurrently updated"
        c.execute("SELECT pg_advisory_xact_lock(hashtext('cbm-luigi tests: sysprogress'))")
        c.execute(PROGRESS_EMULATION)
    demo_data.create_postgres_source(pg_conninfo, schema=schema)
    p = pg_params(pg_conninfo)
    odbc = (f"DRIVER={{{odbc_driver}}};SERVER={p.get('host', '127.0.0.1')};PORT={p.get('port', '5432')};"
            f"DATABASE={p['dbname']};UID={p.get('user', 'postgres')}")
    yield PgSource(pg_conninfo, schema, odbc)
    with psycopg.connect(pg_conninfo, autocommit=True) as c:
        c.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def pg_database(pg_conninfo: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database; yields its SQLAlchemy URL."""
    import psycopg

    name = f"cbm_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_conninfo, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    p = pg_params(pg_conninfo)
    yield f"postgresql+psycopg://{p.get('user', 'postgres')}@{p.get('host', '127.0.0.1')}:{p.get('port', '5432')}/{name}"
    from cbm_luigi.destinations import open_target

    clear_caches()
    open_target.cache_clear()
    with psycopg.connect(pg_conninfo, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


TARGET_KINDS = ["duckdb", "postgresql", "mssql"]


@pytest.fixture(params=TARGET_KINDS)
def target_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every pipeline test runs once per target: DuckDB file, PostgreSQL database, SQL Server (opt-in)."""
    kind = request.param
    if kind == "duckdb":  # the default file name; the tests with a tmp ods.duckdb cover the name used before
        return f"duckdb:///{tmp_path / 'cbm_ods.duckdb'}"
    if kind == "postgresql":
        return str(request.getfixturevalue("pg_database"))
    url = os.environ.get("CBM_TEST_MSSQL_URL")
    if not url:
        pytest.skip("SQL Server: set CBM_TEST_MSSQL_URL=mssql+pyodbc://... to run these cases against a real server")
    return str(request.getfixturevalue("mssql_database"))


MSSQL_HOWTO = (
    "SQL Server: set CBM_TEST_MSSQL_URL to a login allowed to CREATE DATABASE, e.g. "
    "CBM_TEST_MSSQL_URL='mssql+pyodbc://sa:<password>@127.0.0.1:1433/master?"
    "driver=ODBC+Driver+18+for+SQL+Server&TrustServerCertificate=yes' (Docker: see docs/SQLSERVER.md)"
)


@pytest.fixture
def mssql_database() -> Iterator[str]:
    """A fresh, empty database on the SQL Server of CBM_TEST_MSSQL_URL (opt-in); yields its URL, drops it after.

    Without the variable the test skips saying how to enable it.  With it, a server that cannot create the
    database fails the test (the variable says the suite must run).
    """
    url = os.environ.get("CBM_TEST_MSSQL_URL")
    if not url:
        pytest.skip(MSSQL_HOWTO)
    import sqlalchemy as sa

    from cbm_luigi.destinations import open_target

    name = f"cbm_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with admin.connect() as c:
            c.exec_driver_sql(f"CREATE DATABASE [{name}]")
    except (sa.exc.SQLAlchemyError, ImportError, OSError) as exc:
        admin.dispose()
        pytest.fail(f"CBM_TEST_MSSQL_URL is set but CREATE DATABASE [{name}] failed: {exc}")
    db_url = sa.make_url(url).set(database=name).render_as_string(hide_password=False)
    yield db_url
    open_target(db_url).dispose()
    clear_caches()
    open_target.cache_clear()
    with admin.connect() as c:
        # close what a failed test left open (best effort: not available on Azure SQL Database)
        with contextlib.suppress(Exception):
            c.exec_driver_sql(f"ALTER DATABASE [{name}] SET SINGLE_USER WITH ROLLBACK IMMEDIATE")
        c.exec_driver_sql(f"DROP DATABASE [{name}]")
    admin.dispose()


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Every test starts with no CBM_* settings, its own cache dir, fresh caches and a clean Luigi registry."""
    for k in list(os.environ):
        if k.startswith("CBM_") and not k.startswith(("CBM_TEST_", "CBM_UPDATE_GOLDEN")):
            monkeypatch.delenv(k)
    monkeypatch.setenv("CBM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("CBM_LOG_DIR", str(tmp_path / "logs"))
    # reports (the night report written after every run --all, too) never land in the checkout's reports/
    monkeypatch.setenv("CBM_REPORTS_DIR", str(tmp_path / "reports"))
    # In this process a DuckDB file is closed after each transaction: tests open the files they check themselves
    # (read_only, which DuckDB refuses beside a kept read-write connection of the same process).  The commands
    # the tests run as subprocesses keep it open as in production; tests/destinations/test_kept_connection.py
    # tests the kept connection itself.
    set_keep_open(0)
    clear_caches()
    yield
    clear_caches()
    set_keep_open(0)
    luigi.task_register.Register.clear_instance_cache()


def configure(monkeypatch: pytest.MonkeyPatch, *, source: str, flavor: str, schema: str, target: str) -> None:
    monkeypatch.setenv("CBM_SOURCE", source)
    monkeypatch.setenv("CBM_SOURCE_FLAVOR", flavor)
    monkeypatch.setenv("CBM_SOURCE_SCHEMA", schema)
    monkeypatch.setenv("CBM_TARGET", target)
    clear_caches()


def build(*tasks: luigi.Task, workers: int = 1) -> luigi.execution_summary.LuigiRunResult:
    return luigi.build(list(tasks), local_scheduler=True, detailed_summary=True, workers=workers)
