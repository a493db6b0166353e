"""Partitioned extraction, run as an operator runs it: ``cbm-etl add-table ... --partitions N`` then the ``luigi``
command with ``--workers N``, a PostgreSQL source over psqlODBC (the ``progress`` flavour on the SYSPROGRESS
emulation) and a DuckDB ODS.  Checks: the ODS equals the source; the parts are combined into one extract; the
source connection cap ([resources] source_connections) is never exceeded, sampled from pg_stat_activity; a part
killed mid-read (a real SIGKILL) fails the run with the table named, and the next run reads that part only (the
other parts' files are the ones the combined extract holds: same inodes); refusals name the table and the fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from conftest import PROGRESS_EMULATION, PgSource, configure, pg_params
from helpers import luigi_executable, ods_rows, pg_source_rows

from cbm_luigi.pipeline.extract import MANIFEST, extract_dir
from cbm_luigi.pipeline.partitions import part_dir, parts_dir, split_range
from cbm_luigi.tasks.context import clear_caches, settings

REPO = Path(__file__).resolve().parents[2]
TABLE = "big-table"
ROWS = 30_000

pytestmark = [pytest.mark.postgres, pytest.mark.odbc]


def cbm_etl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cbm_luigi.cli", *args], cwd=REPO, capture_output=True, text=True,
                          env=env or {**os.environ, "LUIGI_CONFIG_PATH": str(REPO / "luigi.cfg")}, timeout=300)


def luigi(args: str, config: Path, **extra_env: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LUIGI_CONFIG_PATH": str(config), **extra_env}
    return subprocess.run([luigi_executable(), "--module", "cbm_luigi.tasks", *args.split(), "--local-scheduler"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def config_with_cap(tmp_path: Path, cap: int) -> Path:
    """luigi.cfg with ``[resources] source_connections`` = cap (the local scheduler enforces it as luigid does)."""
    text = (REPO / "luigi.cfg").read_text(encoding="utf-8")
    text = text.replace("source_connections=4", f"source_connections={cap}")
    assert f"source_connections={cap}" in text
    path = tmp_path / "luigi.cfg"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def source_db(pg_conninfo, odbc_driver):
    """A PostgreSQL database of its own for the source (so that pg_stat_activity counts this test's source
    connections only), with the SYSPROGRESS emulation and a PUB schema."""
    name = f"cbm_src_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_conninfo, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    p = {**pg_params(pg_conninfo), "dbname": name}
    conninfo = " ".join(f"{k}={v}" for k, v in p.items())
    with psycopg.connect(conninfo, autocommit=True) as c:
        c.execute(PROGRESS_EMULATION)
        c.execute('CREATE SCHEMA "PUB"')
    odbc = (f"DRIVER={{{odbc_driver}}};SERVER={p.get('host', '127.0.0.1')};PORT={p.get('port', '5432')};"
            f"DATABASE={name};UID={p.get('user', 'postgres')}")
    yield PgSource(conninfo, "PUB", odbc)
    with psycopg.connect(pg_conninfo, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def big_source(source_db, tmp_path, monkeypatch):
    """``"big-table"`` (30,000 rows, keys with gaps) in the source's PUB schema, registered with 3 partitions."""
    q = f'"{source_db.schema}"."{TABLE}"'
    source_db.execute(f'CREATE TABLE {q} ("num-enreg" integer PRIMARY KEY, "lib-art" varchar(40), '
                      '"qte" numeric(12,3), "date-modif" timestamp)')
    source_db.execute(f"INSERT INTO {q} SELECT g * 3, 'article ' || g, g / 7.0, TIMESTAMP '2026-11-01' + g * "
                      f"INTERVAL '1 minute' FROM generate_series(1, {ROWS}) g")
    configure(monkeypatch, source=source_db.odbc, flavor="progress", schema=source_db.schema,
              target=f"duckdb:///{tmp_path / 'ods.duckdb'}")
    assert cbm_etl("init-db").returncode == 0
    r = cbm_etl("sync-columns", TABLE)
    assert r.returncode == 0, r.stdout + r.stderr
    r = cbm_etl("add-table", TABLE, "--pk", "num-enreg", "--date-modif-col", "date-modif", "--partitions", "3")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "full loads in 3 key ranges" in r.stdout
    return source_db


def the_extract(batch: str) -> Path:
    clear_caches()
    return extract_dir(settings().cache_dir, TABLE, batch, "full")


