"""The error boundary of ``cbm-etl`` (issue "Front doors"), through the real executable.

Every failure of configuration, connection, metadata, source or target is one or a few lines on stderr that name
the object (the setting, the file and line, the table, the target) and say how to fix it, with the README's exit
codes: 2 for configuration / connection / metadata, 1 when a table failed.  No traceback, except with ``-v``.

Each case runs ``cbm-etl`` in a subprocess, in an empty working directory (no ``luigi.cfg``, no ``.env``), with
its own luigi.cfg through ``LUIGI_CONFIG_PATH`` and its ``CBM_*`` variables.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import cbm_etl_command

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_RULES = REPO / "docs" / "examples" / "data_quality" / "produit.yaml"


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return [ln for ln in self.err.splitlines() if ln.strip()]

    @property
    def error(self) -> str:
        """The boundary's line: ``cbm-etl: error: ...``."""
        found = [ln for ln in self.lines if ln.startswith("cbm-etl: error: ")]
        assert found, f"no 'cbm-etl: error:' line in stderr:\n{self.err}"
        return found[-1]


class Cli:
    """Runs ``cbm-etl`` in ``tmp_path`` with a luigi.cfg of the test's own and only the given CBM_* variables."""

    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path / "work"
        self.dir.mkdir()
        self.cfg = tmp_path / "luigi.cfg"
        self.target = f"duckdb:///{tmp_path / 'ods.duckdb'}"
        self.write_cfg(f"[cbm]\ntarget={self.target}\n")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("CBM_", "LUIGI_CONFIG"))}
        self.env.update(CBM_CACHE_DIR=str(tmp_path / "cache"), CBM_LOG_DIR=str(tmp_path / "logs"),
                        LUIGI_CONFIG_PATH=str(self.cfg))

    def write_cfg(self, text: str) -> None:
        self.cfg.write_text(text, encoding="utf-8")

    def __call__(self, *args: str, **env: str) -> Result:
        r = subprocess.run([*cbm_etl_command(), *args], cwd=self.dir, env={**self.env, **env},
                           capture_output=True, text=True, timeout=300)
        return Result(r.returncode, r.stdout, r.stderr)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


def assert_brief(r: Result, code: int, *expected: str, max_lines: int = 4) -> str:
    """Exit code, a few stderr lines without a traceback, and the expected words in the error line."""
    assert r.code == code, f"exit {r.code}, expected {code}\nstdout:\n{r.out}\nstderr:\n{r.err}"
    assert "Traceback" not in r.err, r.err
    assert len(r.lines) <= max_lines, f"{len(r.lines)} stderr lines:\n{r.err}"
    line = r.error
    for word in expected:
        assert word in line, f"{word!r} not in: {line}"
    return line


# -- metadata -------------------------------------------------------------------------------------------------------


def test_tables_before_init_db_says_run_init_db(cli: Cli) -> None:
    line = assert_brief(cli("tables"), 2, "has no metadata tables", "run cbm-etl init-db")
    assert "ods.duckdb" in line  # names the target


@pytest.mark.postgres
def test_validate_before_init_db_on_postgresql(cli: Cli, pg_database: str) -> None:
    line = assert_brief(cli("validate", CBM_TARGET=pg_database), 2, "has no metadata tables", "run cbm-etl init-db")
    assert pg_database.rsplit("/", 1)[1] in line


# -- connection -----------------------------------------------------------------------------------------------------

UNREACHABLE = "postgresql+psycopg://postgres@127.0.0.1:1/x"


@pytest.mark.parametrize("command", [["tables"], ["status"], ["run", "produit"]])
def test_an_unreachable_target_names_it_and_the_server(cli: Cli, command: list[str]) -> None:
    r = cli(*command, CBM_TARGET=UNREACHABLE, CBM_SOURCE="sqlite:///erp.sqlite", CBM_SOURCE_FLAVOR="sqlite")
    line = assert_brief(r, 2, "cannot connect to the target", UNREACHABLE, "Connection refused",
                        "127.0.0.1:1 does not answer", "check the host and port in CBM_TARGET")
    assert line.count("Connection refused") == 1


