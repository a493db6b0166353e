"""Partitioned extraction, measured: full loads of the benchmark table read as 1, 2, 4 key ranges
(``add-table --partitions N``, ``luigi ... --workers N``), against the raw read over one connection.

    python bench/partitioned.py --rows 40000 --cols 300 --parts 1,2,4 --throttle-mbps 4
    (also part of bench/run.py: --partitions 1,2,4; --partitions '' skips it)

Two sources, the same PostgreSQL table:

* ``direct``: the machine's PostgreSQL over psqlODBC.  Here the read is CPU-bound on the same 2 cores as
  everything else (psqlODBC converting text, the server sending it, the pipeline's transform), so more connections
  cannot make it much faster: the figures show it.
* ``throttled``: the same server behind bench/throttle.py, which caps what EACH connection receives at
  ``--throttle-mbps`` MiB/s: a source whose every connection is slow for a reason of its own (a Progress SQL server
  process per connection reading its database on cores of its own, a WAN link per session), not for lack of CPU
  here.  That is where N connections pay; the forwarder itself is light (it copies bytes and sleeps).

Each load is a fresh DuckDB file (or PostgreSQL database: ``--partition-target``), the table registered with
``--partitions N``, one ``luigi --module cbm_luigi.tasks LoadTable --mode full --workers N --local-scheduler`` run
timed from process start to exit; checked by its inserted count.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: python bench/partitioned.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

log = logging.getLogger("bench")


def add_arguments(p: argparse.ArgumentParser, *, standalone: bool = True) -> None:
    if standalone:
        p.add_argument("--rows", type=int, default=40_000, help="rows of the table (default 40000)")
        p.add_argument("--cols", type=int, default=300, help="columns of the table (default 300)")
        p.add_argument("--pg", default="host=127.0.0.1 port=5432 user=postgres",
                       help="libpq conninfo of the PostgreSQL server, without dbname")
        p.add_argument("--source-db", default="cbm_bench", help="database holding the synthetic source tables")
        p.add_argument("--odbc-driver", default="PostgreSQL Unicode", help="ODBC driver name of the source")
        p.add_argument("--workdir", help="cache, ODS files and run logs (default: a temporary directory)")
        p.add_argument("--keep", action="store_true", help="keep the work directory and the ODS databases")
        p.add_argument("--json", help="also write the figures to this JSON file")
        p.add_argument("--partitions", default="1,2,4", help="key ranges of the partitioned loads (default 1,2,4)")
    p.add_argument("--throttle-mbps", type=float, default=4.0,
                   help="MiB/s per source connection of the throttled source (default 4; 0: direct source only)")
    p.add_argument("--partition-target", choices=("duckdb", "postgresql"), default="duckdb",
                   help="target of the partitioned loads (default duckdb)")


def parse_parts(text: str) -> list[int]:
    try:
        parts = [int(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise SystemExit(f"--partitions {text!r}: a comma separated list of numbers, e.g. 1,2,4") from exc
    if any(n < 1 for n in parts):
        raise SystemExit(f"--partitions {text!r}: each number must be at least 1")
    return parts


def measure(args: argparse.Namespace, src: Any, table: Any, workdir: Path, created_dbs: list[str]) -> dict[str, Any]:
    """The partitioned loads of ``table`` from the direct source and, with ``--throttle-mbps``, the throttled one.
    Returns {"sources": [{"source", "raw_seconds", "loads": [{"parts", "seconds", ...}]}], "checks": [...]}."""
    from bench.measure import environment, raw_read, read_run_log, run_luigi
    from bench.run import _fresh_target, _register
    from bench.throttle import ThrottledForwarder

    parts_list = parse_parts(args.partitions)
    out: dict[str, Any] = {"rows": table.rows, "cols": table.cols, "target": args.partition_target, "sources": [],
                           "checks": []}
    if not parts_list:
        return out
    p = src.params()
    sources: list[tuple[str, float | None]] = [("direct", None)]
    if args.throttle_mbps:
        sources.append((f"throttled {args.throttle_mbps:g} MiB/s per connection", args.throttle_mbps * 2**20))
    for label, rate in sources:
        fwd = (ThrottledForwarder(p.get("host", "127.0.0.1"), int(p.get("port", "5432")), bytes_per_second=rate)
               if rate else None)
        try:
            if fwd is not None:
                fwd.__enter__()
            odbc = src.odbc(args.odbc_driver)
            if fwd is not None:
                odbc = odbc.replace(f"SERVER={p.get('host', '127.0.0.1')};PORT={p.get('port', '5432')}",
                                    f"SERVER={fwd.host};PORT={fwd.port}")
            source_env = {"CBM_SOURCE": odbc, "CBM_SOURCE_FLAVOR": "postgresql", "CBM_SOURCE_SCHEMA": src.schema}
            row: dict[str, Any] = {"source": label, "loads": []}
            for n in parts_list:
                wd = workdir / "partitioned" / f"{label.split()[0]}-{n}"
                url = _fresh_target(args.partition_target, args, wd, created_dbs)
                env = {**source_env, "CBM_TARGET": url, "CBM_CACHE_DIR": str(wd / "cache"),
                       "CBM_LOG_DIR": str(wd / "logs")}
                with environment(env):
                    spec = _register(table.name, extract_partitions=n)
                    if "raw_seconds" not in row:
                        from cbm_luigi.tasks.context import settings

                        raw = min((raw_read(spec, settings()) for _ in range(2)), key=lambda r: r.seconds)
                        row["raw_seconds"] = round(raw.seconds, 2)
                        log.info("partitioned, %s: raw read %.2fs", label, raw.seconds)
                r = run_luigi(f"partitioned {label.split()[0]} {n}", ["LoadTable", "--table", table.name, "--mode",
                                                                     "full", "--batch-id", "bench-part",
                                                                     "--workers", str(n)], env, wd)
                with environment(env):
                    read_run_log(r, env["CBM_TARGET"], table.name)
                if r.returncode != 0 or r.inserted != table.rows:
                    out["checks"].append(f"partitioned {label}, {n} part(s): exit {r.returncode}, inserted "
                                         f"{r.inserted} of {table.rows} (log: {r.log_file})")
                row["loads"].append({"parts": n, "seconds": round(r.seconds, 2), "cpu_seconds": round(r.cpu_seconds, 1),
                                     "max_rss_mb": round(r.max_rss_mb), "extract_seconds": r.steps.get("extract"),
                                     "load_average": r.load_average})
                log.info("partitioned, %s, %d part(s): %.2fs", label, n, r.seconds)
            out["sources"].append(row)
        finally:
            if fwd is not None:
                fwd.__exit__(None, None, None)
    return out


def print_figures(f: dict[str, Any]) -> None:
    """The table of the partitioned loads: seconds, speed-up over one partition, ratio to the raw read."""
    if not f.get("sources"):
        return
    print(f"\npartitioned full loads ({f['rows']:,} rows x {f['cols']} columns -> {f['target']}, "
          "luigi LoadTable --mode full --workers N, table registered with --partitions N)")
    header = ("source", "parts", "seconds", "cpu s", "peak RSS MB", "extract s", "speed-up vs 1", "/ raw read")
    rows = []
    for s in f["sources"]:
        one = next((x["seconds"] for x in s["loads"] if x["parts"] == 1), None)
        rows.append((s["source"], "raw read, 1 connection", f"{s['raw_seconds']:.2f}", "", "", "", "", ""))
        for x in s["loads"]:
            speed = f"{one / x['seconds']:.2f}x" if one and x["seconds"] else ""
            extract = f"{x['extract_seconds']:.2f}" if x.get("extract_seconds") is not None else ""
            rows.append(("", str(x["parts"]), f"{x['seconds']:.2f}", f"{x['cpu_seconds']:.1f}", str(x["max_rss_mb"]),
                         extract, speed, f"{x['seconds'] / s['raw_seconds']:.2f}x" if s["raw_seconds"] else ""))
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    for r in (header, tuple("-" * w for w in widths), *rows):
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    for c in f.get("checks", []):
        print(f"check failed: {c}")


def run(args: argparse.Namespace) -> int:
    from bench.measure import compile_package, machine
    from bench.run import _drop_databases
    from bench.source import BenchSource
    from cbm_luigi.destinations.locking import set_keep_open

    # this process reads the ODS files itself (read_only) between the commands it times, which open them: it
    # closes a DuckDB file after each of its own transactions (the commands keep theirs, as in production)
    set_keep_open(0)
    bytecode = compile_package()
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="cbm-bench-part-"))
    src = BenchSource(args.pg, args.source_db)
    table = src.ensure_table(args.rows, args.cols)
    created: list[str] = []
    started = time.perf_counter()
    try:
        figures = measure(args, src, table, workdir, created)
    finally:
        if not args.keep:
            _drop_databases(args.pg, created)
            if not args.workdir:
                shutil.rmtree(workdir, ignore_errors=True)
    figures["machine"] = {**machine(), "bytecode": bytecode}
    figures["seconds"] = round(time.perf_counter() - started, 1)
    print_figures(figures)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=str), encoding="utf-8")
    return 1 if figures["checks"] else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
