"""A corrupt or unreadable extract of an unfinished batch is detected and extracted again (issue "Reliability").

The extract of batch b1 is written (``ExtractParquet`` alone: the batch is not merged), then damaged the ways a
cache gets damaged (a truncated file, a file overwritten, a file gone, a garbled manifest); the real
``cbm-etl run`` of the same batch then detects it from the manifest (sizes, parquet footers, rows), removes it,
extracts again and loads, instead of failing the same way on every rerun.  Also: a cache that is not a writable
directory is refused before any table runs, naming CBM_CACHE_DIR (exit 2).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import build, configure

from cbm_luigi.cli import main
from cbm_luigi.demo import data as demo_data
from cbm_luigi.destinations import open_target
from cbm_luigi.pipeline.extract import MANIFEST, extract_dir, extract_problem
from cbm_luigi.tasks.context import clear_caches, settings
from cbm_luigi.tasks.table import ExtractParquet


@pytest.fixture
def sqlite_produit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """produit registered from the demo SQLite source into a DuckDB ODS; its extract of batch b1 written."""
    path = tmp_path / "erp.sqlite"
    demo_data.create_sqlite_source(path, scale=0.05)
    configure(monkeypatch, source=f"sqlite:///{path}", flavor="sqlite", schema="PUB",
              target=f"duckdb:///{tmp_path / 'cbm_ods.duckdb'}")
    assert main(["init-db"]) == 0
    assert main(["sync-columns", "produit"]) == 0
    assert main(["add-table", "produit", "--pk", "cod_pro", "--date-modif-col", "dat_mod"]) == 0
    clear_caches()
    assert build(ExtractParquet(table="produit", mode="full", batch_id="b1")).scheduling_succeeded
    directory = extract_dir(settings().cache_dir, "produit", "b1", "full")
    assert (directory / MANIFEST).exists() and extract_problem(directory) is None
    return directory


def truncate(d: Path) -> None:
    f = d / "part-00000.parquet"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def overwrite(d: Path) -> None:  # same size, footer gone
    f = d / "part-00000.parquet"
    f.write_bytes(b"\0" * f.stat().st_size)


def remove(d: Path) -> None:
    (d / "part-00000.parquet").unlink()


def garble_manifest(d: Path) -> None:
    (d / MANIFEST).write_text("{not json", encoding="utf-8")


def wrong_rows(d: Path) -> None:
    data = json.loads((d / MANIFEST).read_text(encoding="utf-8"))
    data["rows"] += 1
    (d / MANIFEST).write_text(json.dumps(data), encoding="utf-8")


@pytest.mark.parametrize("damage", [truncate, overwrite, remove, garble_manifest, wrong_rows])
def test_a_damaged_extract_of_an_unfinished_batch_is_extracted_again(
        sqlite_produit: Path, damage: Callable[[Path], None], capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    damage(sqlite_produit)
    assert extract_problem(sqlite_produit) is not None
    clear_caches()
    assert main(["run", "produit", "--mode", "full", "--batch", "b1"]) == 0, capsys.readouterr().out
    assert "is unusable" in caplog.text and "extracting it again" in caplog.text
    assert extract_problem(sqlite_produit) is None
    target = open_target(settings().target)
    assert target.fetchall(f'SELECT COUNT(*) FROM {target.dialect.qualified("ods", "produit")}')[0][0] == 100


def test_a_sound_extract_is_reused(sqlite_produit: Path, caplog: pytest.LogCaptureFixture) -> None:
    written = (sqlite_produit / MANIFEST).stat().st_mtime_ns
    assert main(["run", "produit", "--mode", "full", "--batch", "b1"]) == 0
    assert (sqlite_produit / MANIFEST).stat().st_mtime_ns == written
    assert "is unusable" not in caplog.text


def test_a_cache_dir_that_is_a_file_is_refused_naming_cbm_cache_dir(
        sqlite_produit: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a-file").write_text("x", encoding="utf-8")
    monkeypatch.setenv("CBM_CACHE_DIR", str(tmp_path / "a-file"))
    clear_caches()
    assert main(["run", "produit", "--mode", "full", "--batch", "b2"]) == 2
    err = capsys.readouterr().err
    assert f"CBM_CACHE_DIR ({tmp_path / 'a-file'}) is a file, not a directory: point CBM_CACHE_DIR at a " \
           "directory" in err
    assert "Traceback" not in err


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes to read-only directories")
def test_a_read_only_cache_dir_is_refused_naming_cbm_cache_dir(
        sqlite_produit: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    monkeypatch.setenv("CBM_CACHE_DIR", str(ro))
    clear_caches()
    try:
        assert main(["run", "produit", "--mode", "full", "--batch", "b2"]) == 2
    finally:
        ro.chmod(0o700)
    assert "is not writable by this user" in capsys.readouterr().err
