"""Reading a table in a child process of its own, so that a crash of the ODBC driver fails that table only.

Terminating the source connection in the middle of an extract sometimes kills the reading process with SIGSEGV
inside the ODBC driver (seen with psqlODBC, arrow-odbc and an open pyodbc connection under load): no Python
exception, no ``finally``, the whole ``cbm-etl run`` gone.  :func:`run_isolated` forks, runs the extract in the
child and hands back its result (or its exception) through a pipe; a child that dies by a signal becomes a
:class:`DriverCrashError` in the parent (the task process), which fails the table with
"the ODBC driver crashed (signal 11, SIGSEGV) while reading produit; the other tables go on; run again" and writes
that row of ``etl.ETL_Log`` itself.  Nothing of the crashed extract counts: its parquet was still in its
``.tmp-*`` folder (removed by the next extract of the table), a staging COPY of the child rolled back with its
connection.  The child dies with its parent (``PR_SET_PDEATHSIG``): a killed run leaves no orphan writing.

Where ``os.fork`` does not exist (Windows) or ``[cbm_ops] isolate_extracts=false``, the extract runs in the
task's process, as before.  Cost: docs/PERFORMANCE.md ("Extract isolation").
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import pickle
import signal
import sys
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

from cbm_luigi.destinations.locking import release_kept
from cbm_luigi.errors import SourceError, TransientSourceError
from cbm_luigi.model.arrow import hold_pandas_off

log = logging.getLogger(__name__)
T = TypeVar("T")

CAN_FORK = hasattr(os, "fork")
_PR_SET_PDEATHSIG = 1


class DriverCrashError(SourceError):
    """The process reading a table died by a signal (the ODBC driver crashed) or without a result."""

    exit_code = 1


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return "unknown signal"


def crash_message(table: str, exitcode: int) -> str:
    """What the operator reads (console, run summary, ``etl.ETL_Log``) when the reading process died."""
    if exitcode < 0:
        return (f"the ODBC driver crashed (signal {-exitcode}, {signal_name(-exitcode)}) while reading {table}; "
                "the other tables go on; run again")
    return (f"the process reading {table} exited with code {exitcode} without a result; the other tables go on; "
            "run again")


def crash_point(table: str) -> None:
    """Tests only: ``CBM_TEST_CRASH_EXTRACT=<table>[:<SIGNAL>]`` makes the process reading ``<table>`` kill itself
    by that real signal (default SIGSEGV) in the middle of its read.  Unset (production): one look-up."""
    wanted = os.environ.get("CBM_TEST_CRASH_EXTRACT")
    if not wanted:
        return
    name, _, sig = wanted.partition(":")
    if name.strip().lower() == table.lower():
        sys.stdout.flush()
        sys.stderr.flush()
        os.kill(os.getpid(), getattr(signal, sig.strip().upper() or "SIGSEGV"))


def _die_with_parent(parent: int) -> None:
    """Linux: SIGKILL this child when its parent dies (a killed run must not leave an extract writing)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def _payload(fn: Callable[[], Any], table: str) -> bytes:
    try:
        return pickle.dumps(("ok", fn()))
    except BaseException as exc:  # noqa: BLE001 - every failure goes back to the parent
        tb = "".join(traceback.format_exception(exc))
        with contextlib.suppress(Exception):
            exc.add_note(f"(in the process reading {table}, pid {os.getpid()})\n{tb}")
        try:
            data = pickle.dumps(("error", exc))
            pickle.loads(data)  # some exceptions pickle but do not unpickle (required keyword arguments)
            return data
        except Exception:  # noqa: BLE001 - sent as text instead
            transient = bool(getattr(exc, "transient", False))
            return pickle.dumps(("text", f"{type(exc).__name__}: {exc}", transient, tb))


_WARMED: set[int] = set()


def warm_up() -> None:
    """What every extract initializes on first use, done once in this process before it forks: a forked child
    inherits it instead of paying for it again.  pyarrow's first conversion of Python values imported pandas
    (0.2-0.3 s per process; now held off, model/arrow.py), arrow-odbc's import costs ~0.1 s: 100 extracts in one
    process paid them 100 times."""
    if os.getpid() in _WARMED:
        return
    _WARMED.add(os.getpid())
    import pyarrow as pa  # deferred: only where an extract runs
    import pyarrow.compute as pc  # deferred: only where an extract runs

    hold_pandas_off()
    pc.utf8_length(pa.nulls(1, pa.string()))
    with contextlib.suppress(ImportError):  # no unixODBC: the extract itself says so, with the fix
        import arrow_odbc  # noqa: F401  # deferred: the ODBC driver manager loads only where ODBC is used


def run_isolated(fn: Callable[[], T], *, table: str, lock: Any = None) -> T:
    """``fn()`` run in a forked child; its result, or its exception re-raised here; a child dead by a signal (or
    without a result) raises :class:`DriverCrashError` naming ``table``.  ``lock`` (Luigi's ``fork_lock``: no fork in the
    middle of the keep-alive thread's ping) is held while forking, when it can be taken within 5 s."""
    warm_up()
    parent = os.getpid()
    read_fd, write_fd = os.pipe()
    # A process forked while its parent held the lock has a copy locked for ever: waited for 5 s at most (the
    # caller passes no lock in a Luigi task process, see tasks/table.py).
    got = lock.acquire(timeout=5.0) if lock is not None else False
    try:
        pid = os.fork()
    finally:
        if got and pid != 0:
            lock.release()
    if pid == 0:  # the child: never returns
        code = 0
        try:
            os.close(read_fd)
            _die_with_parent(parent)
            data = _payload(fn, table)
            with os.fdopen(write_fd, "wb") as out:
                out.write(data)
        except BaseException:  # noqa: BLE001 - the parent reports a child without a result
            code = 70
        finally:
            with contextlib.suppress(Exception):
                release_kept()  # a DuckDB file this child opened (os._exit runs no atexit)
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)
    os.close(write_fd)
    try:
        with os.fdopen(read_fd, "rb") as inp:
            data = inp.read()  # until the child writes its result and exits, or dies
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    _, status = os.waitpid(pid, 0)
    exitcode = os.waitstatus_to_exitcode(status)
    if not data:
        message = crash_message(table, exitcode)
        log.error("%s", message)
        raise DriverCrashError(message)
    kind, *rest = pickle.loads(data)  # our own child, through our own pipe
    if kind == "ok":
        return rest[0]
    if kind == "error":
        raise rest[0]
    text, transient, tb = rest
    err = (TransientSourceError if transient else SourceError)(f"{table}: {text}")
    err.add_note(tb)
    raise err
