"""SCD2 history of dimensions (hist.<table>, KeepHistory): versions opened and closed by the merge in its own
transaction, on both targets (DuckDB, PostgreSQL) from the PostgreSQL ODBC source; the crash case and the
refusals through the real ``cbm-etl`` command."""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import build, configure
from helpers import log_rows

from cbm_luigi.cli import main
from cbm_luigi.destinations import open_target
from cbm_luigi.errors import TargetError
from cbm_luigi.pipeline.extract import Manifest, extract_dir
from cbm_luigi.pipeline.history import HistoryPlan, record_history
from cbm_luigi.store.config_tables import MetadataStore
from cbm_luigi.tasks.context import clear_caches, settings
from cbm_luigi.tasks.wrappers import LoadTable

pytestmark = [pytest.mark.postgres, pytest.mark.odbc]

REGISTER = ["add-table", "fournis", "--pk", "cod_fou", "--date-modif-col", "dat_mod", "--detect-deletes",
            "--delete-guard-pct", "5", "--dimension", "--history"]


def versions() -> list[dict[str, Any]]:
    """Every version of hist.fournis, by key then valid_from."""
    clear_caches()
    target = open_target(settings().target)
    d = target.dialect
    names = ["cod_fou", "raison_soc", "etl_batch", "valid_from", "valid_to", "is_current"]
    rows = target.fetchall(f"SELECT {', '.join(d.quote(n) for n in names)} FROM {d.qualified('hist', 'fournis')} "
                           f"ORDER BY {d.quote('cod_fou')}, {d.quote('valid_from')}")
    return [dict(zip(names, (str(r[0]).strip(), *r[1:]), strict=True)) for r in rows]


