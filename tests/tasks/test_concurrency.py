"""Two runs of the same batch at once, with real processes: two ``cbm-etl run --all`` with local schedulers, and
two ``cbm-etl run --all`` workers of one real luigid.  Both must exit 0, every table merged once (one marker
per table, the ODS equal to the source), no failed row in etl.ETL_Log and vw_LastRuns all success.  Also: a merge
whose marker already exists returns "already loaded" without touching the ODS."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from alert_servers import card_of, facts_of, recorder, texts_of  # noqa: F401 - recorder: the webhook receiver fixture
from conftest import configure, pg_params
from helpers import log_rows, ods_rows, pg_source_rows, register_demo_tables
from test_scheduler import api, luigid  # noqa: F401 - luigid: the real central scheduler fixture

from cbm_luigi.commands.setup import sync_tables
from cbm_luigi.demo import data as demo_data
from cbm_luigi.destinations import open_target
from cbm_luigi.tasks.context import clear_caches, settings

REPO = Path(__file__).resolve().parents[2]
TABLES = [t.name for t in demo_data.DEMO_TABLES]


def env() -> dict[str, str]:
    return {**os.environ, "LUIGI_CONFIG_PATH": str(REPO / "luigi.cfg")}


def start_runs(batch: str, *extra: str, n: int = 2) -> list[subprocess.CompletedProcess[str]]:
    """``n`` ``cbm-etl run --all --mode full --batch-id batch`` started at the same moment."""
    cmd = [sys.executable, "-m", "cbm_luigi.cli", "run", "--all", "--mode", "full", "--batch-id", batch, *extra]
    # each run's output into a file of its own: a pipe read after another run's would block a run whose output
    # passed the pipe's 64 KB (while the other waits for it, through the central scheduler)
    with contextlib.ExitStack() as stack:
        files = [stack.enter_context(tempfile.TemporaryFile("w+", encoding="utf-8")) for _ in range(n)]
        procs = [subprocess.Popen(cmd, cwd=REPO, env=env(), stdout=f, stderr=subprocess.STDOUT, text=True)
                 for f in files]
        out = []
        for p, f in zip(procs, files, strict=True):
            p.wait(timeout=300)
            f.seek(0)
            out.append(subprocess.CompletedProcess(p.args, p.returncode, f.read(), ""))
    return out


def assert_loaded_once(pg_source, batch: str, runs) -> None:
    for r in runs:
        assert r.returncode == 0, r.stdout[-5000:]
    clear_caches()
    target = open_target(settings().target)
    d = target.dialect
    q = d.quote
    markers = target.fetchall(f"SELECT {q('TableName')}, COUNT(*) FROM {d.qualified('etl', 'ETL_Markers')} "
                              f"WHERE {q('Batch')} = :b GROUP BY {q('TableName')}", {"b": batch})
    assert dict(markers) == {t: 1 for t in TABLES}
    for t in TABLES:
        assert ods_rows(t) == pg_source_rows(pg_source, t), t
    rows = [r for r in log_rows() if r["Batch"] == batch]
    assert [r for r in rows if r["Status"] == "failed"] == []
    merged = [r["TableName"] for r in rows if r["StepName"] == "flow_complete"]
    assert sorted(merged) == sorted(TABLES)  # each table merged once, by one of the runs
    last = target.fetchall(f"SELECT {q('TableName')}, {q('Status')} FROM {d.qualified('etl', 'vw_LastRuns')}")
    assert dict(last) == {t: "success" for t in TABLES}


@pytest.mark.postgres
@pytest.mark.odbc
def test_two_local_runs_of_one_batch_at_once(pg_source, pg_database, monkeypatch):
    configure(monkeypatch, source=pg_source.odbc, flavor="progress", schema=pg_source.schema, target=pg_database)
    register_demo_tables()
    batch = f"twice-{os.getpid()}"
    runs = start_runs(batch)
    assert_loaded_once(pg_source, batch, runs)


@pytest.mark.postgres
@pytest.mark.odbc
def test_two_workers_of_one_luigid_both_exit_0(luigid, pg_source, pg_database, monkeypatch):  # noqa: F811
    configure(monkeypatch, source=pg_source.odbc, flavor="progress", schema=pg_source.schema, target=pg_database)
    register_demo_tables()
    batch = f"workers-{os.getpid()}"
    runs = start_runs(batch, "--scheduler-host", "127.0.0.1", "--scheduler-port", str(luigid["port"]))
    assert_loaded_once(pg_source, batch, runs)
    # the scheduler ran each task once, in one worker or the other, and both worked
    done = api(luigid["port"], "task_list", status="DONE", upstream_status="", search=batch)
    assert sum(str(v["name"]).endswith(".MergeOds") for v in done.values()) == len(TABLES)
    for r in runs:
        assert f"{len(TABLES)} of {len(TABLES)} table(s) loaded" in r.stdout, r.stdout[-3000:]


@pytest.mark.postgres
@pytest.mark.odbc
def test_a_worker_waiting_for_another_asks_luigid_instead_of_scheduling_again(luigid, pg_source, pg_database,  # noqa: F811
                                                                               monkeypatch):
    """One table takes ~15 s to read (its source connection capped at 1 MiB/s by a real TCP forwarder): the other
    worker, done with the rest, waits for it.  It asks luigid which tasks of the batch run (one request every 2 s)
    and schedules the batch again only when that changes, not every 2 s (each scheduling is an add_task and a
    completeness check on the target per task of the batch)."""
    from bench.throttle import ThrottledForwarder

    pg_source.execute(f'CREATE TABLE "{pg_source.schema}"."big" AS SELECT g AS id, '
                      "timestamp '2026-01-01' + g * interval '1 second' AS date_modif, repeat('x', 500) AS payload "
                      "FROM generate_series(1, 30000) g")
    pg_source.execute(f'ALTER TABLE "{pg_source.schema}"."big" ADD PRIMARY KEY (id)')
    with ThrottledForwarder("127.0.0.1", int(pg_params(pg_source.conninfo).get("port", "5432")),
                            bytes_per_second=2**20) as fwd:
        odbc = re.sub(r"PORT=\d+", f"PORT={fwd.port}", pg_source.odbc)
        configure(monkeypatch, source=odbc, flavor="progress", schema=pg_source.schema, target=pg_database)
        store = register_demo_tables()
        sync_tables(["big"])
        store.register_table("big", primary_key=["id"], date_modif_col="date_modif", priority="critical")
        clear_caches()
        batch = f"waiting-{os.getpid()}"
        runs = start_runs(batch, "--scheduler-host", "127.0.0.1", "--scheduler-port", str(luigid["port"]))
    for r in runs:
        assert r.returncode == 0, r.stdout[-5000:]
        assert f"{len(TABLES) + 1} of {len(TABLES) + 1} table(s) loaded" in r.stdout, r.stdout[-3000:]
    waited = [r.stdout for r in runs if "run by another worker: waiting for them" in r.stdout]
    assert waited, "neither worker waited for the other: the big table did not keep one of them busy"
    waits = []  # (seconds waited, schedulings again, output) of each worker that waited
    for out in waited:
        lines = out.splitlines()
        start = next(i for i, ln in enumerate(lines) if "run by another worker: waiting for them" in ln)
        stamps = [datetime.strptime(ln[:23], "%Y-%m-%d %H:%M:%S,%f") for ln in lines[start:] if ln[:4].isdigit()]
        waits.append(((stamps[-1] - stamps[0]).total_seconds(),
                      sum("scheduling what is left again" in ln for ln in lines[start:]), out))
    seconds, again, out = max(waits)  # the worker that waited for the big table
    # scheduling again every 2 s would be seconds / 2 times (at least 5 here); when a task elsewhere ends, it is
    # at most once per task of the big table (extract, staging, merge) and once when nothing runs there any more
    assert seconds >= 10, f"the worker waited {seconds:.1f}s only: too short to tell"
    assert again <= 4, (again, seconds, out[-3000:])


def failure_cards(recorder: Any, table: str) -> list[dict[str, str]]:  # noqa: F811 - the fixture's value
    """The facts of the "failed" cards about ``table`` that reached the webhook."""
    out = []
    for post in recorder.posts:
        card = card_of(post)
        if any(f"{table} failed at" in t for t in texts_of(card)):
            out.append(facts_of(card))
    return out


@pytest.mark.postgres
@pytest.mark.odbc
def test_a_table_failing_on_every_worker_of_a_batch_is_alerted_once(luigid, pg_source, pg_database, recorder,  # noqa: F811
                                                                     monkeypatch):
    """Two workers of one luigid (two hosts of one night), one batch, a table that fails to stage (registered with
    a key that is not unique): luigid gives the failed table to the other worker too, which fails it again.  One
    Teams card for the table, not one per worker; the operator's re-run of the batch afterwards alerts again."""
    configure(monkeypatch, source=pg_source.odbc, flavor="progress", schema=pg_source.schema, target=pg_database)
    store = register_demo_tables(["produit", "lignecli"])
    store.register_table("lignecli", primary_key=["num_cde"], date_modif_col="dat_mod", lookback="12h")
    clear_caches()
    monkeypatch.setenv("CBM_TEAMS_WEBHOOK", recorder.workflow_url())
    batch = f"alerted-{os.getpid()}"
    on_luigid = ("--scheduler-host", "127.0.0.1", "--scheduler-port", str(luigid["port"]))
    runs = start_runs(batch, *on_luigid)
    for r in runs:
        assert r.returncode == 1, r.stdout[-5000:]
        assert re.search(r"lignecli\s+\w+\s+FAILED at load_staging", r.stdout), r.stdout[-3000:]
    failed = [r for r in log_rows() if r["Batch"] == batch and r["Status"] == "failed"]
    assert {r["TableName"] for r in failed} == {"lignecli"}
    assert len({r["RunId"] for r in failed}) == 2, "the second worker did not try the failed table: nothing to tell"
    cards = failure_cards(recorder, "lignecli")
    assert len(cards) == 1, cards
    quiet = [r.stdout for r in runs if "its failure alert was sent at" in r.stdout]
    assert len(quiet) == 1 and f"by run {cards[0]['Run id']} of the same batch, not re-sent" in quiet[0]

    # the operator's re-run, once the night is over: a new failure of the same batch, alerted
    time.sleep(1.1)  # alerts and run starts are kept to the second
    [again] = start_runs(batch, *on_luigid, n=1)
    assert again.returncode == 1, again.stdout[-3000:]
    cards = failure_cards(recorder, "lignecli")
    assert len(cards) == 2 and cards[1]["Batch"] == batch, cards
