"""Preflight warns when ``.env`` (passwords, webhook URLs) is readable by its group or others."""

from __future__ import annotations

import pytest

from cbm_luigi.ops.preflight import OK, WARN, Preflight


@pytest.mark.parametrize(("mode", "status", "who"), [
    (0o644, WARN, "its group and others"), (0o640, WARN, "its group"), (0o604, WARN, "others"),
    (0o600, OK, ""), (0o400, OK, ""),
])
def test_dot_env_readable_by_group_or_others_is_a_warning(tmp_path, monkeypatch, mode, status, who):
    monkeypatch.chdir(tmp_path)
    env = tmp_path / ".env"
    env.write_text("CBM_SOURCE_PASSWORD=x\n")
    env.chmod(mode)
    pf = Preflight(timeout=2)
    try:
        pf.check_settings()
    finally:
        pf.close()
    [check] = [c for c in pf.checks if c.name == ".env"]
    assert check.status == status, check
    if status == WARN:
        assert f"readable by {who} (mode {mode:03o})" in check.detail
        assert check.fix == "chmod 600 .env"
