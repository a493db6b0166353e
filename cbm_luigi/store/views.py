"""The monitoring views on the run log: ``etl.vw_LastRuns``, ``etl.vw_TablePerformance``, ``etl.vw_SLABreach``.

ANSI SQL built from the dialect's time functions (``now_sql``, ``seconds_between_sql``, ``days_ago_sql``,
``true_sql``) and its ``create_view_sql``; the same columns in every dialect (docs/OPERATIONS.md).
"""

from __future__ import annotations

from typing import Any

from cbm_luigi.destinations.client import Target
from cbm_luigi.destinations.dialect import Dialect
from cbm_luigi.model.types import FLOAT


def view_statements(d: Dialect) -> list[str]:
    """The monitoring views (etl.vw_LastRuns, etl.vw_TablePerformance, etl.vw_SLABreach), created or
    replaced by ``init-db``.  Same columns in every dialect; see docs/OPERATIONS.md for their definitions."""
    return [d.create_view_sql("etl", name, select) for name, select in monitoring_views(d).items()]


def _run_groups_sql(d: Dialect, where: str = "") -> str:
    """One row per (TableName, RunId, Batch) of etl.ETL_Log: the building block of the run views; a run that
    found the batch already merged by another one (a ``skipped`` merge_ods row) is left out."""
    q = d.quote
    ok = f"{q('StepName')} = 'flow_complete' AND {q('Status')} = 'success'"
    return (
        f"SELECT {q('TableName')}, {q('RunId')}, {q('Batch')}, MAX({q('Mode')}) AS {q('Mode')},\n"
        f"        MIN({q('LogTs')}) AS {q('StartedTs')}, MAX({q('LogTs')}) AS {q('LastTs')},\n"
        f"        SUM(CASE WHEN {ok} THEN 1 ELSE 0 END) AS {q('NOk')},\n"
        f"        SUM(CASE WHEN {q('Status')} = 'failed' THEN 1 ELSE 0 END) AS {q('NFailed')},\n"
        # the flow's duration, written once by the merge (docs/OPERATIONS.md, "Durations"): not a sum of steps
        f"        MAX(CASE WHEN {ok} THEN {q('DurationSeconds')} END) AS {q('Dur')},\n"
        f"        MAX(CASE WHEN {ok} THEN {q('LogTs')} END) AS {q('OkTs')},\n"
        f"        MAX(CASE WHEN {ok} THEN {q('RowsProcessed')} END) AS {q('RowsOk')},\n"
        f"        MAX({q('RowsProcessed')}) AS {q('RowsAny')},\n"
        f"        MAX(CASE WHEN {ok} THEN {q('RowsInserted')} END) AS {q('Ins')},\n"
        f"        MAX(CASE WHEN {ok} THEN {q('RowsUpdated')} END) AS {q('Upd')},\n"
        f"        MAX(CASE WHEN {ok} THEN {q('RowsUnchanged')} END) AS {q('Unch')}\n"
        f"    FROM {d.qualified('etl', 'ETL_Log')}{where}\n"
        f"    GROUP BY {q('TableName')}, {q('RunId')}, {q('Batch')}\n"
        # a run whose merge found the batch merged by another run (two runs at once) did not run the table
        f"    HAVING SUM(CASE WHEN {q('Status')} = 'skipped' THEN 1 ELSE 0 END) = 0 OR SUM(CASE WHEN {ok} THEN 1 "
        "ELSE 0 END) > 0"
    )


