"""Source failures said in the operator's terms (issue "Reliability", "Raw driver messages with no fix").

Each case loads ``produit`` once (batch b0), breaks the source or the table's configuration the way it happens in
production, runs the real ``cbm-etl run`` (``cli.main``) for batch b1 and checks: exit code 1 (a failed table),
the summary's message names the table (and column or setting), says the fix and keeps the driver's first line,
and the ODS, the watermark (config.ETL_Tables.LastSuccessTs) and the markers (etl.ETL_Markers) are unchanged.
Sources: the demo SQLite file and the demo tables in PostgreSQL read over psqlODBC (the Progress stand-in).
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import PgSource, configure

from cbm_luigi.cli import main
from cbm_luigi.demo import data as demo_data
from cbm_luigi.destinations import open_target
from cbm_luigi.store import markers
from cbm_luigi.store.config_tables import MetadataStore
from cbm_luigi.tasks.context import clear_caches, settings


@dataclass
class Src:
    kind: str
    execute: Callable[[str], Any]
    table_sql: str  # the qualified source table, for the statements below


@pytest.fixture(params=["sqlite", "odbc"])
def src(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Src:
    target = f"duckdb:///{tmp_path / 'cbm_ods.duckdb'}"
    monkeypatch.setenv("CBM_RETRY_DELAY", "0")
    if request.param == "sqlite":
        path = tmp_path / "erp.sqlite"
        demo_data.create_sqlite_source(path, scale=0.05)
        configure(monkeypatch, source=f"sqlite:///{path}", flavor="sqlite", schema="PUB", target=target)

        def run_sqlite(sql: str) -> None:
            with sqlite3.connect(path) as db:
                db.execute(sql)
        s = Src("sqlite", run_sqlite, "produit")
    else:
        pg: PgSource = request.getfixturevalue("pg_source")
        configure(monkeypatch, source=pg.odbc, flavor="postgresql", schema=pg.schema, target=target)
        s = Src("odbc", pg.execute, f'"{pg.schema}"."produit"')
    assert main(["init-db"]) == 0
    assert main(["sync-columns", "produit"]) == 0
    assert main(["add-table", "produit", "--pk", "cod_pro", "--date-modif-col", "dat_mod"]) == 0
    clear_caches()
    assert main(["run", "produit", "--mode", "full", "--batch", "b0"]) == 0
    clear_caches()
    return s


def state() -> tuple[Any, ...]:
    clear_caches()
    target = open_target(settings().target)
    rows = target.fetchall(f'SELECT * FROM {target.dialect.qualified("ods", "produit")} ORDER BY "cod_pro"')
    return (rows, MetadataStore(target).watermark("produit"),
            markers.marker_exists(target, "produit", "b0"), markers.marker_exists(target, "produit", "b1"))


def set_config(column: str, value: str) -> None:
    target = open_target(settings().target)
    with target.begin() as conn:
        conn.execute(f'UPDATE {target.dialect.qualified("config", "ETL_Tables")} SET "{column}" = :v', {"v": value})
    clear_caches()


def failed_run(capsys: pytest.CaptureFixture[str], *expected: str, mode: str = "full") -> str:
    """Run batch b1; exit 1; the summary's line for produit holds every expected text and no raw-only message."""
    before = state()
    capsys.readouterr()
    code = main(["run", "produit", "--mode", mode, "--batch", "b1"])
    out = capsys.readouterr().out
    row = next((ln for ln in out.splitlines() if ln.startswith("produit ")), "")
    assert code == 1, out
    assert "FAILED at extract" in row, out
    for text in expected:
        assert text in row, f"{text!r} not in: {row}"
    assert state() == before  # ODS, watermark and markers untouched
    return row


def test_a_table_gone_from_the_source(src: Src, capsys: pytest.CaptureFixture[str]) -> None:
    src.execute(f"DROP TABLE {src.table_sql}" + (" CASCADE" if src.kind == "odbc" else ""))
    row = failed_run(capsys, "table produit:", "is not in the source (dropped or renamed)", "IsActive = 0",
                     "(driver: ")
    assert ("no such table" if src.kind == "sqlite" else "does not exist") in row


