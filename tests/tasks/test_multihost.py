"""Several hosts: one luigid and four worker hosts, each a Linux network namespace of its own (tests/netns.py),
one shared cache folder, a night of 100 tables.

The root namespace is the server machine: PostgreSQL (the source database, in the Progress emulation, and the
target) reached through a TCP forwarder on its address on the hosts' links, the luigid listening on that address
with ITS OWN config file (``[resources] source_connections=2``: the central scheduler enforces the cap for every
worker, whatever the workers' luigi.cfg says: 4).  Each host runs ``cbm-etl run --all --mode full`` of the same
batch against that luigid (``ip netns exec``); host 0 reads with extract isolation (the Linux default), hosts 1
to 3 without, as Windows workers do.  Proven: every host exits 0; every table loaded once (one marker, one
``flow_complete`` row; the ODS equal to the source); an extract written by one host merged by another (the shared
cache); a sampler polling ``pg_stat_activity`` every 50 ms never saw more than 2 connections to the source
database (a backend whose client has hung up, still listed while it exits, is not counted).  And: a table that
fails (its source table dropped) makes every host exit 1, each naming it in its summary.

Registration of the 100 tables: ``cbm-etl init-db``, ``cbm-etl sync-columns`` and ``cbm-etl add-table`` (one table)
run on a host, as an operator does; the other 99 through MetadataStore, as tests/helpers.py does (a subprocess per
table costs 1-3 s here).  The second scenario registers its tables in this process (sync_tables, MetadataStore).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import PROGRESS_EMULATION, PgSource, configure, pg_params, unavailable
from helpers import log_rows, ods_rows, pg_source_rows
from netns import Forwarder, Host, Network, free_port, hosts, netns_problem

from cbm_luigi.commands.setup import sync_tables
from cbm_luigi.destinations import open_target
from cbm_luigi.store.config_tables import MetadataStore
from cbm_luigi.tasks.context import clear_caches, settings

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"
CAP = 2  # the luigid's [resources] source_connections
TABLES = [f"tbl{i:03d}" for i in range(100)]
DOOMED = "gone"  # the second scenario's table whose source table is dropped before the run
LUIGID_CFG = f"""\
# the luigid's own config: the cap for every worker of the night, whatever their luigi.cfg says
[scheduler]
record_task_history=false
retry_delay=60
retry_count=5
disable_window=3600

[resources]
source_connections={CAP}
target_writer=1
"""


def create_source_table(conn: psycopg.Connection[Any], name: str, rows: int) -> None:
    conn.execute(f'CREATE TABLE "PUB"."{name}" (id integer PRIMARY KEY, code varchar(20) NOT NULL, '
                 'label varchar(60), amount numeric(12,2), qty integer, day date, date_modif timestamp)')
    conn.execute(f'INSERT INTO "PUB"."{name}" SELECT g, %s || \'-\' || g, '
                 "CASE WHEN g %% 7 = 0 THEN NULL ELSE 'label ' || repeat('x', g %% 40) END, g * 1.25, g %% 13, "
                 "DATE '2026-01-01' + g, TIMESTAMP '2026-11-01 08:00' + g * INTERVAL '1 minute' "
                 "FROM generate_series(1, %s) g", (name, rows))


@dataclass(frozen=True)
class Night:
    """The hosts, the server's forwarder and luigid, and the source database (its ODBC string from a host)."""

    net: Network
    forwarder: Forwarder  # net.server -> 127.0.0.1:5432
    luigid_port: int
    source_db: str
    source: PgSource  # from the root namespace (the test's own reads)
    conninfo: str  # the test's admin connection (the sampler's)

    @property
    def host_source(self) -> str:
        return (f"DRIVER={{PostgreSQL Unicode}};SERVER={self.net.server};PORT={self.forwarder.address[1]};"
                f"DATABASE={self.source_db};UID=postgres")

    def host_target(self, local_url: str) -> str:
        """The target database's URL as a host reaches it (through the forwarder)."""
        return local_url.replace("@127.0.0.1:5432/", f"@{self.net.server}:{self.forwarder.address[1]}/")

    def api(self, method: str, **data: Any) -> Any:
        url = (f"http://{self.net.server}:{self.luigid_port}/api/{method}?"
               f"data={urllib.parse.quote(json.dumps(data))}")
        with urllib.request.urlopen(url, timeout=30) as resp:
            return json.loads(resp.read())["response"]


