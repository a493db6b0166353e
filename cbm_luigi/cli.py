"""The ``cbm-etl`` command: operations commands; loads delegate to Luigi (``luigi.build``).

Each sub-command lives in ``cbm_luigi/commands/<name>.py`` with ``add_parser(subparsers)``; the handler returns
the exit code.  Configure logging here only (entry point), with the run id on every line.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from cbm_luigi import __version__
from cbm_luigi.errors import CbmError


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
    handler.setFormatter(RedactingFormatter())
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("luigi-interface").setLevel(logging.DEBUG if verbose else logging.INFO)
    # luigi.build would add its own handler to "luigi-interface" (every line printed twice): logging is
    # configured here, so tell Luigi it already is.
    import luigi.setup_logging  # deferred: start-up of cbm-etl

    luigi.setup_logging.InterfaceLogging._configured = True


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cbm-etl", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"cbm-luigi {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging (SQL statements)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in command_modules():
        importlib.import_module(f"cbm_luigi.commands.{name}").add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    # Commands that load (set_defaults(log_file=True)) also log to their own file under CBM_LOG_DIR.
    log_file = bool(getattr(args, "log_file", False))
    if log_file:
        from cbm_luigi.config.logs import start_run_log  # deferred: start-up of cbm-etl

        start_run_log(args.command)
    try:
        return int(args.func(args) or 0)
    except CbmError as exc:
        if log_file:
            logging.getLogger("cbm_luigi.cli").error("%s", exc)
        print(f"cbm-etl: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cbm-etl: interrupted", file=sys.stderr)
        return 130
    finally:
        if log_file:
            from cbm_luigi.config.logs import stop_run_log  # deferred: start-up of cbm-etl

            stop_run_log()


if __name__ == "__main__":
    sys.exit(main())
