"""The operator's commands, as the README shows them: cbm-etl init-db / sync-columns / add-table / run, and the
``luigi`` command itself (exit codes from luigi.cfg's [retcode])."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import configure
from helpers import log_rows, ods_rows, pg_source_rows

from cbm_luigi.cli import main
from cbm_luigi.destinations import open_target
from cbm_luigi.store.config_tables import MetadataStore
from cbm_luigi.tasks.context import clear_caches, settings

pytestmark = [pytest.mark.postgres, pytest.mark.odbc]
REPO = Path(__file__).resolve().parents[1]


def luigi_cmd(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()}
    return subprocess.run([sys.executable, "-m", "luigi", "--module", "cbm_luigi.tasks", *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_readme_commands_against_a_real_source_and_target(pg_source, pg_database, monkeypatch, capsys):
    configure(monkeypatch, source=pg_source.odbc, flavor="progress", schema=pg_source.schema, target=pg_database)
    assert main(["init-db"]) == 0
    assert main(["sync-columns", "produit"]) == 0
    assert "11 column(s) added" in capsys.readouterr().out
    assert main(["add-table", "produit", "--pk", "cod_pro", "--date-modif-col", "dat_mod", "--precision",
                 "datetime", "--lookback", "1d", "--priority", "high"]) == 0
    assert "registered -> ods.produit" in capsys.readouterr().out

    r = luigi_cmd("LoadTable", "--table", "produit", "--mode", "full", "--batch-id", "2026-11-25T14",
                  "--local-scheduler")
    assert r.returncode == 0, r.stderr[-3000:]
    clear_caches()
    assert ods_rows("produit") == pg_source_rows(pg_source, "produit")
    assert {row["Batch"] for row in log_rows()} == {"2026-11-25T14"}

    assert main(["run", "produit", "--mode", "incremental", "--batch-id", "2026-11-25T15"]) == 0
    out = capsys.readouterr().out
    assert "produit" in out and "loaded" in out


def test_luigi_exit_code_is_non_zero_on_failure(pg_source, tmp_path, monkeypatch):
    configure(monkeypatch, source=pg_source.odbc, flavor="progress", schema=pg_source.schema,
              target=f"duckdb:///{tmp_path / 'ods.duckdb'}")
    assert main(["init-db"]) == 0
    r = luigi_cmd("LoadTable", "--table", "nosuch", "--local-scheduler")
    assert r.returncode == 35, r.stderr[-2000:]  # [retcode] scheduling_error: the table is not registered
    assert "not registered in config.ETL_Tables" in r.stderr

    assert main(["sync-columns", "fournis"]) == 0
    assert main(["add-table", "fournis", "--pk", "cod_fou", "--date-modif-col", "dat_mod"]) == 0
    pg_source.execute(f'DROP TABLE "{pg_source.schema}"."fournis"')
    r = luigi_cmd("LoadTable", "--table", "fournis", "--mode", "full", "--local-scheduler")
    assert r.returncode == 30, r.stderr[-2000:]  # [retcode] task_failed
    assert main(["run", "fournis", "--mode", "full", "--batch", "x2"]) == 1


def test_sync_keeps_operator_edits_and_new_columns_reach_the_ods(pg_source, tmp_path, monkeypatch, capsys):
    configure(monkeypatch, source=pg_source.odbc, flavor="postgresql", schema=pg_source.schema,
              target=f"duckdb:///{tmp_path / 'ods.duckdb'}")
    assert main(["sync-columns", "client"]) == 0
    assert main(["add-table", "client", "--pk", "cod_cli", "--date-modif-col", "dat_mod", "--precision", "date"]) == 0
    assert main(["run", "client", "--mode", "full", "--batch", "b1"]) == 0
    target = open_target(settings().target)
    d = target.dialect
    with target.begin() as conn:
        conn.execute(f"UPDATE {d.qualified('config', 'ETL_Columns')} SET {d.quote('IsExcluded')} = :x, "
                     f"{d.quote('Notes')} = :n WHERE {d.quote('TableName')} = :t AND {d.quote('ColumnName')} = :c",
                     {"x": True, "n": "not used by finance", "t": "client", "c": "e-mail"})
    pg_source.execute(f'ALTER TABLE "{pg_source.schema}"."client" ADD COLUMN "zone-geo" varchar(12)')
    pg_source.execute(f'UPDATE "{pg_source.schema}"."client" SET "zone-geo" = \'EU-W\' WHERE "cod_cli" <= 5')
    assert main(["sync-columns", "CLIENT"]) == 0
    assert "1 column(s) added" in capsys.readouterr().out
    clear_caches()
    spec = MetadataStore(target).table_spec("client")
    assert spec.column("credit_max").precision == 15
    with target.begin() as conn:  # an operator widens a precision Progress does not enforce
        conn.execute(f"UPDATE {d.qualified('config', 'ETL_Columns')} SET {d.quote('NumericPrecision')} = 20 "
                     f"WHERE {d.quote('TableName')} = :t AND {d.quote('ColumnName')} = :c",
                     {"t": "client", "c": "credit-max"})
    assert main(["sync-columns", "client"]) == 0
    clear_caches()
    spec = MetadataStore(target).table_spec("client")
    assert spec.column("credit_max").precision == 20  # kept: a sync never narrows
    email = next(c for c in spec.columns if c.column_name == "e-mail")
    assert email.is_excluded and email.notes == "not used by finance"
    assert spec.column("zone_geo").column_name == "zone-geo"
    assert main(["run", "client", "--mode", "full", "--batch", "b2"]) == 0
    clear_caches()
    rows = target.fetchall(f"SELECT {d.quote('zone_geo')} FROM {d.qualified('ods', 'client')} "
                           f"WHERE {d.quote('cod_cli')} <= 5")
    assert [r[0] for r in rows] == ["EU-W"] * 5
    cols = [c[0] for c in target.fetchall("SELECT column_name FROM information_schema.columns "
                                          "WHERE table_schema = 'ods' AND table_name = 'client'")]
    assert "e_mail" in cols  # loaded before it was excluded: kept, not dropped
    assert "zone_geo" in cols
