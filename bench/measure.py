"""Measurements of the benchmark: the raw ODBC read, a ``luigi`` run as a subprocess, its run-log steps, the ODS check.

* :func:`raw_read`: the pipeline's own extraction SELECT and arrow-odbc reader (same connection string options,
  same batch size), batches counted and dropped: the limit of the source.
* :func:`run_luigi`: the ``luigi`` command, start to finish (process start-up included); its peak RSS is read from
  ``os.wait4`` (the child's own resource usage, children included), its step durations from ``etl.ETL_Log``
  (the run gets its own ``CBM_RUN_ID``).
* :func:`compare_ods`: the ODS table against the source, every row and column, through Arrow.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[1]
STEPS = ("extract", "transform", "load_staging", "merge_ods")


@contextmanager
def environment(env: Mapping[str, str]) -> Iterator[None]:
    """Set CBM_* variables in this process (for in-process setup and checks), then restore them."""
    from cbm_luigi.tasks.context import clear_caches

    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    clear_caches()
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        from cbm_luigi.destinations import open_target

        for t in list(_targets_opened):
            t.dispose()
        _targets_opened.clear()
        clear_caches()
        open_target.cache_clear()


_targets_opened: list[Any] = []


def target_of(url: str) -> Any:
    from cbm_luigi.destinations import open_target

    t = open_target(url)
    _targets_opened.append(t)
    return t


# -- raw read ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RawRead:
    rows: int
    seconds: float
    batches: int
    machine_cpu: float | None = None  # busy CPU seconds of the whole machine during the read (every process)

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def machine_busy_seconds() -> float | None:
    """CPU seconds the whole machine has been busy since boot (every core, every process: the pipeline, the
    source and target servers), from /proc/stat; None where there is none."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle and iowait
    busy = sum(fields[:7]) - idle  # user nice system (idle iowait) irq softirq; not steal (another VM's), guest
    # time is inside user
    return busy / os.sysconf("SC_CLK_TCK")


def _busy_since(start: float | None) -> float | None:
    end = machine_busy_seconds()
    return None if start is None or end is None else round(end - start, 2)


def raw_read(spec: Any, settings: Any, window: Any = None) -> RawRead:
    """Connect, run the extraction SELECT of ``window`` (default: the full window), fetch every batch into Arrow,
    drop it.  With the window of an incremental run, this is the source's own share of that run."""
    from cbm_luigi.pipeline.extract import source_schema
    from cbm_luigi.pipeline.sources import OdbcSource, open_source
    from cbm_luigi.pipeline.sources.flavors import Window

    busy = machine_busy_seconds()
    started = time.perf_counter()
    source = open_source(settings)
    if not isinstance(source, OdbcSource):
        raise SystemExit("the benchmark's source must be ODBC")
    sql, params = source.flavor.select_sql(spec, source.schema, window if window is not None else Window(None))
    rows = batches = 0
    try:
        for batch in source.open_reader(sql, params, settings.extract_batch_rows, source_schema(spec)):
            rows += batch.num_rows
            batches += 1
    finally:
        source.close()
    return RawRead(rows, time.perf_counter() - started, batches, _busy_since(busy))


# -- luigi runs -------------------------------------------------------------------------------------------------


@dataclass
class Run:
    """One ``luigi`` subprocess: wall time, exit code, peak RSS and what it logged in etl.ETL_Log."""

    label: str
    seconds: float
    returncode: int
    max_rss_mb: float
    run_id: str
    log_file: Path
    steps: dict[str, float] = field(default_factory=dict)  # step -> DurationSeconds
    rows: int | None = None  # RowsProcessed of merge_ods (None when nothing ran)
    inserted: int | None = None
    updated: int | None = None
    log_rows: int = 0
    cpu_seconds: float = 0.0  # user + system CPU of the luigi process (the servers' CPU is not in it)
    machine_cpu: float | None = None  # busy CPU seconds of the whole machine during the run (servers included)
    load_average: str = ""  # the machine's 1-minute load average when the run ended
    tables: int | None = None  # tables merged (a cbm-etl run --all)

    def rate(self, rows: int | None = None) -> float | None:
        n = self.rows if rows is None else rows
        return n / self.seconds if n and self.seconds else None


def luigi_command() -> list[str]:
    exe = Path(sys.executable).with_name("luigi")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("luigi")
    return [found] if found else [sys.executable, "-m", "luigi"]


