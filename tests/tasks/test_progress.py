"""The progress bar of an extract (ExtractProgress, ``[cbm_ops] progress_count``): a full window's total is the
previous full load's row count (no second read of the source), only a first full load is counted, an incremental
window is neither counted nor estimated; ``progress_count=false`` turns the percentage off.  Real source (the demo
tables in PostgreSQL over ODBC), real DuckDB target, real loads through Luigi."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import build, configure
from helpers import register_demo_tables

from cbm_luigi.pipeline.sources import open_source
from cbm_luigi.pipeline.sources.flavors import Window
from cbm_luigi.tasks.context import clear_caches, settings, table_spec
from cbm_luigi.tasks.table import ExtractParquet, ExtractProgress
from cbm_luigi.tasks.wrappers import LoadTable

pytestmark = [pytest.mark.postgres, pytest.mark.odbc]


def _progress(batch: str, mode: str = "full") -> tuple[ExtractProgress, list[str], list[int]]:
    """An ExtractProgress on a real task; the worker's status and percentage callbacks record what it shows."""
    task = ExtractParquet(table="produit", mode=mode, batch_id=batch)
    messages: list[str] = []
    percents: list[int] = []
    task.set_status_message = messages.append  # type: ignore[attr-defined]  # set by Luigi's worker at run time
    task.set_progress_percentage = percents.append  # type: ignore[attr-defined]
    return ExtractProgress(task, "produit", min_interval=0.0), messages, percents


def _start(progress: ExtractProgress, window: Window) -> None:
    spec = table_spec(settings().target, "produit")
    with open_source(settings()) as source:
        progress.start(source, spec, window)


def _source_rows(pg_source: Any) -> int:
    import psycopg

    with psycopg.connect(pg_source.conninfo) as c:
        row = c.execute(f'SELECT COUNT(*) FROM "{pg_source.schema}"."produit"').fetchone()
    assert row is not None
    return int(row[0])


def test_full_load_total_is_counted_once_then_taken_from_the_previous_full_load(
        pg_source: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    configure(monkeypatch, source=pg_source.odbc, flavor="progress", schema=pg_source.schema,
              target=f"duckdb:///{tmp_path / 'ods.duckdb'}")
    register_demo_tables(["produit"])
    rows = _source_rows(pg_source)

    # the first full load: no history, so the window is counted on the source
    first, messages, _ = _progress("b1")
    _start(first, Window(None, reason="full mode"))
    assert first.total == rows and not first.estimated
    assert messages[0] == "produit: counting the rows to read (full mode)"
    assert messages[-1] == f"produit: extracting {rows:,} rows (full mode)"

    assert build(LoadTable(table="produit", mode="full", batch_id="b1")).scheduling_succeeded

    # the next full load: the previous full load's rows, without a COUNT(*)
    again, messages, percents = _progress("b2")
    _start(again, Window(None, reason="full mode"))
    assert again.total == rows and again.estimated
    assert not any("counting" in m for m in messages), messages
    assert messages[-1] == f"produit: extracting about {rows:,} rows (full mode)"
    again(rows // 2, 1.0)
    assert percents[-1] == 50 and messages[-1].startswith(f"produit: {rows // 2:,} of about {rows:,} rows read")
    again(rows * 2, 1.0)  # more rows than last time: the bar waits at 99 until the extract is done
    assert percents[-1] == 99
    again.done(rows * 2, 1.0)
    assert percents[-1] == 100


def test_incremental_window_is_not_counted_and_the_option_turns_the_percentage_off(
        pg_source: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    configure(monkeypatch, source=pg_source.odbc, flavor="progress", schema=pg_source.schema,
              target=f"duckdb:///{tmp_path / 'ods.duckdb'}")
    register_demo_tables(["produit"])

    since = datetime(2026, 1, 2, 3, 4, 5)
    incremental, messages, percents = _progress("b1", mode="incremental")
    _start(incremental, Window(since, reason="incremental since 2026-01-02 03:04:05"))
    assert incremental.total is None
    assert messages == ["produit: extracting (incremental since 2026-01-02 03:04:05)"] and percents == [0]
    incremental(120, 2.0)
    assert messages[-1] == "produit: 120 rows read (60 rows/s)" and percents == [0]

    monkeypatch.setenv("CBM_PROGRESS_COUNT", "false")
    clear_caches()
    off, messages, _ = _progress("b1")
    _start(off, Window(None, reason="full mode"))
    assert off.total is None and messages == ["produit: extracting (full mode)"]
