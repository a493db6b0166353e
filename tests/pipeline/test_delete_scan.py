"""Deletes seen by incremental runs: the key scan (DeleteScan) reads the source's keys, the merge marks the ODS rows
whose key is gone and revives those whose key is back, behind the same guard as full loads."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import pyarrow.parquet as pq
import pytest
from conftest import build, configure
from helpers import log_rows

from cbm_luigi.cli import main
from cbm_luigi.destinations import open_target
from cbm_luigi.pipeline.extract import MANIFEST, Manifest, extract_dir, extract_problem
from cbm_luigi.store.config_tables import MetadataStore
from cbm_luigi.store.markers import marker_exists
from cbm_luigi.tasks.context import clear_caches, settings
from cbm_luigi.tasks.table import LoadStaging
from cbm_luigi.tasks.wrappers import LoadTable

pytestmark = [pytest.mark.postgres, pytest.mark.odbc]


def cbm(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The real command, with the test's CBM_* settings."""
    return subprocess.run(["cbm-etl", *args], env=env or dict(os.environ), capture_output=True, text=True,
                          timeout=timeout, check=False)


def deleted_keys() -> dict[str, bool]:
    clear_caches()
    target = open_target(settings().target)
    d = target.dialect
    rows = target.fetchall(f"SELECT {d.quote('cod_fou')}, {d.quote('etl_deleted_ts')} "
                           f"FROM {d.qualified('ods', 'fournis')}")
    return {str(k).strip(): ts is not None for k, ts in rows}


def dead(state: dict[str, bool]) -> list[str]:
    return sorted(k for k, is_dead in state.items() if is_dead)


def register(*options: str) -> None:
    assert main(["sync-columns", "fournis"]) == 0
    assert main(["add-table", "fournis", "--pk", "cod_fou", "--date-modif-col", "dat_mod", "--detect-deletes",
                 *options]) == 0


def source_table(pg_source: Any) -> str:
    return f'"{pg_source.schema}"."fournis"'


def first_keys(pg_source: Any, n: int, where: str = "TRUE") -> list[str]:
    t = source_table(pg_source)
    return [r[0].strip() for r in pg_source.execute(f'SELECT "cod_fou" FROM {t} WHERE {where} ORDER BY 1 LIMIT {n}')]


def merged_row(batch: str) -> dict[str, Any]:
    return next(r for r in log_rows() if r["Batch"] == batch and r["StepName"] == "merge_ods")


def manifest_of(batch: str) -> Manifest:
    return Manifest.read(extract_dir(settings().cache_dir, "fournis", batch, "incremental"))


def test_an_incremental_run_with_the_key_scan_marks_deleted_rows_and_revives_returning_ones(
        pg_source, target_url, monkeypatch):
    configure(monkeypatch, source=pg_source.odbc, flavor="postgresql", schema=pg_source.schema, target=target_url)
    register("--delete-scan", "--delete-guard-pct", "5")
    assert build(LoadTable(table="fournis", mode="full", batch_id="b1")).scheduling_succeeded
    t = source_table(pg_source)
    gone = first_keys(pg_source, 3)
    kept = pg_source.execute(f'SELECT * FROM {t} WHERE "cod_fou" = %s', (gone[0],))
    pg_source.execute(f'DELETE FROM {t} WHERE "cod_fou" = ANY(%s)', (gone,))

    assert build(LoadTable(table="fournis", mode="incremental", batch_id="b2")).scheduling_succeeded
    state = deleted_keys()
    assert dead(state) == sorted(gone)
    assert len(state) == 300  # marked, never removed
    assert merged_row("b2")["RowsDeleted"] == 3
    manifest = manifest_of("b2")
    directory = extract_dir(settings().cache_dir, "fournis", "b2", "incremental")
    assert manifest.key_files == ["keys-00000.parquet"] and manifest.key_rows == 297
    assert manifest.rows < 297  # the data read only the window; the scan read every key
    assert pq.read_table(directory / "keys-00000.parquet").column_names == ["cod_fou"]
    # the key files take part in the extract's checks: one damaged, the cached extract is not used (read again)
    (directory / "keys-00000.parquet").write_bytes(b"PAR1")
    assert "keys-00000.parquet is 4 bytes, the manifest recorded" in (extract_problem(directory) or "")
    # a manifest written before the key scan existed (no key_* fields) still loads: no key scan
    older = {k: v for k, v in json.loads((directory / MANIFEST).read_text(encoding="utf-8")).items()
             if not k.startswith("key_")}
    (directory / MANIFEST).write_text(json.dumps(older), encoding="utf-8")
    assert Manifest.read(directory).key_files == [] and Manifest.read(directory).key_rows == 0

    # the first key comes back with its old dat_mod: outside the incremental window, revived by the key scan
    pg_source.execute(f"INSERT INTO {t} VALUES ({', '.join(['%s'] * len(kept[0]))})", kept[0])
    assert build(LoadTable(table="fournis", mode="incremental", batch_id="b3")).scheduling_succeeded
    assert manifest_of("b3").rows < 298
    assert dead(deleted_keys()) == sorted(gone[1:])
    assert merged_row("b3")["RowsDeleted"] == 0


