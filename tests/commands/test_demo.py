"""``cbm-etl demo``: the README's first command, end to end on SQLite -> DuckDB."""

from __future__ import annotations

from cbm_luigi.cli import main


def test_demo_loads_full_then_incremental_and_checks_itself(tmp_path, capsys):
    assert main(["demo", "--dir", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "MISMATCH" not in out and "UNEXPECTED" not in out
    incremental = out.split("== incremental load ==")[1].split("== same batch again")[0]
    assert incremental.count(" ok") == 5  # every table: inserted/updated as changed in the source
    assert "ok: 0 run-log row(s) written" in out
    assert (tmp_path / "demo" / "ods.duckdb").exists()