@pytest.fixture(scope="module")
def night(pg_conninfo: str, odbc_driver: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Night]:
    problem = netns_problem()
    if problem:
        unavailable(problem)
    if odbc_driver != "PostgreSQL Unicode" or pg_params(pg_conninfo).get("host", "127.0.0.1") != "127.0.0.1":
        pytest.skip("the hosts reach PostgreSQL 127.0.0.1:5432 through a forwarder, with the PostgreSQL Unicode driver")
    base = tmp_path_factory.mktemp("multihost")
    source_db = f"cbm_src_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_conninfo, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{source_db}"')
    src_conninfo = f"host=127.0.0.1 port=5432 dbname={source_db} user=postgres"
    try:
        with psycopg.connect(src_conninfo) as c:
            c.execute(PROGRESS_EMULATION)
            c.execute('CREATE SCHEMA "PUB"')
            for i, name in enumerate([*TABLES, DOOMED]):
                create_source_table(c, name, 150 + (i * 37) % 250)  # 150 to 399 rows
        with hosts(4) as net, Forwarder((net.server, 0), ("127.0.0.1", 5432)) as fwd:
            port = free_port(net.server)
            (base / "luigid.cfg").write_text(LUIGID_CFG)
            env = {**os.environ, "CBM_PYTHON": sys.executable, "LUIGI_CONFIG_PATH": str(base / "luigid.cfg"),
                   "CBM_LUIGID_ADDRESS": net.server, "CBM_LUIGID_PORT": str(port),
                   "CBM_LUIGID_DIR": str(base / "luigid"), "CBM_LUIGID_LOG_DIR": str(base / "luigid-logs")}
            r = subprocess.run([str(SCRIPTS / "start_luigid.sh"), "start"], env=env, capture_output=True,
                               text=True, timeout=120)
            assert r.returncode == 0, r.stdout + r.stderr
            pid = int((base / "luigid" / "luigid.pid").read_text())
            odbc = f"DRIVER={{{odbc_driver}}};SERVER=127.0.0.1;PORT=5432;DATABASE={source_db};UID=postgres"
            try:
                yield Night(net, fwd, port, source_db, PgSource(src_conninfo, "PUB", odbc), pg_conninfo)
            finally:
                subprocess.run([str(SCRIPTS / "start_luigid.sh"), "stop"], env=env, capture_output=True, timeout=60)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 9)
    finally:
        clear_caches()
        with psycopg.connect(pg_conninfo, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{source_db}" WITH (FORCE)')


class SourceConnections(threading.Thread):
    """Polls pg_stat_activity every ``interval`` s for the client backends of one database; keeps the maximum.

    ``max``: backends whose client is still connected, i.e. not in ``hung_up`` (the forwarder's ports whose client
    closed: such a backend may stay listed for some ms while it exits, e.g. an extract's clock connection, closed
    just before the read opens its own).  ``max_listed``: every backend listed, the exiting ones too."""

    def __init__(self, conninfo: str, datname: str, hung_up: set[int], interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.conninfo, self.datname, self.hung_up, self.interval = conninfo, datname, hung_up, interval
        self.max = 0
        self.max_listed = 0
        self.samples = 0
        self.busy = 0  # samples that saw at least one connection
        self.at_max: list[tuple[Any, ...]] = []  # the backends of the first sample that saw the maximum
        self._stop_event = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._sample()
        except BaseException as exc:  # noqa: BLE001 - raised in the test by __exit__
            self.error = exc

    def _sample(self) -> None:
        with psycopg.connect(self.conninfo, autocommit=True) as c:
            while not self._stop_event.is_set():
                rows = c.execute("SELECT pid, client_port, backend_start, state, state_change FROM pg_stat_activity "
                                 "WHERE datname = %s AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
                                 (self.datname,)).fetchall()
                connected = [r for r in rows if r[1] not in self.hung_up]
                if len(connected) > self.max:
                    self.at_max = rows
                self.max = max(self.max, len(connected))
                self.max_listed = max(self.max_listed, len(rows))
                self.samples += 1
                self.busy += bool(connected)
                self._stop_event.wait(self.interval)

    def __enter__(self) -> SourceConnections:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop_event.set()
        self.join(timeout=10)
        if self.error is not None:
            raise AssertionError(f"the pg_stat_activity sampler stopped: {self.error}") from self.error


def host_env(night: Night, host: Host, target: str, tmp: Path, cache: Path) -> dict[str, str]:
    """A worker host's environment: the source and target through the server's address, the shared cache
    folder, its own logs and reports, the checkout's luigi.cfg (its [resources] are the workers', not luigid's)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CBM_") or k.startswith("CBM_TEST_")}
    return {**env, "CBM_SOURCE": night.host_source, "CBM_SOURCE_FLAVOR": "progress", "CBM_SOURCE_SCHEMA": "PUB",
            "CBM_TARGET": night.host_target(target), "CBM_CACHE_DIR": str(cache),
            "CBM_LOG_DIR": str(tmp / host.netns / "logs"), "CBM_REPORTS_DIR": str(tmp / host.netns / "reports"),
            "LUIGI_CONFIG_PATH": str(REPO / "luigi.cfg"),
            # host 0 reads as a Linux worker does by default (each extract in a forked child), the others as
            # Windows workers do (in the task's process: no fork; docs/OPERATIONS.md, Several hosts)
            **({"CBM_ISOLATE_EXTRACTS": "false"} if host != night.net.hosts[0] else {})}


def cbm_etl(host: Host, *args: str) -> list[str]:
    return host.command(sys.executable, "-m", "cbm_luigi.cli", *args)


def on_host(night: Night, host: Host, target: str, tmp: Path, *args: str) -> str:
    r = subprocess.run(cbm_etl(host, *args), cwd=REPO, env=host_env(night, host, target, tmp, tmp / "share"),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, (args, r.stdout[-3000:], r.stderr[-3000:])
    return r.stdout


def register(night: Night, target: str, tmp: Path, tables: list[str], monkeypatch: pytest.MonkeyPatch, *,
             commands: bool) -> None:
    """``commands``: init-db and sync-columns run on host 0 (through the network), add-table for the first table,
    as an operator does; else sync_tables in this process (what sync-columns runs).  The other tables through
    MetadataStore."""
    configure(monkeypatch, source=night.source.odbc, flavor="progress", schema="PUB", target=target)
    if commands:
        h = night.net.hosts[0]
        on_host(night, h, target, tmp, "init-db")
        synced = on_host(night, h, target, tmp, "sync-columns", *tables)
        assert all(f"{t}: 7 column(s) added" in synced for t in tables), synced[-2000:]
        on_host(night, h, target, tmp, "add-table", tables[0], "--pk", "id", "--date-modif-col", "date_modif")
    else:
        sync_tables(tables)
    clear_caches()
    store = MetadataStore(open_target(target))
    for t in tables[1:] if commands else tables:
        store.register_table(t, primary_key=["id"], date_modif_col="date_modif")
    clear_caches()


def run_night(night: Night, hosts_: tuple[Host, ...], target: str, tmp: Path,
              batch: str) -> list[subprocess.CompletedProcess[str]]:
    """``cbm-etl run --all --mode full --batch-id batch`` on every host at once, against the one luigid.  Each
    host's output goes to a file (a pipe read after another host's would fill and block that host)."""
    args = ("run", "--all", "--mode", "full", "--batch-id", batch, "--scheduler-host", night.net.server,
            "--scheduler-port", str(night.luigid_port))
    outs = [tmp / h.netns / "run.out" for h in hosts_]
    procs = []
    for h, out in zip(hosts_, outs, strict=True):
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w") as f:
            procs.append(subprocess.Popen(cbm_etl(h, *args), cwd=REPO, stdout=f, stderr=subprocess.STDOUT,
                                          env=host_env(night, h, target, tmp, tmp / "share")))
    deadline = time.monotonic() + 240
    try:
        codes = [p.wait(timeout=max(1.0, deadline - time.monotonic())) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return [subprocess.CompletedProcess(p.args, code, out.read_text(), "")
            for p, code, out in zip(procs, codes, outs, strict=True)]


def batch_markers(batch: str) -> dict[str, int]:
    target = open_target(settings().target)
    d, q = target.dialect, target.dialect.quote
    return dict(target.fetchall(f"SELECT {q('TableName')}, COUNT(*) FROM {d.qualified('etl', 'ETL_Markers')} "
                                f"WHERE {q('Batch')} = :b GROUP BY {q('TableName')}", {"b": batch}))


@pytest.mark.postgres
@pytest.mark.odbc
def test_four_hosts_load_100_tables_once_under_the_luigid_source_cap(night, pg_database, tmp_path, monkeypatch):
    register(night, pg_database, tmp_path, TABLES, monkeypatch, commands=True)
    batch = f"hosts-{os.getpid()}"
    started = time.monotonic()
    with SourceConnections(night.conninfo, night.source_db, night.forwarder.hung_up) as sampler:
        runs = run_night(night, night.net.hosts, pg_database, tmp_path, batch)
    seconds = time.monotonic() - started
    for h, r in zip(night.net.hosts, runs, strict=True):
        assert r.returncode == 0, (h.netns, r.stdout[-5000:])
        assert f"batch {batch}: {len(TABLES)} of {len(TABLES)} table(s) loaded" in r.stdout, (h.netns, r.stdout[-3000:])
    # the cap of the luigid's own config, not the workers' luigi.cfg (source_connections=4)
    caps = {x["name"]: x["num_total"] for x in night.api("resource_list")}
    assert caps["source_connections"] == CAP
    assert 1 <= sampler.max <= CAP, (sampler.max, sampler.samples, sampler.busy, sampler.at_max)
    assert sampler.busy > 10, (sampler.busy, sampler.samples)  # the sampler saw the extracts, not a lucky one
    clear_caches()
    assert batch_markers(batch) == {t: 1 for t in TABLES}
    rows = [r for r in log_rows() if r["Batch"] == batch]
    assert [r for r in rows if r["Status"] == "failed"] == []
    flows = [r for r in rows if r["StepName"] == "flow_complete" and r["Status"] == "success"]
    assert sorted(r["TableName"] for r in flows) == TABLES  # each table merged once, by one host or another
    # the hosts shared the night, and the shared cache: a table extracted on one host was merged on another
    assert len({r["RunId"] for r in flows}) >= 2, {r["RunId"] for r in flows}
    extracted_by = {r["TableName"]: r["RunId"] for r in rows if r["StepName"] == "extract"}
    assert any(extracted_by[r["TableName"]] != r["RunId"] for r in flows)
    for t in TABLES:
        assert ods_rows(t) == pg_source_rows(night.source, t), t
    print(f"\n{len(TABLES)} tables x {len(runs)} hosts in {seconds:.1f}s; source connections: max {sampler.max} "
          f"(cap {CAP}; {sampler.max_listed} listed with the exiting ones), {sampler.busy} of {sampler.samples} "
          "samples busy")


@pytest.mark.postgres
@pytest.mark.odbc
def test_a_table_failing_on_one_host_fails_every_host(night, pg_database, tmp_path, monkeypatch):
    tables = [*TABLES[:9], DOOMED]
    register(night, pg_database, tmp_path, tables, monkeypatch, commands=False)
    night.source.execute(f'DROP TABLE "PUB"."{DOOMED}"')
    batch = f"hosts-fail-{os.getpid()}"
    hosts_ = night.net.hosts[:2]
    runs = run_night(night, hosts_, pg_database, tmp_path, batch)
    failed = []
    for h, r in zip(hosts_, runs, strict=True):
        assert r.returncode == 1, (h.netns, r.stdout[-5000:])
        assert f"batch {batch}: 9 of 10 table(s) loaded" in r.stdout, (h.netns, r.stdout[-3000:])
        # the table's line of the summary: FAILED where this host ran it, NOT RUN where it did not
        line = next(x for x in r.stdout.splitlines() if x.startswith(f"{DOOMED} "))
        assert "FAILED at extract" in line or "NOT RUN" in line, (h.netns, line)
        if "FAILED at extract" in line:
            failed.append(h.netns)
            assert f"PUB.{DOOMED} is not in the source (dropped or renamed): check CBM_SOURCE_SCHEMA" in line, line
            assert f"cbm-etl add-table {DOOMED} --inactive" in line, line
        for t in TABLES[:9]:
            assert any(x.startswith(f"{t} ") and "loaded" in x for x in r.stdout.splitlines()), (h.netns, t)
    assert failed, "no host's summary shows the extract's error"
    clear_caches()
    assert batch_markers(batch) == {t: 1 for t in TABLES[:9]}
    rows = [r for r in log_rows() if r["Batch"] == batch]
    assert {r["TableName"] for r in rows if r["Status"] == "failed"} == {DOOMED}
    assert sorted(r["TableName"] for r in rows if r["StepName"] == "flow_complete") == TABLES[:9]