def test_without_the_key_scan_an_incremental_run_marks_nothing(pg_source, tmp_path, monkeypatch):
    configure(monkeypatch, source=pg_source.odbc, flavor="postgresql", schema=pg_source.schema,
              target=f"duckdb:///{tmp_path / 'ods.duckdb'}")
    register("--delete-guard-pct", "5")
    assert build(LoadTable(table="fournis", mode="full", batch_id="b1")).scheduling_succeeded
    pg_source.execute(f'DELETE FROM {source_table(pg_source)} WHERE "cod_fou" = ANY(%s)', (first_keys(pg_source, 3),))
    assert build(LoadTable(table="fournis", mode="incremental", batch_id="b2")).scheduling_succeeded
    assert not dead(deleted_keys())
    assert manifest_of("b2").key_files == []  # nothing scanned


@pytest.mark.parametrize("target_url", ["postgresql", "mssql"], indirect=True)  # DuckDB: the same SQL path, covered by the other tests of this file (suite time)
def test_the_guard_refuses_a_key_scan_that_would_mark_too_many_rows(pg_source, target_url, monkeypatch):
    configure(monkeypatch, source=pg_source.odbc, flavor="postgresql", schema=pg_source.schema, target=target_url)
    register("--delete-scan")  # DeleteGuardPct 10 %
    first = cbm("run", "fournis", "--mode", "full", "--batch-id", "g1")
    assert first.returncode == 0, first.stdout + first.stderr
    clear_caches()
    watermark = MetadataStore(open_target(settings().target)).watermark("fournis")
    t = source_table(pg_source)
    pg_source.execute(f'DELETE FROM {t} WHERE "cod_fou" IN (SELECT "cod_fou" FROM {t} ORDER BY 1 LIMIT 150)')

    r = cbm("run", "fournis", "--mode", "incremental", "--batch-id", "g2")
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    message = ("table fournis: the key scan of batch g2 lacks 150 of the 300 keys in the ODS (50.0 %), above "
               "DeleteGuardPct=10 %: nothing was merged or marked deleted")
    assert message in out, out
    assert "cbm-etl add-table ... --detect-deletes --delete-scan --delete-guard-pct N" in out
    failed = [x for x in log_rows() if x["Batch"] == "g2" and x["Status"] == "failed"]
    assert failed and failed[-1]["StepName"] == "merge_ods" and message in failed[-1]["ErrorMessage"]
    assert not dead(deleted_keys())
    target = open_target(settings().target)
    assert MetadataStore(target).watermark("fournis") == watermark
    assert not marker_exists(target, "fournis", "g2")


