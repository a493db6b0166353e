"""pipeline/isolation.py: a real forked child, real signals; its result, its exception, or the crash message."""

from __future__ import annotations

import os
import signal
import time

import pytest

from cbm_luigi.errors import SourceError, TransientSourceError
from cbm_luigi.pipeline.isolation import DriverCrashError, crash_message, crash_point, run_isolated
from cbm_luigi.pipeline.sources import is_transient_odbc


def test_the_child_result_comes_back():
    assert run_isolated(lambda: {"pid": os.getpid(), "rows": 3}, table="produit")["rows"] == 3
    assert run_isolated(lambda: os.getpid(), table="produit") != os.getpid()


def test_the_child_exception_is_raised_with_its_type():
    def fail() -> None:
        raise TransientSourceError("source (postgresql): read failed: 08S01 link failure")

    with pytest.raises(TransientSourceError, match="08S01") as info:
        run_isolated(fail, table="produit")
    assert info.value.transient
    assert any("in the process reading produit" in n for n in getattr(info.value, "__notes__", []))


@pytest.mark.parametrize("sig", [signal.SIGSEGV, signal.SIGKILL, signal.SIGABRT])
def test_a_child_dead_by_a_real_signal_is_a_driver_crash_naming_table_and_signal(sig):
    def die() -> None:
        os.kill(os.getpid(), sig)
        time.sleep(5)

    with pytest.raises(DriverCrashError) as info:
        run_isolated(die, table="hisprixa")
    assert str(info.value) == (f"the ODBC driver crashed (signal {int(sig)}, {sig.name}) while reading hisprixa; "
                               "the other tables go on; run again")
    assert not info.value.transient and info.value.exit_code == 1


def test_the_test_hook_sends_a_real_signal_only_to_the_named_table(monkeypatch):
    monkeypatch.setenv("CBM_TEST_CRASH_EXTRACT", "HisPrixa:SIGSEGV")
    assert run_isolated(lambda: crash_point("produit") or "read", table="produit") == "read"
    with pytest.raises(DriverCrashError, match=r"signal 11, SIGSEGV\) while reading hisprixa"):
        run_isolated(lambda: crash_point("hisprixa"), table="hisprixa")


def test_messages_and_transient_states():
    assert crash_message("t", 3).startswith("the process reading t exited with code 3 without a result")
    assert issubclass(DriverCrashError, SourceError)
    # terminated by an administrator: transient on the source side too
    assert is_transient_odbc(Exception("('57P01', '[57P01] FATAL: terminating connection due to administrator "
                                       "command')"))
