"""Run one command and report its wall time and peak RSS: ``python bench/launch.py OUT.json CMD ARGS...``.

A fresh, small process between the benchmark and the ``luigi`` command: Linux carries the parent's high-water
RSS into a child across fork and exec, so the benchmark process (which holds source rows for its checks) cannot
read a child's peak from its own rusage.  Here the parent is this ~10 MB interpreter, and ``RUSAGE_CHILDREN`` holds
the largest of the command and the processes it waited for.  Writes ``{"seconds", "returncode", "max_rss_kb",
"cpu_seconds"}`` (CPU time, user + system, of the command and its children).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time


def main() -> int:
    out, cmd = sys.argv[1], sys.argv[2:]
    started = time.perf_counter()
    rc = subprocess.call(cmd)
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # ru_maxrss in KiB on Linux
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"seconds": seconds, "returncode": rc, "max_rss_kb": usage.ru_maxrss,
                   "cpu_seconds": usage.ru_utime + usage.ru_stime}, f)
    return rc


if __name__ == "__main__":
    sys.exit(main())
