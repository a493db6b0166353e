"""Logging of the ``cbm-etl`` command: the run id on every line, secrets redacted, one log file per run.

Reads the log directory from the settings (``CBM_LOG_DIR``, default ``data/logs``) and writes
``<log_dir>/cbm-etl_<YYYYmmdd-HHMMSS>_<command>_<run id 8>.log``; Luigi's forked worker processes inherit the
handler and append to the same file.  At each start, run logs older than ``log_retention_days`` (default 30) are
deleted, and the oldest beyond ``log_max_files`` (default 500); a single file that grows past
``log_max_bytes`` (default 100 MB) is rolled over to ``.1``, ``.2``... (``log_backup_count``, default 5) by the
process that opened it.  Options: environment ``CBM_<NAME>`` or luigi.cfg ``[cbm_ops]``.

Every line carries ``[run xxxxxxxx]``; :class:`RedactingFormatter` hides passwords in connection strings and
URLs (``PWD=***``, ``user:***@``), webhook signatures, and the values of environment variables whose names say
they are secrets (``*PASSWORD*``, ``*SECRET*``, ``*TOKEN*``, ``*WEBHOOK*``...), tracebacks included.

The ``cbm-etl`` entry point (``cli.py``) puts :class:`RunIdFilter` and :class:`RedactingFormatter` on its
console handler, and calls :func:`start_run_log` for the commands that load.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import re
import time
from datetime import datetime
from pathlib import Path

from cbm_luigi.config.options import cbm_option
from cbm_luigi.config.run import RUN_ID
from cbm_luigi.config.secrets import redact_text, secret_values
from cbm_luigi.config.settings import load_settings

log = logging.getLogger(__name__)

FORMAT = "%(asctime)s %(levelname)s [run %(run_id)s] %(name)s: %(message)s"
_HANDLER_TAG = "_cbm_handler"


class RunIdFilter(logging.Filter):
    """Adds ``record.run_id`` (the first 8 characters of the run's UUID)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "run_id"):
            record.run_id = RUN_ID[:8]
        return True


class RedactingFormatter(logging.Formatter):
    """Formats, then hides secrets in the whole line (message, arguments and traceback)."""

    def __init__(self, fmt: str = FORMAT) -> None:
        super().__init__(fmt)

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "run_id"):
            RunIdFilter().filter(record)
        # the secret values are read at each line: .env may be loaded after the formatter was made
        return redact_text(super().format(record), secret_values())


def _tag(handler: logging.Handler, kind: str) -> logging.Handler:
    setattr(handler, _HANDLER_TAG, kind)
    handler.addFilter(RunIdFilter())
    handler.setFormatter(RedactingFormatter())
    return handler


def _remove(kind: str) -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, _HANDLER_TAG, None) == kind:
            root.removeHandler(h)
            h.close()


def _option(key: str, default: int) -> int:
    return int(cbm_option(key, default))


def prune_logs(log_dir: Path, retention_days: int, max_files: int, keep: Path | None = None) -> list[Path]:
    """Delete run logs (and their rolled-over parts) older than ``retention_days`` or beyond ``max_files``."""
    files = sorted((p for p in log_dir.glob("cbm-etl_*.log*") if p.is_file()),
                   key=lambda p: p.stat().st_mtime, reverse=True)
    cutoff = time.time() - retention_days * 86400
    removed = []
    runs_seen: list[str] = []
    for p in files:
        run = p.name.split(".log")[0]
        if run not in runs_seen:
            runs_seen.append(run)
        too_many = len(runs_seen) > max_files
        if (keep is not None and p == keep) or not (p.stat().st_mtime < cutoff or too_many):
            continue
        try:
            p.unlink()
            removed.append(p)
        except OSError:
            pass
    return removed


def start_run_log(command: str = "run", log_dir: Path | None = None) -> Path | None:
    """Add the per-run log file; returns its path (None when the directory cannot be written: logged)."""

    if log_dir is None:
        try:
            log_dir = load_settings().log_dir
        except Exception as exc:  # noqa: BLE001 - the command reports bad settings itself
            log.warning("no run log file: %s", exc)
            return None
    _remove("file")
    safe_cmd = re.sub(r"[^A-Za-z0-9_-]+", "-", command)
    path = Path(log_dir) / f"cbm-etl_{datetime.now():%Y%m%d-%H%M%S}_{safe_cmd}_{RUN_ID[:8]}.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=_option("log_max_bytes", 100 * 1024 * 1024), backupCount=_option("log_backup_count", 5),
            encoding="utf-8", delay=False,
        )
    except OSError as exc:
        log.warning("no run log file in %s: %s (set CBM_LOG_DIR)", log_dir, exc)
        return None
    # Only the process that opened the file rolls it over (a forked Luigi worker just appends).
    opener = os.getpid()
    rollover = handler.shouldRollover
    handler.shouldRollover = lambda record: os.getpid() == opener and rollover(record)  # type: ignore[method-assign]
    logging.getLogger().addHandler(_tag(handler, "file"))
    removed = prune_logs(path.parent, _option("log_retention_days", 30), _option("log_max_files", 500), keep=path)
    if removed:
        log.info("deleted %d old run log file(s) from %s", len(removed), path.parent)
    log.info("run log: %s", path)
    return path


def stop_run_log() -> None:
    _remove("file")


LUIGI_FORMAT = "%(levelname)s: %(message)s"  # what the luigi command prints by default


def redact_luigi_console() -> None:
    """The ``luigi`` command configures its own console (``luigi.setup_logging.InterfaceLogging``, after it has
    imported ``--module cbm_luigi.tasks``): by default a plain ``StreamHandler`` on ``luigi-interface``, so a
    failing task's traceback, or a webhook's reply quoting its URL, would be printed as it is.  Called when
    ``cbm_luigi.tasks`` is imported: Luigi's default console gets :class:`RedactingFormatter` (same format, same
    level), and the package's own warnings go to that console too (redacted; Python's last-resort handler would
    print them bare) unless logging is already configured.  An operator's ``[core] logging_conf_file`` or
    ``[logging]`` section is left as it is; ``cbm-etl`` configures its console itself (``cli.setup_logging``)."""
    import luigi.setup_logging  # deferred: only the entry points' logging needs Luigi's

    cls = luigi.setup_logging.InterfaceLogging
    if getattr(cls, "_cbm_redacting", False):
        return
    luigi_default = cls._default.__func__  # type: ignore[attr-defined]

    def _default(klass: type, opts: object) -> bool:
        configured = bool(luigi_default(klass, opts))
        interface = logging.getLogger("luigi-interface")
        for h in interface.handlers:
            if type(h) is logging.StreamHandler and not isinstance(h.formatter, RedactingFormatter):
                h.setFormatter(RedactingFormatter(LUIGI_FORMAT))
                ours = logging.getLogger("cbm_luigi")
                if not logging.getLogger().handlers and not any(x is h for x in ours.handlers):
                    ours.addHandler(h)  # WARNING and above, as Python's last resort would show them, redacted
        return configured

    cls._default = classmethod(_default)  # type: ignore[method-assign,assignment]
    cls._cbm_redacting = True  # type: ignore[attr-defined]
