"""What an operator sees, rendered by a real browser: headless Chromium on luigid's dependency graph (a real
luigid, a real ``cbm-etl run --all`` against it: SQLite source -> DuckDB) and on the night report that run wrote.
Asserts on the rendered DOM (every table's nodes, DONE; every table's section in the report) and saves a
screenshot of each under the test's tmp_path and in /tmp/cbm-screens/.

Chromium is Debian's ``chromium`` package (.ci/run installs it).  Without it the test skips locally and fails
with CI=true.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import struct
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from conftest import configure, unavailable
from helpers import register_demo_tables
from test_scheduler import REPO, SCRIPTS, api, free_port, script_env

from cbm_luigi.demo import data as demo_data
from cbm_luigi.tasks.context import clear_caches

TABLES = [t.name for t in demo_data.DEMO_TABLES]
STEPS = ("ExtractParquet", "LoadStaging", "MergeOds")
SCREENS = Path("/tmp/cbm-screens")
CHROME_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync")


@pytest.fixture(scope="session")
def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    unavailable("Chromium is not installed (apt-get install -y chromium; .ci/run installs it)")
    raise AssertionError("unreachable")


@pytest.fixture
def luigid(tmp_path: Path) -> Iterator[int]:
    """A luigid of its own (state file, logs) on a free loopback port, started by scripts/start_luigid.sh."""
    port = free_port()
    env = script_env(CBM_LUIGID_PORT=str(port), CBM_LUIGID_DIR=str(tmp_path / "luigid"),
                     CBM_LUIGID_LOG_DIR=str(tmp_path / "luigid-logs"))
    r = subprocess.run([str(SCRIPTS / "start_luigid.sh"), "start"], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    pid = int((tmp_path / "luigid" / "luigid.pid").read_text())
    try:
        yield port
    finally:
        subprocess.run([str(SCRIPTS / "start_luigid.sh"), "stop"], env=env, capture_output=True, timeout=60)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)


def browse(exe: str, profile: Path, url: str, *options: str) -> str:
    """Run headless Chromium once on ``url``; its stdout (the DOM with --dump-dom)."""
    r = subprocess.run([exe, *CHROME_FLAGS, f"--user-data-dir={profile}", *options, url], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


def screenshot(exe: str, profile: Path, url: str, png: Path, *options: str) -> None:
    browse(exe, profile, url, f"--screenshot={png}", "--window-size=1400,900", "--hide-scrollbars", *options)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", png
    assert struct.unpack(">II", data[16:24]) == (1400, 900), png
    assert len(data) > 20_000, f"{png}: {len(data)} bytes, looks blank"
    SCREENS.mkdir(parents=True, exist_ok=True)
    shutil.copy(png, SCREENS / png.name)


class GraphNodes(HTMLParser):
    """The nodes of the visualiser's D3 graph: ``<div class="taskNode" data-task-id=...>`` holding
    ``<span class="name">`` (the label) and ``<span class="counter">`` (the status)."""

    def __init__(self, dom: str) -> None:
        super().__init__()
        self.nodes: dict[str, dict[str, str]] = {}
        self._node: dict[str, str] | None = None
        self._field: str | None = None
        self.feed(dom)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "div" and a.get("class") == "taskNode":
            self._node = self.nodes.setdefault(str(a.get("data-task-id")), {"label": "", "status": ""})
        elif tag == "span" and self._node is not None and a.get("class") in ("name", "counter"):
            self._field = "label" if a.get("class") == "name" else "status"

    def handle_endtag(self, tag: str) -> None:
        if tag == "span":
            self._field = None
        elif tag == "div":
            self._node = None

    def handle_data(self, data: str) -> None:
        if self._node is not None and self._field:
            self._node[self._field] += data.strip()


def graph_nodes(exe: str, profile: Path, url: str, expected: int) -> dict[str, dict[str, str]]:
    """The graph page's nodes once the page has drawn them (its script asks luigid for the graph first)."""
    nodes: dict[str, dict[str, str]] = {}
    for budget in (5000, 10000, 20000):
        nodes = GraphNodes(browse(exe, profile, url, f"--virtual-time-budget={budget}", "--dump-dom")).nodes
        if len(nodes) >= expected:
            break
    return nodes


def test_luigid_graph_and_night_report_in_a_browser(chromium, luigid, tmp_path, monkeypatch):
    source = tmp_path / "erp.sqlite"
    demo_data.create_sqlite_source(source)
    configure(monkeypatch, source=f"sqlite:///{source}", flavor="sqlite", schema="PUB",
              target=f"duckdb:///{tmp_path / 'ods.duckdb'}")
    register_demo_tables()
    clear_caches()
    batch = "view-1"
    r = subprocess.run([sys.executable, "-m", "cbm_luigi.cli", "run", "--all", "--mode", "full", "--batch-id", batch,
                        "--scheduler-host", "127.0.0.1", "--scheduler-port", str(luigid)],
                       cwd=REPO, env=script_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert "5 of 5 table(s) loaded" in r.stdout

    done: dict[str, Any] = api(luigid, "task_list", status="DONE", upstream_status="", search=batch)
    root = next(k for k, v in done.items() if k.startswith("LoadAll_"))
    profile = tmp_path / "chromium-profile"

    # luigid's dependency graph (D3 view): rendered by its script from the scheduler's API
    url = (f"http://127.0.0.1:{luigid}/static/visualiser/index.html"
           f"#tab=graph&visType=d3&taskId={urllib.parse.quote(root)}")
    nodes = graph_nodes(chromium, profile, url, expected=2 + 3 * len(TABLES))
    assert len(nodes) == 2 + 3 * len(TABLES), sorted(nodes)
    assert {n["status"] for n in nodes.values()} == {"DONE"}, nodes
    labels = {n["label"] for n in nodes.values()}
    assert {"LoadAll", "CriticalGate"} <= labels
    if any("." in label for label in labels):  # nodes named after their table (tasks/labels.py)
        assert labels == {"LoadAll", "CriticalGate", *(f"{t}.{s}" for t in TABLES for s in STEPS)}, labels
    else:  # Luigi's own labels (the task family): the table is in each task id
        assert sorted(labels - {"LoadAll", "CriticalGate"}) == sorted(STEPS * len(TABLES)), labels
    for t in TABLES:  # either way every table's three steps are on the page, by task id
        ids = [i for i in nodes if f"_{t}_" in i]
        assert sorted(i.split("_")[0] for i in ids) == sorted(STEPS), (t, ids)
    screenshot(chromium, profile, url, tmp_path / "luigid-graph.png", "--virtual-time-budget=5000")

    # the night report written at the end of the run: static, offline (a file:// page)
    latest = tmp_path / "reports" / "night" / "latest.html"
    assert latest.exists(), r.stdout[-2000:]
    dom = browse(chromium, profile, latest.as_uri(), "--dump-dom")
    assert "cbm-luigi night report" in dom
    for t in TABLES:
        assert f'<section class="tbl" id="t-{t}">' in dom, t
        assert f'<a class="tl" href="#t-{t}">{t}</a>' in dom, t
    assert dom.count('<svg class="chart"') == len(TABLES)
    assert "<script" not in dom
    screenshot(chromium, profile, latest.as_uri(), tmp_path / "night-report.png")
