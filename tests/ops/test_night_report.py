"""The night report (``cbm-etl report``, and after every ``cbm-etl run --all``): a real run, SQLite source ->
DuckDB, then a failed run and 30 days of seeded history; the page's tables, steps, errors and charts; a
self-contained page (no script, no external asset); and a report that cannot be written never fails the load."""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import subprocess
import uuid
from datetime import date, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import configure
from helpers import register_demo_tables

from cbm_luigi.cli import main
from cbm_luigi.demo import data as demo_data
from cbm_luigi.destinations import open_target
from cbm_luigi.ops import night_report
from cbm_luigi.ops.night_report import Day, history_chart
from cbm_luigi.tasks.context import clear_caches, settings

REPO = Path(__file__).resolve().parents[2]

TABLES = [t.name for t in demo_data.DEMO_TABLES]


@pytest.fixture
def source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The demo source in SQLite, the ODS in DuckDB (reports go to tmp_path/reports: conftest)."""
    source = tmp_path / "erp.sqlite"
    demo_data.create_sqlite_source(source)
    configure(monkeypatch, source=f"sqlite:///{source}", flavor="sqlite", schema="PUB",
              target=f"duckdb:///{tmp_path / 'ods.duckdb'}")
    return tmp_path


def seed_history(days: int = 29) -> None:
    """flow_complete rows, one a day at 01:30 for the last ``days`` days, and a failure 3 days ago (client)."""
    target = open_target(settings().target)
    d = target.dialect
    cols = ["LogId", "RunId", "TableName", "Batch", "Mode", "StepName", "Status", "RowsProcessed", "RowsInserted",
            "RowsUpdated", "RowsUnchanged", "RowsDeleted", "DurationSeconds", "ErrorMessage", "LogTs"]
    sql = (f"INSERT INTO {d.qualified('etl', 'ETL_Log')} ({', '.join(d.quote(c) for c in cols)}) "
           f"VALUES ({', '.join(':' + c for c in cols)})")
    today = datetime.combine(date.today(), datetime.min.time())
    with target.begin() as conn:
        for i in range(1, days + 1):
            ts = today - timedelta(days=i, hours=-1, minutes=-30)
            for n, t in enumerate(TABLES):
                status, step, error = "success", "flow_complete", None
                if t == "client" and i == 3:
                    status, step, error = "failed", "extract", "SourceError: seeded failure"
                conn.execute(sql, dict(zip(cols, [
                    str(uuid.uuid4()), f"hist-{i}", t, f"h{i}", "incremental", step, status,
                    None if error else 100 * (n + 1) + i, None if error else i, None if error else 1, None, 0,
                    None if error else 10.0 + i + n, error, ts], strict=True)))


class Page(HTMLParser):
    """What a test asserts on: tags seen, section ids, texts, and the attributes of a few elements."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.sections: list[str] = []
        self.links: list[str] = []
        self.svgs = 0
        self.bars = 0
        self.fails = 0
        self.urls: list[str] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.add(tag)
        self.urls += [v for k, v in attrs if k in ("src", "href") and v and not v.startswith("#")]
        if tag == "section":
            self.sections.append(str(a.get("id")))
        if tag == "a" and a.get("class") == "tl":
            self.links.append(str(a.get("href")))
        if tag == "svg" and a.get("class") == "chart":
            self.svgs += 1
        if tag == "rect" and a.get("class") == "bar":
            self.bars += 1
        if tag == "path" and a.get("class") == "fail":
            self.fails += 1

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def newest_report(base: Path) -> Path:
    return sorted((base / "reports" / "night").glob("night_*.html"))[-1]


