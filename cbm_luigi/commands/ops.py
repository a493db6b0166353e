"""Operations: ``health``, ``preflight``, ``cleanup-cache``, ``test-alert``.

    cbm-etl preflight                # environment, drivers, connections, metadata, disk, scheduler (exit 1 on FAIL)
    cbm-etl preflight produit        # plus: config row, key/modification columns in the catalog, columns synced
    cbm-etl health                   # SLA, repeated failures or the daily summary; sends what is due
    cbm-etl cleanup-cache --days 7   # --days 0: everything not needed by an unfinished batch; --dry-run
    cbm-etl test-alert               # a test card / e-mail to every configured channel

Operator guide: docs/ALERTS.md.
"""

from __future__ import annotations

import argparse
from typing import Any

from cbm_luigi.commands.setup import print_table


def add_parser(sub: Any) -> None:
    p = sub.add_parser("preflight", help="check the environment (and tables) before a run: OK / WARN / FAIL")
    p.add_argument("tables", nargs="*", metavar="TABLE", help="also check these tables' config and source columns")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds allowed per connection (default 10)")
    p.add_argument("--min-free-gb", type=float, default=1.0,
                   help="FAIL below this free space for the cache, WARN below 5x (default 1)")
    p.add_argument("--scheduler-url", help="check this luigid (default: [core] default_scheduler_host if set)")
    p.set_defaults(func=cmd_preflight)

    p = sub.add_parser("health", help="SLA breaches, repeated failures or the daily summary; sends due alerts")
    p.add_argument("--no-send", action="store_true", help="report only: send nothing, record nothing")
    p.add_argument("--force-summary", action="store_true", help="send the daily summary even if sent today")
    p.set_defaults(func=cmd_health)

    p = sub.add_parser("cleanup-cache", help="remove cached extracts older than N days (never one still needed)")
    p.add_argument("--days", type=float, required=True, help="age in days; 0 = everything not still needed")
    p.add_argument("--dry-run", action="store_true", help="show what would be removed")
    p.add_argument("--keep-unfinished-days", type=float, default=14.0,
                   help="an unfinished batch's extract is kept this long (default 14), then treated as abandoned")
    p.add_argument("--tmp-grace-hours", type=float, default=6.0,
                   help="a .tmp-* extraction dir written to within this many hours is left alone (default 6)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the totals")
    p.set_defaults(func=cmd_cleanup_cache)

    p = sub.add_parser("test-alert", help="send a test card / e-mail to every configured channel")
    p.set_defaults(func=cmd_test_alert)


def cmd_preflight(args: argparse.Namespace) -> int:
    from cbm_luigi.ops.preflight import (  # deferred: start-up of cbm-etl
        FAIL,
        WARN,
        Preflight,
    )

    pf = Preflight(timeout=args.timeout, min_free_gb=args.min_free_gb, scheduler_url=args.scheduler_url)
    checks = pf.run(args.tables)
    print_table(("check", "status", "detail"), [(c.name, c.status, c.detail) for c in checks])
    fixes = [c for c in checks if c.status in (FAIL, WARN) and c.fix]
    if fixes:
        print("\nHow to fix:")
        for c in fixes:
            print(f"  [{c.status}] {c.name}: {c.fix}")
    n_fail = sum(c.status == FAIL for c in checks)
    n_warn = sum(c.status == WARN for c in checks)
    print(f"\npreflight: {len(checks)} checks, {n_fail} FAIL, {n_warn} WARN")
    return 1 if n_fail else 0


def cmd_health(args: argparse.Namespace) -> int:
    from cbm_luigi.config.alerts import load_alert_settings  # deferred: start-up of cbm-etl
    from cbm_luigi.config.settings import load_settings  # deferred: start-up of cbm-etl
    from cbm_luigi.destinations import open_target  # deferred: start-up of cbm-etl
    from cbm_luigi.ops.health import HealthCheck  # deferred: start-up of cbm-etl

    target = open_target(load_settings().target)
    report = HealthCheck(target, load_alert_settings()).run(send=not args.no_send, force_summary=args.force_summary)
    print_table(("check", "subject", "status", "detail", "alert"),
                [(f.check, f.subject, f.severity, f.detail, f.alert) for f in report.findings])
    fig = report.figures
    if fig is not None:
        print(f"\nlast {(fig.until - fig.since).total_seconds() / 3600:g} h: {fig.runs} run(s), "
              f"{fig.tables_loaded} table(s) loaded, {fig.rows:,} rows, {fig.failures} failure(s)")
    worst = "OK" if report.worst in ("OK", "INFO") else report.worst
    print(f"health: {worst} (exit {report.exit_code})")
    return report.exit_code


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def cmd_cleanup_cache(args: argparse.Namespace) -> int:
    from cbm_luigi.config.settings import load_settings  # deferred: start-up of cbm-etl
    from cbm_luigi.destinations import open_target  # deferred: start-up of cbm-etl
    from cbm_luigi.ops.cache import cleanup_cache  # deferred: start-up of cbm-etl

    if args.days < 0:
        raise SystemExit("cbm-etl cleanup-cache: --days must be 0 or more")
    s = load_settings()
    report = cleanup_cache(s.cache_dir, open_target(s.target), args.days, dry_run=args.dry_run,
                           keep_unfinished_days=args.keep_unfinished_days, tmp_grace_hours=args.tmp_grace_hours)
    if not args.quiet and report.entries:
        verb = "would remove" if args.dry_run else "removed"
        print_table(("action", "table", "directory", "files", "size", "reason"), [
            (verb if e.action == "remove" else "keep", e.table, e.path.name, e.files, _size(e.bytes), e.reason)
            for e in report.entries
        ])
        print()
    what = "would free" if args.dry_run else "freed"
    print(f"cache {s.cache_dir}: {what} {report.files_freed} file(s), {_size(report.bytes_freed)} "
          f"in {len(report.removed)} dir(s); kept {len(report.kept)}")
    for err in report.errors:
        print(f"error: {err}")
    return 1 if report.errors else 0


def cmd_test_alert(args: argparse.Namespace) -> int:
    from cbm_luigi.alerts.notify import send_test_alert  # deferred: start-up of cbm-etl
    from cbm_luigi.config.settings import load_settings  # deferred: start-up of cbm-etl
    from cbm_luigi.destinations import open_target  # deferred: start-up of cbm-etl
    from cbm_luigi.store.schema import has_metadata  # deferred: start-up of cbm-etl

    target = None
    try:
        t = open_target(load_settings().target)
        if has_metadata(t):
            target = t
    except Exception:  # noqa: BLE001 - the test alert does not need the target; it is only recorded when reachable
        target = None
    deliveries = send_test_alert(target=target)
    print_table(("channel", "delivered", "attempts", "note"),
                [(d.channel, "yes" if d.delivered else "NO", d.attempts, d.note) for d in deliveries])
    return 0 if deliveries and all(d.delivered for d in deliveries) else 1