@pytest.mark.postgres
def test_a_wrong_user_says_to_fix_the_user(cli: Cli, pg_conninfo: str) -> None:
    target = "postgresql+psycopg://cbm_no_such_user@127.0.0.1:5432/postgres"
    assert_brief(cli("tables", CBM_TARGET=target), 2, "cannot connect to the target", 'role "cbm_no_such_user"',
                 "fix the user in CBM_TARGET")


@pytest.mark.postgres
def test_a_wrong_password_is_not_shown(cli: Cli, pg_conninfo: str) -> None:
    # trust authentication here accepts any password: the URL's password must still never be printed
    target = "postgresql+psycopg://cbm_no_such_user:s3cr3t-pw@127.0.0.1:5432/postgres"
    r = cli("tables", CBM_TARGET=target)
    assert_brief(r, 2, "cannot connect to the target", "cbm_no_such_user:***@127.0.0.1")
    assert "s3cr3t-pw" not in r.err + r.out


@pytest.mark.postgres
def test_init_db_on_a_missing_database_says_how_to_create_it(cli: Cli, pg_conninfo: str) -> None:
    target = "postgresql+psycopg://postgres@127.0.0.1:5432/cbm_test_no_such_db"
    assert_brief(cli("init-db", CBM_TARGET=target), 2, 'database "cbm_test_no_such_db" does not exist',
                 "createdb -h 127.0.0.1 -p 5432 -U postgres cbm_test_no_such_db", "then run cbm-etl init-db")


# -- luigi.cfg and settings -----------------------------------------------------------------------------------------


def test_a_garbled_luigi_cfg_names_the_file_and_the_line(cli: Cli) -> None:
    cli.write_cfg("[cbm]\ntarget=duckdb:///x.duckdb\nthis line is garbage\n")
    assert_brief(cli("tables"), 2, f"luigi.cfg {cli.cfg} line 3", "this line is garbage", "fix the line")


def test_a_garbled_luigi_cfg_with_v_shows_the_traceback(cli: Cli) -> None:
    cli.write_cfg("[cbm]\ntarget=duckdb:///x.duckdb\nthis line is garbage\n")
    r = cli("-v", "tables")
    assert r.code == 2
    assert "Traceback" in r.err and "configparser.ParsingError" in r.err
    assert r.error.startswith(f"cbm-etl: error: luigi.cfg {cli.cfg} line 3")


def test_an_option_set_twice_names_it(cli: Cli) -> None:
    cli.write_cfg(f"[cbm]\ntarget={cli.target}\ntarget={cli.target}\n")
    assert_brief(cli("tables"), 2, f"luigi.cfg {cli.cfg} line 3", "option 'target' is set twice in [cbm]")


def test_a_non_integer_option_names_it(cli: Cli) -> None:
    cli.write_cfg(f"[cbm]\ntarget={cli.target}\nextract_batch_rows = abc\n")
    assert_brief(cli("tables"), 2, str(cli.cfg), "[cbm] extract_batch_rows (CBM_EXTRACT_BATCH_ROWS) = 'abc'",
                 "is not a whole number")


def test_an_unset_variable_in_luigi_cfg_names_it(cli: Cli) -> None:
    cli.write_cfg(f"[cbm]\ntarget={cli.target}\nsource=DSN=erp;UID=etl;PWD=${{CBM_TEST_NOT_SET_PW}}\n")
    assert_brief(cli("tables"), 2, "[cbm] source refers to ${CBM_TEST_NOT_SET_PW}, which is not set",
                 "export CBM_TEST_NOT_SET_PW=")