def cbm_etl_command() -> list[str]:
    """The ``cbm-etl`` console script beside this interpreter (else ``python -c`` of its entry point)."""
    exe = Path(sys.executable).with_name("cbm-etl")
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-c", "import sys; from cbm_luigi.cli import main; sys.exit(main())"]


def run_luigi(label: str, task_args: list[str], env: Mapping[str, str], workdir: Path) -> Run:
    """Run ``luigi --module cbm_luigi.tasks <task_args> --local-scheduler`` under bench/launch.py."""
    return run_command(label, [*luigi_command(), "--module", "cbm_luigi.tasks", *task_args, "--local-scheduler"],
                       env, workdir)


def run_command(label: str, cmd: list[str], env: Mapping[str, str], workdir: Path) -> Run:
    """Run ``cmd`` (a ``luigi`` or ``cbm-etl`` command) under bench/launch.py, with its own ``CBM_RUN_ID``."""
    run_id = str(uuid.uuid4())
    log_file = workdir / "logs" / f"{label.replace(' ', '_').replace('%', 'pct').replace(',', '')}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    child_env = {**os.environ, **env, "CBM_RUN_ID": run_id, "LUIGI_CONFIG_PATH": str(REPO / "luigi.cfg")}
    log.info("%s: %s", label, " ".join(cmd))
    report = log_file.with_suffix(".rusage.json")
    busy = machine_busy_seconds()
    with open(log_file, "wb") as out:
        subprocess.run([sys.executable, str(Path(__file__).with_name("launch.py")), str(report), *cmd],
                       cwd=workdir, env=child_env, stdout=out, stderr=subprocess.STDOUT, check=False)
    figures = json.loads(report.read_text(encoding="utf-8"))
    return Run(label, figures["seconds"], figures["returncode"], figures["max_rss_kb"] / 1024, run_id, log_file,
               cpu_seconds=figures["cpu_seconds"], load_average=f"{os.getloadavg()[0]:.2f}",
               machine_cpu=_busy_since(busy))


def read_run_log(run: Run, target_url: str, table: str) -> Run:
    """Fill the run's step durations and counts from etl.ETL_Log (rows of its RunId)."""
    from cbm_luigi.store.schema import ETL_LOG

    target = target_of(target_url)
    d = target.dialect
    q = d.quote
    rows = target.fetchall(
        f"SELECT {q('StepName')}, {q('Status')}, {q('DurationSeconds')}, {q('RowsProcessed')}, "
        f"{q('RowsInserted')}, {q('RowsUpdated')} FROM {d.qualified(ETL_LOG.schema, ETL_LOG.name)} "
        f"WHERE {q('RunId')} = :r AND {q('TableName')} = :t",
        {"r": run.run_id, "t": table},
    )
    run.log_rows = len(rows)
    for step, status, seconds, processed, inserted, updated in rows:
        if status == "failed":
            run.steps[step] = float("nan")
            continue
        if seconds is not None:
            run.steps[step] = float(seconds)
        if step == "merge_ods":
            run.rows, run.inserted, run.updated = processed, inserted, updated
    return run


def read_run_totals(run: Run, target_url: str) -> dict[str, int]:
    """Totals of a run over every table (``cbm-etl run --all``): tables merged, rows extracted / inserted /
    updated, failed steps; the per-step seconds summed into ``run.steps``."""
    from cbm_luigi.store.schema import ETL_LOG

    target = target_of(target_url)
    d = target.dialect
    q = d.quote
    rows = target.fetchall(
        f"SELECT {q('StepName')}, {q('Status')}, {q('DurationSeconds')}, {q('RowsProcessed')}, "
        f"{q('RowsInserted')}, {q('RowsUpdated')} FROM {d.qualified(ETL_LOG.schema, ETL_LOG.name)} "
        f"WHERE {q('RunId')} = :r",
        {"r": run.run_id},
    )
    run.log_rows = len(rows)
    totals = {"merged": 0, "extracted": 0, "inserted": 0, "updated": 0, "failed": 0}
    for step, status, seconds, processed, inserted, updated in rows:
        if status == "failed":
            totals["failed"] += 1
            continue
        if seconds is not None and step in STEPS:
            run.steps[step] = run.steps.get(step, 0.0) + float(seconds)
        if step == "extract" and status == "success":
            totals["extracted"] += int(processed or 0)
        if step == "merge_ods" and status == "success":
            totals["merged"] += 1
            totals["inserted"] += int(inserted or 0)
            totals["updated"] += int(updated or 0)
    run.rows, run.inserted, run.updated = totals["extracted"], totals["inserted"], totals["updated"]
    return totals


