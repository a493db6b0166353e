"""The benchmark: the pipeline against the limit of its source, in one run, on the same data.

    python bench/run.py --rows 40000 --cols 300            # or: cbm-etl bench --rows 40000 --cols 300
    python bench/run.py --rows 2000 --cols 40 --scale 0 --targets duckdb --json out.json

Reads a synthetic Progress-like wide table in the machine's PostgreSQL (``bench/source.py``; created once in the
database ``cbm_bench``, then reused) over ODBC with the ``postgresql`` source flavour, and measures:

1. the raw ODBC read of the pipeline's SELECT into Arrow and nowhere else (the limit);
2. per target (a fresh PostgreSQL database, a fresh DuckDB file), each as the ``luigi`` command in a subprocess:
   a full load, the same batch again (must run nothing), an incremental run with no source change, an incremental
   run after ``--change`` (1 %) of the rows changed, the same incremental run with the key scan of delete detection
   (DeleteScan: every key of the table read too), and a full load of ``--scale`` (5) times the rows;
   wall time (process start-up included), peak RSS, and the per-step durations from ``etl.ETL_Log``;
3. the ratios against the targets of docs/PERFORMANCE.md, and the no-change run's overhead above the source's own
   query (the extraction SELECT of its window alone, through the pipeline's reader: target <= 1.0 s);
4. a night of ``--small-tables`` (100) small tables in ONE ``cbm-etl run --all`` process per target: a full load,
   then an incremental run with no change; total seconds and seconds per table.

Every run is checked (rows inserted / updated, nothing run on a re-run, the ODS equal to the source row for row
after the incremental runs); the exit code is 1 when a check failed.  Writes only under ``--workdir`` (a
temporary directory by default, removed unless ``--keep``), the benchmark database and the fresh ODS databases
(dropped unless ``--keep``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: python bench/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

log = logging.getLogger("bench")

TARGETS = {"full": 3.0, "memory": 1.2, "nochange": 0.25, "change": 0.30, "nochange_overhead_s": 1.0}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rows", type=int, default=40_000, help="rows of the 1x table (default 40000)")
    p.add_argument("--cols", type=int, default=300, help="columns of the table (default 300)")
    p.add_argument("--scale", type=int, default=5, help="the memory run loads SCALE x the rows (0: skip it)")
    p.add_argument("--change", type=float, default=0.01, help="fraction of rows changed before the last run")
    p.add_argument("--targets", default="postgresql,duckdb", help="comma separated: postgresql, duckdb")
    p.add_argument("--pg", default="host=127.0.0.1 port=5432 user=postgres",
                   help="libpq conninfo of the PostgreSQL server (source and PostgreSQL target), without dbname")
    p.add_argument("--source-db", default="cbm_bench", help="database holding the synthetic source tables")
    p.add_argument("--odbc-driver", default="PostgreSQL Unicode", help="ODBC driver name of the source")
    p.add_argument("--batch-rows", type=int, help="CBM_EXTRACT_BATCH_ROWS for the runs (default: the settings')")
    p.add_argument("--small-tables", type=int, default=100,
                   help="tables of the night of small tables, run in one cbm-etl run --all (default 100; 0: skip)")
    p.add_argument("--small-rows", type=int, default=1_000, help="rows of each small table (default 1000)")
    p.add_argument("--small-cols", type=int, default=20, help="columns of each small table (default 20)")
    p.add_argument("--workdir", help="cache, ODS file and run logs (default: a temporary directory)")
    p.add_argument("--keep", action="store_true", help="keep the work directory and the ODS databases")
    p.add_argument("--no-verify", action="store_true", help="skip the row-by-row ODS check")
    p.add_argument("--json", help="also write the figures to this JSON file")
    p.add_argument("--partitions", default="1,2,4",
                   help="partitioned full loads of the table in 1, 2, 4 key ranges (bench/partitioned.py); '' skips")
    from bench.partitioned import add_arguments as partitioned_arguments

    partitioned_arguments(p, standalone=False)


@dataclass
class TargetResult:
    kind: str
    url: str
    runs: list[Any] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)  # problems; empty when every check passed
    changed: int = 0
    #: the no-change run against the SELECT of its window alone: run seconds, source query seconds
    nochange_query: Any = None
    #: the night of small tables: the cbm-etl run --all of the full load and of the no-change incremental run
    small: list[Any] = field(default_factory=list)
    small_url: str = ""

    def run(self, label: str) -> Any | None:
        return next((r for r in self.runs if r.label == label), None)


FULL, AGAIN, NOCHANGE, CHANGE, BIG = (
    "full load", "same batch again", "incremental, no change", "incremental, changed rows", "full load, scaled",
)
#: an incremental run with no source change whose table has DeleteDetection and DeleteScan: the key scan's cost
KEYSCAN = "incremental + key scan"
SMALL_FULL, SMALL_NOCHANGE = "full load", "incremental, no change"


def _fmt(v: float | None, spec: str = ",.0f") -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def run(args: argparse.Namespace) -> int:
    from bench.measure import compile_package, environment, machine, raw_read
    from bench.source import BenchSource
    from cbm_luigi.destinations.locking import set_keep_open

    bytecode = compile_package()

    # this process reads the ODS files itself (read_only) between the commands it times, which open them: it
    # closes a DuckDB file after each of its own transactions (the commands keep theirs, as in production)
    set_keep_open(0)
    kinds = [k.strip() for k in args.targets.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in ("postgresql", "duckdb")]
    if unknown or not kinds:
        raise SystemExit(f"--targets: unknown {', '.join(unknown) or '(none)'}; use postgresql and/or duckdb")
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="cbm-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    src = BenchSource(args.pg, args.source_db)
    table = src.ensure_table(args.rows, args.cols)
    big = src.ensure_table(args.rows * args.scale, args.cols) if args.scale > 1 else None
    small = _small_tables(src, args)
    source_env = {"CBM_SOURCE": src.odbc(args.odbc_driver), "CBM_SOURCE_FLAVOR": "postgresql",
                  "CBM_SOURCE_SCHEMA": src.schema}
    if args.batch_rows:
        source_env["CBM_EXTRACT_BATCH_ROWS"] = str(args.batch_rows)

    load_at_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    results: list[TargetResult] = []
    raw: dict[str, Any] = {}
    created_dbs: list[str] = []
    started = time.perf_counter()
    try:
        for kind in kinds:
            url = _fresh_target(kind, args, workdir, created_dbs)
            env = {**source_env, "CBM_TARGET": url, "CBM_CACHE_DIR": str(workdir / kind / "cache"),
                   "CBM_LOG_DIR": str(workdir / kind / "logs")}
            res = TargetResult(kind, url)
            results.append(res)
            with environment(env):
                spec = _register(table.name)
                big_spec = _register(big.name) if big else None
                if not raw:
                    from cbm_luigi.tasks.context import settings

                    # best of two: the first read also warms the server's cache for the loads that follow
                    reads = [raw_read(spec, settings()) for _ in range(2)]
                    raw["1x"] = min(reads, key=lambda r: r.seconds)
                    if big_spec is not None:
                        raw["scaled"] = raw_read(big_spec, settings())
            _measure_target(res, args, env, workdir, src, table, big, spec, big_spec)
            if small:
                _measure_small(res, args, source_env, workdir, created_dbs, small)
        from bench.partitioned import measure as measure_partitioned

        partitioned = measure_partitioned(args, src, table, workdir, created_dbs)
    finally:
        if not args.keep:
            _drop_databases(args.pg, created_dbs)
            if not args.workdir:
                shutil.rmtree(workdir, ignore_errors=True)
    total = time.perf_counter() - started
    measured_on = {**machine(), "load_average_at_start": load_at_start, "bytecode": bytecode}
    figures = _figures(args, table, big, raw, results, measured_on, total, small)
    figures["partitioned"] = partitioned
    _print(figures)
    from bench.partitioned import print_figures as print_partitioned

    print_partitioned(partitioned)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=str), encoding="utf-8")
    if args.keep:
        print(f"\nwork directory kept: {workdir}")
    return 1 if any(r.checks for r in results) or partitioned["checks"] else 0


def _fresh_target(kind: str, args: argparse.Namespace, workdir: Path, created: list[str]) -> str:
    if kind == "duckdb":
        path = workdir / kind / "cbm_ods.duckdb"
        path.parent.mkdir(parents=True, exist_ok=True)
        for p in (path, path.with_suffix(".duckdb.wal")):
            p.unlink(missing_ok=True)
        return f"duckdb:///{path}"
    import psycopg

    name = f"cbm_bench_ods_{uuid.uuid4().hex[:8]}"
    admin = " ".join([*(p for p in args.pg.split() if not p.startswith("dbname=")), "dbname=postgres"])
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    created.append(name)
    kv = dict(item.split("=", 1) for item in args.pg.split())
    return (f"postgresql+psycopg://{kv.get('user', 'postgres')}@{kv.get('host', '127.0.0.1')}:"
            f"{kv.get('port', '5432')}/{name}")


def _drop_databases(pg: str, names: list[str]) -> None:
    import psycopg

    admin = " ".join([*(p for p in pg.split() if not p.startswith("dbname=")), "dbname=postgres"])
    with psycopg.connect(admin, autocommit=True) as conn:
        for name in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _register(table: str, **options: Any) -> Any:
    """init-db, sync-columns and add-table (with ``options``) for a benchmark table (in this process); returns
    its spec."""
    from bench.measure import target_of
    from bench.source import DATE_MODIF, KEY
    from cbm_luigi.commands.setup import sync_tables
    from cbm_luigi.store.config_tables import MetadataStore
    from cbm_luigi.store.schema import init_db  # deferred: start-up of cbm-etl
    from cbm_luigi.tasks.context import clear_caches, settings

    target = target_of(settings().target)
    init_db(target)
    sync_tables([table])
    spec = MetadataStore(target).register_table(
        table, primary_key=[KEY], date_modif_col=DATE_MODIF, precision="datetime", lookback="0d",
        priority="normal", is_fact=True, notes="cbm-luigi benchmark", **options,
    )
    clear_caches()
    return spec


def _measure_target(res: TargetResult, args: argparse.Namespace, env: dict[str, str], workdir: Path, src: Any,
                    table: Any, big: Any, spec: Any, big_spec: Any) -> None:
    from bench.measure import compare_ods, environment, read_ods, read_run_log, read_source, run_luigi

    wd = workdir / res.kind
    name = table.name

    def luigi(label: str, mode: str, batch: str, tbl: str = name) -> Any:
        r = run_luigi(f"{res.kind} {label}", ["LoadTable", "--table", tbl, "--mode", mode, "--batch-id", batch], env, wd)
        r.label = label
        with environment(env):
            read_run_log(r, env["CBM_TARGET"], tbl)
        res.runs.append(r)
        if r.returncode != 0:
            res.checks.append(f"{label}: luigi exited with {r.returncode} (log: {r.log_file})")
        log.info("%s %s: %.2fs, %d log rows, peak RSS %.0f MB", res.kind, label, r.seconds, r.log_rows, r.max_rss_mb)
        return r

    full = luigi(FULL, "full", "bench-full")
    if full.inserted != table.rows:
        res.checks.append(f"{FULL}: inserted {full.inserted}, expected {table.rows}")
    again = luigi(AGAIN, "full", "bench-full")
    if again.log_rows:
        res.checks.append(f"{AGAIN}: {again.log_rows} run-log rows written, expected none (nothing to run)")
    with environment(env):
        window = _next_window(env["CBM_TARGET"], spec)  # the window the no-change run reads
    nochange = luigi(NOCHANGE, "incremental", "bench-inc-0")
    if nochange.rows != 0:
        res.checks.append(f"{NOCHANGE}: {nochange.rows} rows extracted, expected 0")
    with environment(env):
        from bench.measure import raw_read
        from cbm_luigi.tasks.context import settings

        # the source's own share of the no-change run: its SELECT alone, through the pipeline's reader, best of 3
        query = min((raw_read(spec, settings(), window) for _ in range(3)), key=lambda r: r.seconds)
    res.nochange_query = query
    if query.rows != 0:
        res.checks.append(f"{NOCHANGE}: the SELECT of its window ({window.reason}) returned {query.rows} rows")
    res.changed = src.change_rows(table, args.change)
    changed = luigi(CHANGE, "incremental", "bench-inc-1")
    if changed.updated != res.changed or changed.inserted != 0:
        res.checks.append(f"{CHANGE}: {changed.inserted} inserted / {changed.updated} updated, "
                          f"expected 0 / {res.changed}")
    if not args.no_verify:
        with environment(env):
            from cbm_luigi.tasks.context import settings

            problems = compare_ods(read_source(spec, settings()), read_ods(env["CBM_TARGET"], spec, args.odbc_driver),
                                   spec.primary_key[0])
        res.checks.extend(f"ODS differs from the source: {p}" for p in problems)
    _measure_key_scan(res, env, table, luigi)
    if big is not None:
        scaled = luigi(BIG, "full", "bench-full", big.name)
        if scaled.inserted != big.rows:
            res.checks.append(f"{BIG}: inserted {scaled.inserted}, expected {big.rows}")


def _next_window(url: str, spec: Any) -> Any:
    """The window the next incremental run of ``spec`` reads (from its watermark, as the extract computes it)."""
    from bench.measure import target_of
    from cbm_luigi.pipeline.sources.flavors import incremental_window
    from cbm_luigi.store.config_tables import MetadataStore

    return incremental_window(spec, "incremental", MetadataStore(target_of(url)).watermark(spec.table_name))


def _small_tables(src: Any, args: argparse.Namespace) -> list[Any]:
    """The night's small source tables (created once, then reused, as the wide one)."""
    from bench.source import small_table_name

    return [src.ensure_table(args.small_rows, args.small_cols, name=small_table_name(i, args.small_rows,
                                                                                      args.small_cols))
            for i in range(1, args.small_tables + 1)]


