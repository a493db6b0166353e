"""README.md's shell commands, run: every command of its ```bash blocks runs here, in README order, against the
demo's data (``cbm-etl demo`` first, in a temporary working directory; then each command with the ``export`` line
the demo prints, as a newcomer would after the Quick start), and must exit 0 (or its code in EXIT_CODES).

The commands that cannot run here are listed in NOT_RUNNABLE, each with the reason, and show as skipped.  A
command added to the README is picked up automatically; an entry of NOT_RUNNABLE that the README no longer has
fails (the list stays true).  The working directory holds a copy of the checkout's files that the commands read
(CHECKOUT_FILES: luigi.cfg for ``luigi`` and ``cbm-etl``, .env.example, docs/ for the example rules); a central
scheduler runs (scripts/start_luigid.sh, on a free port named by ``[core] default_scheduler_port`` in an extra
config file, LUIGI_CONFIG_PATH) for the ``luigi`` commands without ``--local-scheduler``, and a local HTTP server
stands for the Teams webhook (``cbm-etl test-alert``, ``cbm-etl health``).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from alert_servers import Recorder

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"

#: README commands (as written, without their trailing comment) that do not run in the suite, and why.
NOT_RUNNABLE: dict[str, str] = {
    "pip install -e . && cbm-etl demo":
        "installs the package: the suite runs installed (it is run by .ci/run, after pip install -e '.[test]'); "
        "the demo itself is run first by this test, in the directory the other commands run in",
    "bash .ci/run": "runs lint, types and this suite: the suite is run by .ci/run",
    'duckdb data/demo/cbm_demo.duckdb "SELECT * FROM ods.client"':
        "needs the duckdb command-line tool, which pip does not install; the python -c line before it runs the "
        "same query on the same file",
    "export CBM_SOURCE='DRIVER={PostgreSQL Unicode};SERVER=127.0.0.1;DATABASE=erp;UID=postgres'":
        "points cbm-etl at a real source (an ERP database erp over ODBC), none here: the commands of that block "
        "run on the demo's source",
    "export CBM_SOURCE_FLAVOR=postgresql": "goes with that real source (the demo's source is SQLite)",
    "export CBM_TARGET='postgresql+psycopg://postgres@127.0.0.1/ods'":
        "points cbm-etl at a real target (a PostgreSQL database ods): the commands of that block run on the "
        "demo's DuckDB ODS",
    "CBM_TARGET='mssql+mssqlpython://etl_user:${CBM_TARGET_PASSWORD}@sqlhost:1433/CBM_ETL?Encrypt=yes'":
        "needs a real SQL Server (none runs on the machines that build this project, README 'SQL Server'): the "
        "commands of that block run on the demo's DuckDB ODS",
    "CBM_TARGET='mssql+pyodbc://etl_user:${CBM_TARGET_PASSWORD}@sqlhost:1433/CBM_ETL?driver=ODBC+Driver+18+for+SQL+Server'":
        "needs a real SQL Server and its ODBC driver: the commands of that block run on the demo's DuckDB ODS",
}

#: README commands whose documented exit code is not 0 on the demo's data
EXIT_CODES: dict[str, int] = {}

SHELL_FENCES = ("```bash", "```sh", "```shell")
#: what the commands may read from the checkout, copied into their working directory
CHECKOUT_FILES = ("luigi.cfg", ".env.example", "docs")


@dataclass(frozen=True)
class Command:
    section: str  # the README heading it is under
    line: int  # its first line in README.md
    text: str  # the command as written, continuation lines joined, its trailing comment removed

    def __str__(self) -> str:
        return f"README.md:{self.line} ({self.section}): {self.text}"


def strip_comment(line: str) -> str:
    """The line without its shell comment: a ``#`` at the start of a word, outside quotes."""
    quote: str | None = None
    escaped = False
    for i, ch in enumerate(line):
        if escaped:
            escaped = False
        elif ch == "\\" and quote != "'":
            escaped = True
        elif quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def shell_commands(markdown: str) -> list[Command]:
    """Every command of the markdown's shell code blocks, in order."""
    commands: list[Command] = []
    section, fence, pending, start = "", False, "", 0
    for n, raw in enumerate(markdown.splitlines(), 1):
        stripped = raw.strip()
        if not fence:
            if stripped.startswith("#"):
                section = stripped.lstrip("#").strip()
            elif stripped in SHELL_FENCES:
                fence = True
            continue
        if stripped.startswith("```"):
            fence, pending = False, ""
            continue
        code = strip_comment(raw)
        if not pending:
            start = n
        if code.endswith("\\"):
            pending += code[:-1].strip() + " "
            continue
        text = re.sub(r"\s+", " ", (pending + code).strip()) if pending else code.strip()
        pending = ""
        if text:
            commands.append(Command(section, start, text))
    return commands


