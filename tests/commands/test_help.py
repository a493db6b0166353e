"""The front door: ``cbm-etl --help`` and every sub-command's help load no heavy module and show no RST markup.

The command modules import only the standard library and the light layers at import time (``errors``, ``model``);
their handlers import the rest (``# deferred: start-up of cbm-etl``).  Checked in a fresh interpreter per module,
so that the test names the module that pulls a heavy import in.  The start-up figures themselves are measured by
bench/startup.py (docs/PERFORMANCE.md), not asserted here.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys

import pytest

from cbm_luigi.cli import build_parser, command_modules, main, plain

#: third-party packages a command module must not import at import time
HEAVY = ("luigi", "sqlalchemy", "pyarrow", "duckdb", "duckdb_engine", "pandas", "numpy", "pyodbc", "arrow_odbc",
         "psycopg", "mssql_python", "pymsteams", "requests", "yaml", "dotenv")
#: the package's layers above model (config reads luigi.cfg through luigi)
HEAVY_LAYERS = ("config", "destinations", "store", "pipeline", "alerts", "ops", "tasks", "demo")
RST = re.compile(r"``|:[a-z]+:`")

PROBE = """
import argparse, importlib, json, sys
name = sys.argv[1]
if name == "cli":
    from cbm_luigi.cli import build_parser
    build_parser()
else:
    importlib.import_module("cbm_luigi.commands." + name).add_parser(argparse.ArgumentParser().add_subparsers())
print(json.dumps(sorted(sys.modules)))
"""


def heavy_modules(loaded: list[str]) -> list[str]:
    return sorted(m for m in loaded if m.split(".")[0] in HEAVY or (
        m.startswith("cbm_luigi.") and m.split(".")[1] in HEAVY_LAYERS))


@pytest.mark.parametrize("name", ["cli", *command_modules()])
def test_building_the_parser_loads_no_heavy_module(name: str) -> None:
    r = subprocess.run([sys.executable, "-c", PROBE, name], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    heavy = heavy_modules(json.loads(r.stdout))
    where = "cbm_luigi/cli.py" if name == "cli" else f"cbm_luigi/commands/{name}.py"
    assert not heavy, (f"{where} loads at import time (move these imports into the handlers, each with "
                       f"'# deferred: start-up of cbm-etl'): {', '.join(heavy)}")


def sub_parsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_help_texts_show_no_rst_markup() -> None:
    parser = build_parser()
    texts = {"cbm-etl --help": parser.format_help()}
    texts.update({f"cbm-etl {name} --help": p.format_help() for name, p in sub_parsers(parser).items()})
    marked = {cmd: [ln for ln in text.splitlines() if RST.search(ln)] for cmd, text in texts.items()}
    assert not {k: v for k, v in marked.items() if v}, marked
    assert "The cbm-etl command" in texts["cbm-etl --help"]  # the module docstring's first line, plain


def test_plain_removes_literals_and_roles() -> None:
    assert plain("The ``cbm-etl`` command, :func:`cbm_luigi.cli.main` and :py:class:`~x.Y`") == \
        "The cbm-etl command, cbm_luigi.cli.main and x.Y"


def test_version_and_help_exit_zero(capsys) -> None:
    for argv in (["--version"], ["--help"], ["plan", "--help"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "cbm-luigi " in out and "usage: cbm-etl plan" in out
