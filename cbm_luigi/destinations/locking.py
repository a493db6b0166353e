"""One process at a time on a single-writer target (a DuckDB file), across the worker processes of a run.

DuckDB lets one process open a database file; a second one fails at once with "Could not set lock".  Luigi's
``--workers N`` forks N processes, and besides the tasks holding the ``target_writer`` resource (staging and
merge), others touch the file briefly: an extract reads its watermark and writes run-log rows, every worker
checks its tasks' completeness, ``cbm-etl status`` reads the views.  :func:`target_lock` makes every
transaction on such a target wait for an exclusive lock on a sibling file ``<database>.cbm-lock`` (``flock`` on
POSIX, ``msvcrt.locking`` on Windows) instead of failing.  The lock is re-entrant within a process, released
when the transaction ends, and forgotten by a forked child.

Waiting is bounded by ``target_lock_timeout`` seconds (environment ``CBM_TARGET_LOCK_TIMEOUT`` or luigi.cfg
``[cbm_ops]``, default 3600: a large merge holds it for minutes); on time-out a transient TargetError names the
file and the process holding it.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

import sqlalchemy as sa

from cbm_luigi.config.options import cbm_option
from cbm_luigi.errors import TransientTargetError

if TYPE_CHECKING:
    from cbm_luigi.destinations.client import Target

log = logging.getLogger(__name__)

_override_timeout: float | None = None


def set_lock_timeout(seconds: float | None) -> None:
    """Override the wait for this process (``cbm-etl status`` waits less than a task); None restores it."""
    global _override_timeout
    _override_timeout = seconds


def lock_timeout() -> float:
    if _override_timeout is not None:
        return _override_timeout

    return float(cbm_option("target_lock_timeout", 3600.0))


class InterProcessLock:
    """An exclusive lock on a file, re-entrant within the process (threads wait for each other)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._file: IO[str] | None = None

    def _try_os_lock(self, f: IO[str]) -> bool:
        if os.name == "nt":
            import msvcrt  # deferred: Windows only

            try:
                f.seek(0)
                msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
                return True
            except OSError:
                return False
        import fcntl  # deferred: POSIX only

        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def _holder(self) -> str:
        try:
            text = self.path.read_text(encoding="utf-8").strip()
        except OSError:
            return "unknown"
        return f"pid {text}" if text else "unknown"

    def acquire(self, timeout: float, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        if not self._thread_lock.acquire(timeout=max(timeout, 0.0)):
            raise TransientTargetError(f"timed out after {timeout:.0f}s waiting for {self.path} ({what})")
        try:
            if self._depth == 0:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                f = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held until release()
                delay, waited_logged = 0.01, False
                while not self._try_os_lock(f):
                    if time.monotonic() >= deadline:
                        holder = self._holder()
                        f.close()
                        raise TransientTargetError(
                            f"timed out after {timeout:.0f}s waiting for the single-writer lock {self.path} "
                            f"(held by {holder}); another cbm-etl process is writing to this DuckDB file. "
                            "Wait for it to finish, or raise CBM_TARGET_LOCK_TIMEOUT"
                        )
                    if not waited_logged and delay >= 0.05:
                        log.debug("waiting for %s (held by %s) %s", self.path, self._holder(), what)
                        waited_logged = True
                    time.sleep(delay)
                    delay = min(delay * 2, 0.05)
                if os.name != "nt":
                    f.seek(0)
                    f.truncate()
                    f.write(str(os.getpid()))
                    f.flush()
                self._file = f
            self._depth += 1
        except BaseException:
            self._thread_lock.release()
            raise

    def release(self) -> None:
        self._depth -= 1
        if self._depth == 0 and self._file is not None:
            f, self._file = self._file, None
            try:
                if os.name == "nt":
                    import msvcrt  # deferred: Windows only

                    f.seek(0)
                    msvcrt.locking(f.fileno(), msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined]
                else:
                    f.seek(0)
                    f.truncate()
                    f.flush()
                    import fcntl  # deferred: POSIX only

                    fcntl.flock(f.fileno(), fcntl.LOCK_UN)
            finally:
                f.close()
        self._thread_lock.release()

    def hold(self, timeout: float, what: str = "") -> None:
        """Take the lock for the process, not for the calling thread (a kept connection, :class:`KeptConnection`):
        any thread may :meth:`unhold` it; other threads of the process pass :meth:`acquire` meanwhile."""
        self.acquire(timeout, what)
        self._thread_lock.release()

    def unhold(self) -> None:
        self._thread_lock.acquire()  # release() ends by releasing it
        self.release()

    def forget(self) -> None:
        """In a forked child: the parent's lock state is not ours."""
        self._thread_lock = threading.RLock()
        self._depth = 0
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()  # the parent's lock stays held through its own descriptor
            self._file = None


_LOCKS: dict[str, InterProcessLock] = {}
_LOCKS_GUARD = threading.Lock()


def lock_for(path: Path) -> InterProcessLock:
    key = str(Path(path).resolve())
    with _LOCKS_GUARD:
        if key not in _LOCKS:
            _LOCKS[key] = InterProcessLock(Path(key))
        return _LOCKS[key]


def _forget_all() -> None:
    global _LOCKS_GUARD
    _LOCKS_GUARD = threading.Lock()
    for lk in _LOCKS.values():
        lk.forget()


os.register_at_fork(after_in_child=_forget_all)


def lock_path(target: Target) -> Path | None:
    """The lock file of a single-writer target stored in a file, else None."""
    if not target.dialect.single_writer:
        return None

    db = sa.engine.make_url(target.url).database
    if not db or db == ":memory:":
        return None
    return Path(db).with_name(Path(db).name + ".cbm-lock")


def waiting_for(path: Path) -> str:
    """What a wait on the lock file ``path`` is for, as its time-out message says it."""
    return f"target {path.name.removesuffix('.cbm-lock')}"


@contextlib.contextmanager
def target_lock(target: Target) -> Iterator[None]:
    """Hold the target's single-writer lock for the duration of a transaction (no-op for other targets)."""
    path = lock_path(target)
    if path is None:
        yield
        return
    lk = lock_for(path)
    lk.acquire(lock_timeout(), what=waiting_for(path))
    try:
        yield
    finally:
        lk.release()


# --- A DuckDB file kept open between the transactions of a burst of work ---------------------------------------
#
# Opening a DuckDB file costs 20-60 ms (more as its catalog grows: 200 tables, ~35 ms to open and ~15 ms to close
# here) and a table's night makes about twelve transactions: in a night of 100 no-change tables, three quarters of
# the process's time went to opening and closing the file (docs/PERFORMANCE.md, "Kept open between transactions").
# A process now keeps its connection, and the lock, while it works: the file is closed once nothing used it for
# ``keep_target_open`` seconds (0.5: an extract reading the source for minutes does not keep it), after a failed
# transaction, before the process forks (Luigi's --workers N, an extract's child), and at exit.  Other processes
# wait for the lock as before, at most that much longer.

_override_keep: float | None = None


def set_keep_open(seconds: float | None) -> None:
    """Override ``keep_target_open`` for this process (0: one opening per transaction, as before); None restores
    it.  A process that opens the file by other means meanwhile (a test's ``duckdb.connect(read_only=True)``,
    which DuckDB refuses next to a read-write connection of the same process) sets 0."""
    global _override_keep
    _override_keep = seconds
    if seconds is not None and seconds <= 0:
        release_kept()


def keep_open_seconds() -> float:
    if _override_keep is not None:
        return _override_keep
    if not hasattr(os, "fork"):  # Windows: --workers N spawns processes, which no fork hook releases the file for
        return 0.0
    return float(cbm_option("keep_target_open", 0.5))


class KeptConnection:
    """One connection of a single-writer file target, kept (with the target's lock) between transactions.

    Transactions run one at a time on it (threads wait for each other, as with the lock); a transaction opened
    inside another one, in the same thread, gets a connection of its own, as without keeping.  A failed
    transaction closes it (its state is not known); a daemon thread closes it once idle for ``idle`` seconds."""

    def __init__(self, engine: sa.Engine, lock: InterProcessLock, idle: float, what: str) -> None:
        self.engine, self.lock, self.idle, self.what = engine, lock, idle, what
        self.guard = threading.RLock()
        self.conn: sa.Connection | None = None
        self.busy = False
        self.last_used = 0.0
        self._wake = threading.Condition(self.guard)
        self._reaper: threading.Thread | None = None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sa.Connection]:
        with self.guard:
            if self.busy:  # nested in this thread's transaction
                with self.engine.begin() as c:
                    yield c
                return
            if self.conn is None:
                self.lock.hold(lock_timeout(), what=self.what)
                try:
                    self.conn = self.engine.connect()
                except BaseException:
                    self.lock.unhold()
                    raise
                self._start_reaper()
            self.busy, ok = True, False
            try:
                with self.conn.begin():
                    yield self.conn
                ok = True
            finally:
                self.busy = False
                self.last_used = time.monotonic()
                if not ok:
                    self.close()
                self._wake.notify_all()

    def close(self) -> None:
        """Close the connection and release the lock, unless a transaction is using it."""
        with self.guard:
            conn, self.conn = self.conn, None
            if conn is None:
                return
            if self.busy:
                self.conn = conn
                return
            try:
                conn.close()
            finally:
                self.lock.unhold()

    def _start_reaper(self) -> None:
        if self._reaper is None or not self._reaper.is_alive():
            self._reaper = threading.Thread(target=self._reap, name=f"cbm-keep-{self.lock.path.name}", daemon=True)
            self._reaper.start()

    def _reap(self) -> None:
        with self.guard:
            while self.conn is not None:
                left = self.last_used + self.idle - time.monotonic()
                if not self.busy and left <= 0:
                    self.close()
                    return
                self._wake.wait(timeout=max(left, 0.01) if not self.busy else None)

    def forget(self) -> None:
        """In a forked child: the parent's connection and lock are not ours.  A connection still open (the fork
        happened during a transaction) is parked, never closed here: closing a copy could write to the file."""
        if self.conn is not None:
            _PARKED.append(self.conn)
        self.guard = threading.RLock()
        self._wake = threading.Condition(self.guard)
        self.conn, self.busy, self._reaper = None, False, None


_KEPT: list[KeptConnection] = []
_PARKED: list[sa.Connection] = []


def kept_connection(engine: sa.Engine, path: Path) -> KeptConnection | None:
    """A kept connection to the file of ``engine`` (one per engine), or None where keeping is off."""
    idle = keep_open_seconds()
    if idle <= 0:
        return None
    kept = KeptConnection(engine, lock_for(path), idle, what=waiting_for(path))
    with _LOCKS_GUARD:
        _KEPT.append(kept)
    return kept


def release_kept() -> None:
    """Close every kept connection of this process that no transaction is using (before a fork, at the end of a
    forked child or of a Luigi task process, at exit)."""
    for kept in list(_KEPT):
        if kept.guard.acquire(timeout=5.0):  # a transaction of another thread ends first
            try:
                kept.close()
            finally:
                kept.guard.release()


def _forget_kept() -> None:
    for kept in _KEPT:
        kept.forget()


os.register_at_fork(before=release_kept, after_in_child=_forget_kept)
atexit.register(release_kept)
