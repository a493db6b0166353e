"""A DuckDB target kept open between a process's transactions (cbm_luigi/destinations/locking.py, KeptConnection).

Opening the file is most of a no-change table's time in a night of many tables (docs/PERFORMANCE.md): a process
keeps one connection, and the target's lock, while it works, and closes it once idle for ``keep_target_open``
seconds, before it forks, and at exit.  Checked here on real DuckDB files and real processes: one opening for many
transactions, the lock free again once idle (another process gets in while the holder is still alive), a fork's
child never inherits it, a failed transaction leaves nothing behind, nested and concurrent transactions, and the
commands an operator runs (``cbm-etl tables`` beside a busy process, a bad ``CBM_KEEP_TARGET_OPEN``).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from helpers import cbm_etl_command, os_lock_free

from cbm_luigi.destinations import open_target
from cbm_luigi.destinations.client import Target
from cbm_luigi.destinations.locking import (
    keep_open_seconds,
    lock_path,
    release_kept,
    set_keep_open,
    set_lock_timeout,
)
from cbm_luigi.errors import TargetError

pytestmark = pytest.mark.skipif(os.name == "nt", reason="fork and fcntl (POSIX)")

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def kept(tmp_path: Path) -> Iterator[tuple[Target, list[int]]]:
    """A DuckDB target of this process with keeping on (0.3 s idle), and the list of its openings."""
    set_keep_open(0.3)
    target = open_target(f"duckdb:///{tmp_path / 'ods.duckdb'}")
    openings: list[int] = []
    sa.event.listen(target.engine, "connect", lambda *_: openings.append(1))
    yield target, openings
    set_keep_open(0)
    set_lock_timeout(None)


def wait_until(condition, seconds: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


HOLDER = """\
import sys, time
from cbm_luigi.destinations import open_target
with open_target(sys.argv[1]).begin() as c:
    c.execute(sys.argv[2])