def _register_many(tables: list[str]) -> None:
    """init-db, sync-columns and add-table for every small table, in this process."""
    from bench.measure import target_of
    from bench.source import DATE_MODIF, KEY
    from cbm_luigi.commands.setup import sync_tables
    from cbm_luigi.store.config_tables import MetadataStore
    from cbm_luigi.store.schema import init_db
    from cbm_luigi.tasks.context import clear_caches, settings

    target = target_of(settings().target)
    init_db(target)
    sync_tables(tables)
    store = MetadataStore(target)
    for name in tables:
        store.register_table(name, primary_key=[KEY], date_modif_col=DATE_MODIF, precision="datetime",
                             lookback="0d", priority="normal", is_fact=True, notes="cbm-luigi benchmark, small")
    clear_caches()


def _measure_small(res: TargetResult, args: argparse.Namespace, source_env: dict[str, str], workdir: Path,
                   created_dbs: list[str], small: list[Any]) -> None:
    """A night of small tables: every table registered in a fresh target of its own, then ONE ``cbm-etl run --all``
    process for the full load and one for an incremental run with no change (the per-process and per-task costs
    that a night of many small tables pays, the source reads being short)."""
    from bench.measure import cbm_etl_command, environment, read_run_totals, run_command

    kind = res.kind
    url = res.small_url = _fresh_target(kind, args, workdir / "small", created_dbs)
    wd = workdir / "small" / kind
    env = {**source_env, "CBM_TARGET": url, "CBM_CACHE_DIR": str(wd / "cache"), "CBM_LOG_DIR": str(wd / "logs")}
    with environment(env):
        _register_many([t.name for t in small])
    expected = sum(t.rows for t in small)
    for label, mode, batch in ((SMALL_FULL, "full", "bench-small-full"),
                               (SMALL_NOCHANGE, "incremental", "bench-small-inc-0")):
        r = run_command(f"{kind} small {label}",
                        [*cbm_etl_command(), "run", "--all", "--mode", mode, "--batch-id", batch], env, wd)
        r.label = label
        with environment(env):
            totals = read_run_totals(r, url)
        r.tables = totals["merged"]
        res.small.append(r)
        log.info("%s small tables %s: %.2fs for %d tables", kind, label, r.seconds, r.tables)
        what = f"{len(small)} small tables, {label}"
        if r.returncode != 0:
            res.checks.append(f"{what}: cbm-etl run exited with {r.returncode} (log: {r.log_file})")
        if totals["merged"] != len(small) or totals["failed"]:
            res.checks.append(f"{what}: {totals['merged']} tables merged, {totals['failed']} failed steps, "
                              f"expected {len(small)} merged")
        want = expected if mode == "full" else 0
        if totals["inserted"] != want or totals["updated"] != 0 or (mode != "full" and totals["extracted"]):
            res.checks.append(f"{what}: {totals['extracted']} extracted / {totals['inserted']} inserted / "
                              f"{totals['updated']} updated, expected {want} inserted, 0 updated")


