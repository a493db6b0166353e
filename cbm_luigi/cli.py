"""The ``cbm-etl`` command: operations commands; loads delegate to Luigi (``luigi.build``).

Each sub-command lives in ``cbm_luigi/commands/<name>.py`` with ``add_parser(subparsers)``; the handler returns
the exit code.  Configure logging here only (entry point), with the run id on every line.
"""

from __future__ import annotations

import argparse
import configparser
import importlib
import logging
import re
import sys
import traceback
from collections.abc import Sequence
from typing import Any

from cbm_luigi import __version__
from cbm_luigi.errors import CbmError, config_file_error


def command_modules() -> list[str]:
    """Every module of cbm_luigi.commands is a sub-command group (add a file to add commands)."""
    import pkgutil  # deferred: start-up of cbm-etl

    import cbm_luigi.commands  # deferred: start-up of cbm-etl

    return sorted(m.name for m in pkgutil.iter_modules(cbm_luigi.commands.__path__) if not m.name.startswith("_"))


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg,unused-ignore]
    """Writes to whatever sys.stderr is at emit time (survives stream swaps by test runners)."""

    def __init__(self) -> None:
        super().__init__()

    @property  # type: ignore[override,unused-ignore]
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


def setup_logging(verbose: bool = False) -> None:
    from cbm_luigi.config.logs import (  # deferred: start-up of cbm-etl
        RedactingFormatter,
        RunIdFilter,
    )

    root = logging.getLogger()
    handler = next((h for h in root.handlers if isinstance(h, _StderrHandler)), None)
    if handler is None:
        handler = _StderrHandler()
        handler.addFilter(RunIdFilter())
        root.addHandler(handler)
    # the run id on every line; passwords, tokens and webhook signatures never written (cbm_luigi/logs.py)
    handler.setFormatter(_BriefFormatter(RedactingFormatter(), verbose))
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("luigi-interface").setLevel(logging.DEBUG if verbose else logging.INFO)
    # luigi.build would add its own handler to "luigi-interface" (every line printed twice): logging is
    # configured here, so tell Luigi it already is.
    import luigi.setup_logging  # deferred: start-up of cbm-etl

    luigi.setup_logging.InterfaceLogging._configured = True


_RST = re.compile(r"``(.+?)``|:[a-z]+(?::[a-z]+)?:`~?(.+?)`")


def plain(text: str) -> str:
    """Help text without the reStructuredText of docstrings: ``x`` and :func:`x` read x on a terminal."""
    return _RST.sub(lambda m: m.group(1) or m.group(2), text)


class _PlainHelp(argparse.HelpFormatter):
    """Mixed into every parser's formatter: descriptions, epilogs and option help shown without RST markup."""

    def _format_text(self, text: str) -> str:
        return super()._format_text(plain(text))

    def _expand_help(self, action: argparse.Action) -> str:
        return plain(super()._expand_help(action))


class _Parser(argparse.ArgumentParser):
    """The parser of cbm-etl and of each sub-command (add_subparsers uses the parent's class)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        fmt = kwargs.get("formatter_class", _PlainHelp)
        if not issubclass(fmt, _PlainHelp):
            fmt = type(f"Plain{fmt.__name__}", (_PlainHelp, fmt), {})
        kwargs["formatter_class"] = fmt
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    """Every sub-command module's ``add_parser``: the modules import only the standard library and the light
    layers at import time (``errors``, ``model``), their handlers import the rest, so that ``cbm-etl --help``
    does not load Luigi, SQLAlchemy, Arrow or the drivers (tests/commands/test_help.py checks it)."""
    parser = _Parser(prog="cbm-etl", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"cbm-luigi {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging (SQL statements)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in command_modules():
        importlib.import_module(f"cbm_luigi.commands.{name}").add_parser(sub)
    return parser


def known_error(exc: BaseException) -> CbmError | None:
    """The CbmError an exception stands for: itself, a luigi.cfg that cannot be read (luigi parses it on
    ``import luigi``), or one that Luigi re-raised ``from`` ours (a task parameter's ValueError); None for
    anything else (a bug: its traceback is shown)."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, CbmError):
            return e
        if isinstance(e, configparser.Error):
            return config_file_error(e)
        e = e.__cause__
    return None


class _BriefFormatter(logging.Formatter):
    """The console's formatter: a known error (:func:`known_error`) logged with its traceback, e.g. by Luigi's
    worker when a task fails, shows as one line ``...: ConfigError: <message>``; the traceback only with ``-v``
    (the run log file keeps it always)."""

    def __init__(self, inner: logging.Formatter, verbose: bool) -> None:
        super().__init__()
        self.inner, self.verbose = inner, verbose

    def format(self, record: logging.LogRecord) -> str:
        exc = record.exc_info[1] if record.exc_info else None
        err = known_error(exc) if exc is not None and not self.verbose else None
        if err is not None:
            brief = logging.makeLogRecord(record.__dict__)
            text = (str(err).strip().splitlines() or [""])[0]
            message = record.getMessage()
            brief.msg = message if text in message else f"{message}: {type(err).__name__}: {text}"
            brief.args, brief.exc_info, brief.exc_text = None, None, None
            record = brief
        return self.inner.format(record)


def main(argv: Sequence[str] | None = None) -> int:
    """The error boundary of ``cbm-etl``: a known error (configuration, connection, metadata, source, target) is
    one line ``cbm-etl: error: ...`` naming the object and the fix, exit 2 (or the error's own code, README);
    its traceback only with ``-v``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # luigi.cfg is read while the commands are imported, before the options are parsed: look for -v by hand
    verbose = "-v" in argv or "--verbose" in argv
    log_file = False
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        verbose = bool(args.verbose)
        setup_logging(verbose)
        # Commands that load (set_defaults(log_file=True)) also log to their own file under CBM_LOG_DIR.
        log_file = bool(getattr(args, "log_file", False))
        if log_file:
            from cbm_luigi.config.logs import start_run_log  # deferred: start-up of cbm-etl

            start_run_log(args.command)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("cbm-etl: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        err = known_error(exc)
        if err is None:
            raise
        if log_file:  # the run log keeps the traceback; the console shows it with -v only (_BriefFormatter)
            logging.getLogger("cbm_luigi.cli").error("%s", err, exc_info=exc)
        elif verbose:
            traceback.print_exception(exc, file=sys.stderr)
        print(f"cbm-etl: error: {err}", file=sys.stderr)
        return int(err.exit_code)
    finally:
        if log_file:
            from cbm_luigi.config.logs import stop_run_log  # deferred: start-up of cbm-etl

            stop_run_log()


if __name__ == "__main__":
    sys.exit(main())
