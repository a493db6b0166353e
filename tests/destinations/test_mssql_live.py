"""Opt-in: the SQL Server path against a real server (CBM_TEST_MSSQL_URL; docs/SQLSERVER.md starts one in Docker).

Each test gets a fresh database (fixture ``mssql_database``).  The demo's SQLite source feeds the loads, so no
PostgreSQL is needed; the parametrised pipeline tests of tests/tasks/test_pipeline.py also run against the server
(``target_url`` case "mssql").  Without CBM_TEST_MSSQL_URL every test here skips, saying how to enable it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import build, configure

from cbm_luigi.commands.setup import sync_tables
from cbm_luigi.demo import data as demo_data
from cbm_luigi.destinations import open_target
from cbm_luigi.destinations.mssql import DEPLOY_ROLE, ROLE
from cbm_luigi.destinations.types import ColumnDef
from cbm_luigi.store.config_tables import MetadataStore
from cbm_luigi.store.mssql_scripts import scripts
from cbm_luigi.store.schema import METADATA_TABLES, init_db
from cbm_luigi.tasks.context import clear_caches
from cbm_luigi.tasks.wrappers import LoadAll

pytestmark = pytest.mark.mssql
TABLES = [t.name for t in demo_data.DEMO_TABLES]


def with_driver(url: str, driver: str) -> str:
    """The same server, database and login through the other driver (mssql-python needs no ODBC driver)."""
    u = sa.make_url(url)
    if driver == "mssqlpython":
        query = {k: v for k, v in u.query.items() if k.lower() != "driver"}
        u = u.set(drivername="mssql+mssqlpython", query=query)
    return u.render_as_string(hide_password=False)


def run_batches(url: str, text: str) -> None:
    """Run a script the way sqlcmd does: GO-separated batches, each in autocommit."""
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as c:
            for batch in re.split(r"^GO$", text, flags=re.M):
                if batch.strip() and not all(line.startswith("--") for line in batch.strip().splitlines()):
                    c.exec_driver_sql(batch)
    finally:
        engine.dispose()


def demo_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str) -> Path:
    path = tmp_path / "erp.sqlite"
    demo_data.create_sqlite_source(path, scale=1)
    configure(monkeypatch, source=f"sqlite:///{path}", flavor="sqlite", schema="PUB", target=target)
    return path


def register(target_url: str, init: bool = True) -> MetadataStore:
    target = open_target(target_url)
    if init:
        init_db(target)
    sync_tables(TABLES)
    store = MetadataStore(target)
    for t in demo_data.DEMO_TABLES:
        store.register_table(t.name, primary_key=list(t.primary_key), date_modif_col=t.date_modif_col,
                             precision=t.date_modif_precision, lookback=t.lookback, priority=t.priority,
                             is_dimension=t.is_dimension, is_fact=not t.is_dimension)
    clear_caches()
    return store


def merged(target_url: str, batch: str) -> dict[str, tuple[int, int, int]]:
    t = open_target(target_url)
    q = t.dialect.quote
    rows = t.fetchall(f"SELECT {q('TableName')}, {q('RowsProcessed')}, {q('RowsInserted')}, {q('RowsUpdated')} "
                      f"FROM {t.dialect.qualified('etl', 'ETL_Log')} WHERE {q('StepName')} = 'merge_ods' "
                      f"AND {q('Status')} = 'success' AND {q('Batch')} = :b", {"b": batch})
    return {r[0]: (int(r[1]), int(r[2]), int(r[3])) for r in rows}


def ods_count(target_url: str, table: str) -> int:
    t = open_target(target_url)
    row = t.fetchone(f"SELECT COUNT(*) FROM {t.dialect.qualified('ods', table)}")
    return int(row[0]) if row else -1


def source_count(path: Path, table: str) -> int:
    import sqlite3

    with sqlite3.connect(path) as c:
        return int(c.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0])


def test_init_db_is_idempotent_and_the_views_answer(mssql_database: str) -> None:
    target = open_target(mssql_database)
    first = init_db(target)
    assert init_db(target) == first
    for view in ("vw_LastRuns", "vw_TablePerformance", "vw_SLABreach"):
        target.fetchall(f"SELECT * FROM [etl].[{view}]")


def test_dba_scripts_apply_twice_and_init_db_then_has_nothing_to_add(mssql_database: str) -> None:
    for _ in range(2):
        for text in scripts().values():
            run_batches(mssql_database, text)
    target = open_target(mssql_database)
    d = target.dialect
    with target.begin() as conn:
        for meta in METADATA_TABLES:
            cols = [ColumnDef(c.name, d.column_type(c.logical_type, c.width, c.precision, c.scale), c.nullable)
                    for c in meta.columns]
            assert target.ensure_table(conn, meta.schema, meta.name, cols, meta.primary_key) == []
    init_db(target)


@pytest.mark.parametrize("driver", ["as configured", "mssqlpython"])
def test_full_then_incremental_load_on_both_bulk_paths(driver: str, mssql_database: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    url = mssql_database if driver == "as configured" else with_driver(mssql_database, driver)
    source = demo_source(tmp_path, monkeypatch, url)
    register(url)
    assert build(LoadAll(mode="full", batch_id="b1")).scheduling_succeeded
    for t in TABLES:
        assert ods_count(url, t) == source_count(source, t), t
    changes = demo_data.apply_sqlite_changes(source, change_ts=datetime.now().replace(microsecond=0))
    assert build(LoadAll(mode="incremental", batch_id="b2")).scheduling_succeeded
    counts = merged(url, "b2")
    for t in TABLES:
        c = changes.tables[t]
        assert counts[t][1:] == (len(c.inserted_keys), len(c.updated_keys)), t
        assert ods_count(url, t) == source_count(source, t), t
    # the same batch again runs nothing; a new full batch changes nothing
    assert build(LoadAll(mode="full", batch_id="b3")).scheduling_succeeded
    assert all(v[1:] == (0, 0) for v in merged(url, "b3").values())


@pytest.fixture
def restricted_login(mssql_database: str) -> Iterator[tuple[str, str]]:
    """A login whose user is only in the roles of sql/mssql/05_roles.sql; yields (runtime URL, deploy URL)."""
    for text in scripts().values():
        run_batches(mssql_database, text)
    suffix = uuid.uuid4().hex[:8]
    logins = {ROLE: f"cbm_run_{suffix}", DEPLOY_ROLE: f"cbm_deploy_{suffix}"}
    password = f"Cbm!{uuid.uuid4().hex[:12]}Aa1"
    for role, login in logins.items():
        run_batches(mssql_database, f"CREATE LOGIN [{login}] WITH PASSWORD = N'{password}', CHECK_POLICY = OFF\nGO\n"
                                    f"CREATE USER [{login}] FOR LOGIN [{login}]\nGO\n"
                                    f"ALTER ROLE [{role}] ADD MEMBER [{login}]\nGO\n")
    base = sa.make_url(mssql_database)
    urls = [base.set(username=logins[r], password=password).render_as_string(hide_password=False)
            for r in (ROLE, DEPLOY_ROLE)]
    yield urls[0], urls[1]
    for u in urls:
        open_target(u).dispose()
    open_target.cache_clear()
    master = base.set(database="master").render_as_string(hide_password=False)
    for login in logins.values():
        run_batches(master, f"IF SUSER_ID(N'{login}') IS NOT NULL DROP LOGIN [{login}]\nGO\n")


def test_the_least_privilege_roles_are_enough(restricted_login: tuple[str, str], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    runtime, deploy = restricted_login
    init_db(open_target(deploy))  # cbm_etl_deploy may run init-db (views, metadata columns)
    source = demo_source(tmp_path, monkeypatch, runtime)
    register(runtime, init=False)  # cbm_etl: config writes, stg/ods tables created on the fly, bulk load, MERGE
    assert build(LoadAll(mode="full", batch_id="b1")).scheduling_succeeded
    demo_data.apply_sqlite_changes(source, change_ts=datetime.now().replace(microsecond=0))
    assert build(LoadAll(mode="incremental", batch_id="b2")).scheduling_succeeded
    for t in TABLES:
        assert ods_count(runtime, t) == source_count(source, t), t
    # and no more than that: the runtime role cannot create views
    with pytest.raises(sa.exc.DBAPIError), open_target(runtime).begin() as c:
        c.execute("CREATE VIEW [etl].[vw_not_allowed] AS SELECT 1 AS x")