def _measure_key_scan(res: TargetResult, env: dict[str, str], table: Any, luigi: Any) -> None:
    """The no-change incremental run again, the table now with DeleteDetection and DeleteScan: it also reads every
    key of the source (docs/OPERATIONS.md, "Deletes on incremental runs").  Its first merge adds the ODS's
    etl_deleted_ts column (nullable, no default: a catalog change on both targets).  The key scan's own seconds
    (in the manifest) become the step ``key_scan`` (part of ``extract``)."""
    from bench.measure import environment
    from cbm_luigi.pipeline.extract import Manifest, extract_dir

    with environment(env):
        _register(table.name, delete_detection=True, delete_scan=True)
    scanned = luigi(KEYSCAN, "incremental", "bench-inc-keys")
    try:
        manifest = Manifest.read(extract_dir(Path(env["CBM_CACHE_DIR"]), table.name, "bench-inc-keys", "incremental"))
    except (OSError, ValueError) as exc:
        res.checks.append(f"{KEYSCAN}: no manifest ({exc})")
        return
    scanned.steps["key_scan"] = manifest.key_seconds
    if manifest.key_rows != table.rows or scanned.rows != 0:
        res.checks.append(f"{KEYSCAN}: {manifest.key_rows} keys scanned / {scanned.rows} rows merged, expected "
                          f"{table.rows} / 0")