# -- checks -----------------------------------------------------------------------------------------------------


def read_ods(target_url: str, spec: Any, odbc_driver: str) -> pa.Table:
    """The ODS table's business columns as Arrow (DuckDB directly; PostgreSQL through arrow-odbc)."""
    import sqlalchemy as sa

    from cbm_luigi.destinations import dialect_for_url

    d = dialect_for_url(target_url)
    cols = ", ".join(d.quote(c.sql_name) for c in spec.loaded_columns)
    sql = f"SELECT {cols} FROM {d.qualified('ods', spec.sql_name)}"
    url = sa.engine.make_url(target_url)
    if url.get_backend_name() == "duckdb":
        import duckdb

        con = duckdb.connect(url.database or ":memory:", read_only=True)
        try:
            return con.sql(sql).to_arrow_table()
        finally:
            con.close()
    import arrow_odbc

    conn_str = (f"DRIVER={{{odbc_driver}}};SERVER={url.host or '127.0.0.1'};PORT={url.port or 5432};"
                f"DATABASE={url.database};UID={url.username or 'postgres'};BoolsAsChar=0;UseDeclareFetch=1")
    def doubles(schema: pa.Schema) -> pa.Schema:  # psqlODBC describes double precision as SQL_FLOAT(17)
        return pa.schema([f.with_type(pa.float64()) if pa.types.is_float32(f.type) else f for f in schema])

    reader = arrow_odbc.connect(conn_str).read_arrow_batches(sql, batch_size=10_000, map_schema=doubles)
    return pa.Table.from_batches(list(reader), schema=reader.schema)


def read_source(spec: Any, settings: Any) -> pa.Table:
    from cbm_luigi.pipeline.extract import source_schema
    from cbm_luigi.pipeline.sources import open_source
    from cbm_luigi.pipeline.sources.flavors import Window

    schema = source_schema(spec)
    with open_source(settings) as source:
        sql, params = source.flavor.select_sql(spec, source.schema, Window(None))
        return pa.Table.from_batches(list(source.read_batches(sql, params, schema, 10_000)), schema=schema)


def compare_ods(source: pa.Table, ods: pa.Table, key: str) -> list[str]:
    """Differences between the source rows and the ODS rows (empty when equal), by column."""
    problems = []
    if source.num_rows != ods.num_rows:
        problems.append(f"{ods.num_rows} rows in the ODS, {source.num_rows} in the source")
        return problems
    src = source.sort_by(key)
    dst = ods.sort_by(key)
    for f in src.schema:
        a = src.column(f.name)
        try:
            b = dst.column(f.name).cast(f.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, KeyError) as exc:
            problems.append(f"{f.name}: {exc}")
            continue
        if not a.equals(b):
            diff = pc.sum(pc.cast(pc.invert(pc.fill_null(pc.equal(a, b), False)), pa.int64())).as_py()
            both_null = pc.sum(pc.cast(pc.and_(pc.is_null(a), pc.is_null(b)), pa.int64())).as_py()
            if (diff or 0) - (both_null or 0):
                problems.append(f"{f.name}: {(diff or 0) - (both_null or 0)} value(s) differ")
    return problems


# -- machine ----------------------------------------------------------------------------------------------------


def compile_package() -> str:
    """The package's modules compiled into ``__pycache__``, as a deployment has them (docs/OPERATIONS.md): where
    ``PYTHONDONTWRITEBYTECODE`` is set, every measured process would otherwise compile them again (~0.1 s each).
    Returns what the figures were measured with."""
    import compileall

    from cbm_luigi.ops.preflight import PACKAGE_DIR, bytecode_is_current

    compileall.compile_dir(str(PACKAGE_DIR), quiet=1)
    sources = sorted(PACKAGE_DIR.rglob("*.py"))
    cached = sum(bytecode_is_current(p) for p in sources)
    return f"cbm_luigi bytecode cached for {cached} of {len(sources)} modules"


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    import arrow_odbc  # noqa: F401
    import duckdb
    import luigi  # noqa: F401

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    from importlib.metadata import version

    return {
        "cpu": f"{cpu}, {os.cpu_count()} cores", "memory": mem,
        "load_average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(), "pyarrow": pa.__version__, "arrow-odbc": version("arrow-odbc"),
        "duckdb": duckdb.__version__, "luigi": version("luigi"), "psycopg": version("psycopg"),
    }
