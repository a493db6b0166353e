"""``cbm-etl report``: the night report, one static HTML page from the run log (``ops/night_report.py``).

    cbm-etl report                    # reports/night/night_<time>.html (+ .csv, .json) and reports/night/latest.html
    cbm-etl report --days 14          # a shorter history chart
    cbm-etl report --dir /srv/share   # another reports folder (default CBM_REPORTS_DIR, else reports)

Per table: the last run's status, SLA, duration, rows read / inserted / updated / unchanged / deleted, its steps
and first error, and a chart of the last N days (seconds and rows per day, failures).  ``cbm-etl run --all``
writes the same report after every run.  Reads only (exit 0; 2 when the monitoring views are missing).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("report", help="write the night report (HTML): every table's last run and its last 30 days")
    p.add_argument("--days", type=int, default=30, help="days of history in the charts (default 30)")
    p.add_argument("--dir", help="reports folder (default: CBM_REPORTS_DIR, else reports); the page goes to <dir>/night")
    p.add_argument("--wait", type=float, default=60.0,
                   help="seconds to wait for a DuckDB ODS that a load is writing (default 60)")
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from cbm_luigi.destinations.locking import set_lock_timeout  # deferred: start-up of cbm-etl
    from cbm_luigi.ops.night_report import write_night_report  # deferred: start-up of cbm-etl

    if args.days < 1:
        raise SystemExit("cbm-etl report: --days must be 1 or more")
    set_lock_timeout(args.wait)
    try:
        files = write_night_report(days=args.days, base=Path(args.dir) if args.dir else None)
    finally:
        set_lock_timeout(None)
    print(f"night report: {files.files.html}\n      latest: {files.latest}")
    return 0
