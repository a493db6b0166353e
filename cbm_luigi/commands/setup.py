"""``init-db``, ``sync-columns``, ``add-table``, ``tables``: the metadata an operator maintains."""

from __future__ import annotations

import argparse
import contextlib
from typing import TYPE_CHECKING, Any

from cbm_luigi.errors import MetadataError
from cbm_luigi.model.naming import match_name
from cbm_luigi.model.specs import (
    OUT_OF_RANGE_POLICIES,
    PRECISIONS,
    PRIORITIES,
    TYPE_CHANGE_POLICIES,
    WIDTH_POLICIES,
    SyncReport,
)

if TYPE_CHECKING:
    from cbm_luigi.pipeline.sources import Source


def add_parser(sub: Any) -> None:
    p = sub.add_parser("init-db", help="create schemas config, etl, stg, ods and the metadata tables (idempotent)")
    p.set_defaults(func=cmd_init_db)

    p = sub.add_parser("sync-columns", help="read the source catalog into config.ETL_Columns")
    p.add_argument("tables", nargs="+", metavar="TABLE", help="source table name(s)")
    p.set_defaults(func=cmd_sync_columns)

    p = sub.add_parser("add-table", help="register (or update) a table in config.ETL_Tables")
    p.add_argument("table")
    p.add_argument("--pk", required=True, help="primary-key column(s), comma separated: cod_pro or a,b")
    p.add_argument("--date-modif-col", help="modification date column (omit: always full)")
    p.add_argument("--precision", choices=PRECISIONS, default="datetime")
    p.add_argument("--lookback", default="0d", help="0d, 1d, 12h, 30m ...")
    p.add_argument("--priority", choices=PRIORITIES, help="default: from Notes / dimension flag")
    p.add_argument("--dimension", action="store_true")
    p.add_argument("--fact", action="store_true")
    p.add_argument("--filter", dest="filter_clause", help="extra source predicate, inserted as written")
    p.add_argument("--sla-hours", type=float, default=24.0)
    p.add_argument("--notes")
    p.add_argument("--inactive", action="store_true", help="register but do not load")
    p.add_argument("--detect-deletes", action="store_true",
                   help="full loads mark ODS rows whose key left the source (etl_deleted_ts); rows are kept")
    p.add_argument("--delete-guard-pct", type=float, default=10.0,
                   help="refuse a full load that would mark more than this %% of the rows deleted (default 10)")
    p.add_argument("--delete-scan", action="store_true",
                   help="incremental loads also read the source's keys (keys only) to see deletes; needs "
                        "--detect-deletes")
    p.add_argument("--history", action="store_true",
                   help="keep SCD2 versions of a dimension in hist.<table> (valid_from, valid_to, is_current); "
                        "needs --dimension")
    p.add_argument("--type-change", choices=TYPE_CHANGE_POLICIES, default="refuse",
                   help="a column whose type changed in the source: refuse naming it (default), or widen the ODS "
                        "column to a type that holds both")
    p.add_argument("--width-policy", choices=WIDTH_POLICIES, default="refuse",
                   help="a text value longer than its SQL width: fail naming the column (default), or truncate")
    p.add_argument("--out-of-range-dates", choices=OUT_OF_RANGE_POLICIES, default="null",
                   help="a date outside the target's range: null it and report the column (default), or fail")
    p.add_argument("--split-extents", action="store_true",
                   help="extent (array) fields become <col>_1 .. <col>_n instead of one ';'-joined text")
    p.add_argument("--partitions", type=int, default=1, metavar="N",
                   help="full loads read the table as N ranges of its first (integer) key column, over N source "
                        "connections at most, within [resources] source_connections (default 1)")
    p.set_defaults(func=cmd_add_table)

    p = sub.add_parser("tables", help="list registered tables")
    p.set_defaults(func=cmd_tables)


def cmd_init_db(args: argparse.Namespace) -> int:
    from cbm_luigi.config.secrets import redact  # deferred: start-up of cbm-etl
    from cbm_luigi.config.settings import load_settings  # deferred: start-up of cbm-etl
    from cbm_luigi.destinations import open_target  # deferred: start-up of cbm-etl
    from cbm_luigi.store.schema import init_db  # deferred: start-up of cbm-etl

    s = load_settings()
    target = open_target(s.target)
    done = init_db(target)
    print(f"target {redact(s.target)}: ready ({', '.join(done)})")
    return 0


