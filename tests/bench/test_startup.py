"""bench/startup.py runs the real commands and prints its figures (their values are not asserted: they depend on
the machine and its load; docs/PERFORMANCE.md records them)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from cbm_luigi.cli import main

REPO = Path(__file__).resolve().parents[2]
ROWS = ("python -c pass", "cbm-etl --help", "cbm-etl --version", "cbm-etl plan --help", "cbm-etl tables")


def assert_figures(out: str) -> None:
    assert "cbm-etl start-up:" in out and "median s" in out and "min s" in out, out
    for label in ROWS:
        line = next((ln for ln in out.splitlines() if ln.startswith(label)), None)
        assert line is not None, f"no row {label!r}:\n{out}"
        assert re.search(r"\s\d+\.\d\d\s+\d+\.\d\d$", line), line  # median and min, in seconds


def test_the_script_prints_median_and_min_of_each_command(tmp_path) -> None:
    r = subprocess.run([sys.executable, "bench/startup.py", "--repeat", "1"], cwd=REPO, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert_figures(r.stdout)


def test_cbm_etl_bench_startup_runs_the_script(capsys) -> None:
    assert main(["bench", "--startup", "--repeat", "1"]) == 0
    assert_figures(capsys.readouterr().out)


def test_a_failing_command_is_exit_code_1(tmp_path, capsys) -> None:
    fake = tmp_path / "cbm-etl"
    fake.write_text("#!/bin/sh\nexit 3\n")
    fake.chmod(0o755)
    sys.path.insert(0, str(REPO))
    try:
        from bench import startup
    finally:
        sys.path.remove(str(REPO))
    assert startup.main(["--repeat", "1", "--cbm-etl", str(fake)]) == 1
    assert "exit 3" in capsys.readouterr().err
