"""Orchestration of all tables: priority tiers, table dependencies, cycle detection, and run outcomes.

Reads ``config.ETL_Tables`` (active flag, ``PriorityTier`` or its default from Notes / IsDimension / IsFact) and
``config.ETL_Dependencies`` (TableName waits for DependsOn) into a frozen :class:`Plan`; writes nothing.  The
Luigi wrappers (``cbm_luigi/tasks/wrappers.py``) turn a plan into the graph:

* every table's ``MergeOds`` requires the ``MergeOds`` of the tables it depends on (same mode and batch);
* unless ``--continue-on-error``, the first task of every table outside the critical tier requires the
  ``CriticalGate``, which requires the critical tables' ``MergeOds``: when a critical table fails, nothing else
  starts.  Tables a critical table depends on (directly or not) run before the gate, whatever their own tier.

After a run, :func:`table_outcomes` says for each table what happened: loaded, already loaded, failed at a step,
or not run and why (a dependency, or the critical gate).  Use::

    plan = load_plan(target); plan.check()          # raises MetadataError naming a cycle or a bad dependency
    plan.gated("hisprixa", continue_on_error=False)  # True: waits for the critical tier
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from cbm_luigi.errors import MetadataError
from cbm_luigi.model.naming import match_name
from cbm_luigi.model.specs import PRIORITIES, default_priority
from cbm_luigi.model.values import truthy

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Luigi priority of each tier (Luigi runs the ready task of highest priority first).
TIER_PRIORITY = {"critical": 300, "high": 200, "normal": 100}


def find_cycle(edges: Mapping[str, Iterable[str]]) -> list[str] | None:
    """The first dependency cycle found, as a path that ends where it starts (``[a, b, a]``), or None.

    ``edges`` maps a table to the tables it depends on.  Nodes are visited in sorted order, so the cycle reported
    for a given graph is always the same.
    """
    white, gray, black = 0, 1, 2
    color: dict[str, int] = {}
    graph = {k: sorted(set(v)) for k, v in edges.items()}
    for start in sorted(graph):
        if color.get(start, white) != white:
            continue
        path: list[str] = [start]
        stack: list[Iterator[str]] = [iter(graph.get(start, ()))]
        color[start] = gray
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                color[path.pop()] = black
                stack.pop()
                continue
            state = color.get(nxt, white)
            if state == gray:
                return [*path[path.index(nxt):], nxt]
            if state == white:
                color[nxt] = gray
                path.append(nxt)
                stack.append(iter(graph.get(nxt, ())))
    return None


def describe_cycle(cycle: Sequence[str]) -> str:
    return " -> ".join(cycle)


@dataclass(frozen=True)
class Plan:
    """Active tables with their tier and dependencies, and the configuration problems found.

    ``problems`` maps a table to what is wrong with its dependencies (unknown or inactive table, cycle); only the
    tables a run asks for, and what they depend on, are checked (:meth:`check`), so one bad row does not stop
    an unrelated single-table run.
    """

    tables: tuple[str, ...]  # active tables: critical, high, normal; by name within a tier
    priority: Mapping[str, str]
    depends_on: Mapping[str, tuple[str, ...]]  # active table -> active tables it waits for
    problems: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    inactive: frozenset[str] = frozenset()

    def tier(self, table: str) -> str:
        return self.priority.get(table, "normal")

    def deps(self, table: str) -> tuple[str, ...]:
        return self.depends_on.get(table, ())

    def closure(self, tables: Iterable[str]) -> set[str]:
        """The tables and everything they depend on, directly or not (cycle-safe)."""
        seen: set[str] = set()
        todo = list(tables)
        while todo:
            t = todo.pop()
            if t in seen:
                continue
            seen.add(t)
            todo.extend(self.deps(t))
        return seen

    @property
    def critical(self) -> tuple[str, ...]:
        return tuple(t for t in self.tables if self.tier(t) == "critical")

    @functools.cached_property
    def pre_gate(self) -> frozenset[str]:
        """Critical tables and the tables they depend on: these never wait for the gate."""
        return frozenset(self.closure(self.critical))

    def gated(self, table: str, continue_on_error: bool) -> bool:
        """True when the table's first task waits for every critical table (stop-on-critical)."""
        return not continue_on_error and bool(self.critical) and table not in self.pre_gate

    def effective_tier(self, table: str) -> str:
        """A table a critical table depends on runs with the critical tier."""
        return "critical" if table in self.pre_gate else self.tier(table)

    def check(self, tables: Iterable[str] | None = None) -> None:
        """Raise MetadataError listing every problem of the given tables (default: all) and their dependencies."""
        scope = self.closure(self.tables if tables is None else tables)
        found: list[str] = []
        for t in sorted(scope):
            for p in self.problems.get(t, ()):
                if p not in found:
                    found.append(p)
        if found:
            raise MetadataError("; ".join(found))

    def ordered(self, tables: Iterable[str] | None = None) -> list[str]:
        """Tables in an order a single worker could run them: dependencies first, then tier, then name."""
        wanted = self.closure(self.tables if tables is None else tables)
        rank = {t: (PRIORITIES.index(self.effective_tier(t)), t) for t in wanted}
        done: list[str] = []
        placed: set[str] = set()

        def visit(t: str, stack: set[str]) -> None:
            if t in placed or t in stack:
                return
            stack.add(t)
            for d in sorted(self.deps(t), key=lambda x: rank.get(x, (9, x))):
                visit(d, stack)
            stack.discard(t)
            placed.add(t)
            done.append(t)

        for t in sorted(wanted, key=lambda x: rank[x]):
            visit(t, set())
        return done