def source_table_name(source: Source, name: str) -> str:
    """Find the table as the source spells it (operators type Order-Line or order_line)."""
    if source.catalog(name):
        return name
    for candidate in (name.lower(), name.upper(), name.replace("_", "-"), name.lower().replace("_", "-")):
        if source.catalog(candidate):
            return candidate
    raise MetadataError(
        f"table {name!r} not found in the source schema {source.schema!r}: check the name and CBM_SOURCE_SCHEMA"
    )


def sync_tables(names: list[str]) -> list[SyncReport]:
    from cbm_luigi.config.settings import load_settings  # deferred: start-up of cbm-etl
    from cbm_luigi.destinations import open_target  # deferred: start-up of cbm-etl
    from cbm_luigi.pipeline.sources import open_source  # deferred: start-up of cbm-etl
    from cbm_luigi.store.config_tables import MetadataStore  # deferred: start-up of cbm-etl
    from cbm_luigi.store.schema import has_metadata, init_db  # deferred: start-up of cbm-etl
    from cbm_luigi.tasks.context import clear_caches  # deferred: start-up of cbm-etl

    s = load_settings()
    target = open_target(s.target)
    if not has_metadata(target):
        init_db(target)
    store = MetadataStore(target)
    reports = []
    with open_source(s) as source:
        for name in names:
            registered = None
            with contextlib.suppress(MetadataError):
                registered = store.resolve_table(name)
            table = registered or source_table_name(source, name)
            reports.append(store.sync_columns(table, source.catalog(table), source.flavor.source_expression))
    clear_caches()
    return reports


def cmd_sync_columns(args: argparse.Namespace) -> int:
    for report in sync_tables(args.tables):
        print(report.describe())
    return 0


def cmd_add_table(args: argparse.Namespace) -> int:
    from cbm_luigi.config.settings import load_settings  # deferred: start-up of cbm-etl
    from cbm_luigi.destinations import open_target  # deferred: start-up of cbm-etl
    from cbm_luigi.store.config_tables import (  # deferred: start-up of cbm-etl
        MetadataStore,
        synced_table_names,
    )
    from cbm_luigi.tasks.context import clear_caches  # deferred: start-up of cbm-etl

    s = load_settings()
    store = MetadataStore(open_target(s.target))
    table = args.table
    # accept the SQL-safe spelling of a table whose columns were synced under its source name
    known = synced_table_names(store.target)
    table = match_name(table, [(k, k.replace("-", "_")) for k in known]) or table
    spec = store.register_table(
        table, primary_key=[p.strip() for p in args.pk.split(",") if p.strip()],
        date_modif_col=args.date_modif_col, precision=args.precision, lookback=args.lookback,
        priority=args.priority, is_dimension=args.dimension, is_fact=args.fact, filter_clause=args.filter_clause,
        sla_hours=args.sla_hours, notes=args.notes, active=not args.inactive,
        delete_detection=args.detect_deletes, delete_guard_pct=args.delete_guard_pct,
        delete_scan=args.delete_scan, keep_history=args.history, type_change_policy=args.type_change,
        width_policy=args.width_policy, out_of_range_dates=args.out_of_range_dates,
        split_extents=args.split_extents, extract_partitions=args.partitions,
    )
    clear_caches()
    mode = f"incremental on {spec.date_modif_col}" if spec.is_incremental_capable else "always full"
    parts = f", full loads in {spec.extract_partitions} key ranges" if spec.extract_partitions > 1 else ""
    print(f"{spec.table_name}: registered -> ods.{spec.sql_name}, key ({', '.join(spec.primary_key)}), "
          f"{mode}{parts}, priority {spec.priority}, {len(spec.loaded_columns)} columns")
    return 0


def cmd_tables(args: argparse.Namespace) -> int:
    from cbm_luigi.config.settings import load_settings  # deferred: start-up of cbm-etl
    from cbm_luigi.destinations import open_target  # deferred: start-up of cbm-etl
    from cbm_luigi.store.config_tables import MetadataStore  # deferred: start-up of cbm-etl

    s = load_settings()
    store = MetadataStore(open_target(s.target))
    rows = []
    for name in store.table_names():
        spec = store.table_spec(name)
        wm = store.watermark(name)
        rows.append((spec.table_name, spec.priority, "yes" if spec.is_active else "no",
                     ",".join(spec.primary_key), spec.date_modif_col or "-", str(wm or "never")))
    print_table(("table", "priority", "active", "key", "modified", "watermark"), rows)
    return 0


def print_table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    """A plain aligned table for a terminal."""
    cells = [tuple(str(c) for c in header), *[tuple("" if c is None else str(c) for c in r) for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for i, r in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
