"""``cbm-etl depends``: table dependencies in config.ETL_Dependencies (a table's merge waits for others').

    cbm-etl depends                               # every dependency
    cbm-etl depends lignecli                      # what lignecli waits for, and what waits for it
    cbm-etl depends lignecli --on client,produit  # replace lignecli's dependencies
    cbm-etl depends lignecli --clear              # remove them

Names are checked (registered in config.ETL_Tables, active) and a change that would make a cycle is refused,
naming it; nothing is written then.  Reads and writes config.ETL_Dependencies only.
"""

from __future__ import annotations

import argparse
from typing import Any

from cbm_luigi.commands.setup import print_table
from cbm_luigi.errors import MetadataError
from cbm_luigi.model.plan import build_plan, describe_cycle, find_cycle
from cbm_luigi.model.values import truthy


def add_parser(sub: Any) -> None:
    p = sub.add_parser("depends", help="show or set table dependencies (lignecli waits for client and produit)")
    p.add_argument("table", nargs="?", help="the table that waits (omit to list every dependency)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--on", dest="on", help="comma-separated tables it waits for (replaces the current list)")
    g.add_argument("--clear", action="store_true", help="remove the table's dependencies")
    p.set_defaults(func=cmd_depends)


def cmd_depends(args: argparse.Namespace) -> int:
    from cbm_luigi.destinations import open_target  # deferred: start-up of cbm-etl
    from cbm_luigi.store.config_tables import (  # deferred: start-up of cbm-etl
        MetadataStore,
        read_plan_rows,
    )
    from cbm_luigi.tasks.context import (  # deferred: start-up of cbm-etl
        clear_caches,
        settings,
    )

    target = open_target(settings().target)
    store = MetadataStore(target)
    if (args.on is not None or args.clear) and not args.table:
        raise MetadataError("give the TABLE whose dependencies to set: cbm-etl depends TABLE --on A,B")
    table = store.resolve_table(args.table) if args.table else None
    if args.on is not None or args.clear:
        assert table is not None
        new = [] if args.clear else [store.resolve_table(n.strip()) for n in args.on.split(",") if n.strip()]
        if not args.clear and not new:
            raise MetadataError("--on needs at least one table (use --clear to remove every dependency)")
        check_dependencies(target, table, new)
        store.set_dependencies(table, list(dict.fromkeys(new)))
        clear_caches()
        print(f"{table}: " + (f"waits for {', '.join(dict.fromkeys(new))}" if new else "no dependencies"))
        return 0
    table_rows, dep_rows = read_plan_rows(target)
    plan = build_plan(table_rows, dep_rows)
    rows = []
    for r in sorted(dep_rows, key=lambda r: (str(r["TableName"]), str(r["DependsOn"]))):
        if table and table not in (r["TableName"], r["DependsOn"]):
            continue
        problems = "; ".join(p for p in plan.problems.get(str(r["TableName"]), ()) if str(r["DependsOn"]) in p)
        rows.append((r["TableName"], r["DependsOn"], "yes" if truthy(r["IsActive"]) else "no", problems or "ok"))
    if not rows:
        print(f"{table}: no dependencies" if table else "no dependencies (config.ETL_Dependencies is empty)")
        return 0
    print_table(("table", "waits for", "active", "check"), rows)
    return 0


def check_dependencies(target: Any, table: str, depends_on: list[str]) -> None:
    """Refuse unknown or inactive tables, a table waiting for itself, and any cycle the change would make."""
    from cbm_luigi.store.config_tables import read_plan_rows  # deferred: start-up of cbm-etl

    table_rows, dep_rows = read_plan_rows(target)
    active = {str(r["TableName"]) for r in table_rows if truthy(r["IsActive"])}
    if table not in active:
        raise MetadataError(f"{table} is inactive (IsActive = 0): activate it before giving it dependencies")
    for dep in depends_on:
        if dep == table:
            raise MetadataError(f"{table} cannot wait for itself")
        if dep not in active:
            raise MetadataError(f"{table} cannot wait for {dep}: {dep} is inactive (IsActive = 0) and so is never "
                                "loaded; activate it first")
    edges: dict[str, set[str]] = {}
    for r in dep_rows:
        if truthy(r["IsActive"]) and str(r["TableName"]) != table:
            edges.setdefault(str(r["TableName"]), set()).add(str(r["DependsOn"]))
    edges[table] = set(depends_on)
    cycle = find_cycle(edges)
    if cycle is not None:
        raise MetadataError(f"refused: the dependencies would form a cycle: {describe_cycle(cycle)} "
                            "(config.ETL_Dependencies unchanged)")