COMMANDS = shell_commands(README.read_text(encoding="utf-8"))


@dataclass
class Demo:
    work: Path  # the working directory of every command
    env: dict[str, str]
    output: str  # what cbm-etl demo printed
    export: str  # the export line it printed


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    work = tmp_path_factory.mktemp("readme")
    for name in CHECKOUT_FILES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, work / name)
        else:
            shutil.copy(REPO / name, work / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CBM_") or k.startswith("CBM_TEST_")}
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
               CBM_LOG_DIR=str(work / "logs"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    luigid = [str(REPO / "scripts" / "start_luigid.sh")]
    luigid_env = {**env, "CBM_PYTHON": sys.executable, "LUIGI_CONFIG_PATH": str(work / "luigi.cfg"),
                  "CBM_LUIGID_PORT": str(port), "CBM_LUIGID_DIR": str(work / "luigid"),
                  "CBM_LUIGID_LOG_DIR": str(work / "logs" / "luigid")}
    (work / "scheduler.cfg").write_text(f"[core]\ndefault_scheduler_host=127.0.0.1\ndefault_scheduler_port={port}\n")
    webhook = Recorder().start()
    env.update(CBM_TEAMS_WEBHOOK=webhook.workflow_url(), LUIGI_CONFIG_PATH=str(work / "scheduler.cfg"))
    try:
        r = subprocess.run([*luigid, "start"], env=luigid_env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, f"scripts/start_luigid.sh start: {r.stdout}{r.stderr}"
        r = subprocess.run(["cbm-etl", "demo"], cwd=work, env=env, capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, f"cbm-etl demo: exit {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        export = next((ln.strip() for ln in r.stdout.splitlines() if ln.strip().startswith("export CBM_")), "")
        assert export, f"cbm-etl demo printed no export line:\n{r.stdout[-3000:]}"
        yield Demo(work, env, r.stdout, export)
    finally:
        webhook.stop()
        # stops the luigid of its own pid file (kill -9 if it does not stop)
        subprocess.run([*luigid, "stop"], env=luigid_env, capture_output=True, timeout=60)


def test_shell_commands_are_parsed_as_a_shell_reads_them() -> None:
    text = ("# A\n```bash\ncbm-etl tables   # what is registered\n# a comment\n\nexport X='a # b' \\\n"
            "   Y=2\necho a#b\n```\n## B\n```\nnot shell\n```\n```sql\nSELECT 1;\n```\n")
    assert [(c.section, c.line, c.text) for c in shell_commands(text)] == [
        ("A", 3, "cbm-etl tables"), ("A", 6, "export X='a # b' Y=2"), ("A", 8, "echo a#b")]


def test_the_readme_has_every_command_listed_as_not_runnable() -> None:
    texts = {c.text for c in COMMANDS}
    stale = [t for t in [*NOT_RUNNABLE, *EXIT_CODES] if t not in texts]
    assert not stale, f"listed in tests/test_readme.py but no longer in README.md (update the list): {stale}"


def test_the_readme_shows_the_lines_the_demo_prints(demo: Demo) -> None:
    """Quick start's query and export lines are the ones ``cbm-etl demo`` prints (run from the checkout)."""
    printed = [strip_comment(ln.strip()) for ln in demo.output.splitlines()
               if ln.strip().startswith(("python -c ", "duckdb ", "export CBM_", "cbm-etl "))]
    assert printed and demo.export in printed
    texts = {c.text for c in COMMANDS}
    missing = [ln for ln in printed if ln not in texts]
    assert not missing, f"cbm-etl demo prints lines the README's Quick start does not show: {missing}"


@pytest.mark.parametrize("command", [
    pytest.param(c, id=f"L{c.line} {c.text[:70]}",
                 marks=[pytest.mark.skip(reason=f"not runnable here: {NOT_RUNNABLE[c.text]}")]
                 if c.text in NOT_RUNNABLE else [])
    for c in COMMANDS])
def test_readme_command(command: Command, demo: Demo) -> None:
    r = subprocess.run(["bash", "-c", f"{demo.export}\n{command.text}"], cwd=demo.work, env=demo.env,
                       capture_output=True, text=True, timeout=900)
    expected = EXIT_CODES.get(command.text, 0)
    assert r.returncode == expected, (f"{command}\nexit code {r.returncode}, expected {expected}\n"
                                      f"--- stdout\n{r.stdout[-3000:]}\n--- stderr\n{r.stderr[-3000:]}")
