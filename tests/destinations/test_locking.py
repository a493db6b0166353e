"""The single-writer lock of a DuckDB target (cbm_luigi/destinations/locking.py), between real processes.

A forked child process (as Luigi's ``--workers N`` forks them) opens a transaction on the DuckDB file and holds
it; this process contends for the same ``<database>.cbm-lock``: it waits and then proceeds, or times out with a
transient TargetError naming the file and the holder's pid.  Within one process the lock is re-entrant.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from helpers import os_lock_free

from cbm_luigi.destinations import open_target
from cbm_luigi.destinations.client import Target
from cbm_luigi.destinations.duckdb import DuckDBDialect
from cbm_luigi.destinations.locking import lock_for, lock_path, lock_timeout, set_lock_timeout
from cbm_luigi.errors import TransientTargetError
from cbm_luigi.pipeline.retry import is_transient

pytestmark = pytest.mark.skipif(os.name == "nt", reason="the test reads the lock with fcntl (POSIX)")

def hold_transaction(url: str, ready: Any, hold: float) -> None:
    """In the child: one transaction on the target, held ``hold`` seconds."""
    with open_target(url).begin() as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS written (who VARCHAR)")
        conn.execute("INSERT INTO written VALUES ('child')")
        ready.set()
        time.sleep(hold)


@pytest.fixture
def target(tmp_path: Path) -> Target:
    return open_target(f"duckdb:///{tmp_path / 'ods.duckdb'}")


@pytest.fixture(autouse=True)
def restore_timeout() -> Iterator[None]:
    yield
    set_lock_timeout(None)


def start_holder(target: Target, hold: float) -> multiprocessing.process.BaseProcess:
    """A process of its own holding a transaction (and so the lock) on the target for ``hold`` seconds."""
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    child = ctx.Process(target=hold_transaction, args=(target.url, ready, hold), daemon=True)
    child.start()
    if not ready.wait(30):
        child.kill()
        pytest.fail(f"the holder did not take the lock within 30 s (exit code {child.exitcode})")
    return child


def stop(child: multiprocessing.process.BaseProcess) -> None:
    if child.is_alive():
        child.kill()
    child.join(10)


def test_the_lock_file_is_a_sibling_of_a_duckdb_file_only(target, tmp_path):
    assert lock_path(target) == tmp_path / "ods.duckdb.cbm-lock"
    assert lock_path(open_target("duckdb:///:memory:")) is None
    assert lock_path(open_target("postgresql+psycopg://u@127.0.0.1:1/nodb")) is None  # no connection made


def test_a_second_process_waits_for_the_lock_then_proceeds(target, tmp_path):
    child = start_holder(target, hold=1.0)
    try:
        path = lock_path(target)
        assert path is not None and path.read_text(encoding="utf-8") == str(child.pid)
        # what the lock spares us: DuckDB itself refuses a second process at once (a transient error)
        with pytest.raises(duckdb.IOException, match="Could not set lock") as err:
            duckdb.connect(str(tmp_path / "ods.duckdb")).close()
        assert is_transient(err.value, DuckDBDialect())
        started = time.monotonic()
        with target.begin() as conn:
            waited = time.monotonic() - started
            # it ran after the holder committed: the holder's row is there
            assert conn.fetchall("SELECT who FROM written") == [("child",)]
            assert path.read_text(encoding="utf-8") == str(os.getpid())
        child.join(10)
        assert child.exitcode == 0
    finally:
        stop(child)
    assert waited < 30
    assert path.read_text(encoding="utf-8") == ""  # released: no holder recorded


def test_the_timeout_raises_a_transient_error_naming_the_file_and_the_holder(target, tmp_path, monkeypatch):
    monkeypatch.setenv("CBM_TARGET_LOCK_TIMEOUT", "0.4")
    assert lock_timeout() == 0.4
    child = start_holder(target, hold=30)
    try:
        started = time.monotonic()
        with pytest.raises(TransientTargetError) as err, target.begin():
            pass
        waited = time.monotonic() - started
    finally:
        stop(child)
    msg = str(err.value)
    assert err.value.transient and is_transient(err.value)
    assert f"single-writer lock {tmp_path / 'ods.duckdb.cbm-lock'} (held by pid {child.pid})" in msg
    assert "raise CBM_TARGET_LOCK_TIMEOUT" in msg
    assert 0.4 <= waited < 5
    # the holder is gone: the lock is free again, and this process takes it
    set_lock_timeout(5)
    with target.begin() as conn:
        assert conn.fetchall("SELECT 1") == [(1,)]


def test_the_lock_is_re_entrant_in_one_process(target):
    set_lock_timeout(0.2)  # a lock that is not re-entrant would time out on the inner transaction
    path = lock_path(target)
    assert path is not None
    with target.begin() as outer:
        assert not os_lock_free(path)
        with target.begin() as inner:
            assert inner.fetchall("SELECT 42") == [(42,)]
        assert not os_lock_free(path)  # the outer transaction still holds it
        assert outer.fetchall("SELECT 1") == [(1,)]
    assert os_lock_free(path)


def test_threads_of_one_process_wait_for_each_other(target):
    path = lock_path(target)
    assert path is not None
    lk = lock_for(path)
    assert lock_for(path) is lk  # one lock per file and process
    acquired: list[float] = []

    def other_thread() -> None:
        lk.acquire(10, what="thread")
        acquired.append(time.monotonic())
        lk.release()

    lk.acquire(10, what="main")
    thread = threading.Thread(target=other_thread)
    thread.start()
    time.sleep(0.3)
    assert acquired == [] and thread.is_alive()  # still waiting
    released = time.monotonic()
    lk.release()
    thread.join(10)
    assert len(acquired) == 1 and acquired[0] >= released
    assert os_lock_free(path)