def test_with_a_filter_clause_only_the_filtered_keys_count(pg_source, tmp_path, monkeypatch):
    configure(monkeypatch, source=pg_source.odbc, flavor="postgresql", schema=pg_source.schema,
              target=f"duckdb:///{tmp_path / 'ods.duckdb'}")
    register("--delete-scan", "--delete-guard-pct", "5", "--filter", "\"cod_fou\" <= 'F00200'")
    assert build(LoadTable(table="fournis", mode="full", batch_id="b1")).scheduling_succeeded
    assert len(deleted_keys()) == 200
    t = source_table(pg_source)
    inside = first_keys(pg_source, 2)
    outside = first_keys(pg_source, 50, "\"cod_fou\" > 'F00200'")
    # 50 rows outside the filter gone: with the whole table scanned, 50 of 200 (25 %) would pass the guard's 5 %
    pg_source.execute(f'DELETE FROM {t} WHERE "cod_fou" = ANY(%s)', (inside + outside,))
    assert build(LoadTable(table="fournis", mode="incremental", batch_id="b2")).scheduling_succeeded
    assert manifest_of("b2").key_rows == 198  # the filtered keys only
    state = deleted_keys()
    assert dead(state) == sorted(inside) and len(state) == 200
    assert merged_row("b2")["RowsDeleted"] == 2


@pytest.mark.parametrize("target_url", ["postgresql", "mssql"], indirect=True)  # DuckDB: the same SQL path, covered by the other tests of this file (suite time)
def test_a_killed_staging_leaves_no_keys_that_could_mark_rows_deleted(pg_source, target_url, monkeypatch):
    configure(monkeypatch, source=pg_source.odbc, flavor="postgresql", schema=pg_source.schema, target=target_url)
    register("--delete-scan", "--delete-guard-pct", "5")
    assert cbm("run", "fournis", "--mode", "full", "--batch-id", "k1").returncode == 0
    t = source_table(pg_source)
    gone = first_keys(pg_source, 3)
    pg_source.execute(f'DELETE FROM {t} WHERE "cod_fou" = ANY(%s)', (gone,))

    # killed in the extract's child, the key files written, the folder not yet renamed: no extract left
    killed = cbm("run", "fournis", "--mode", "incremental", "--batch-id", "k2",
                 env={**os.environ, "CBM_FAULT_KILL_AT": "extract.before_rename"})
    assert killed.returncode != 0, killed.stdout + killed.stderr
    assert not (extract_dir(settings().cache_dir, "fournis", "k2", "incremental") / MANIFEST).exists()
    # killed with staging and the keys loaded in their transaction, before the commit: all rolled back (the
    # staging step's path on PostgreSQL too, instead of staging while extracting, which the kill above covers)
    killed = cbm("run", "fournis", "--mode", "incremental", "--batch-id", "k2",
                 env={**os.environ, "CBM_FAULT_KILL_AT": "stage.loaded", "CBM_STAGE_WHILE_EXTRACTING": "0"})
    assert killed.returncode != 0, killed.stdout + killed.stderr
    assert not dead(deleted_keys())
    assert extract_problem(extract_dir(settings().cache_dir, "fournis", "k2", "incremental")) is None

    again = cbm("run", "fournis", "--mode", "incremental", "--batch-id", "k2")
    assert again.returncode == 0, again.stdout + again.stderr
    assert dead(deleted_keys()) == sorted(gone)


