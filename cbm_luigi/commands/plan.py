"""``cbm-etl plan``: a dry run: which tasks of a batch are complete and which would run, without running any.

    cbm-etl plan --all --mode incremental --batch-id 2026-11-25
    cbm-etl plan produit --mode full
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import luigi


def add_parser(sub: Any) -> None:
    p = sub.add_parser("plan", help="dry run: show which tasks of a batch are done and which would run")
    p.add_argument("table", nargs="?", help="one table (omit with --all)")
    p.add_argument("--all", action="store_true", help="every active table")
    p.add_argument("--mode", choices=("full", "incremental"), default="incremental")
    p.add_argument("--batch-id", "--batch", dest="batch_id", default="",
                   help="run key (default: today, or this hour); --batch is an alias")
    p.set_defaults(func=cmd_plan)


def walk(task: luigi.Task, depth: int = 0, seen: set[str] | None = None) -> list[tuple[int, luigi.Task, bool]]:
    """Depth-first list of (depth, task, complete); the requirements of a complete task are not visited,
    exactly as Luigi's scheduler does."""
    import luigi  # deferred: start-up of cbm-etl

    seen = seen if seen is not None else set()
    if task.task_id in seen:
        return []
    seen.add(task.task_id)
    done = bool(task.complete())
    out = [(depth, task, done)]
    if not done:
        for req in luigi.task.flatten(task.requires()):
            out.extend(walk(req, depth + 1, seen))
    return out


def cmd_plan(args: argparse.Namespace) -> int:
    if bool(args.table) == bool(args.all):
        raise SystemExit("cbm-etl plan: give a TABLE or --all (not both)")
    from cbm_luigi.tasks.wrappers import LoadAll, LoadTable  # deferred: start-up of cbm-etl

    root: luigi.Task = (LoadAll(mode=args.mode, batch_id=args.batch_id) if args.all
                        else LoadTable(table=args.table, mode=args.mode, batch_id=args.batch_id))
    rows = walk(root)
    pending = sum(1 for _, _, done in rows if not done)
    for depth, task, done in rows:
        print(f"{'  ' * depth}{'[done]' if done else '[todo]'} {task}")
    print(f"\n{pending} task(s) would run" if pending else "\nnothing to do: the batch is complete")
    return 0
