"""A merge whose batch is already merged (its marker exists: another run of the batch committed first) returns
"already loaded" under the table's lock, without touching the ODS, the watermark or the marker, and logs a
``skipped`` merge_ods row (no failure); every target (SQLite source)."""

from __future__ import annotations

from pathlib import Path

from conftest import build, configure
from helpers import log_rows, ods_rows, register_demo_tables

from cbm_luigi.demo import data as demo_data
from cbm_luigi.destinations import open_target
from cbm_luigi.pipeline.extract import Manifest, extract_dir
from cbm_luigi.pipeline.merge import ALREADY_LOADED, merge
from cbm_luigi.store.config_tables import MetadataStore
from cbm_luigi.tasks.context import clear_caches, settings, table_spec
from cbm_luigi.tasks.wrappers import LoadTable


def test_merge_of_a_merged_batch_is_already_loaded_and_leaves_the_ods(target_url, tmp_path: Path, monkeypatch):
    source = tmp_path / "erp.sqlite"
    demo_data.create_sqlite_source(source)
    configure(monkeypatch, source=f"sqlite:///{source}", flavor="sqlite", schema="PUB", target=target_url)
    register_demo_tables(["produit"])
    assert build(LoadTable(table="produit", mode="full", batch_id="b1")).scheduling_succeeded
    target = open_target(settings().target)
    d = target.dialect
    q = d.quote
    # staging still holds b1: a merge that did not look at the marker would put this row back
    with target.begin() as conn:
        conn.execute(f"DELETE FROM {d.qualified('ods', 'produit')} WHERE {q('cod_pro')} = "
                     f"(SELECT MIN({q('cod_pro')}) FROM {d.qualified('ods', 'produit')})")
    before = ods_rows("produit")
    watermark = MetadataStore(target).watermark("produit")
    manifest = Manifest.read(extract_dir(settings().cache_dir, "produit", "b1", "full"))

    clear_caches()
    counts = merge(target, table_spec(settings().target, "produit"), manifest)

    assert counts.already_loaded and (counts.staged, counts.inserted, counts.updated) == (0, 0, 0)
    assert ods_rows("produit") == before
    assert MetadataStore(target).watermark("produit") == watermark
    markers = target.fetchall(f"SELECT {q('RunId')} FROM {d.qualified('etl', 'ETL_Markers')}")
    assert len(markers) == 1
    rows = [r for r in log_rows() if r["StepName"] == "merge_ods"]
    assert [r["Status"] for r in rows] == ["success", "skipped"]
    assert rows[-1]["ErrorMessage"] == f"{ALREADY_LOADED} by run {markers[0][0]}"
    assert not [r for r in log_rows() if r["Status"] == "failed"]
    # a skipped run of the table is not a run: vw_LastRuns still shows the one that merged the batch
    last = target.fetchall(f"SELECT {q('TableName')}, {q('Status')} FROM {d.qualified('etl', 'vw_LastRuns')}")
    assert last == [("produit", "success")]
