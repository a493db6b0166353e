"""Run log files and redaction (cbm_luigi/config/logs.py, cbm_luigi/config/secrets.py).

``start_run_log`` adds a file under ``CBM_LOG_DIR`` (the conftest points it at ``tmp_path/logs``) whose every line
carries the run id; the formatter hides passwords, query-string signatures and the values of secret-named
environment variables; old run logs are pruned by age and by count at each start.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cbm_luigi.config.logs import prune_logs, start_run_log, stop_run_log
from cbm_luigi.config.run import RUN_ID
from cbm_luigi.config.secrets import redact_text, secret_values

log = logging.getLogger("cbm_luigi.tests.logs")
TAG = f"[run {RUN_ID[:8]}]"


@pytest.fixture
def run_log(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], Path]]:
    """start_run_log with the root logger at INFO (as cbm-etl sets it); the handler removed afterwards."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.INFO)

    def start(command: str = "run") -> Path:
        path = start_run_log(command)
        assert path is not None
        return path

    yield start
    stop_run_log()
    root.setLevel(level)


def lines_of(path: Path) -> list[str]:
    for h in logging.getLogger().handlers:
        h.flush()
    return path.read_text(encoding="utf-8").splitlines()


def age(path: Path, days: float) -> Path:
    t = time.time() - days * 86400
    os.utime(path, (t, t))
    return path


def test_the_run_log_is_created_under_cbm_log_dir_with_the_run_id_on_every_line(run_log, tmp_path):
    path = run_log("check quality")
    assert path.parent == tmp_path / "logs"
    assert re.fullmatch(rf"cbm-etl_\d{{8}}-\d{{6}}_check-quality_{RUN_ID[:8]}\.log", path.name), path.name
    log.warning("first table failed")
    logging.getLogger("luigi-interface").info("Informed scheduler that task X has status DONE")
    log.info("a value with %s args", "formatted")
    lines = lines_of(path)
    assert f"run log: {path}" in lines[0]
    assert len(lines) == 4
    assert all(TAG in line for line in lines), lines
    assert lines[1].split(TAG)[1] == " cbm_luigi.tests.logs: first table failed"
    assert "luigi-interface: Informed scheduler" in lines[2] and "a value with formatted args" in lines[3]
    # stopped: the file no longer grows
    stop_run_log()
    log.warning("not in any file")
    assert "not in any file" not in "\n".join(lines_of(path))


def test_secrets_are_redacted_in_the_log_file(run_log, monkeypatch):
    monkeypatch.setenv("CBM_SMTP_PASSWORD", "Pa55-word!x")
    monkeypatch.setenv("CBM_TEAMS_WEBHOOK_URL", "https://outlook.example/webhook/8f1e2d3c4b5a")
    monkeypatch.setenv("CBM_TARGET_HOST", "dbhost-visible")  # not a secret name: shown
    path = run_log()
    log.warning("source DRIVER={Progress OpenEdge};HOST=erp;UID=etl;PWD=hunter22;PORT=20931 unreachable")
    log.warning("target postgresql+psycopg://etl:s3cr3t@dbhost-visible:5432/ods refused")
    log.warning("posting https://prod.logic.azure.com/workflows/1/invoke?api-version=2016-06-01&sp=%2Ftriggers"
                "&sig=AbC123xyzSIG failed")
    log.warning("smtp login with Pa55-word!x refused; card for https://outlook.example/webhook/8f1e2d3c4b5a")
    try:
        raise RuntimeError("driver said: password Pa55-word!x is wrong")
    except RuntimeError:
        log.exception("traceback follows")
    text = "\n".join(lines_of(path))
    for secret in ("hunter22", "s3cr3t", "AbC123xyzSIG", "Pa55-word!x", "8f1e2d3c4b5a"):
        assert secret not in text, secret
    assert "UID=etl;PWD=***;PORT=20931 unreachable" in text
    assert "postgresql+psycopg://etl:***@dbhost-visible:5432/ods refused" in text
    assert "?api-version=2016-06-01&sp=%2Ftriggers&sig=*** failed" in text
    assert "smtp login with *** refused; card for ***" in text
    assert "RuntimeError: driver said: password *** is wrong" in text  # in the traceback too


def test_secret_values_are_the_secret_named_variables_longest_first(monkeypatch):
    monkeypatch.setenv("MY_API_TOKEN", "tok-1234")
    monkeypatch.setenv("ERP_PWD", "tok-1234-and-more")  # contains the other one: replaced whole
    monkeypatch.setenv("PWD_ODBC", "odbc-pass")
    monkeypatch.setenv("SMTP_CREDENTIALS", "cred-value")
    monkeypatch.setenv("APIKEY", "k3y-value")
    monkeypatch.setenv("SHORT_SECRET", "abc")  # under 4 characters: would hide too much
    monkeypatch.setenv("CBM_SOURCE_SCHEMA", "PUBLIC-SCHEMA")
    values = secret_values()
    assert {"tok-1234", "tok-1234-and-more", "odbc-pass", "cred-value", "k3y-value"} <= set(values)
    assert "abc" not in values and "PUBLIC-SCHEMA" not in values
    assert values.index("tok-1234-and-more") < values.index("tok-1234")
    assert redact_text("a=tok-1234-and-more b=tok-1234 c=PUBLIC-SCHEMA d=abc") == "a=*** b=*** c=PUBLIC-SCHEMA d=abc"
    assert redact_text("GET /hook?code=zz9&token=t0k&x=1 key=k&access_token=a1", secrets=[]) == \
        "GET /hook?code=***&token=***&x=1 key=k&access_token=***"