def build_plan(table_rows: Sequence[Mapping[str, Any]], dependency_rows: Sequence[Mapping[str, Any]]) -> Plan:
    """A plan from ``config.ETL_Tables`` rows (TableName, SqlName, IsActive, PriorityTier, Notes, IsDimension,
    IsFact) and ``config.ETL_Dependencies`` rows (TableName, DependsOn, IsActive)."""
    names = [(str(r["TableName"]), str(r.get("SqlName") or r["TableName"])) for r in table_rows]
    active = {str(r["TableName"]) for r in table_rows if truthy(r.get("IsActive", True))}
    inactive = frozenset(n for n, _ in names if n not in active)
    priority: dict[str, str] = {}
    for r in table_rows:
        name = str(r["TableName"])
        tier = str(r.get("PriorityTier") or "").strip().lower() or default_priority(
            r.get("Notes"), truthy(r.get("IsDimension")), truthy(r.get("IsFact")))
        if tier not in PRIORITIES:
            log.warning("table %s: PriorityTier %r is not one of %s; planned as normal", name, tier,
                        ", ".join(PRIORITIES))
            tier = "normal"
        priority[name] = tier
    problems: dict[str, list[str]] = {}
    deps: dict[str, set[str]] = {}
    for r in dependency_rows:
        if not truthy(r.get("IsActive", True)):
            continue
        table = match_name(str(r["TableName"]), names)
        if table is None:
            log.warning("config.ETL_Dependencies: %r is not a registered table; its dependency row is ignored",
                        r["TableName"])
            continue
        if table not in active:
            continue  # an inactive table is not loaded: its dependencies do not matter
        dep_text = str(r["DependsOn"])
        dep = match_name(dep_text, names)
        if dep is None:
            known = ", ".join(sorted(n for n, _ in names)) or "none"
            problems.setdefault(table, []).append(
                f"config.ETL_Dependencies: {table} depends on {dep_text!r}, which is not registered in "
                f"config.ETL_Tables (registered: {known}); fix it with: cbm-etl depends {table} --on ... "
                f"(or --clear)"
            )
            continue
        if dep not in active:
            problems.setdefault(table, []).append(
                f"config.ETL_Dependencies: {table} depends on {dep}, which is inactive (IsActive = 0) and so is "
                f"never loaded; activate {dep} or remove the dependency: cbm-etl depends {table} --on ... "
                f"(or --clear)"
            )
            continue
        deps.setdefault(table, set()).add(dep)
    # Every cycle, each reported once, on each of its tables.
    remaining = {k: set(v) for k, v in deps.items()}
    while True:
        cycle = find_cycle(remaining)
        if cycle is None:
            break
        msg = (f"dependency cycle in config.ETL_Dependencies: {describe_cycle(cycle)}; break it with "
               f"cbm-etl depends {cycle[0]} --on ... (or --clear)")
        for t in cycle[:-1]:
            problems.setdefault(t, []).append(msg)
        remaining[cycle[-2]].discard(cycle[-1])  # drop one edge and look for another cycle
    ordered = sorted(active, key=lambda n: (PRIORITIES.index(priority[n]), n))
    return Plan(
        tables=tuple(ordered), priority={n: priority[n] for n in priority},
        depends_on={k: tuple(sorted(v)) for k, v in deps.items()},
        problems={k: tuple(v) for k, v in problems.items()}, inactive=inactive,
    )


