"""Preflight against real things: the Progress-like PostgreSQL source over ODBC, a DuckDB target, PostgreSQL
roles, a real luigid.  A correct setup is all OK; a missing driver, a wrong password, a missing table row and a
missing column each FAIL with the fix named (and never print a password)."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alert_servers import Recorder, closed_port
from conftest import configure, pg_params
from helpers import register_demo_tables

from cbm_luigi.ops.preflight import FAIL, OK, WARN, Check, Preflight, odbc_driver_name

pytestmark = [pytest.mark.postgres, pytest.mark.odbc]


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def assert_all_ok(checks: list[Check]) -> None:
    bad = [c for c in checks if c.status != OK]
    assert not bad, "\n".join(f"{c.name}: {c.status} {c.detail} / {c.fix}" for c in bad)


@pytest.fixture
def ready(pg_source, tmp_path, monkeypatch) -> Iterator[Recorder]:
    """A correct installation: .env present, ODBC source, DuckDB target with produit registered, Teams set."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("# settings come from the test's environment\n")
    (tmp_path / ".env").chmod(0o600)
    configure(monkeypatch, source=pg_source.odbc, flavor="progress", schema=pg_source.schema,
              target=f"duckdb:///{tmp_path / 'ods.duckdb'}")
    register_demo_tables(["produit"])
    recorder = Recorder().start()
    monkeypatch.setenv("CBM_TEAMS_WEBHOOK", recorder.workflow_url())
    yield recorder
    recorder.stop()