def of_key(all_versions: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    return [v for v in all_versions if v["cod_fou"] == key]


def watermark() -> datetime | None:
    return MetadataStore(open_target(settings().target)).watermark("fournis")


def one_current_per_key(all_versions: list[dict[str, Any]]) -> bool:
    current = [v["cod_fou"] for v in all_versions if v["is_current"]]
    return len(current) == len(set(current))


def source_table(pg_source: Any) -> str:
    return f'"{pg_source.schema}"."fournis"'


def change_name(pg_source: Any, key: str, name: str) -> None:
    """A changed row, modified after every watermark: every later incremental batch reads it again."""
    pg_source.execute(f'UPDATE {source_table(pg_source)} SET "raison-soc" = %s, '
                      "\"dat_mod\" = LOCALTIMESTAMP + INTERVAL '1 day' WHERE \"cod_fou\" = %s", (name, key))


def first_keys(pg_source: Any, n: int) -> list[str]:
    return [r[0].strip() for r in pg_source.execute(f'SELECT "cod_fou" FROM {source_table(pg_source)} '
                                                    f"ORDER BY 1 LIMIT {n}")]


def test_versions_follow_changes_deletes_and_revivals(pg_source, target_url, monkeypatch):
    configure(monkeypatch, source=pg_source.odbc, flavor="postgresql", schema=pg_source.schema, target=target_url)
    assert main(["sync-columns", "fournis"]) == 0
    assert main(REGISTER) == 0
    changed, gone, other = first_keys(pg_source, 3)

    # first load: one current version per row, valid from the batch's source clock (= the watermark it wrote)
    assert build(LoadTable(table="fournis", mode="full", batch_id="b1")).scheduling_succeeded
    v1 = versions()
    assert len(v1) == 300 and all(v["is_current"] and v["valid_to"] is None for v in v1)
    assert {v["valid_from"] for v in v1} == {watermark()} and {v["etl_batch"] for v in v1} == {"b1"}

    # a changed row: two versions, the old one closed at the new one's valid_from; the others stay one version
    change_name(pg_source, changed, "renamed once")
    assert build(LoadTable(table="fournis", mode="incremental", batch_id="b2")).scheduling_succeeded
    v2 = versions()
    old, new = of_key(v2, changed)
    assert old["raison_soc"] != "renamed once" and not old["is_current"]
    assert new["raison_soc"] == "renamed once" and new["is_current"] and new["valid_to"] is None
    assert old["valid_to"] == new["valid_from"] == watermark() > old["valid_from"]
    assert new["etl_batch"] == "b2"
    assert len(v2) == 301 and one_current_per_key(v2) and len(of_key(v2, other)) == 1

    # the same batch again, and a new batch that reads the changed row again unchanged: nothing added
    assert build(LoadTable(table="fournis", mode="incremental", batch_id="b2")).scheduling_succeeded
    assert build(LoadTable(table="fournis", mode="incremental", batch_id="b3")).scheduling_succeeded
    merged_b3 = next(r for r in log_rows() if r["Batch"] == "b3" and r["StepName"] == "merge_ods")
    assert merged_b3["RowsProcessed"] >= 1  # the changed row was staged again
    assert versions() == v2

    # a key deleted in the source: a full load with delete detection closes its current version
    kept = pg_source.execute(f'SELECT * FROM {source_table(pg_source)} WHERE "cod_fou" = %s', (gone,))
    pg_source.execute(f'DELETE FROM {source_table(pg_source)} WHERE "cod_fou" = %s', (gone,))
    assert build(LoadTable(table="fournis", mode="full", batch_id="b4")).scheduling_succeeded
    v4 = versions()
    (closed,) = of_key(v4, gone)
    assert not closed["is_current"] and closed["valid_to"] == watermark()
    assert len(v4) == 301 and sum(v["is_current"] for v in v4) == 299

    # the key comes back (unchanged): a new current version, the closed one stays as it was
    placeholders = ", ".join(["%s"] * len(kept[0]))
    pg_source.execute(f"INSERT INTO {source_table(pg_source)} VALUES ({placeholders})", kept[0])
    assert build(LoadTable(table="fournis", mode="full", batch_id="b5")).scheduling_succeeded
    v5 = versions()
    before, revived = of_key(v5, gone)
    assert before == closed
    assert revived["is_current"] and revived["valid_from"] == watermark() > before["valid_to"]
    assert revived["etl_batch"] == "b5"
    assert len(v5) == 302 and sum(v["is_current"] for v in v5) == 300 and one_current_per_key(v5)


@pytest.mark.parametrize("target_url", ["postgresql", "mssql"], indirect=True)  # DuckDB: the same SQL path, covered by the other tests of this file (suite time)
def test_history_turned_on_later_is_seeded_from_the_ods(pg_source, target_url, monkeypatch):
    configure(monkeypatch, source=pg_source.odbc, flavor="postgresql", schema=pg_source.schema, target=target_url)
    assert main(["sync-columns", "fournis"]) == 0
    assert main(["add-table", "fournis", "--pk", "cod_fou", "--date-modif-col", "dat_mod", "--dimension"]) == 0
    assert build(LoadTable(table="fournis", mode="full", batch_id="b1")).scheduling_succeeded
    target = open_target(settings().target)
    assert not target.fetchone("SELECT 1 FROM information_schema.tables WHERE table_schema = 'hist' "
                               "AND table_name = 'fournis'")  # no history while KeepHistory is off

    assert main(["add-table", "fournis", "--pk", "cod_fou", "--date-modif-col", "dat_mod", "--dimension",
                 "--history"]) == 0
    (changed,) = first_keys(pg_source, 1)
    change_name(pg_source, changed, "renamed after history")
    assert build(LoadTable(table="fournis", mode="incremental", batch_id="b2")).scheduling_succeeded
    seeded = versions()
    # every ODS row, not just the one row the incremental batch read; as it is after that batch
    assert len(seeded) == 300 and all(v["is_current"] and v["valid_to"] is None for v in seeded)
    assert {v["valid_from"] for v in seeded} == {watermark()} and {v["etl_batch"] for v in seeded} == {"b2"}
    assert of_key(seeded, changed)[0]["raison_soc"] == "renamed after history"

    change_name(pg_source, changed, "renamed twice")
    assert build(LoadTable(table="fournis", mode="incremental", batch_id="b3")).scheduling_succeeded
    after = versions()
    assert [v["raison_soc"] for v in of_key(after, changed)] == ["renamed after history", "renamed twice"]
    assert len(after) == 301 and one_current_per_key(after)


def cbm(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The real command, with the test's CBM_* settings (monkeypatched into os.environ) and one attempt."""
    full = {**os.environ, "CBM_NIGHT_REPORT": "0", "CBM_RETRY_ATTEMPTS": "1", "CBM_RETRY_DELAY": "0", **env}
    return subprocess.run(["cbm-etl", *args], cwd=cwd, env=full, capture_output=True, text=True, timeout=300,
                          check=False)


@pytest.mark.parametrize("target_url", ["postgresql", "mssql"], indirect=True)  # DuckDB: the same SQL path, covered by the other tests of this file (suite time)
def test_a_kill_after_the_merge_statements_doubles_no_version_on_rerun(pg_source, target_url, monkeypatch,
                                                                        tmp_path):
    configure(monkeypatch, source=pg_source.odbc, flavor="postgresql", schema=pg_source.schema, target=target_url)
    assert main(["sync-columns", "fournis"]) == 0
    assert main(REGISTER) == 0
    first = cbm(tmp_path, "run", "fournis", "--mode", "full", "--batch-id", "k1")
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    (changed,) = first_keys(pg_source, 1)
    change_name(pg_source, changed, "renamed before the kill")
    loaded = versions()

    killed = cbm(tmp_path, "run", "fournis", "--mode", "incremental", "--batch-id", "k2",
                 CBM_FAULT_KILL_AT="merge.merged")
    assert killed.returncode == -signal.SIGKILL, killed.stdout[-2000:] + killed.stderr[-2000:]
    assert versions() == loaded  # the history statements were rolled back with the ODS merge

    rerun = cbm(tmp_path, "run", "fournis", "--mode", "incremental", "--batch-id", "k2")
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    assert "history of batch k2: 1 version(s) opened, 1 closed in hist.fournis" in rerun.stderr + rerun.stdout
    after = versions()
    assert len(after) == 301 and one_current_per_key(after)
    assert [v["raison_soc"] for v in of_key(after, changed)][-1] == "renamed before the kill"

    again = cbm(tmp_path, "run", "fournis", "--mode", "incremental", "--batch-id", "k2")
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert versions() == after


def test_history_without_dimension_is_refused_by_add_table(pg_source, tmp_path, monkeypatch, capsys):
    configure(monkeypatch, source=pg_source.odbc, flavor="postgresql", schema=pg_source.schema,
              target=f"duckdb:///{tmp_path / 'cbm_ods.duckdb'}")
    assert main(["sync-columns", "fournis"]) == 0
    capsys.readouterr()
    assert main(["add-table", "fournis", "--pk", "cod_fou", "--history"]) == 2
    said = capsys.readouterr().err
    assert "table fournis: --history (SCD2 versions in hist.fournis) is for dimensions" in said
    assert "add --dimension, or leave --history out" in said
    assert not MetadataStore(open_target(settings().target)).table_names()  # nothing registered


@pytest.mark.parametrize("moved", ["valid_from", "valid_to"])
def test_a_batch_older_than_the_history_is_refused(pg_source, tmp_path, monkeypatch, moved):
    target_url = f"duckdb:///{tmp_path / 'cbm_ods.duckdb'}"
    configure(monkeypatch, source=pg_source.odbc, flavor="postgresql", schema=pg_source.schema, target=target_url)
    assert main(["sync-columns", "fournis"]) == 0
    assert main(REGISTER) == 0
    assert build(LoadTable(table="fournis", mode="full", batch_id="b1")).scheduling_succeeded
    # a version opened (valid_from), or closed (valid_to: a batch that only saw a delete), at a later instant than
    # the next batch's read: an old batch merged late looks the same
    target = open_target(settings().target)
    d = target.dialect
    closed = f", {d.quote('is_current')} = FALSE" if moved == "valid_to" else ""
    with target.begin() as conn:
        conn.execute(f"UPDATE {d.qualified('hist', 'fournis')} SET {d.quote(moved)} = :ts{closed} "
                     f"WHERE {d.quote('cod_fou')} = (SELECT MIN({d.quote('cod_fou')}) FROM "
                     f"{d.qualified('hist', 'fournis')})", {"ts": datetime(2999, 1, 1)})
    before = versions()
    (changed,) = first_keys(pg_source, 1)
    change_name(pg_source, changed, "never merged")

    done = cbm(tmp_path, "run", "fournis", "--mode", "incremental", "--batch-id", "b2")
    said = done.stdout + done.stderr
    assert done.returncode == 1, said[-2000:]
    assert "table fournis: batch b2 was read from the source at" in said
    assert ("not after the newest change in hist.fournis (a version opened or closed at 2999-01-01 00:00:00)"
            in said)
    assert "Run a new batch (cbm-etl run fournis --batch-id <new>)" in said
    assert versions() == before
    failed = [r for r in log_rows() if r["Status"] == "failed"]
    assert failed and failed[-1]["StepName"] == "merge_ods" and failed[-1]["Batch"] == "b2"


def test_a_staged_key_the_key_scan_no_longer_holds_opens_no_version(pg_source, tmp_path, monkeypatch):
    """A row the data read holds but the key scan after it does not (deleted in between) is merged, then marked
    deleted: its old version is closed and no version of no length (valid_from = valid_to) is opened."""
    configure(monkeypatch, source=pg_source.odbc, flavor="postgresql", schema=pg_source.schema,
              target=f"duckdb:///{tmp_path / 'cbm_ods.duckdb'}")
    assert main(["sync-columns", "fournis"]) == 0
    assert main([*REGISTER, "--delete-scan"]) == 0
    assert build(LoadTable(table="fournis", mode="full", batch_id="b1")).scheduling_succeeded
    (gone,) = first_keys(pg_source, 1)
    b1 = Manifest.read(extract_dir(settings().cache_dir, "fournis", "b1", "full"))
    b2 = replace(b1, batch="b2", mode="incremental",
                 source_clock=(b1.source_clock_ts + timedelta(hours=1)).isoformat())
    target = open_target(settings().target)
    spec = MetadataStore(target).table_spec("fournis")
    d = target.dialect
    key, hashdiff = d.quote("cod_fou"), d.quote("hashdiff")
    with target.begin() as conn:  # what the merge of b2 left: staged with a new hashdiff, then marked deleted
        conn.execute(f"UPDATE {d.qualified('stg', 'fournis')} SET {hashdiff} = :h WHERE {key} = :k",
                     {"h": "0" * 64, "k": gone})
        conn.execute(f"UPDATE {d.qualified('ods', 'fournis')} SET {hashdiff} = :h, {d.quote('etl_deleted_ts')} = "
                     f":ts WHERE {key} = :k", {"h": "0" * 64, "ts": b2.source_clock_ts, "k": gone})
        counts = record_history(conn, spec, b2, HistoryPlan(seed=False))
    assert (counts.opened, counts.closed) == (0, 1)
    (closed,) = of_key(versions(), gone)
    assert not closed["is_current"] and closed["valid_to"] == b2.source_clock_ts > closed["valid_from"]


def test_a_delete_seen_by_the_key_scan_of_an_incremental_run_closes_the_version(pg_source, tmp_path,
                                                                                 monkeypatch):
    configure(monkeypatch, source=pg_source.odbc, flavor="postgresql", schema=pg_source.schema,
              target=f"duckdb:///{tmp_path / 'cbm_ods.duckdb'}")
    assert main(["sync-columns", "fournis"]) == 0
    assert main([*REGISTER, "--delete-scan"]) == 0
    assert build(LoadTable(table="fournis", mode="full", batch_id="b1")).scheduling_succeeded
    (gone,) = first_keys(pg_source, 1)
    pg_source.execute(f'DELETE FROM {source_table(pg_source)} WHERE "cod_fou" = %s', (gone,))
    assert build(LoadTable(table="fournis", mode="incremental", batch_id="b2")).scheduling_succeeded
    after = versions()
    (closed,) = of_key(after, gone)
    assert not closed["is_current"] and closed["valid_to"] == watermark()
    assert len(after) == 300 and sum(v["is_current"] for v in after) == 299


def test_a_business_column_named_like_a_validity_column_is_refused(pg_source, tmp_path, monkeypatch, capsys):
    configure(monkeypatch, source=pg_source.odbc, flavor="postgresql", schema=pg_source.schema,
              target=f"duckdb:///{tmp_path / 'cbm_ods.duckdb'}")
    pg_source.execute(f'ALTER TABLE {source_table(pg_source)} ADD COLUMN "Valid_From" date')
    assert main(["sync-columns", "fournis"]) == 0
    assert main(REGISTER) == 0
    capsys.readouterr()
    assert main(["run", "fournis", "--mode", "full", "--batch-id", "b1"]) == 1
    said = capsys.readouterr()
    (failed,) = [r for r in log_rows() if r["Status"] == "failed"]
    message = failed["ErrorMessage"]
    assert failed["StepName"] == "merge_ods" and message in said.out + said.err
    assert ("table fournis: column Valid_From (SqlName Valid_From) has the name of a column hist.fournis adds "
            "(valid_from, valid_to, is_current): nothing was merged") in message
    assert "Give it another SqlName in config.ETL_Columns (e.g. Valid_From_src), or exclude it" in message
    target = open_target(settings().target)
    assert not target.fetchone("SELECT 1 FROM information_schema.tables WHERE table_schema IN ('ods', 'hist') "
                               "AND table_name = 'fournis'")  # rolled back with the merge


def test_postgresql_itself_refuses_a_second_current_version_of_a_key(pg_source, pg_database, monkeypatch):
    configure(monkeypatch, source=pg_source.odbc, flavor="postgresql", schema=pg_source.schema, target=pg_database)
    assert main(["sync-columns", "fournis"]) == 0
    assert main(REGISTER) == 0
    assert build(LoadTable(table="fournis", mode="full", batch_id="b1")).scheduling_succeeded
    target = open_target(settings().target)
    hist = target.dialect.qualified("hist", "fournis")
    cols = "cod_fou, hashdiff, load_ts, valid_from, is_current"
    later = "cod_fou, hashdiff, load_ts, valid_from + INTERVAL '1 day', TRUE"
    with pytest.raises(TargetError, match="fournis__current"), target.begin() as conn:
        conn.execute(f"INSERT INTO {hist} ({cols}) SELECT {later} FROM {hist} LIMIT 1")
    with target.begin() as conn:  # a closed version of the same key is fine
        conn.execute(f"INSERT INTO {hist} ({cols}) SELECT {later.replace('TRUE', 'FALSE')} FROM {hist} LIMIT 1")
    assert len(versions()) == 301