def test_a_renamed_column_says_sync_columns(src: Src, capsys: pytest.CaptureFixture[str]) -> None:
    src.execute(f"ALTER TABLE {src.table_sql} RENAME COLUMN designation TO designation2")
    failed_run(capsys, "table produit: column designation is no longer in the source", "(renamed or dropped)",
               "run cbm-etl sync-columns produit", "(driver: ")
    # the fix said works: sync, and the next run loads (the old column stays in the ODS)
    assert main(["sync-columns", "produit"]) == 0
    clear_caches()
    assert main(["run", "produit", "--mode", "full", "--batch", "b2"]) == 0


def test_a_dropped_column_says_sync_columns(src: Src, capsys: pytest.CaptureFixture[str]) -> None:
    src.execute(f'ALTER TABLE {src.table_sql} DROP COLUMN "lib-ext"')
    failed_run(capsys, "table produit: column lib-ext is no longer in the source",
               "run cbm-etl sync-columns produit")


def test_a_filter_clause_syntax_error_names_the_filter_clause(src: Src, capsys: pytest.CaptureFixture[str]) -> None:
    set_config("FilterClause", "cod_pro >>> 1")
    failed_run(capsys, "table produit: the source refused the FilterClause of this table in config.ETL_Tables",
               "'cod_pro >>> 1'", "fix it", "(driver: ")