print("ready", flush=True)
time.sleep(60)
"""


@contextlib.contextmanager
def holder(url: str, statement: str, keep: str, env: dict[str, str], cwd: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process of the same code: one transaction (``statement``) on ``url``, then idle for a minute with
    ``CBM_KEEP_TARGET_OPEN=keep``; yielded once its transaction committed, killed at the end."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, url, statement], env={**env, "CBM_KEEP_TARGET_OPEN": keep},
                            stdout=subprocess.PIPE, text=True, cwd=cwd)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        proc.kill()
        proc.wait(10)


def test_transactions_of_a_burst_share_one_opening_and_the_file_is_closed_once_idle(kept):
    target, openings = kept
    with target.begin() as conn:
        conn.execute("CREATE TABLE t (i INTEGER)")
    for i in range(20):
        with target.begin() as conn:
            conn.execute("INSERT INTO t VALUES (:i)", {"i": i})
    assert target.fetchone("SELECT count(*) FROM t") == (20,)
    assert len(openings) == 1  # 22 transactions, one opening of the file
    path = lock_path(target)
    assert path is not None and not os_lock_free(path)  # kept: the lock is still ours
    assert path.read_text(encoding="utf-8") == str(os.getpid())
    assert wait_until(lambda: os_lock_free(path), 5.0), "the idle connection was not closed"
    assert path.read_text(encoding="utf-8") == ""
    with target.begin() as conn:  # the next transaction opens it again
        assert conn.scalar("SELECT count(*) FROM t") == 20
    assert len(openings) == 2


def test_another_process_gets_the_file_while_the_holder_is_alive_and_idle(kept, tmp_path):
    target, _ = kept
    with target.begin() as conn:
        conn.execute("CREATE TABLE t (who VARCHAR)")
    release_kept()  # this process lets go of the file, so the holder can take it
    with holder(target.url, "INSERT INTO t VALUES ('holder')", "0.3", dict(os.environ), REPO) as proc:
        set_lock_timeout(10)
        started = time.monotonic()
        with target.begin() as conn:
            waited = time.monotonic() - started
            assert conn.fetchall("SELECT who FROM t") == [("holder",)]
        assert proc.poll() is None  # still running: the file was closed because idle, not because it exited
    assert waited < 5


def test_a_forked_child_opens_the_file_itself(kept):
    target, _ = kept
    with target.begin() as conn:
        conn.execute("CREATE TABLE t (who VARCHAR)")
    path = lock_path(target)
    assert path is not None and not os_lock_free(path)  # kept by this process
    pid = os.fork()
    if pid == 0:  # the child: the fork released the parent's file, the child's first transaction opens its own
        code = 1
        try:
            set_lock_timeout(2)
            with open_target(target.url).begin() as conn:
                conn.execute("INSERT INTO t VALUES ('child')")
            release_kept()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert target.fetchall("SELECT who FROM t") == [("child",)]


def test_a_failed_transaction_is_rolled_back_and_the_next_one_opens_again(kept):
    target, openings = kept
    with target.begin() as conn:
        conn.execute("CREATE TABLE t (i INTEGER PRIMARY KEY)")
    with pytest.raises(TargetError) as err, target.begin(table="t", step="merge_ods") as conn:
        conn.execute("INSERT INTO t VALUES (1)")
        conn.execute("INSERT INTO t VALUES (1)")  # duplicate key
    assert "t" in str(err.value)
    assert target.fetchone("SELECT count(*) FROM t") == (0,)  # the first insert went with the failed transaction
    assert len(openings) == 2  # the failed one's connection was closed, not reused


def test_nested_and_concurrent_transactions(kept):
    target, _ = kept
    with target.begin() as conn:
        conn.execute("CREATE TABLE t (who VARCHAR, i INTEGER)")
    with target.begin() as outer:  # a transaction inside another one, same thread: a connection of its own
        outer.execute("INSERT INTO t VALUES ('outer', 0)")
        with target.begin() as inner:
            assert inner.scalar("SELECT 42") == 42
    errors: list[BaseException] = []

    def write(who: str) -> None:
        try:
            for i in range(10):
                with target.begin() as c:
                    c.execute("INSERT INTO t VALUES (:who, :i)", {"who": who, "i": i})
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(f"thread-{n}",)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert target.fetchall("SELECT who, count(*) FROM t GROUP BY who ORDER BY who") == [
        ("outer", 1), ("thread-0", 10), ("thread-1", 10), ("thread-2", 10)]


def test_zero_closes_the_file_after_each_transaction(kept):
    target, openings = kept
    set_keep_open(0)  # before the target's first transaction, which decides
    assert keep_open_seconds() == 0
    path = lock_path(target)
    assert path is not None
    for _ in range(3):
        with target.begin() as conn:
            conn.scalar("SELECT 1")
        assert os_lock_free(path)
    assert len(openings) == 3


def cbm_etl(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*cbm_etl_command(), *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CBM_") or k.startswith("CBM_TEST_")}
    env.update(CBM_TARGET=f"duckdb:///{tmp_path / 'ods.duckdb'}", CBM_CACHE_DIR=str(tmp_path / "cache"),
               CBM_LOG_DIR=str(tmp_path / "logs"), LUIGI_CONFIG_PATH=str(REPO / "luigi.cfg"))
    return env


def test_cbm_etl_tables_gets_in_beside_a_process_that_keeps_the_file(cli_env, tmp_path):
    assert cbm_etl("init-db", env=cli_env, cwd=tmp_path).returncode == 0
    with holder(cli_env["CBM_TARGET"], 'SELECT count(*) FROM config."ETL_Tables"', "0.5", cli_env, tmp_path) as proc:
        r = cbm_etl("tables", env={**cli_env, "CBM_TARGET_LOCK_TIMEOUT": "20"}, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert proc.poll() is None


def test_a_process_keeping_the_file_longer_than_the_wait_is_named(cli_env, tmp_path):
    assert cbm_etl("init-db", env=cli_env, cwd=tmp_path).returncode == 0
    with holder(cli_env["CBM_TARGET"], "SELECT 1", "60", cli_env, tmp_path) as proc:
        r = cbm_etl("tables", env={**cli_env, "CBM_TARGET_LOCK_TIMEOUT": "1"}, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert f"(held by pid {proc.pid})" in r.stderr
    assert "raise CBM_TARGET_LOCK_TIMEOUT" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_bad_keep_target_open_is_refused_before_the_run(cli_env, tmp_path):
    assert cbm_etl("init-db", env=cli_env, cwd=tmp_path).returncode == 0
    r = cbm_etl("run", "--all", env={**cli_env, "CBM_KEEP_TARGET_OPEN": "soon"}, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "CBM_KEEP_TARGET_OPEN (luigi.cfg [cbm_ops] keep_target_open) = 'soon' is not valid" in r.stderr
    assert "expected a float like 0.5" in r.stderr
