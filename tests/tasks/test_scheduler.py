"""A real central scheduler: luigid started by scripts/start_luigid.sh on a free loopback port (its own state file
and log directory), ``LoadAll`` with two workers against it through scripts/daily_etl.sh (DuckDB target) and
``cbm-etl run`` (PostgreSQL target); the scheduler's HTTP API must report every task DONE, with the extracts'
progress, and the ODS must equal the source.  Also: the scripts' usage errors and the Windows task definitions."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import configure
from helpers import ods_rows, pg_source_rows, register_demo_tables

from cbm_luigi.demo import data as demo_data
from cbm_luigi.tasks.context import clear_caches

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"
TABLES = [t.name for t in demo_data.DEMO_TABLES]
STEPS = ("ExtractParquet", "LoadStaging", "MergeOds")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def script_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "CBM_PYTHON": sys.executable, "LUIGI_CONFIG_PATH": str(REPO / "luigi.cfg"), **extra}


@pytest.fixture(scope="module")
def luigid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp("luigid")
    port = free_port()
    env = script_env(CBM_LUIGID_PORT=str(port), CBM_LUIGID_DIR=str(base / "state"),
                     CBM_LUIGID_LOG_DIR=str(base / "logs"))
    r = subprocess.run([str(SCRIPTS / "start_luigid.sh"), "start"], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    pid = int((base / "state" / "luigid.pid").read_text())
    try:
        yield {"port": port, "pid": pid, "base": base}
    finally:
        subprocess.run([str(SCRIPTS / "start_luigid.sh"), "stop"], env=env, capture_output=True, timeout=60)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)


def api(port: int, method: str, **data: Any) -> Any:
    url = f"http://127.0.0.1:{port}/api/{method}?data={urllib.parse.quote(json.dumps(data))}"
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.loads(resp.read())["response"]


def tasks_of_batch(port: int, batch: str, status: str) -> dict[str, Any]:
    found = api(port, "task_list", status=status, upstream_status="", search=batch)
    return {k: v for k, v in found.items() if v["params"].get("batch_id") == batch}


def step(node: dict[str, Any]) -> str:
    """The task class of a node named ``produit.MergeOds`` (or ``LoadAll``)."""
    return str(node["name"]).rsplit(".", 1)[-1]


def assert_named_after_their_table(nodes: dict[str, Any]) -> None:
    """Each node of a table is named ``<table>.<Step>`` (what the web view's graphs and task list print), its
    task id still the class's (``MergeOds_...``), and its display name carries the table too."""
    for task_id, v in nodes.items():
        table = v["params"].get("table")
        if table is None:
            assert v["name"] in ("LoadAll", "CriticalGate"), v
            continue
        assert v["name"] == f"{table}.{step(v)}", v
        assert step(v) in (*STEPS, "LoadTable"), v
        assert task_id.startswith(f"{step(v)}_"), task_id
        if "display_name" in v:  # the graph APIs keep it on their root only
            assert v["display_name"].startswith(f"{table}.{step(v)}(") and f"table={table}" in v["display_name"], v


def assert_all_done(port: int, batch: str) -> dict[str, Any]:
    done = tasks_of_batch(port, batch, "DONE")
    names = sorted(v["name"] for v in done.values())
    assert names == sorted(["LoadAll", "CriticalGate", *[f"{t}.{s}" for t in TABLES for s in STEPS]])
    assert_named_after_their_table(done)
    for status in ("PENDING", "RUNNING", "FAILED", "DISABLED"):
        assert tasks_of_batch(port, batch, status) == {}, status
    for v in done.values():
        if step(v) == "ExtractParquet":
            assert v["progress_percentage"] == 100, v
            assert (v["status_message"] or "").startswith(f"{v['params']['table']}: "), v
            assert re.search(r"[\d,]+ rows extracted in [\d.]+s \([\d,]+ rows/s\)", v["status_message"] or ""), v
    return done


@pytest.mark.postgres
@pytest.mark.odbc
def test_daily_script_with_two_workers_on_luigid_into_duckdb(luigid, pg_source, tmp_path, monkeypatch):
    configure(monkeypatch, source=pg_source.odbc, flavor="progress", schema=pg_source.schema,
              target=f"duckdb:///{tmp_path / 'ods.duckdb'}")
    register_demo_tables()
    batch = f"sched-duck-{tmp_path.name[-12:]}".replace("_", "-")
    env = script_env(CBM_SCHEDULER_HOST="127.0.0.1", CBM_SCHEDULER_PORT=str(luigid["port"]), CBM_WORKERS="2",
                     CBM_DAILY_HEALTH="0", CBM_CACHE_RETENTION_DAYS="7")
    r = subprocess.run([str(SCRIPTS / "daily_etl.sh"), "--batch-id", batch, "--mode", "full"], env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert "daily_etl: done, exit code 0" in r.stdout
    assert "5 of 5 table(s) loaded" in r.stdout
    done = assert_all_done(luigid["port"], batch)
    # the web view's graphs name each node after its table: /api/graph (every task) and the LoadAll root's tree
    graph = {k: v for k, v in api(luigid["port"], "graph").items() if v["params"].get("batch_id") == batch}
    assert set(graph) == set(done)
    assert_named_after_their_table(graph)
    root = next(k for k, v in done.items() if v["name"] == "LoadAll")
    tree = api(luigid["port"], "dep_graph", task_id=root, include_done=True)
    assert set(tree) == set(done)
    assert_named_after_their_table(tree)
    assert tree[root]["display_name"] == f"LoadAll(batch_id={batch}, continue_on_error=False, mode=full)"
    # luigid read luigi.cfg's [resources]; a DuckDB target's writers hold the single-writer resource
    caps = {r["name"]: r["num_total"] for r in api(luigid["port"], "resource_list")}
    assert caps["source_connections"] == 4 and caps["target_writer"] == 1
    held = {step(v): v["resources"] for v in done.values()}
    assert held["ExtractParquet"] == {"source_connections": 1}
    assert held["LoadStaging"] == held["MergeOds"] == {"target_writer": 1}
    clear_caches()
    for t in TABLES:
        assert ods_rows(t) == pg_source_rows(pg_source, t), t
    # one log file for the run, written by the main process and the forked workers
    logs = list((tmp_path / "logs").glob("cbm-etl_*_run_*.log"))
    assert len(logs) == 1
    pids = set(re.findall(r"\[pid (\d+)\] Worker", logs[0].read_text(encoding="utf-8")))
    assert len(pids) >= 2


@pytest.mark.postgres
@pytest.mark.odbc
def test_loadall_two_workers_on_luigid_into_postgresql(luigid, pg_source, pg_database, monkeypatch):
    configure(monkeypatch, source=pg_source.odbc, flavor="progress", schema=pg_source.schema, target=pg_database)
    store = register_demo_tables()
    store.set_dependencies("lignecli", ["client", "produit"])
    batch = f"sched-pg-{os.getpid()}-{free_port()}"
    r = subprocess.run([sys.executable, "-m", "cbm_luigi.cli", "run", "--all", "--mode", "full", "--batch-id", batch,
                        "--workers", "2", "--scheduler-host", "127.0.0.1", "--scheduler-port", str(luigid["port"])],
                       cwd=REPO, env=script_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    done = assert_all_done(luigid["port"], batch)
    assert all(v["resources"] == {} for v in done.values() if step(v) in ("LoadStaging", "MergeOds"))
    # the dependency is an edge of the graph the scheduler shows
    merge_ids = {v["params"]["table"]: k for k, v in done.items() if step(v) == "MergeOds"}
    graph = api(luigid["port"], "dep_graph", task_id=merge_ids["lignecli"], include_done=True)
    assert {merge_ids["client"], merge_ids["produit"]} <= set(graph[merge_ids["lignecli"]]["deps"])
    assert_named_after_their_table(graph)
    assert graph[merge_ids["lignecli"]]["display_name"] == (
        f"lignecli.MergeOds(after_critical=True, batch_id={batch}, mode=full, table=lignecli)")
    # the `luigi` command on the same scheduler, bare options: the batch is complete, LoadTable only checks it
    luigi_exe = Path(sys.executable).with_name("luigi")
    r = subprocess.run([str(luigi_exe) if luigi_exe.exists() else "luigi", "--module", "cbm_luigi.tasks", "LoadTable",
                        "--table", "produit", "--mode", "full", "--batch-id", batch, "--scheduler-host", "127.0.0.1",
                        "--scheduler-port", str(luigid["port"])], cwd=REPO, env=script_env(), capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert "ran successfully" not in r.stderr and "complete ones were encountered" in r.stderr, r.stderr[-3000:]
    wrapper = [v for v in tasks_of_batch(luigid["port"], batch, "DONE").values() if step(v) == "LoadTable"]
    assert [v["name"] for v in wrapper] == ["produit.LoadTable"]
    clear_caches()
    for t in TABLES:
        assert ods_rows(t) == pg_source_rows(pg_source, t), t


def test_scripts_refuse_bad_usage_and_pass_exit_codes(tmp_path):
    env = script_env(CBM_TARGET=f"duckdb:///{tmp_path / 'ods.duckdb'}", CBM_LOG_DIR=str(tmp_path / "logs"),
                     CBM_CACHE_DIR=str(tmp_path / "cache"))
    for name in ("start_luigid.sh", "run_etl.sh", "daily_etl.sh", "_common.sh"):
        assert subprocess.run(["bash", "-n", str(SCRIPTS / name)]).returncode == 0, name
    r = subprocess.run([str(SCRIPTS / "run_etl.sh")], env=env, capture_output=True, text=True)
    assert r.returncode == 2 and "usage:" in r.stderr
    r = subprocess.run([str(SCRIPTS / "run_etl.sh"), "produit", "sometimes"], env=env, capture_output=True, text=True)
    assert r.returncode == 2 and "MODE must be full or incremental" in r.stderr
    subprocess.run([sys.executable, "-m", "cbm_luigi.cli", "init-db"], cwd=REPO, env=env, check=True,
                   capture_output=True)
    r = subprocess.run([str(SCRIPTS / "run_etl.sh"), "nosuch", "full"], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 2 and "not registered in config.ETL_Tables" in r.stderr
    r = subprocess.run([str(SCRIPTS / "start_luigid.sh"), "status"], capture_output=True, text=True,
                       env=script_env(CBM_LUIGID_DIR=str(tmp_path / "none"), CBM_LUIGID_LOG_DIR=str(tmp_path)))
    assert r.returncode == 1 and "not running" in r.stdout


def test_windows_scripts_and_task_definitions():
    win = SCRIPTS / "windows"
    env_bat = (win / "_env.bat").read_text()
    assert 'cd /d "%CBM_ROOT%"' in env_bat and "LUIGI_CONFIG_PATH" in env_bat
    for name in ("start_luigid.bat", "run_etl.bat", "daily_etl.bat"):
        text = (win / name).read_text()
        assert 'call "%~dp0_env.bat"' in text, name
        assert "exit /b" in text, name
    code = [ln for ln in (win / "start_luigid.bat").read_text().splitlines() if not ln.lower().startswith("rem")]
    assert not any("--background" in ln for ln in code)  # luigid stays in the foreground on Windows
    ns = {"t": "http://schemas.microsoft.com/windows/2004/02/mit/task"}
    daily = ET.parse(win / "cbm-etl-daily-task.xml").getroot()
    assert daily.find("t:Actions/t:Exec/t:WorkingDirectory", ns).text == r"C:\cbm-luigi"  # type: ignore[union-attr]
    assert r"scripts\windows\daily_etl.bat" in daily.find("t:Actions/t:Exec/t:Arguments", ns).text  # type: ignore[union-attr,operator]
    assert daily.find("t:Settings/t:MultipleInstancesPolicy", ns).text == "IgnoreNew"  # type: ignore[union-attr]
    luigid = ET.parse(win / "cbm-luigid-task.xml").getroot()
    exec_ = luigid.find("t:Actions/t:Exec", ns)
    assert exec_ is not None
    assert exec_.find("t:Command", ns).text.endswith(r"scripts\windows\start_luigid.bat")  # type: ignore[union-attr]
    assert exec_.find("t:WorkingDirectory", ns).text == r"C:\cbm-luigi"  # type: ignore[union-attr]
    assert luigid.find("t:Settings/t:ExecutionTimeLimit", ns).text == "PT0S"  # type: ignore[union-attr]
    assert luigid.find("t:Triggers/t:BootTrigger", ns) is not None