def test_old_run_logs_are_pruned_by_retention(run_log, tmp_path, monkeypatch):
    logs = tmp_path / "logs"
    logs.mkdir()

    def file(name: str, days: float) -> Path:
        p = logs / name
        p.write_text("earlier run\n", encoding="utf-8")
        return age(p, days)

    old = file("cbm-etl_20200101-000000_run_aaaaaaaa.log", 40)
    old_part = file("cbm-etl_20200101-000000_run_aaaaaaaa.log.1", 41)  # its rolled-over part
    recent = file("cbm-etl_20260101-000000_run_bbbbbbbb.log", 2)
    other = file("notes.log", 400)  # not a run log: never touched

    first = run_log()  # default retention: 30 days
    assert not old.exists() and not old_part.exists()
    assert recent.exists() and other.exists() and first.exists()
    assert any("deleted 2 old run log file(s)" in line for line in lines_of(first))

    stop_run_log()
    monkeypatch.setenv("CBM_LOG_RETENTION_DAYS", "1")
    second = run_log("status")
    assert not recent.exists()
    assert first.exists() and second.exists() and second != first  # a fresh log is kept, whatever its age limit
    assert other.exists()


def test_run_logs_beyond_the_maximum_count_are_pruned(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    runs = []
    for i in range(5):  # the oldest first
        p = logs / f"cbm-etl_2026010{i}-000000_run_{i:08d}.log"
        p.write_text("x\n")
        runs.append(age(p, 5 - i))
    part = logs / f"{runs[4].name}.1"  # a rolled-over part of the newest run: the same run
    part.write_text("x\n")
    age(part, 0.5)
    removed = prune_logs(logs, retention_days=30, max_files=2, keep=runs[0])
    assert sorted(p.name for p in removed) == sorted(p.name for p in runs[1:3])
    assert sorted(p.name for p in logs.iterdir()) == sorted([runs[0].name, runs[3].name, runs[4].name, part.name])


def _child_logs(count: int) -> None:
    for i in range(count):
        log.warning("child line %03d %s", i, "y" * 80)
    for h in logging.getLogger().handlers:
        h.flush()


def test_only_the_opening_process_rolls_the_file_over(run_log, monkeypatch):
    monkeypatch.setenv("CBM_LOG_MAX_BYTES", "2000")
    monkeypatch.setenv("CBM_LOG_BACKUP_COUNT", "3")
    path = run_log()
    rolled = [path.with_name(f"{path.name}.{n}") for n in (1, 2)]
    # a forked worker (as Luigi's --workers N): appends with the same run id, never rolls over
    child = multiprocessing.get_context("fork").Process(target=_child_logs, args=(40,))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    assert path.stat().st_size > 2000 and not rolled[0].exists()
    child_lines = [ln for ln in lines_of(path) if "child line" in ln]
    assert len(child_lines) == 40 and all(TAG in ln for ln in child_lines)
    # the opener rolls it over at its next line
    log.warning("parent line")
    assert rolled[0].exists() and not rolled[1].exists()
    assert lines_of(path)[-1].endswith("cbm_luigi.tests.logs: parent line")


def test_redacting_a_message_twice_keeps_what_follows_the_password() -> None:
    from cbm_luigi.config.secrets import redact

    # as the source does: the connection string is redacted, then quoted in the message
    once = f"source (progress, {redact('DSN=erp;UID=etl;PWD=hunter22')}): connect failed: [08001] refused"
    assert "hunter22" not in once
    twice = redact(f"extract failed: {once}")  # the log formatter and the breaker redact the message again
    assert twice.endswith("connect failed: [08001] refused") and "PWD=***" in twice


def test_a_secret_loaded_from_dotenv_after_the_formatter_was_made_is_hidden(monkeypatch, tmp_path) -> None:
    from cbm_luigi.config.logs import RedactingFormatter

    formatter = RedactingFormatter("%(message)s")  # made before .env is read, as cbm-etl's console handler is
    monkeypatch.delenv("CBM_ERP_PASSWORD", raising=False)
    (tmp_path / ".env").write_text("CBM_ERP_PASSWORD=TopSecret99\n", encoding="utf-8")
    from dotenv import load_dotenv

    load_dotenv(tmp_path / ".env")
    try:
        record = logging.LogRecord("cbm_luigi.x", logging.INFO, __file__, 1, "the password is %s", ("TopSecret99",),
                                   None)
        assert formatter.format(record) == "the password is ***"
    finally:
        os.environ.pop("CBM_ERP_PASSWORD", None)
