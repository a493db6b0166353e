"""``cbm-etl plan``: the dry run reports what would run, and runs nothing."""

from __future__ import annotations

import pytest
from conftest import build, configure
from helpers import log_rows, register_demo_tables

from cbm_luigi.cli import main
from cbm_luigi.tasks.wrappers import LoadTable

pytestmark = [pytest.mark.postgres, pytest.mark.odbc]


def test_plan_shows_pending_then_done_and_runs_nothing(pg_source, tmp_path, monkeypatch, capsys):
    configure(monkeypatch, source=pg_source.odbc, flavor="postgresql", schema=pg_source.schema,
              target=f"duckdb:///{tmp_path / 'ods.duckdb'}")
    register_demo_tables(["fournis"])
    assert main(["plan", "fournis", "--mode", "full", "--batch", "b1"]) == 0
    out = capsys.readouterr().out
    assert "[todo] MergeOds(table=fournis, mode=full, batch_id=b1)" in out
    assert "[todo] ExtractParquet(table=fournis, mode=full, batch_id=b1)" in out
    assert "4 task(s) would run" in out
    assert log_rows() == []  # nothing ran
    assert build(LoadTable(table="fournis", mode="full", batch_id="b1")).scheduling_succeeded
    assert main(["plan", "fournis", "--mode", "full", "--batch", "b1"]) == 0
    assert "nothing to do: the batch is complete" in capsys.readouterr().out