def test_run_all_writes_the_night_report_and_the_command_rewrites_it(source, capsys):
    register_demo_tables()
    loaded = source
    assert main(["run", "--all", "--mode", "full", "--batch-id", "n1"]) == 0
    out = capsys.readouterr().out
    latest = loaded / "reports" / "night" / "latest.html"
    assert f"night report: {latest}" in out
    first = newest_report(loaded)
    assert latest.read_text(encoding="utf-8") == first.read_text(encoding="utf-8")
    assert first.with_suffix(".csv").exists() and first.with_suffix(".json").exists()

    # a failed run (fournis gone from the source) and a month of history
    with sqlite3.connect(loaded / "erp.sqlite") as c:
        c.execute('DROP TABLE "fournis"')
    assert main(["run", "fournis", "--mode", "full", "--batch-id", "n2"]) == 1
    clear_caches()
    seed_history()
    capsys.readouterr()
    assert main(["report"]) == 0
    assert f"latest: {latest}" in capsys.readouterr().out
    text = latest.read_text(encoding="utf-8")
    page = Page(text)

    # self-contained: inline CSS and SVG, no script, nothing fetched from elsewhere
    assert "script" not in page.tags and page.urls == []
    assert not re.search(r"https?://", text.replace('xmlns="http://www.w3.org/2000/svg"', ""))
    # every table: a row linking to its section, a section, a chart of 30 days
    assert sorted(page.sections) == sorted(f"t-{t}" for t in TABLES)
    assert sorted(page.links) == sorted(f"#t-{t}" for t in TABLES)
    assert page.svgs == len(TABLES)
    assert page.bars == 5 * 30 - 1  # 30 days (29 seeded + today's run) per table, less client's failed day
    assert page.fails == 2  # client 3 days ago, fournis today
    words = " ".join(page.text)
    for t in TABLES:
        assert t in words
    assert "SourceError: seeded failure" not in words  # not client's last run: only counted in its chart
    fournis = text.split('id="t-fournis"')[1].split("</section>")[0]
    assert "failed" in fournis and "extract" in fournis and "fournis" in fournis
    produit = text.split('id="t-produit"')[1].split("</section>")[0]
    for step in ("extract", "transform", "load_staging", "merge_ods", "flow_complete"):
        assert f"<td>{step}</td>" in produit
    assert "<td class=\"n\">2,000</td>" in produit  # rows read and inserted by the full load
    # the failed table first in the summary table
    summary = text.split("<h2>Last run per table</h2>")[1].split("</table>")[0]
    assert summary.index("#t-fournis") < summary.index("#t-client")


def test_an_error_writing_the_report_never_fails_the_load(source, monkeypatch, caplog, capsys):
    register_demo_tables(["produit"])
    (source / "not-a-folder").write_text("a file where the reports folder should be")
    monkeypatch.setenv("CBM_REPORTS_DIR", str(source / "not-a-folder"))
    with caplog.at_level(logging.ERROR, logger="cbm_luigi.ops.night_report"):
        assert main(["run", "--all", "--mode", "full", "--batch-id", "e1"]) == 0
    assert "the night report could not be written" in caplog.text
    out = capsys.readouterr().out
    assert "1 of 1 table(s) loaded" in out and "night report:" not in out
    # the option turns it off
    monkeypatch.setenv("CBM_REPORTS_DIR", str(source / "reports"))
    monkeypatch.setenv("CBM_NIGHT_REPORT", "0")
    assert night_report.write_after_run() is None
    assert not (source / "reports").exists()


def test_report_without_the_views_says_how_to_fix(tmp_path, monkeypatch, capsys):
    configure(monkeypatch, source="sqlite:///unused.sqlite", flavor="sqlite", schema="PUB",
              target=f"duckdb:///{tmp_path / 'bare.duckdb'}")
    assert main(["report"]) == 2
    assert "run cbm-etl init-db" in capsys.readouterr().err


def test_chart_and_page_escape_what_they_print():
    days = [Day(date(2026, 11, 1) + timedelta(days=i), loads=i % 2, seconds=3.0 * i, rows=10 * i,
                failures=1 if i == 4 else 0) for i in range(6)]
    svg = str(history_chart("a<b", days))
    assert svg.startswith("<svg") and 'aria-label="a&lt;b: seconds and rows per day"' in svg
    assert svg.count('class="bar"') == 3 and svg.count('class="fail"') == 1
    assert svg.count("<polyline") == 3  # the rows line is broken on days without a load
    report = night_report.NightReport(datetime(2026, 11, 6, 8), date(2026, 11, 1), 6, (
        night_report.TableNight("t1", "failed", run_id="r", error="<script>alert(1)</script>", days=tuple(days)),
        night_report.TableNight("t2", "never run", sla="CRITICAL", days=tuple(days)),
    ))
    html = night_report.render(report)
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "never loaded" in html


def test_the_luigi_command_writes_the_night_report_when_load_all_completes(source):
    """`luigi ... LoadAll` (not only cbm-etl run --all) leaves the report of the night in reports/night/."""
    register_demo_tables(["produit"])
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(["luigi", "--module", "cbm_luigi.tasks", "LoadAll", "--mode", "full", "--batch-id", "l1",
                           "--local-scheduler"], cwd=source, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    latest = source / "reports" / "night" / "latest.html"
    assert latest.exists() and "produit" in latest.read_text(encoding="utf-8")