# --- outcomes of a run -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What happened to one table in one run."""

    table: str
    tier: str
    status: str  # loaded | already loaded | failed | not run
    detail: str = ""
    step: str | None = None  # failing step
    rows: int | None = None
    inserted: int | None = None
    updated: int | None = None
    unchanged: int | None = None
    seconds: float | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("loaded", "already loaded")

    def describe(self) -> str:
        if self.status == "failed":
            return f"FAILED at {self.step}"
        if self.status == "not run":
            return "NOT RUN"
        return self.status


def table_outcomes(plan: Plan, tables: Sequence[str], log_rows: Sequence[Mapping[str, Any]],
                   complete: Mapping[str, bool], *, continue_on_error: bool, gate: bool = True) -> list[Outcome]:
    """Each requested table's outcome (and its dependencies'), dependencies first.

    ``log_rows``: this run's etl.ETL_Log rows of the batch (dicts with TableName, StepName, Status, rows
    columns, DurationSeconds, ErrorMessage), in LogTs order.  ``complete``: whether the table's merge marker
    exists for the batch (loaded now, by an earlier run, or by another run or worker at the same time): the
    marker is the truth, so a table with one is loaded or already loaded, never failed or not run.  ``gate``:
    whether the run used the critical gate (LoadAll without --continue-on-error).
    """
    by_table: dict[str, list[Mapping[str, Any]]] = {}
    for r in log_rows:
        by_table.setdefault(str(r["TableName"]), []).append(r)
    out: dict[str, Outcome] = {}
    order = plan.ordered(tables) if tables else []
    for t in [*order, *(t for t in tables if t not in order)]:
        rows = by_table.get(t, [])
        tier = plan.effective_tier(t)
        flow = [r for r in rows if r["StepName"] == "flow_complete" and r["Status"] == "success"]
        failed = [r for r in rows if r["Status"] == "failed"]
        if flow:
            f = flow[-1]
            warned = [str(r["ErrorMessage"]) for r in rows if r["Status"] == "success"
                      and str(r.get("ErrorMessage") or "").startswith("WARNING: ")]  # e.g. a full load of 0 rows
            out[t] = Outcome(t, tier, "loaded", warned[-1] if warned else "", rows=f.get("RowsProcessed"),
                             inserted=f.get("RowsInserted"), updated=f.get("RowsUpdated"),
                             unchanged=f.get("RowsUnchanged"), seconds=f.get("DurationSeconds"))
        elif complete.get(t):  # the marker is the truth, whoever merged the batch (and whatever failed here)
            skipped = [r for r in rows if r["StepName"] == "merge_ods" and r["Status"] == "skipped"]
            if skipped or rows:
                detail = str(skipped[-1].get("ErrorMessage") or "") if skipped else ""
                detail = detail or "merged by another run or worker of this batch"
                if failed:
                    detail += f" (this run failed at {failed[0]['StepName']} first)"
            else:
                detail = "done by an earlier run of this batch (or another one, at the same time)"
            out[t] = Outcome(t, tier, "already loaded", detail)
        elif failed:
            first = failed[0]
            out[t] = Outcome(t, tier, "failed", str(first.get("ErrorMessage") or ""), step=str(first["StepName"]))
        else:
            bad = [d for d in plan.deps(t) if d in out and not out[d].ok]
            if bad:
                why = ", ".join(f"{d} ({out[d].describe().lower()})" for d in bad)
                detail = f"waits for {why}"
            elif gate and plan.gated(t, continue_on_error) and \
                    (crit := [c for c in plan.critical if c in out and not out[c].ok]):
                detail = (f"critical table(s) {', '.join(crit)} did not load: stop-on-critical "
                          "(re-run with --continue-on-error to load the others anyway)")
            else:
                detail = "not started (interrupted, or scheduled by another worker)"
            out[t] = Outcome(t, tier, "not run", detail)
    return list(out.values())
