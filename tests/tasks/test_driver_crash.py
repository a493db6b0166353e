"""A driver crash fails one table, not the run; a SIGKILLed run leaves a ``.tmp-*`` folder that the rerun removes.

Real processes: the ``cbm-etl run`` command reading the demo tables from PostgreSQL over psqlODBC into a DuckDB
ODS; the extract of one table dies by a real SIGSEGV in the middle of its read (``CBM_TEST_CRASH_EXTRACT``:
``os.kill(os.getpid(), SIGSEGV)`` in the reading process, pipeline/isolation.py), or the whole run is killed by
a real SIGKILL while it reads a big table."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from conftest import configure
from helpers import log_rows, ods_rows, register_demo_tables

from cbm_luigi.commands.setup import sync_tables
from cbm_luigi.destinations import open_target
from cbm_luigi.pipeline.extract import table_cache_dir
from cbm_luigi.store.config_tables import MetadataStore
from cbm_luigi.store.markers import marker_exists
from cbm_luigi.tasks.context import clear_caches, settings

CRASHED = "hisprixa"  # tier normal: the critical gate does not hold the others back
OTHERS = ("client", "fournis", "produit", "lignecli")


def cbm(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["cbm-etl", *args], env=env or dict(os.environ), capture_output=True, text=True,
                          timeout=timeout, check=False)


def state(table: str, batch: str) -> tuple[object, ...]:
    clear_caches()
    target = open_target(settings().target)
    return (sorted(ods_rows(table)), MetadataStore(target).watermark(table), marker_exists(target, table, batch))


def test_a_driver_crash_fails_its_table_only_and_names_it(pg_source, tmp_path, monkeypatch):
    configure(monkeypatch, source=pg_source.odbc, flavor="postgresql", schema=pg_source.schema,
              target=f"duckdb:///{tmp_path / 'cbm_ods.duckdb'}")
    register_demo_tables()
    first = cbm("run", "--all", "--mode", "full", "--batch-id", "b1")
    assert first.returncode == 0, first.stdout + first.stderr
    pg_source.execute(f'UPDATE "{pg_source.schema}"."{CRASHED}" SET "prix" = "prix" + 1')
    before = state(CRASHED, "b2")

    r = cbm("run", "--all", "--mode", "full", "--batch-id", "b2",
            env={**os.environ, "CBM_TEST_CRASH_EXTRACT": f"{CRASHED}:SIGSEGV"})
    out = r.stdout + r.stderr
    message = (f"the ODBC driver crashed (signal 11, SIGSEGV) while reading {CRASHED}; the other tables go on; "
               "run again")
    assert r.returncode == 1, out
    assert message in out, out
    assert "4 of 5 table(s) loaded" in r.stdout, out
    clear_caches()
    target = open_target(settings().target)
    assert all(marker_exists(target, t, "b2") for t in OTHERS)
    assert state(CRASHED, "b2") == before  # ODS rows, watermark, no marker: untouched
    failed = [x for x in log_rows() if x["Batch"] == "b2" and x["Status"] == "failed"]
    assert [(x["TableName"], x["StepName"]) for x in failed] == [(CRASHED, "extract")]
    assert failed[0]["ErrorMessage"] == f"DriverCrashError: {message}"
    assert not list(table_cache_dir(settings().cache_dir, CRASHED).glob(f"b2__full/{'_manifest.json'}"))

    again = cbm("run", "--all", "--mode", "full", "--batch-id", "b2")  # run again: only the crashed table loads
    assert again.returncode == 0, again.stdout + again.stderr
    assert marker_exists(open_target(settings().target), CRASHED, "b2")
    assert not list(table_cache_dir(settings().cache_dir, CRASHED).glob(".tmp-*"))


def test_a_sigkilled_run_leaves_a_tmp_folder_that_the_rerun_removes(pg_source, tmp_path, monkeypatch):
    pg_source.execute(f'CREATE TABLE "{pg_source.schema}"."big" AS SELECT g AS id, md5(g::text) AS txt, '
                      "(now() - g * interval '1 second')::timestamp AS dat_mod FROM generate_series(1, 400000) g")
    pg_source.execute(f'ALTER TABLE "{pg_source.schema}"."big" ADD PRIMARY KEY (id)')
    configure(monkeypatch, source=pg_source.odbc, flavor="postgresql", schema=pg_source.schema,
              target=f"duckdb:///{tmp_path / 'cbm_ods.duckdb'}")
    register_demo_tables(["client"])
    sync_tables(["big"])
    MetadataStore(open_target(settings().target)).register_table("big", primary_key=["id"], date_modif_col="dat_mod")
    monkeypatch.setenv("CBM_EXTRACT_BATCH_ROWS", "2000")  # a slower read: time to kill it in the middle
    cache = table_cache_dir(Path(os.environ["CBM_CACHE_DIR"]), "big")

    run = subprocess.Popen(["cbm-etl", "run", "big", "--mode", "full", "--batch-id", "k1"], env=dict(os.environ),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not any(p.glob("part-*.parquet") for p in cache.glob(".tmp-*")) and time.monotonic() < deadline:
        assert run.poll() is None, run.communicate()[0]
        time.sleep(0.05)
    os.kill(run.pid, signal.SIGKILL)  # a real kill of the real command, in the middle of the read
    run.communicate(timeout=60)
    assert run.returncode == -signal.SIGKILL
    time.sleep(0.5)  # the reading child dies with its parent (PR_SET_PDEATHSIG)
    leftovers = list(cache.glob(".tmp-*"))
    assert leftovers, "the kill left no .tmp-* folder: the test did not kill the extract in the middle"
    assert not (cache / "k1__full" / "_manifest.json").exists()

    again = cbm("run", "big", "--mode", "full", "--batch-id", "k1")
    assert again.returncode == 0, again.stdout + again.stderr
    assert not list(cache.glob(".tmp-*")), list(cache.iterdir())
    assert (cache / "k1__full" / "_manifest.json").exists()
    assert "removed 1 unfinished extract folder(s)" in again.stderr, again.stderr


def test_a_luigi_worker_process_killed_by_a_signal_is_reported_by_the_parent(pg_source, tmp_path, monkeypatch):
    """Without the extract's own process (``CBM_ISOLATE_EXTRACTS=0``) but with Luigi's worker processes
    (``--workers 2``), the crash kills Luigi's task process: Luigi's parent sees "died unexpectedly with exit code
    -11" and our PROCESS_FAILURE handler writes the failure row and says the same thing."""
    configure(monkeypatch, source=pg_source.odbc, flavor="postgresql", schema=pg_source.schema,
              target=f"duckdb:///{tmp_path / 'cbm_ods.duckdb'}")
    register_demo_tables()
    r = cbm("run", "--all", "--mode", "full", "--batch-id", "w1", "--workers", "2",
            env={**os.environ, "CBM_TEST_CRASH_EXTRACT": f"{CRASHED}:SIGSEGV", "CBM_ISOLATE_EXTRACTS": "0"})
    out = r.stdout + r.stderr
    message = (f"the ODBC driver crashed (signal 11, SIGSEGV) while reading {CRASHED}; the other tables go on; "
               "run again")
    assert r.returncode == 1, out
    assert message in out, out
    clear_caches()
    target = open_target(settings().target)
    assert all(marker_exists(target, t, "w1") for t in OTHERS), out
    assert not marker_exists(target, CRASHED, "w1")
    failed = [x for x in log_rows() if x["Batch"] == "w1" and x["Status"] == "failed"]
    assert [(x["TableName"], x["StepName"], x["ErrorMessage"]) for x in failed] == [
        (CRASHED, "extract", f"DriverCrashError: {message}")]
