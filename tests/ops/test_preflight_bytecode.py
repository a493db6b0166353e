"""Preflight warns when this package's modules have no current cached bytecode and Python may not write it (every
process would compile them again), and says the command that writes it."""

from __future__ import annotations

import compileall
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import cbm_etl_command

from cbm_luigi.ops.preflight import OK, PACKAGE_DIR, WARN, Check, Preflight


def bytecode_check(package: Path) -> Check:
    pf = Preflight(timeout=2)
    pf.check_bytecode(package)
    [check] = pf.checks
    return check


@pytest.fixture
def package(tmp_path: Path) -> Path:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "mod.py").write_text("X = 1\n")
    return pkg


def test_missing_bytecode_python_cannot_write_is_a_warning_with_the_command(package, monkeypatch):
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    check = bytecode_check(package)
    assert check.status == WARN, check
    assert f"for 2 of the 2 modules of {package}" in check.detail
    assert "PYTHONDONTWRITEBYTECODE is set" in check.detail and "compiles them again" in check.detail
    assert check.fix.startswith(f"{sys.executable} -m compileall -q {package}")

    # the fix, as printed, makes it OK
    subprocess.run(check.fix.split("  (")[0].split(), check=True)
    assert bytecode_check(package).status == OK

    # a module edited since it was compiled is stale again, and named
    (package / "sub" / "mod.py").write_text("X = 22\n")
    check = bytecode_check(package)
    assert check.status == WARN and "1 of the 2 modules" in check.detail and "(first: sub/mod.py)" in check.detail


def test_missing_bytecode_python_will_write_is_ok(package, monkeypatch):
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    check = bytecode_check(package)
    assert check.status == OK and "Python caches them at their first import" in check.detail, check


def test_cbm_etl_preflight_reports_the_packages_bytecode(tmp_path):
    compileall.compile_dir(str(PACKAGE_DIR), quiet=1)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "CBM_SOURCE": "", "CBM_TARGET": f"duckdb:///{tmp_path}/x.duckdb"}
    r = subprocess.run([*cbm_etl_command(), "preflight"], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=120)
    line = next((ln for ln in r.stdout.splitlines() if "bytecode" in ln), None)
    assert line is not None, r.stdout + r.stderr
    assert "OK" in line and "cached for the" in line and str(PACKAGE_DIR) in line, line