def test_a_bad_webhook_url_names_the_variable_never_the_url(cli: Cli) -> None:
    r = cli("test-alert", CBM_TEAMS_WEBHOOK="http://[sig=hush-hush-signature")
    assert_brief(r, 2, "CBM_TEAMS_WEBHOOK URL #1", "not a valid http(s) URL", ".env")
    assert "hush-hush" not in r.err + r.out


# -- run: the batch, a failing table, the summary ----------------------------------------------------------------------


@pytest.fixture
def demo_table(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The demo SQLite source with ``produit`` synced and registered in the DuckDB target; its CBM_* variables.
    (Set up in this process, for speed: only the commands under test run as ``cbm-etl``.)"""
    from conftest import configure

    from cbm_luigi.cli import main
    from cbm_luigi.demo import data as demo_data
    from cbm_luigi.tasks.context import clear_caches

    demo_data.create_sqlite_source(tmp_path / "erp.sqlite", scale=0.05)
    env = {"CBM_SOURCE": f"sqlite:///{tmp_path / 'erp.sqlite'}", "CBM_SOURCE_FLAVOR": "sqlite"}
    configure(monkeypatch, source=env["CBM_SOURCE"], flavor="sqlite", schema="PUB", target=cli.target)
    assert main(["sync-columns", "produit"]) == 0
    assert main(["add-table", "produit", "--pk", "cod_pro", "--date-modif-col", "dat_mod"]) == 0
    clear_caches()
    return env


def test_a_bad_batch_is_refused_naming_it(cli: Cli, demo_table: dict[str, str]) -> None:
    assert_brief(cli("run", "produit", "--batch", "../../etc", **demo_table), 2, "batch '../../etc' is not valid",
                 "use letters, digits")


def test_a_missing_source_is_a_configuration_error_before_the_run(cli: Cli, demo_table: dict[str, str]) -> None:
    r = cli("run", "produit")  # the table is registered; CBM_SOURCE is not set
    line = assert_brief(r, 2, "CBM_SOURCE is not set", ".env", "cbm-etl demo")
    assert line.endswith("for the demo source")  # the whole message, not cut by the password redaction
    assert "Worker" not in r.err  # refused before Luigi runs anything


def test_a_failed_table_exits_1_and_the_summary_shows_the_whole_first_line(cli: Cli, tmp_path: Path,
                                                                           demo_table: dict[str, str]) -> None:
    missing = tmp_path / ("a-folder-with-a-long-name-" * 4) / "erp.sqlite"
    r = cli("run", "produit", "--mode", "full", "--batch", "b1", CBM_SOURCE=f"sqlite:///{missing}",
            CBM_SOURCE_FLAVOR="sqlite")
    assert r.code == 1, r.err
    assert "Traceback" not in r.err, r.err  # Luigi's worker logs the failure as one line
    row = next(ln for ln in r.out.splitlines() if ln.startswith("produit"))
    assert "FAILED at extract" in row
    assert f"CBM_SOURCE sqlite file '{missing}' does not exist (run: cbm-etl demo)" in row


def test_dq_without_a_rules_file_points_at_the_example(cli: Cli, demo_table: dict[str, str]) -> None:
    line = assert_brief(cli("dq", "produit", **demo_table), 2, "table produit: no rules file produit.yaml",
                        "config/data_quality", "CBM_DQ_DIR", str(EXAMPLE_RULES), "--rules FILE")
    assert f"cp {EXAMPLE_RULES} config/data_quality/produit.yaml" in line


def test_dq_with_the_example_rules_as_the_message_says(cli: Cli, demo_table: dict[str, str]) -> None:
    assert cli("run", "produit", "--mode", "full", "--batch", "b1", **demo_table).code == 0
    r = cli("dq", "produit", **demo_table, CBM_DQ_DIR=str(EXAMPLE_RULES.parent))
    assert r.code == 0, r.err
    assert f"produit: rules {EXAMPLE_RULES} on extract b1__full" in r.out