@pytest.fixture
def luigid(tmp_path) -> Iterator[str]:
    """A real central scheduler on a free port."""
    port = closed_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", "from luigi.cmdline import luigid; luigid()", "--address", "127.0.0.1",
         "--port", str(port), "--state-path", str(tmp_path / "luigi-state.pickle"), "--logdir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    import urllib.request

    for _ in range(100):  # wait until it answers (or give up after ~20 s)
        try:
            urllib.request.urlopen(f"{url}/api/worker_list", timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def test_a_correct_setup_is_all_ok(ready, luigid, capsys, monkeypatch):
    monkeypatch.setattr(sys, "dont_write_bytecode", False)  # a module edited since compiled: cached at its import
    checks = Preflight(timeout=10, scheduler_url=luigid).run(["produit"])
    assert_all_ok(checks)
    c = by_name(checks)
    assert "PostgreSQL Unicode" in c["ODBC driver manager"].detail  # the installed drivers are listed
    assert "luigid answers" in c["scheduler"].detail
    assert {"table produit: config", "table produit: source catalog", "table produit: key columns",
            "table produit: columns synced"} <= set(c)
    assert c["table produit: key columns"].detail == "cod_pro (primary key), dat_mod (DateModifCol)"

    from cbm_luigi.cli import main

    assert main(["preflight", "produit"]) == 0
    out = capsys.readouterr().out
    assert "0 FAIL, 0 WARN" in out and "TopSecret" not in out


def test_a_missing_odbc_driver_fails_and_lists_the_installed_ones(ready, monkeypatch, pg_source, capsys):
    conn = pg_source.odbc.replace("DRIVER={PostgreSQL Unicode}", "DRIVER={Progress OpenEdge 12.8 Driver}")
    monkeypatch.setenv("CBM_SOURCE", conn)
    c = by_name(Preflight(timeout=10).run())
    drv = c["ODBC driver (source)"]
    assert drv.status == FAIL
    assert "'Progress OpenEdge 12.8 Driver' is not installed; installed: PostgreSQL ANSI, PostgreSQL Unicode" in drv.detail
    assert "install the Progress OpenEdge 12.8 Driver ODBC driver" in drv.fix and "odbcinst -q -d" in drv.fix
    assert c["source"].status == FAIL

    from cbm_luigi.cli import main

    assert main(["preflight"]) == 1
    assert "How to fix" in capsys.readouterr().out


def test_an_undefined_dsn_fails_with_the_fix(ready, monkeypatch):
    monkeypatch.setenv("CBM_SOURCE", "DSN=progress_erp_missing;UID=etl;PWD=secret-dsn-pw")
    c = by_name(Preflight(timeout=10).run())
    assert c["ODBC DSN (source)"].status == FAIL and "odbc.ini" in c["ODBC DSN (source)"].fix
    assert all("secret-dsn-pw" not in x.detail for x in c.values())


def test_wrong_password_fails_without_printing_it(ready, monkeypatch, pg_source, pg_conninfo):
    """A role with a password, reached through 127.0.0.1 with a wrong one.  When the server's pg_hba.conf trusts
    local connections (as on this machine) a wrong password is accepted, so the test then uses a user that does
    not exist: the connection is refused either way and the fix names the setting."""
    import psycopg

    role = f"cbm_pf_{uuid.uuid4().hex[:8]}"
    wrong = "wrong-Secret-pw-42"
    with psycopg.connect(pg_conninfo, autocommit=True) as c:
        c.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'right-pw-1'")
    try:
        p = pg_params(pg_conninfo)
        try:
            psycopg.connect(host="127.0.0.1", port=p.get("port", "5432"), dbname=p["dbname"], user=role,
                            password=wrong, connect_timeout=5).close()
            trusted = True
        except psycopg.OperationalError:
            trusted = False
        user = f"nosuchuser_{uuid.uuid4().hex[:6]}" if trusted else role
        monkeypatch.setenv("CBM_SOURCE", pg_source.odbc.replace("UID=postgres", f"UID={user};PWD={wrong}"))
        monkeypatch.setenv("CBM_TARGET", f"postgresql+psycopg://{user}:{wrong}@127.0.0.1:{p.get('port', '5432')}/"
                                         f"{p['dbname']}")
        checks = Preflight(timeout=10).run()
        c = by_name(checks)
        for what, setting in (("source", "CBM_SOURCE"), ("target", "CBM_TARGET")):
            assert c[what].status == FAIL, c[what]
            expected = "does not exist" if trusted else "wrong user or password"
            assert expected in c[what].fix and setting in c[what].fix, c[what].fix
        assert all(wrong not in x.detail and wrong not in x.fix for x in checks)
    finally:
        with psycopg.connect(pg_conninfo, autocommit=True) as c:
            c.execute(f"DROP ROLE IF EXISTS {role}")


def test_a_table_without_config_row_fails_with_the_commands_to_add_it(ready):
    c = by_name(Preflight(timeout=10).run(["fournis", "nosuchtable"]))
    cfg = c["table fournis: config"]
    assert cfg.status == FAIL and "not registered" in cfg.detail
    assert cfg.fix.startswith("cbm-etl sync-columns fournis && cbm-etl add-table fournis --pk")
    assert c["table fournis: source catalog"].status == OK  # it exists in the source: only the row is missing
    assert c["table nosuchtable: source catalog"].status == FAIL
    assert "CBM_SOURCE_SCHEMA" in c["table nosuchtable: source catalog"].fix


def test_missing_columns_fail_and_new_ones_warn(ready, pg_source):
    pg_source.execute(f'ALTER TABLE "{pg_source.schema}"."produit" DROP COLUMN "dat_mod"')
    pg_source.execute(f'ALTER TABLE "{pg_source.schema}"."produit" DROP COLUMN "gencod-v"')
    c = by_name(Preflight(timeout=10).run(["produit"]))
    keys = c["table produit: key columns"]
    assert keys.status == FAIL and "'dat_mod' (DateModifCol)" in keys.detail and "add-table produit" in keys.fix
    synced = c["table produit: columns synced"]
    assert synced.status == FAIL and "gencod-v" in synced.detail and "dat_mod" in synced.detail
    assert synced.fix.startswith("cbm-etl sync-columns produit")

    pg_source.execute(f'ALTER TABLE "{pg_source.schema}"."produit" ADD COLUMN "dat_mod" timestamp')
    pg_source.execute(f'ALTER TABLE "{pg_source.schema}"."produit" ADD COLUMN "gencod-v" varchar(20)')
    pg_source.execute(f'ALTER TABLE "{pg_source.schema}"."produit" ADD COLUMN "new-col" varchar(5)')
    c = by_name(Preflight(timeout=10).run(["produit"]))
    assert c["table produit: key columns"].status == OK
    assert c["table produit: columns synced"].status == WARN
    assert "1 new in the source, not loaded: new-col" in c["table produit: columns synced"].detail


def test_a_configured_scheduler_that_does_not_answer_fails(ready):
    c = by_name(Preflight(timeout=2, scheduler_url=f"http://127.0.0.1:{closed_port()}").run())
    assert c["scheduler"].status == FAIL and "luigid" in c["scheduler"].fix


def test_missing_metadata_and_target_file(pg_source, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    configure(monkeypatch, source=pg_source.odbc, flavor="progress", schema=pg_source.schema,
              target=f"duckdb:///{tmp_path / 'nothing.duckdb'}")
    c = by_name(Preflight(timeout=10).run(["produit"]))
    assert c["target"].status == FAIL and c["target"].fix == "run: cbm-etl init-db"
    assert not (tmp_path / "nothing.duckdb").exists()  # preflight creates nothing
    assert c[".env"].status == WARN and "cp .env.example .env" in c[".env"].fix
    assert c["table produit: config"].status == FAIL


def test_odbc_driver_name_parsing():
    assert odbc_driver_name("DRIVER={Progress OpenEdge 12.8 Driver};HOST=h;PWD=x") == (
        "driver", "Progress OpenEdge 12.8 Driver")
    assert odbc_driver_name("dsn=erp;uid=a") == ("dsn", "erp")
    assert odbc_driver_name("HOST=h") is None
    assert Path(".").exists()