def test_a_filter_clause_on_an_unknown_column_names_the_filter_clause(src: Src,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    set_config("FilterClause", "no_such_col = 1")
    failed_run(capsys, "the source refused the FilterClause of this table in config.ETL_Tables")


def test_a_column_whose_type_changed_names_it_and_both_types(src: Src, capsys: pytest.CaptureFixture[str]) -> None:
    if src.kind == "sqlite":  # dynamically typed: the declared INTEGER column now holds text
        src.execute("UPDATE produit SET \"qte-stock\" = 'n/a' WHERE rowid = 3")
    else:
        src.execute(f'ALTER TABLE {src.table_sql} ALTER COLUMN "qte-stock" TYPE text USING \'n/a\'')
    failed_run(capsys, "table produit: column qte-stock no longer holds integer values",
               "config.ETL_Columns: ", "run cbm-etl sync-columns produit", "A column changed type", "(driver: ")


def test_invalid_utf8_in_sqlite_names_the_column(src: Src, capsys: pytest.CaptureFixture[str]) -> None:
    if src.kind != "sqlite":
        pytest.skip("a UTF8 PostgreSQL database cannot hold invalid UTF-8")
    src.execute("UPDATE produit SET designation = CAST(X'41FF42' AS TEXT) WHERE rowid = 3")
    failed_run(capsys, "table produit: column designation holds text that is not valid UTF-8 in the source",
               "IsExcluded = 1", "(driver: ", "Could not decode to UTF-8")


def test_a_lookback_too_long_names_the_table_and_the_setting(src: Src, capsys: pytest.CaptureFixture[str]) -> None:
    set_config("LookbackInterval", "9999999d")
    failed_run(capsys, "table produit: config.ETL_Tables.LookbackInterval '9999999d' is too long",
               "at most 3650d", mode="incremental")


def test_wrong_source_credentials_are_not_retried_and_say_the_fix(src: Src, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    if src.kind != "odbc":
        pytest.skip("SQLite has no login")
    monkeypatch.setenv("CBM_SOURCE", settings().source.replace("UID=postgres", "UID=cbm_no_such_user"))
    monkeypatch.setenv("CBM_RETRY_DELAY", "30")  # a retry would make this test slow
    clear_caches()
    failed_run(capsys, "the database or user named in CBM_SOURCE does not exist: fix the name, or create it",
               'role "cbm_no_such_user" does not exist')
    logs = "".join(p.read_text(encoding="utf-8") for p in (tmp_path / "logs").rglob("*.log"))
    assert "transient error" not in logs
    assert "breaker OPEN" not in logs
    assert not list((tmp_path / "cache" / ".breaker").glob("source-*.json"))


def test_a_full_load_of_0_rows_over_a_loaded_ods_warns_in_the_summary(src: Src,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    src.execute(f"DELETE FROM {src.table_sql}")
    held = len(state()[0])
    capsys.readouterr()
    assert main(["run", "produit", "--mode", "full", "--batch", "b1"]) == 0  # the load itself proceeds
    row = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("produit "))
    assert "loaded" in row
    assert (f"WARNING: table produit: the full load read 0 rows from the source but ods.produit holds {held}: "
            "check the source table and its FilterClause in config.ETL_Tables") in row
    assert len(state()[0]) == held  # no delete detection: the ODS rows stay


def test_a_column_whose_type_changed_after_sync_names_it_and_both_types(src: Src,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    if src.kind != "odbc":
        pytest.skip("SQLite: a declared type changes only by recreating the table")
    src.execute(f'ALTER TABLE {src.table_sql} ALTER COLUMN "qte-stock" TYPE text USING \'n/a\'')
    assert main(["sync-columns", "produit"]) == 0
    clear_caches()
    before = state()
    capsys.readouterr()
    code = main(["run", "produit", "--mode", "full", "--batch", "b1"])
    out = capsys.readouterr().out
    row = next((ln for ln in out.splitlines() if ln.startswith("produit ")), "")
    assert code == 1, out
    assert "FAILED at merge_ods" in row, out
    assert ("DataError: ods.produit.qte_stock is INTEGER but config.ETL_Columns now gives it text" in row
            and "the column changed type in the source" in row and "alter ods.produit.qte_stock to" in row
            and "IsExcluded = 1" in row), row
    assert state() == before


@pytest.fixture
def sql_ascii_source(pg_conninfo: str, odbc_driver: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                     ) -> Iterator[Callable[[str], Any]]:
    """The demo tables in a SQL_ASCII PostgreSQL database (it stores any byte), read over psqlODBC."""
    import psycopg
    from conftest import pg_params

    name = f"cbm_test_ascii_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_conninfo, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name} ENCODING 'SQL_ASCII' TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'")
    p = pg_params(pg_conninfo)
    conninfo = f"host={p.get('host', '127.0.0.1')} port={p.get('port', '5432')} user={p.get('user', 'postgres')} " \
               f"dbname={name}"
    demo_data.create_postgres_source(conninfo, schema="PUB")
    odbc = (f"DRIVER={{{odbc_driver}}};SERVER={p.get('host', '127.0.0.1')};PORT={p.get('port', '5432')};"
            f"DATABASE={name};UID={p.get('user', 'postgres')}")
    configure(monkeypatch, source=odbc, flavor="postgresql", schema="PUB",
              target=f"duckdb:///{tmp_path / 'cbm_ods.duckdb'}")

    def execute(sql: str) -> None:
        with psycopg.connect(conninfo, autocommit=True) as c:
            c.execute(sql)
    yield execute
    with psycopg.connect(pg_conninfo, autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_invalid_utf8_over_odbc_names_the_table(sql_ascii_source: Callable[[str], Any],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init-db"]) == 0
    assert main(["sync-columns", "produit"]) == 0
    assert main(["add-table", "produit", "--pk", "cod_pro", "--date-modif-col", "dat_mod"]) == 0
    clear_caches()
    assert main(["run", "produit", "--mode", "full", "--batch", "b0"]) == 0
    sql_ascii_source("UPDATE \"PUB\".produit SET designation = convert_from('\\x41ff42'::bytea, 'SQL_ASCII') "
                     "WHERE cod_pro = (SELECT min(cod_pro) FROM \"PUB\".produit)")
    failed_run(capsys, "table produit: a text column holds text that is not valid UTF-8 in the source",
               "IsExcluded = 1", '(driver: ODBC emitted an error calling', 'invalid byte sequence for encoding "UTF8"')


def test_a_refused_full_load_of_0_rows_says_so_in_the_failure_alert(src: Src, monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from alert_servers import Recorder

    if src.kind != "sqlite":
        pytest.skip("the alert does not depend on the source")
    assert main(["add-table", "produit", "--pk", "cod_pro", "--date-modif-col", "dat_mod", "--detect-deletes"]) == 0
    recorder = Recorder().start()
    try:
        monkeypatch.setenv("CBM_TEAMS_WEBHOOK", recorder.workflow_url())
        clear_caches()
        src.execute("DELETE FROM produit")
        before = state()
        assert main(["run", "produit", "--mode", "full", "--batch", "b1"]) == 1  # the delete guard refuses it
        assert state() == before
        bodies = [p.body.decode("utf-8", "replace") for p in recorder.posts]
    finally:
        recorder.stop()
    assert any("the full load read 0 rows from the source but ods.produit holds" in b for b in bodies), bodies
