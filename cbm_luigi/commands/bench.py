"""``cbm-etl bench``: the performance benchmark (``bench/run.py`` of the source tree), same options.

    cbm-etl bench --rows 40000 --cols 300            # PostgreSQL source over ODBC -> PostgreSQL and DuckDB
    cbm-etl bench --rows 2000 --cols 40 --scale 0 --targets duckdb
    cbm-etl bench --startup --repeat 10              # start-up of cbm-etl itself (bench/startup.py)

Reads and writes what ``bench/run.py`` does (docs/PERFORMANCE.md): the ``cbm_bench`` source database of the local
PostgreSQL, fresh ODS databases dropped at the end, a temporary work directory.  The benchmark ships with the source
tree, not with an installed package.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any

from cbm_luigi.errors import ConfigError

_ROOT = Path(__file__).resolve().parents[2]


def _bench_module(name: str = "run") -> Any | None:
    if not (_ROOT / "bench" / f"{name}.py").is_file():
        return None
    if str(_ROOT) not in sys.path:
        sys.path.insert(0, str(_ROOT))
    return importlib.import_module(f"bench.{name}")


def add_parser(sub: Any) -> None:
    p = sub.add_parser("bench", help="benchmark the pipeline against the raw ODBC read (docs/PERFORMANCE.md)")
    module = _bench_module()
    if module is not None:
        module.add_arguments(p)
    startup = _bench_module("startup")
    if startup is not None:
        p.add_argument("--startup", action="store_true",
                       help="measure the start-up of cbm-etl instead (bench/startup.py): --help, --version, "
                            "plan --help, tables; median and min seconds of --repeat runs")
        startup.add_arguments(p)
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    module = _bench_module("startup" if getattr(args, "startup", False) else "run")
    if module is None:
        raise ConfigError(f"the benchmark is not installed: it ships with the source tree (bench/ beside "
                          f"cbm_luigi/, looked in {_ROOT}); run it from a checkout")
    return int(module.run(args))
