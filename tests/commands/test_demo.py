"""``cbm-etl demo``: the README's first command, end to end on SQLite -> DuckDB; what it prints at the end (how to
query its ODS, how to point cbm-etl at it) works when run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb

from cbm_luigi.cli import main
from cbm_luigi.commands.demo import DEMO_ODS, next_steps


def run_shell(line: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """A printed line in a fresh bash, without this test's CBM_* settings (as in the operator's shell)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CBM_") or k.startswith("CBM_TEST_")}
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}", CBM_LOG_DIR=str(cwd / "logs"))
    return subprocess.run(["bash", "-c", line], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_demo_loads_full_then_incremental_and_checks_itself(tmp_path, capsys):
    assert main(["demo", "--dir", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "MISMATCH" not in out and "UNEXPECTED" not in out
    incremental = out.split("== incremental load ==")[1].split("== same batch again")[0]
    assert incremental.count(" ok") == 5  # every table: inserted/updated as changed in the source
    assert "ok: 0 run-log row(s) written" in out
    ods = tmp_path / "demo" / DEMO_ODS
    assert ods.exists()

    # the default-named demo file: ods.client is the schema ods (the catalog is named after the file)
    with duckdb.connect(str(ods), read_only=True) as con:
        assert len(con.execute("SELECT * FROM ods.client").fetchall()) > 1000

    steps = next_steps((tmp_path / "demo").resolve())
    for line in steps.values():
        assert line in out, f"not printed: {line}"
    r = run_shell(steps["query"], tmp_path)
    assert r.returncode == 0 and "cod_cli" in r.stdout, r.stdout + r.stderr
    if shutil.which("duckdb"):  # the CLI line, when the duckdb CLI is installed
        r = run_shell(steps["query_cli"], tmp_path)
        assert r.returncode == 0 and "cod_cli" in r.stdout, r.stdout + r.stderr
    r = run_shell(f"{steps['env']}\n{steps['status']}", tmp_path)
    assert r.returncode == 0 and "== SLA (etl.vw_SLABreach) ==" in r.stdout, r.stdout + r.stderr
    assert "client" in r.stdout and "OK" in r.stdout
    r = run_shell(f"{steps['env']}\n{steps['validate']}", tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert [ln.split()[:2] for ln in r.stdout.splitlines() if ln.split()[:1] == ["client"]] == [["client", "match"]]
