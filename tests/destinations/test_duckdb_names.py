"""DuckDB file names.  DuckDB names a file's catalog after the file, so with a file ``ods.duckdb`` an operator's
``SELECT * FROM ods.client`` is ambiguous between the catalog ``ods`` and the schema ``ods``: the default ODS file
is ``data/cbm_ods.duckdb`` (the demo's ``data/demo/cbm_demo.duckdb``), where it works.  Names in our own SQL are
catalog-qualified, so a file still named ``ods.duckdb`` keeps loading, and a checkout that still has the old
default file ``data/ods.duckdb`` (and not the new one) keeps using it, with a warning."""

from __future__ import annotations

import configparser
import logging
from pathlib import Path

import duckdb
import pytest
from conftest import configure
from helpers import register_demo_tables

from cbm_luigi.cli import main
from cbm_luigi.commands.demo import DEMO_ODS
from cbm_luigi.config import settings as settings_module
from cbm_luigi.config.settings import DEFAULT_TARGET, LEGACY_DEFAULT_TARGET, load_settings
from cbm_luigi.demo import data as demo_data

REPO = Path(__file__).resolve().parents[2]
DEFAULT_FILE = Path(DEFAULT_TARGET.removeprefix("duckdb:///")).name
SCHEMAS = ("ods", "stg", "etl", "config")


def test_the_default_files_are_not_named_after_a_schema() -> None:
    assert DEFAULT_TARGET == "duckdb:///data/cbm_ods.duckdb"
    for name in (DEFAULT_FILE, DEMO_ODS):
        assert Path(name).suffix == ".duckdb" and Path(name).stem not in SCHEMAS
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "luigi.cfg")
    assert cfg.get("cbm", "target") == DEFAULT_TARGET  # luigi.cfg names the same default
    assert DEFAULT_TARGET in (REPO / ".env.example").read_text()


@pytest.mark.parametrize("file_name", [DEFAULT_FILE, "ods.duckdb"], ids=["default-name", "ods.duckdb"])
def test_a_demo_style_load_is_queried_as_ods_client(file_name, tmp_path, monkeypatch, capsys) -> None:
    counts = demo_data.create_sqlite_source(tmp_path / "erp.sqlite", scale=0.05)
    db = tmp_path / file_name
    configure(monkeypatch, source=f"sqlite:///{tmp_path / 'erp.sqlite'}", flavor="sqlite", schema="PUB",
              target=f"duckdb:///{db}")
    register_demo_tables(["client", "produit"])
    assert main(["run", "--all", "--mode", "full"]) == 0
    assert main(["tables"]) == 0
    assert "client" in capsys.readouterr().out
    catalog = db.stem
    with duckdb.connect(str(db), read_only=True) as con:
        if catalog not in SCHEMAS:  # the default name: the schema alone names the table
            assert len(con.execute("SELECT * FROM ods.client").fetchall()) == counts["client"]
        # any name: catalog-qualified, as the pipeline's own SQL
        assert con.execute(f'SELECT COUNT(*) FROM "{catalog}".ods.client').fetchone() == (counts["client"],)


def test_a_checkout_with_the_old_default_file_keeps_using_it(tmp_path, monkeypatch, caplog) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(settings_module, "_legacy_warned", False)
    assert load_settings().target == DEFAULT_TARGET  # a fresh checkout: the new name
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "ods.duckdb").write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="cbm_luigi.config.settings"):
        assert load_settings().target == LEGACY_DEFAULT_TARGET  # its registrations, watermarks and data
    assert "mv data/ods.duckdb data/cbm_ods.duckdb" in caplog.text
    monkeypatch.setenv("CBM_TARGET", "duckdb:///elsewhere.duckdb")
    assert load_settings().target == "duckdb:///elsewhere.duckdb"  # a target the operator set is never changed
    monkeypatch.delenv("CBM_TARGET")
    (tmp_path / "data" / "cbm_ods.duckdb").write_bytes(b"")
    assert load_settings().target == DEFAULT_TARGET  # renamed: the new name