def _figures(args: argparse.Namespace, table: Any, big: Any, raw: dict[str, Any], results: list[TargetResult],
             machine: dict[str, str], total: float, small: list[Any] | None = None) -> dict[str, Any]:
    raw1 = raw["1x"]
    program = Path(sys.argv[0]).name if sys.argv else "cbm-etl"
    out: dict[str, Any] = {
        "command": ("python bench/run.py" if program == "run.py" else program) + " " + " ".join(sys.argv[1:]),
        "machine": machine, "table": table.name, "rows": table.rows, "cols": table.cols,
        "scaled_rows": big.rows if big else None, "changed_fraction": args.change,
        "raw_read": asdict(raw1) | {"rows_per_s": raw1.rate},
        "raw_read_scaled": (asdict(raw["scaled"]) | {"rows_per_s": raw["scaled"].rate}) if "scaled" in raw else None,
        "targets": {}, "total_seconds": round(total, 1),
        "small_tables": {"tables": len(small or []), "rows": args.small_rows, "cols": args.small_cols,
                         "targets": {}} if small else None,
    }
    for res in results:
        runs = []
        for r in res.runs:
            runs.append({
                "run": r.label, "seconds": round(r.seconds, 3), "rows": r.rows, "inserted": r.inserted,
                "updated": r.updated, "rows_per_s": r.rate(), "peak_rss_mb": round(r.max_rss_mb, 1),
                "steps": r.steps, "log_rows": r.log_rows, "returncode": r.returncode,
                "cpu_seconds": round(r.cpu_seconds, 2), "load_average": r.load_average,
                "machine_cpu_seconds": r.machine_cpu,
            })
        full, nochange, changed, scaled, keyscan = (res.run(x) for x in (FULL, NOCHANGE, CHANGE, BIG, KEYSCAN))
        ratios = {
            "full_over_raw": full.seconds / raw1.seconds if full else None,
            "memory_scaled_over_1x": scaled.max_rss_mb / full.max_rss_mb if scaled and full else None,
            "nochange_over_full": nochange.seconds / full.seconds if nochange and full else None,
            "change_over_full": changed.seconds / full.seconds if changed and full else None,
            "keyscan_over_full": keyscan.seconds / full.seconds if keyscan and full else None,
            "keyscan_over_nochange": keyscan.seconds / nochange.seconds if keyscan and nochange else None,
        }
        from cbm_luigi.config.secrets import redact

        q = res.nochange_query
        overhead = {
            "run_seconds": round(nochange.seconds, 3), "source_query_seconds": round(q.seconds, 3),
            "overhead_seconds": round(nochange.seconds - q.seconds, 3), "target_seconds": TARGETS["nochange_overhead_s"],
        } if nochange and q is not None else None
        out["targets"][res.kind] = {"url": redact(res.url), "runs": runs, "ratios": ratios, "changed_rows": res.changed,
                                    "nochange_overhead": overhead, "checks": res.checks or ["ok"]}
        if out["small_tables"] is not None:
            out["small_tables"]["targets"][res.kind] = {"url": redact(res.small_url)} | {
                ("full" if r.label == SMALL_FULL else "nochange"): {
                    "run": r.label, "tables": r.tables, "seconds": round(r.seconds, 3),
                    "seconds_per_table": round(r.seconds / r.tables, 3) if r.tables else None,
                    "cpu_seconds": round(r.cpu_seconds, 2), "peak_rss_mb": round(r.max_rss_mb, 1),
                    "rows": r.rows, "inserted": r.inserted, "steps": {k: round(v, 3) for k, v in r.steps.items()},
                    "returncode": r.returncode, "load_average": r.load_average,
                } for r in res.small
            }
    return out