class SourceConnections:
    """Samples pg_stat_activity every 20 ms: the most connections to the source database at once (this
    sampler's own excluded)."""

    def __init__(self, conninfo: str) -> None:
        self.conninfo, self.database = conninfo, pg_params(conninfo)["dbname"]
        self.peak, self.samples = 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with psycopg.connect(self.conninfo, autocommit=True) as c:
            while not self._stop.is_set():
                n = c.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
                              " AND backend_type = 'client backend'", (self.database,)).fetchone()[0]
                self.peak, self.samples = max(self.peak, n), self.samples + 1
                time.sleep(0.02)

    def __enter__(self) -> SourceConnections:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_split_range_covers_the_keys_in_equal_widths():
    assert split_range(1, 3000, 3) == [1001, 2001]
    assert split_range(10, 10, 4) == [10, 10, 10]  # one key: the other ranges are empty
    assert split_range(None, None, 3) == [0, 0]  # no row


def test_partitioned_full_load_within_the_connection_cap(big_source, tmp_path):
    cfg = config_with_cap(tmp_path, 2)
    batch = "2026-12-04"
    with SourceConnections(big_source.conninfo) as sampled:
        r = luigi(f"LoadTable --table {TABLE} --mode full --batch-id {batch} --workers 3", cfg)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    assert ods_rows(TABLE) == pg_source_rows(big_source, TABLE)
    assert len(ods_rows(TABLE)) == ROWS
    # three parts read, within the cap of 2 connections (one per task: the clock's connection is closed first)
    assert r.stderr.count("done      ExtractPart(") == 3
    assert sampled.samples > 10 and 1 <= sampled.peak <= 2, (sampled.peak, sampled.samples)
    manifest = json.loads((the_extract(batch) / MANIFEST).read_text(encoding="utf-8"))
    assert manifest["rows"] == ROWS and len(manifest["files"]) == 3
    assert manifest["window"] == "full mode, 3 key ranges of num-enreg"
    assert not parts_dir(the_extract(batch)).exists()  # combined once, the parts' folder removed
    # an incremental run of the same table reads one SELECT: no partition
    r = luigi(f"LoadTable --table {TABLE} --mode incremental --batch-id {batch}T12", cfg)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "ExtractPart" not in r.stderr


def test_a_killed_partition_is_the_only_one_read_again(big_source, tmp_path):
    cfg = config_with_cap(tmp_path, 4)
    batch = "2026-12-05"
    r = luigi(f"LoadTable --table {TABLE} --mode full --batch-id {batch} --workers 3", cfg,
              CBM_TEST_CRASH_EXTRACT=f"{TABLE} part 2/3:SIGKILL")
    assert r.returncode == 30, r.stderr[-3000:]  # [retcode] task_failed
    assert f"while reading {TABLE}" in r.stderr and "run again" in r.stderr
    extract = the_extract(batch)
    first, second, third = (part_dir(extract, i, 3) for i in range(3))
    assert (first / MANIFEST).exists() and (third / MANIFEST).exists()
    assert not second.exists()  # killed mid-read: nothing of it counts
    assert not extract.exists()
    kept = {(first / "part-00000.parquet").stat().st_ino, (third / "part-00000.parquet").stat().st_ino}

    r = luigi(f"LoadTable --table {TABLE} --mode full --batch-id {batch} --workers 3", cfg)
    assert r.returncode == 0, r.stderr[-3000:]
    assert ods_rows(TABLE) == pg_source_rows(big_source, TABLE)
    manifest = json.loads((extract / MANIFEST).read_text(encoding="utf-8"))
    inodes = {(extract / f).stat().st_ino for f in manifest["files"]}
    assert kept <= inodes  # the first and third parts' files, not read again, are the extract's
    assert manifest["rows"] == ROWS


def test_refusals_name_the_table_the_column_and_the_fix(big_source):
    r = cbm_etl("add-table", TABLE, "--pk", "lib-art", "--partitions", "4")
    assert r.returncode == 2
    assert (f"table {TABLE}: --partitions 4 splits the table into ranges of its first key column, which must be "
            "an integer; lib-art is varchar") in r.stderr
    assert "--partitions 1" in r.stderr
    r = cbm_etl("add-table", TABLE, "--pk", "num-enreg", "--partitions", "0")
    assert r.returncode == 2
    assert f"table {TABLE}: --partitions 0 must be between 1 (one SELECT) and 32" in r.stderr
