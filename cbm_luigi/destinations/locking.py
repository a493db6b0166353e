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


@contextlib.contextmanager
def target_lock(target: Target) -> Iterator[None]:
    """Hold the target's single-writer lock for the duration of a transaction (no-op for other targets)."""
    path = lock_path(target)
    if path is None:
        yield
        return
    lk = lock_for(path)
    lk.acquire(lock_timeout(), what=f"target {path.name[:-len('.cbm-lock')]}")
    try:
        yield
    finally:
        lk.release()