def _print(f: dict[str, Any]) -> None:
    from cbm_luigi.commands.setup import print_table

    m = f["machine"]
    print(f"\ncbm-luigi benchmark: {f['rows']:,} rows x {f['cols']} columns, PostgreSQL source over ODBC "
          f"({f['table']})")
    print(f"machine: {m['cpu']}, {m['memory']}; Python {m['python']}, pyarrow {m['pyarrow']}, "
          f"arrow-odbc {m['arrow-odbc']}, duckdb {m['duckdb']}; load average {m['load_average_at_start']} at start; "
          f"{m['bytecode']}")
    r = f["raw_read"]
    line = f"raw ODBC read into Arrow (the limit): {r['seconds']:.2f} s, {r['rows_per_s']:,.0f} rows/s"
    if r.get("machine_cpu") is not None:
        line += (f" (machine busy {r['machine_cpu']:.1f} cpu-s: {r['machine_cpu'] / r['seconds']:.1f} of "
                 f"{os.cpu_count()} cores)")
    if f["raw_read_scaled"]:
        s = f["raw_read_scaled"]
        line += f"; {s['rows']:,} rows: {s['seconds']:.2f} s, {s['rows_per_s']:,.0f} rows/s"
    print(line + "\n")
    rows = []
    for kind, t in f["targets"].items():
        for run in t["runs"]:
            steps = run["steps"]
            rows.append((kind, run["run"], _fmt(run["rows"], ","), _fmt(run["seconds"], ".2f"),
                         _fmt(run["cpu_seconds"], ".1f"), _fmt(run.get("machine_cpu_seconds"), ".1f"),
                         _fmt(run["rows_per_s"]), _fmt(run["peak_rss_mb"]),
                         *(_fmt(steps.get(s), ".2f")
                           for s in ("extract", "key_scan", "transform", "load_staging", "merge_ods")),
                         run.get("load_average") or "-"))
    print_table(("target", "run", "rows", "seconds", "cpu s", "machine cpu s", "rows/s", "peak RSS MB", "extract s",
                 "key scan s", "transform s", "staging s", "merge s", "load"), rows)
    print()
    names = list(f["targets"])
    ratio_rows = []
    for key, label, target, fmt in (
        ("full_over_raw", "full load end to end / raw read", f"<= {TARGETS['full']:.0f}x", ".2f"),
        ("memory_scaled_over_1x", "peak RSS scaled / 1x", f"<= {TARGETS['memory']}", ".2f"),
        ("nochange_over_full", "no-change incremental / full", f"< {TARGETS['nochange']:.0%}", ".0%"),
        ("change_over_full", f"{f['changed_fraction']:.0%} changed incremental / full",
         f"< {TARGETS['change']:.0%}", ".0%"),
        ("keyscan_over_full", "incremental + key scan / full", "-", ".0%"),
        ("keyscan_over_nochange", "incremental + key scan / no-change incremental", "-", ".2f"),
    ):
        cells = []
        for n in names:
            v = f["targets"][n]["ratios"][key]
            cells.append(_fmt(v, fmt) + ("x" if fmt == ".2f" and v is not None else ""))
        ratio_rows.append((label, *cells, target))
    print_table(("ratio", *names, "target"), ratio_rows)
    print()
    # the floor the cores set: a full load's busy CPU (every process, the servers' included) spread over every core
    for n in names:
        full = next((run for run in f["targets"][n]["runs"] if run["run"] == FULL), None)
        busy = full.get("machine_cpu_seconds") if full else None
        if busy and r["seconds"]:
            floor = busy / (os.cpu_count() or 1)
            print(f"cpu bound {n}: the full load kept the machine busy {busy:.1f} cpu-s; on {os.cpu_count()} cores no "
                  f"run of it takes less than {floor:.2f} s = {floor / r['seconds']:.2f}x the raw read")
    print()
    for n in names:
        o = f["targets"][n]["nochange_overhead"]
        if o is not None:
            print(f"no-change overhead {n} = run seconds - source query seconds = {o['run_seconds']:.2f} - "
                  f"{o['source_query_seconds']:.2f} = {o['overhead_seconds']:.2f} s (target <= "
                  f"{o['target_seconds']:.1f} s)")
    print()
    st = f["small_tables"]
    if st:
        print(f"{st['tables']} small tables ({st['rows']:,} rows x {st['cols']} columns each), one `cbm-etl run "
              "--all` process per run:")
        rows = []
        for n, t in st["targets"].items():
            for r in (t[k] for k in ("full", "nochange") if k in t):
                rows.append((n, r["run"], _fmt(r["tables"], ","), _fmt(r["rows"], ","), _fmt(r["seconds"], ".2f"),
                             _fmt(r["seconds_per_table"], ".3f"), _fmt(r["cpu_seconds"], ".1f"),
                             _fmt(r["peak_rss_mb"]), r["load_average"]))
        print_table(("target", "run", "tables", "rows", "seconds", "s / table", "cpu s", "peak RSS MB",
                     "load average"), rows)
        print()
    for n in names:
        print(f"checks {n}: " + "; ".join(f["targets"][n]["checks"]))
    print(f"(benchmark total {f['total_seconds']:.0f} s)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/run.py", description=(__doc__ or "").splitlines()[0])
    add_arguments(parser)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
