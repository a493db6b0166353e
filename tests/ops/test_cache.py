"""Cache cleanup on a real cache and a real DuckDB target: finished and old extracts go, extracts an unfinished
batch still needs stay, stale temporary directories go; and through a real load (SQLite demo source)."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path

import pytest
from conftest import build, configure
from helpers import ods_rows, register_demo_tables

from cbm_luigi.demo import data as demo_data
from cbm_luigi.destinations import open_target
from cbm_luigi.destinations.client import Target
from cbm_luigi.errors import TargetError
from cbm_luigi.ops.cache import DAY, cleanup_cache, plan_cleanup
from cbm_luigi.pipeline.extract import MANIFEST, Manifest
from cbm_luigi.store import markers, runlog
from cbm_luigi.store.schema import ETL_STAGING_STATE, init_db
from cbm_luigi.tasks.context import clear_caches, settings
from cbm_luigi.tasks.table import LoadStaging
from cbm_luigi.tasks.wrappers import LoadTable

NOW = time.time()


def make_extract(cache: Path, table: str, batch: str, mode: str = "incremental", *, days_old: float,
                 size: int = 1000, manifest: bool = True, name: str | None = None) -> Path:
    d = cache / table / (name or f"{batch.replace(':', '-')}__{mode}")
    d.mkdir(parents=True)
    (d / "part-00000.parquet").write_bytes(b"x" * size)
    if manifest:
        m = Manifest(table=table, batch=batch, mode=mode, source_clock="2026-03-01T00:00:00", window="full",
                     window_since=None, rows=1, files=["part-00000.parquet"], columns=["id"], hash_columns=["id"],
                     run_id="r", extract_seconds=0.1, transform_seconds=0.0)
        (d / MANIFEST).write_text(json.dumps(asdict(m)))
    stamp = NOW - days_old * DAY
    for p in [*d.iterdir(), d]:
        os.utime(p, (stamp, stamp))
    return d


def finish(t: Target, table: str, batch: str) -> None:
    with t.begin() as conn:
        markers.write_marker(conn, table, batch, "incremental")


def stage_holds(t: Target, table: str, batch: str) -> None:
    d = t.dialect
    q = d.quote
    with t.begin() as conn:
        conn.execute(f"INSERT INTO {d.qualified(ETL_STAGING_STATE.schema, ETL_STAGING_STATE.name)} "
                     f"({q('TableName')}, {q('Batch')}, {q('Mode')}, {q('LoadedTs')}) VALUES (:t, :b, :m, :ts)",
                     {"t": table, "b": batch, "m": "incremental", "ts": runlog.now()})


@pytest.fixture
def cache_and_target(tmp_path) -> tuple[Path, Target]:
    t = open_target(f"duckdb:///{tmp_path / 'ods.duckdb'}")
    init_db(t)
    cache = tmp_path / "cache"
    # produit: b1 finished 10 days ago, b2 finished 2 days ago, b3 unfinished 10 days ago (a re-run needs it),
    # b4 unfinished 30 days ago (abandoned), b5 unfinished 30 days ago but held by staging;
    # client: a 10-day-old extract without manifest, a stale .tmp dir, a .tmp dir being written right now
    make_extract(cache, "produit", "b1", days_old=10, size=1000)
    make_extract(cache, "produit", "b2", days_old=2, size=2000)
    make_extract(cache, "produit", "b3", days_old=10, size=3000)
    make_extract(cache, "produit", "b4", days_old=30, size=4000)
    make_extract(cache, "produit", "b5", days_old=30, size=5000)
    make_extract(cache, "client", "b1", days_old=10, size=600, manifest=False)
    make_extract(cache, "client", "b1", days_old=9, size=700, manifest=False, name=".tmp-b1__full-0a1b2c3d")
    make_extract(cache, "client", "b2", days_old=0.001, size=800, manifest=False, name=".tmp-b2__full-9f8e7d6c")
    finish(t, "produit", "b1")
    finish(t, "produit", "b2")
    stage_holds(t, "produit", "b5")
    return cache, t


def names(entries) -> list[str]:
    return sorted(f"{e.path.parent.name}/{e.path.name}" for e in entries)


def test_days_7_removes_old_finished_and_garbage_only(cache_and_target):
    cache, t = cache_and_target
    report = cleanup_cache(cache, t, 7, now=NOW)
    assert names(report.removed) == [
        "client/.tmp-b1__full-0a1b2c3d", "client/b1__incremental", "produit/b1__incremental",
        "produit/b4__incremental",
    ]
    # each removed dir held one parquet file (+ a manifest for the produit extracts)
    assert report.files_freed == 2 + 2 + 1 + 1
    assert report.bytes_freed == sum(e.bytes for e in report.removed)
    assert report.bytes_freed >= 1000 + 4000 + 600 + 700
    assert not (cache / "produit" / "b1__incremental").exists()
    kept = {f"{e.path.parent.name}/{e.path.name}": e.reason for e in report.kept}
    assert kept["produit/b3__incremental"].startswith("batch unfinished: a re-run resumes from it")
    assert kept["produit/b5__incremental"].startswith("batch unfinished and held by staging")
    assert kept["client/.tmp-b2__full-9f8e7d6c"].startswith("temporary dir written 0.0 h ago")
    assert (cache / "produit" / "b3__incremental" / MANIFEST).exists()


def test_days_0_removes_everything_not_needed(cache_and_target):
    cache, t = cache_and_target
    report = cleanup_cache(cache, t, 0, now=NOW)
    assert names(report.kept) == ["client/.tmp-b2__full-9f8e7d6c", "produit/b3__incremental",
                                  "produit/b5__incremental"]
    assert "produit/b2__incremental" in names(report.removed)  # finished 2 days ago


def test_dry_run_removes_nothing(cache_and_target):
    cache, t = cache_and_target
    before = sorted(p for p in cache.rglob("*"))
    report = cleanup_cache(cache, t, 0, dry_run=True, now=NOW)
    assert report.removed and report.bytes_freed > 0
    assert sorted(p for p in cache.rglob("*")) == before


def test_keep_unfinished_days_is_the_operators_choice(cache_and_target):
    cache, t = cache_and_target
    report = plan_cleanup(cache, t, 7, keep_unfinished_days=60, now=NOW)
    assert "produit/b4__incremental" not in names(report.removed)
    report = plan_cleanup(cache, t, 7, keep_unfinished_days=5, now=NOW)
    assert "produit/b3__incremental" in names(report.removed)
    assert "produit/b5__incremental" not in names(report.removed)  # staging holds it: never


def test_unreadable_markers_remove_nothing(tmp_path):
    cache = tmp_path / "cache"
    make_extract(cache, "produit", "b1", days_old=30)
    empty = open_target(f"duckdb:///{tmp_path / 'empty.duckdb'}")  # no metadata tables
    with pytest.raises(TargetError, match="nothing was removed"):
        cleanup_cache(cache, empty, 0, now=NOW)
    assert (cache / "produit" / "b1__incremental").exists()


def test_cleanup_after_real_loads(tmp_path, monkeypatch, capsys):
    """A finished batch's extract goes; an unfinished batch's stays, and its merge still completes from it."""
    demo_data.create_sqlite_source(tmp_path / "erp.sqlite", scale=0.05)
    configure(monkeypatch, source=f"sqlite:///{tmp_path / 'erp.sqlite'}", flavor="sqlite", schema="PUB",
              target=f"duckdb:///{tmp_path / 'ods.duckdb'}")
    register_demo_tables(["produit", "fournis"])
    assert build(LoadTable(table="produit", mode="full", batch_id="b1")).scheduling_succeeded
    assert build(LoadStaging(table="fournis", mode="full", batch_id="b1")).scheduling_succeeded  # no merge yet
    cache = settings().cache_dir
    assert (cache / "produit" / "b1__full" / MANIFEST).exists() and (cache / "fournis" / "b1__full").exists()

    from cbm_luigi.cli import main

    assert main(["cleanup-cache", "--days", "0"]) == 0
    out = capsys.readouterr().out
    assert "removed  produit" in out and "keep" in out and "freed 2 file(s)" in out
    assert not (cache / "produit").exists()
    assert (cache / "fournis" / "b1__full" / MANIFEST).exists()
    clear_caches()
    assert build(LoadTable(table="fournis", mode="full", batch_id="b1")).scheduling_succeeded
    assert len(ods_rows("fournis")) > 0