def test_the_merge_uses_only_the_keys_of_its_own_batch(pg_source, tmp_path, monkeypatch):
    """Keys written to stg.fournis__keys by anything but the batch's staging make the merge refuse, untouched."""
    configure(monkeypatch, source=pg_source.odbc, flavor="postgresql", schema=pg_source.schema,
              target=f"duckdb:///{tmp_path / 'ods.duckdb'}")
    register("--delete-scan", "--delete-guard-pct", "5")
    assert build(LoadTable(table="fournis", mode="full", batch_id="b1")).scheduling_succeeded
    assert build(LoadStaging(table="fournis", mode="incremental", batch_id="b2")).scheduling_succeeded
    target = open_target(settings().target)
    d = target.dialect
    keys = d.qualified("stg", "fournis__keys")
    with target.begin() as conn:  # half of the scan gone: 150 keys would look deleted
        conn.execute(f"DELETE FROM {keys} WHERE {d.quote('cod_fou')} <= 'F00150'")
    result = build(LoadTable(table="fournis", mode="incremental", batch_id="b2"))
    assert result.status.name != "SUCCESS"
    failed = [x for x in log_rows() if x["Batch"] == "b2" and x["Status"] == "failed"]
    assert failed and failed[-1]["StepName"] == "merge_ods"
    assert ("stg.fournis__keys holds 150 keys but the key scan of batch b2 read 300" in failed[-1]["ErrorMessage"])
    assert "run a new batch" in failed[-1]["ErrorMessage"]
    assert not dead(deleted_keys())


def test_a_table_read_in_full_by_every_run_is_compared_without_a_scan(pg_source, tmp_path, monkeypatch):
    """No timestamps: every incremental run reads the whole table, so its data is the list of keys."""
    configure(monkeypatch, source=pg_source.odbc, flavor="postgresql", schema=pg_source.schema,
              target=f"duckdb:///{tmp_path / 'ods.duckdb'}")
    assert main(["sync-columns", "fournis"]) == 0
    assert main(["add-table", "fournis", "--pk", "cod_fou", "--detect-deletes", "--delete-scan",
                 "--delete-guard-pct", "5"]) == 0
    assert build(LoadTable(table="fournis", mode="incremental", batch_id="b1")).scheduling_succeeded
    gone = first_keys(pg_source, 2)
    pg_source.execute(f'DELETE FROM {source_table(pg_source)} WHERE "cod_fou" = ANY(%s)', (gone,))
    assert build(LoadTable(table="fournis", mode="incremental", batch_id="b2")).scheduling_succeeded
    manifest = manifest_of("b2")
    assert manifest.rows == 298 and manifest.key_files == []  # a full read: no key scan
    assert dead(deleted_keys()) == sorted(gone)
    assert merged_row("b2")["RowsDeleted"] == 2


def test_a_key_wider_than_its_sql_width_fails_the_key_scan_naming_the_column_and_the_fix(
        pg_source, tmp_path, monkeypatch, capsys):
    """A key outside the window, longer than its SQL width (WidthPolicy=refuse), is caught by the key scan itself:
    the run fails as the data read would, naming the table, the column, the width and the fixes."""
    configure(monkeypatch, source=pg_source.odbc, flavor="postgresql", schema=pg_source.schema,
              target=f"duckdb:///{tmp_path / 'ods.duckdb'}")
    register("--delete-scan", "--lookback", "0d")
    assert main(["run", "fournis", "--mode", "full", "--batch", "w1"]) == 0
    assert main(["run", "fournis", "--mode", "incremental", "--batch", "w2"]) == 0
    assert manifest_of("w2").rows == 0 and manifest_of("w2").key_rows == 300  # the window is empty: keys only
    target = open_target(settings().target)
    with target.begin() as conn:  # the keys are 6 characters ('F00001')
        conn.execute('UPDATE config."ETL_Columns" SET "CharMaxLength" = 4 WHERE "TableName" = \'fournis\' AND '
                     '"ColumnName" = \'cod_fou\'')
    clear_caches()
    capsys.readouterr()
    assert main(["run", "fournis", "--mode", "incremental", "--batch", "w3"]) == 1
    out = capsys.readouterr().out
    assert "table fournis: column cod_fou holds values longer than its SQL width of 4 characters" in out, out
    assert "--width-policy truncate" in out and "cbm-etl sync-columns fournis" in out
    assert not dead(deleted_keys())
