"""A webhook's error reply that quotes the request URL never leaks its ``sig=``: not into etl.ETL_Alerts, not in
``cbm-etl test-alert``'s output, not on the ``luigi`` command's console.  Real processes, the real Recorder HTTP
server answering 400 with a body quoting the URL (raw, HTML-escaped, JSON-escaped, percent-encoded, and the bare
signature)."""

from __future__ import annotations

import html
import json
import os
import subprocess
from pathlib import Path
from urllib.parse import quote

import duckdb
from alert_servers import WORKFLOW_PATH, Recorder
from conftest import configure
from helpers import luigi_executable, register_demo_tables

from cbm_luigi.config.secrets import redact_text, url_secrets
from cbm_luigi.demo import data as demo_data

REPO = Path(__file__).resolve().parents[2]
SECRET = "TopSecretSignature123"


def quoting_body(url: str) -> str:
    return json.dumps({"error": {"code": "BadRequest", "message": f"The request to {url} is not valid",
                                 "html": html.escape(url), "encoded": quote(url, safe=""),
                                 "signature": f"sig: {SECRET}"}}).replace(url.replace("/", "\\/"), "X") + \
        " " + json.dumps(url).replace("/", "\\/")


def alert_texts(db: Path) -> list[str]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute('SELECT "Title", "Message", "DeliveryNote", "Channel" FROM etl."ETL_Alerts"').fetchall()
    finally:
        con.close()
    return [" | ".join(str(v) for v in r) for r in rows]


def test_every_form_of_a_configured_url_is_redacted(monkeypatch, recorder: Recorder):
    url = recorder.workflow_url()
    monkeypatch.setenv("CBM_TEAMS_WEBHOOK", f"https://other.example/x?sig=AnotherSecret987 {url}")
    text = redact_text(quoting_body(url) + " and AnotherSecret987")
    assert SECRET not in text and "AnotherSecret987" not in text and "2016-06-01&sp" not in text, text
    assert "The request to *** is not valid" in text
    assert url in url_secrets(url) and SECRET in url_secrets(url)


def test_a_400_quoting_the_url_leaks_nothing_into_etl_alerts_nor_test_alert(recorder: Recorder, tmp_path):
    url = recorder.workflow_url()
    recorder.respond(WORKFLOW_PATH, (400, {"Content-Type": "application/json"}, quoting_body(url)))
    db = tmp_path / "ods.duckdb"
    env = {**os.environ, "CBM_TEAMS_WEBHOOK": url, "CBM_TARGET": f"duckdb:///{db}"}
    init = subprocess.run(["cbm-etl", "init-db"], env=env, capture_output=True, text=True, timeout=120)
    assert init.returncode == 0, init.stderr
    r = subprocess.run(["cbm-etl", "test-alert"], env=env, capture_output=True, text=True, timeout=120)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "HTTP 400 rejected" in out and "BadRequest" in out, out
    assert SECRET not in out and "2016-06-01&sp" not in out, out
    [row] = alert_texts(db)
    assert "HTTP 400 rejected" in row and SECRET not in row and "sig=" not in row, row
    assert len(recorder.posts) == 1


def test_the_luigi_console_of_a_failing_task_shows_no_secret(recorder: Recorder, tmp_path, monkeypatch):
    """The failing task's error quotes the secret (its source path holds it), and the webhook's 400 quotes the
    URL: neither Luigi's own lines (the traceback) nor the package's show it."""
    source = tmp_path / "erp.sqlite"
    demo_data.create_sqlite_source(source)
    db = tmp_path / "ods.duckdb"
    configure(monkeypatch, source=f"sqlite:///{source}", flavor="sqlite", schema="PUB", target=f"duckdb:///{db}")
    register_demo_tables(["produit"])
    url = recorder.workflow_url()
    recorder.respond(WORKFLOW_PATH, *[(400, {}, quoting_body(url))] * 3)
    gone = tmp_path / SECRET / "erp.sqlite"  # the source moved: the error names a path holding the secret
    env = {**os.environ, "CBM_TEAMS_WEBHOOK": url, "CBM_SOURCE": f"sqlite:///{gone}",
           "LUIGI_CONFIG_PATH": str(REPO / "luigi.cfg")}
    r = subprocess.run([luigi_executable(), "--module", "cbm_luigi.tasks", "LoadTable", "--table", "produit",
                        "--mode", "full", "--batch-id", "s1", "--local-scheduler"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 30, out  # [retcode] task_failed
    assert "failed" in out and "HTTP 400 rejected" in out, out  # the package's own lines reach the console
    assert SECRET not in out and "2016-06-01&sp" not in out, out
    assert recorder.posts, "no alert was sent"
    assert all(SECRET not in t for t in alert_texts(db))
