"""Start-up time of the cbm-etl command: the real commands, run N times each, median and min wall-clock.

    python bench/startup.py                  # 5 runs of each command
    python bench/startup.py --repeat 10      # or: cbm-etl bench --startup --repeat 10
    python bench/startup.py --cbm-etl /root/.pyenv/versions/3.11.7/bin/cbm-etl   # another launcher

Runs, as subprocesses, the interpreter alone (``python -c pass`` through the same launcher directory: the floor
no command can beat), ``cbm-etl --help``, ``cbm-etl --version``, ``cbm-etl plan --help`` and ``cbm-etl tables``
against a temporary DuckDB target (created first by ``cbm-etl init-db``, not timed; removed at the end).  The
wall clock covers the whole process, launcher included (a pyenv shim adds about 0.3 s to every command).
Prints the figures; asserts nothing about them (docs/PERFORMANCE.md records them).  Exit code 1 when a command
fails.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repeat", type=int, default=5, help="runs of each command (default 5)")
    p.add_argument("--cbm-etl", dest="cbm_etl",
                   help="the cbm-etl executable to time (default: the one on PATH, else python -m cbm_luigi.cli)")


def launcher(explicit: str | None) -> tuple[list[str], list[str]]:
    """The cbm-etl command to run, and the interpreter beside it (for the floor)."""
    found = explicit or shutil.which("cbm-etl")
    if found:
        python = Path(found).parent / "python"
        return [found], [str(python) if python.exists() else sys.executable]
    return [sys.executable, "-m", "cbm_luigi.cli"], [sys.executable]


def machine() -> str:
    debian = Path("/etc/debian_version")
    system = f"Debian {debian.read_text().strip()}" if debian.is_file() else platform.platform()
    return f"{os.cpu_count()} CPU(s), {system}, Python {platform.python_version()}"


def time_command(cmd: list[str], env: dict[str, str], repeat: int) -> list[float]:
    """Wall-clock seconds of each run; raises RuntimeError naming the command when a run fails."""
    seconds = []
    for _ in range(repeat):
        start = time.perf_counter()
        r = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=300)
        seconds.append(time.perf_counter() - start)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)}: exit code {r.returncode}\n{r.stderr[-2000:]}")
    return seconds


ISOLATION = """
import statistics, sys, time
import cbm_luigi.tasks  # the task process: Luigi, SQLAlchemy, Arrow, the drivers loaded
from cbm_luigi.pipeline.isolation import run_isolated
seconds = []
for _ in range(int(sys.argv[1])):
    t0 = time.perf_counter()
    run_isolated(lambda: {"rows": 1, "files": ["part-00000.parquet"]}, table="bench")
    seconds.append(time.perf_counter() - t0)
print(f"{statistics.median(seconds) * 1000:.1f} {min(seconds) * 1000:.1f}")
"""


def isolation_cost(python: list[str], env: dict[str, str], repeat: int) -> tuple[float, float]:
    """Milliseconds (median, min) that running an extract in a child process of its own adds (fork, result back
    through a pipe, wait), measured in a process that has loaded what a task process loads."""
    r = subprocess.run([*python, "-c", ISOLATION, str(max(repeat, 5) * 4)], env=env, capture_output=True, text=True,
                       timeout=300)
    if r.returncode != 0:
        raise RuntimeError(f"extract isolation: exit code {r.returncode}\n{r.stderr[-2000:]}")
    median, least = r.stdout.split()
    return float(median), float(least)


def run(args: argparse.Namespace) -> int:
    repeat = max(int(getattr(args, "repeat", 5) or 1), 1)
    cbm_etl, python = launcher(getattr(args, "cbm_etl", None))
    work = Path(tempfile.mkdtemp(prefix="cbm-startup-"))
    env = {**os.environ, "CBM_TARGET": f"duckdb:///{work / 'cbm_ods.duckdb'}", "CBM_LOG_DIR": str(work / "logs"),
           "CBM_CACHE_DIR": str(work / "cache")}
    try:
        version = subprocess.run([*cbm_etl, "--version"], env=env, capture_output=True, text=True, timeout=300)
        init = subprocess.run([*cbm_etl, "init-db"], env=env, capture_output=True, text=True, timeout=300)
        if init.returncode != 0:
            print(f"startup: {' '.join(cbm_etl)} init-db failed (exit {init.returncode}):\n{init.stderr[-2000:]}",
                  file=sys.stderr)
            return 1
        cases = [
            ("python -c pass (interpreter alone)", [*python, "-c", "pass"]),
            ("cbm-etl --help", [*cbm_etl, "--help"]),
            ("cbm-etl --version", [*cbm_etl, "--version"]),
            ("cbm-etl plan --help", [*cbm_etl, "plan", "--help"]),
            ("cbm-etl tables (DuckDB target)", [*cbm_etl, "tables"]),
        ]
        rows = []
        for label, cmd in cases:
            try:
                seconds = time_command(cmd, env, repeat)
            except RuntimeError as exc:
                print(f"startup: {exc}", file=sys.stderr)
                return 1
            rows.append((label, f"{statistics.median(seconds):.2f}", f"{min(seconds):.2f}"))
        try:
            isolation = isolation_cost(python, env, repeat)
        except RuntimeError as exc:
            print(f"startup: {exc}", file=sys.stderr)
            return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"cbm-etl start-up: {' '.join(cbm_etl)} ({version.stdout.strip() or 'version unknown'}); "
          f"{repeat} run(s) each; {machine()}")
    header = ("command", "median s", "min s")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    for i, r in enumerate([header, *rows]):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print(f"extract isolation (a child process per extract, docs/PERFORMANCE.md): {isolation[0]:.1f} ms median, "
          f"{isolation[1]:.1f} ms min, per extract")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/startup.py", description=(__doc__ or "").splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