def monitoring_views(d: Dialect) -> dict[str, str]:
    q = d.quote
    log_t = d.qualified("etl", "ETL_Log")
    same_batch = f"(e.{q('Batch')} = k.{q('Batch')} OR (e.{q('Batch')} IS NULL AND k.{q('Batch')} IS NULL))"
    last_runs = (
        f"WITH runs AS (\n    {_run_groups_sql(d)}\n),\n"
        f"ranked AS (\n    SELECT r.*, ROW_NUMBER() OVER (PARTITION BY r.{q('TableName')} "
        f"ORDER BY r.{q('StartedTs')} DESC, r.{q('LastTs')} DESC, r.{q('RunId')} DESC) AS {q('Rn')}\n"
        f"    FROM runs r\n),\n"
        f"first_error AS (\n    SELECT {q('TableName')}, {q('RunId')}, {q('Batch')}, {q('ErrorMessage')},\n"
        f"        ROW_NUMBER() OVER (PARTITION BY {q('TableName')}, {q('RunId')}, {q('Batch')} "
        f"ORDER BY {q('LogTs')}, {q('LogId')}) AS {q('Rn')}\n"
        f"    FROM {log_t} WHERE {q('Status')} = 'failed'\n)\n"
        f"SELECT k.{q('TableName')}, k.{q('RunId')}, k.{q('Batch')}, k.{q('Mode')},\n"
        f"    CASE WHEN k.{q('NOk')} > 0 THEN 'success' WHEN k.{q('NFailed')} > 0 THEN 'failed' "
        f"ELSE 'running' END AS {q('Status')},\n"
        f"    k.{q('StartedTs')},\n"
        f"    CASE WHEN k.{q('NOk')} > 0 OR k.{q('NFailed')} > 0 THEN k.{q('LastTs')} END AS {q('EndedTs')},\n"
        f"    k.{q('Dur')} AS {q('DurationSeconds')},\n"
        f"    COALESCE(k.{q('RowsOk')}, k.{q('RowsAny')}) AS {q('RowsProcessed')},\n"
        f"    k.{q('Ins')} AS {q('RowsInserted')}, k.{q('Upd')} AS {q('RowsUpdated')}, "
        f"k.{q('Unch')} AS {q('RowsUnchanged')},\n"
        f"    e.{q('ErrorMessage')}\n"
        f"FROM ranked k\nLEFT JOIN first_error e ON e.{q('TableName')} = k.{q('TableName')} "
        f"AND e.{q('RunId')} = k.{q('RunId')} AND {same_batch} AND e.{q('Rn')} = 1\n"
        f"WHERE k.{q('Rn')} = 1"
    )
    recent = f"\n    WHERE {q('LogTs')} >= {d.days_ago_sql(7)}"
    is_ok = f"r.{q('NOk')} > 0"
    performance = (
        f"WITH runs AS (\n    {_run_groups_sql(d, recent)}\n),\n"
        f"ranked AS (\n    SELECT r.*, ROW_NUMBER() OVER (PARTITION BY r.{q('TableName')}, "
        f"CASE WHEN {is_ok} THEN 1 ELSE 0 END ORDER BY r.{q('OkTs')} DESC, r.{q('RunId')} DESC) AS {q('Rn')}\n"
        f"    FROM runs r\n)\n"
        f"SELECT r.{q('TableName')}, COUNT(*) AS {q('Runs')},\n"
        f"    SUM(CASE WHEN {is_ok} THEN 1 ELSE 0 END) AS {q('Successes')},\n"
        f"    SUM(CASE WHEN NOT ({is_ok}) AND r.{q('NFailed')} > 0 THEN 1 ELSE 0 END) AS {q('Failures')},\n"
        f"    AVG(CASE WHEN {is_ok} THEN r.{q('Dur')} END) AS {q('AvgDurationSeconds')},\n"
        f"    MAX(CASE WHEN {is_ok} AND r.{q('Rn')} = 1 THEN r.{q('Dur')} END) AS {q('LastDurationSeconds')},\n"
        f"    SUM(CASE WHEN {is_ok} THEN COALESCE(r.{q('RowsOk')}, 0) ELSE 0 END) AS {q('TotalRows')},\n"
        f"    MAX(r.{q('OkTs')}) AS {q('LastSuccessTs')}\n"
        f"FROM ranked r\nGROUP BY r.{q('TableName')}"
    )
    notes = f"LOWER(COALESCE(c.{q('Notes')}, ''))"
    tier = (
        f"CASE WHEN COALESCE(TRIM(c.{q('PriorityTier')}), '') <> '' THEN LOWER(TRIM(c.{q('PriorityTier')}))\n"
        f"         WHEN {notes} LIKE '%critical%' OR {notes} LIKE '%critique%' THEN 'critical'\n"
        f"         WHEN {notes} LIKE '%high%' OR {notes} LIKE '%haute%' OR c.{q('IsDimension')} = "
        f"{d.true_sql()} THEN 'high'\n"
        f"         ELSE 'normal' END"
    )
    hours = f"{d.seconds_between_sql('o.' + q('LastSuccessTs'), d.now_sql())} / 3600.0"
    sla = (
        f"WITH last_ok AS (\n    SELECT {q('TableName')}, MAX({q('LogTs')}) AS {q('LastSuccessTs')}\n"
        f"    FROM {log_t}\n    WHERE {q('StepName')} = 'flow_complete' AND {q('Status')} = 'success'\n"
        f"    GROUP BY {q('TableName')}\n),\n"
        f"t AS (\n    SELECT c.{q('TableName')},\n    {tier} AS {q('PriorityTier')},\n"
        f"    CAST(COALESCE(c.{q('SLAHours')}, 24) AS {d.column_type(FLOAT)}) AS {q('SLAHours')},\n"
        f"    o.{q('LastSuccessTs')},\n    {hours} AS {q('HoursSinceSuccess')}\n"
        f"    FROM {d.qualified('config', 'ETL_Tables')} c\n"
        f"    LEFT JOIN last_ok o ON o.{q('TableName')} = c.{q('TableName')}\n"
        f"    WHERE c.{q('IsActive')} = {d.true_sql()}\n)\n"
        f"SELECT t.{q('TableName')}, t.{q('PriorityTier')}, t.{q('SLAHours')}, t.{q('LastSuccessTs')}, "
        f"t.{q('HoursSinceSuccess')},\n"
        f"    CASE WHEN t.{q('LastSuccessTs')} IS NULL THEN 'CRITICAL'\n"
        f"         WHEN t.{q('HoursSinceSuccess')} <= t.{q('SLAHours')} THEN 'OK'\n"
        f"         WHEN t.{q('HoursSinceSuccess')} <= 2 * t.{q('SLAHours')} THEN 'WARNING'\n"
        f"         ELSE 'CRITICAL' END AS {q('SLAStatus')}\n"
        f"FROM t"
    )
    return {"vw_LastRuns": last_runs, "vw_TablePerformance": performance, "vw_SLABreach": sla}


SLA_VIEW = ("etl", "vw_SLABreach")


def view_exists(target: Target, schema: str, name: str) -> bool:
    with target.begin() as conn:
        return bool(target.existing_columns(conn, schema, name))


def read_sla_view(target: Target) -> list[tuple[Any, ...]] | None:
    """etl.vw_SLABreach rows (TableName, PriorityTier, SLAHours, LastSuccessTs, HoursSinceSuccess, SLAStatus), or
    None when the view does not exist (yet: init-db creates it)."""
    if not view_exists(target, *SLA_VIEW):
        return None
    d = target.dialect
    q = d.quote
    cols = ["TableName", "PriorityTier", "SLAHours", "LastSuccessTs", "HoursSinceSuccess", "SLAStatus"]
    return target.fetchall(f"SELECT {', '.join(q(c) for c in cols)} FROM {d.qualified(*SLA_VIEW)}")

