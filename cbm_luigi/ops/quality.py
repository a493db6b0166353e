"""Data-quality rules: a reviewable file per table, checked on each extract before the MERGE.

Reads ``<dq dir>/<table>.yaml`` (or ``.yml`` / ``.json``; the dq dir is ``config/data_quality`` relative to the
working directory unless set by ``CBM_DQ_DIR`` or ``dq_dir`` in luigi.cfg ``[cbm_quality]``).  The schema is in
docs/VALIDATION.md; in short::

    table: produit                      # optional; must name this table when given
    rules:
      - type: not_null                  # not_null | unique | range | allowed_values | regex | freshness | volume
        column: designation             # source or SQL-safe name
        severity: critical              # critical (stops the merge) | warning (logged); default warning
      - {type: range, column: prix-vente, min: 0, max: 100000, max_failed_pct: 0.5}
      - {type: freshness, max_age: 26h}                   # the modification column by default
      - {type: volume, max_change_pct: 30, direction: drop}

The file is validated when loaded; every error names the file, the rule (1-based index and name) and the field.

Rules are evaluated by DuckDB over the extract's parquet files, which hold exactly the rows staged in
``stg.<table>`` (the staging step refuses a row count that differs): one vectorised scan for all row rules,
one query per ``unique`` rule, one for ``freshness`` (plus ``MAX(ts_source)`` of the ODS when the rule reads
the modification column, so a quiet incremental run is not called stale) and the previous successful run's row
count in ``etl.ETL_Log`` for ``volume``.  NULL values fail only ``not_null``.

In the pipeline, :func:`check_before_merge` runs in ``MergeOds`` before the MERGE: every result is written to
``etl.DataQuality_Log``, warnings are logged, and a failed ``critical`` rule raises :class:`DataError` naming the
rule and sample rows, so the table's merge does not happen and the ODS stays as it was.  Without a rules
file nothing is checked.  Standalone: ``cbm-etl dq TABLE`` checks the last extract in the cache.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from cbm_luigi.destinations.client import Target
from cbm_luigi.errors import DataError
from cbm_luigi.model.naming import quote_ident as _q
from cbm_luigi.model.specs import TableSpec
from cbm_luigi.model.types import (
    STRING,
)
from cbm_luigi.ops import reports
from cbm_luigi.ops.dq_rules import (
    ROW_RULES,
    SAMPLE_ROWS,
    BoundRule,
    Rule,
    bind,
    dq_dir,
    load_rules,
    rules_file,
)
from cbm_luigi.pipeline.extract import Manifest
from cbm_luigi.store import runlog
from cbm_luigi.store.checks_log import record_quality
from cbm_luigi.store.runlog import previous_run_rows

log = logging.getLogger(__name__)


# -- the rules file ------------------------------------------------------------------------------------------------


# -- binding to the table ------------------------------------------------------------------------------------------


# -- evaluation ----------------------------------------------------------------------------------------------------


@dataclass
class RuleResult:
    rule: Rule
    column: str | None
    passed: bool
    failed_rows: int | None
    total_rows: int
    observed: str
    samples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def severity(self) -> str:
        return self.rule.severity

    @property
    def status(self) -> str:
        return "passed" if self.passed else ("failed" if self.severity == "critical" else "warning")

    def describe(self) -> str:
        return f"rule '{self.rule.name}' ({self.rule.type}{' on ' + self.column if self.column else ''}): {self.observed}"

    def as_dict(self) -> dict[str, Any]:
        return {"rule": self.rule.name, "type": self.rule.type, "severity": self.severity, "column": self.column,
                "passed": self.passed, "status": self.status, "failed_rows": self.failed_rows,
                "total_rows": self.total_rows, "observed": self.observed, "samples": self.samples,
                "description": self.rule.description, "rule_index": self.rule.index}


@dataclass
class DqRun:
    table: str
    batch: str
    mode: str
    rules_path: Path
    results: list[RuleResult]
    checked_at: datetime = field(default_factory=runlog.now)

    @property
    def critical_failures(self) -> list[RuleResult]:
        return [r for r in self.results if not r.passed and r.severity == "critical"]

    @property
    def warnings(self) -> list[RuleResult]:
        return [r for r in self.results if not r.passed and r.severity == "warning"]

    def failure_message(self) -> str:
        parts = []
        for r in self.critical_failures:
            sample = "; ".join(", ".join(f"{k}={v!r}" for k, v in s.items()) for s in r.samples[:3])
            parts.append(r.describe() + (f", e.g. {sample}" if sample else ""))
        return (f"table {self.table}: {len(self.critical_failures)} critical data-quality rule(s) failed on batch "
                f"{self.batch} ({self.rules_path}): " + " | ".join(parts))


def _condition(b: BoundRule) -> tuple[str, list[Any]]:
    """SQL (DuckDB) that is true for a failing row, and its parameters."""
    c = _q(b.columns[0].sql_name)
    kind = b.rule.type
    if kind == "not_null":
        if b.rule.fields.get("empty_is_null") and b.columns[0].logical_type == STRING:
            return f"({c} IS NULL OR trim({c}) = '')", []
        return f"{c} IS NULL", []
    if kind == "range":
        parts, params = [], []
        if "min" in b.params:
            parts.append(f"{c} < ?")
            params.append(b.params["min"])
        if "max" in b.params:
            parts.append(f"{c} > ?")
            params.append(b.params["max"])
        return "(" + " OR ".join(parts) + ")", params
    if kind == "allowed_values":
        values = b.params["values"]
        return f"({c} IS NOT NULL AND {c} NOT IN ({', '.join('?' for _ in values)}))", list(values)
    if kind == "regex":
        return f"({c} IS NOT NULL AND NOT regexp_full_match({c}, ?))", [b.rule.fields["pattern"]]
    raise AssertionError(kind)


def _passes(failed: int, total: int, rule: Rule) -> bool:
    if failed == 0:
        return True
    return total > 0 and 100.0 * failed / total <= rule.max_failed_pct


def _rows_text(failed: int, total: int) -> str:
    return f"{failed:,} of {total:,} rows ({reports.pct(failed, total) or 0}%)"


def evaluate(spec: TableSpec, bound: Sequence[BoundRule], files: Sequence[Path], *, manifest: Manifest,
             target: Target | None = None, now: datetime | None = None, sample: int = SAMPLE_ROWS
             ) -> list[RuleResult]:
    """Evaluate the rules on the extract files; ``target`` is needed for volume and the ODS freshness."""
    con = duckdb.connect()
    try:
        con.execute("SET memory_limit = '1GB'")
        if not files:
            raise DataError(f"table {spec.table_name}: the extract of batch {manifest.batch} lists no parquet file")
        con.read_parquet([str(f) for f in files]).create_view("t")
        total_row = con.execute("SELECT COUNT(*) FROM t").fetchone()
        total = int(total_row[0]) if total_row else 0
        results: dict[int, RuleResult] = {}
        row_rules = [b for b in bound if b.rule.type in ROW_RULES]
        if row_rules and total:
            conds = [_condition(b) for b in row_rules]
            sql = "SELECT " + ", ".join(f"COUNT(*) FILTER (WHERE {c})" for c, _ in conds) + " FROM t"
            counts = con.execute(sql, [p for _, ps in conds for p in ps]).fetchone()
            assert counts is not None
            keys = ", ".join(_q(k) for k in spec.primary_key)
            for b, (cond, params), failed in zip(row_rules, conds, counts, strict=True):
                samples = []
                if failed:
                    col = b.columns[0].sql_name
                    cols = [*spec.primary_key, *([col] if col not in spec.primary_key else [])]
                    rows = con.execute(f"SELECT {', '.join(_q(x) for x in cols)} FROM t WHERE {cond} "
                                       f"ORDER BY {keys} LIMIT {int(sample)}", params).fetchall()
                    samples = [{spec.column(x).column_name: v for x, v in zip(cols, r, strict=True)} for r in rows]
                results[b.rule.index] = RuleResult(b.rule, b.column_label, _passes(int(failed), total, b.rule),
                                                   int(failed), total, _rows_text(int(failed), total), samples)
        for b in bound:
            if b.rule.index in results:
                continue
            if b.rule.type in ROW_RULES:  # empty extract
                results[b.rule.index] = RuleResult(b.rule, b.column_label, True, 0, 0, "no rows in the extract")
            elif b.rule.type == "unique":
                results[b.rule.index] = _unique(con, spec, b, total, sample)
            elif b.rule.type == "freshness":
                results[b.rule.index] = _freshness(con, spec, b, total, manifest, target, now)
            elif b.rule.type == "volume":
                results[b.rule.index] = _volume(spec, b, manifest, target)
        return [results[b.rule.index] for b in bound]
    finally:
        con.close()


def _unique(con: duckdb.DuckDBPyConnection, spec: TableSpec, b: BoundRule, total: int, sample: int) -> RuleResult:
    cols = ", ".join(_q(c.sql_name) for c in b.columns)
    not_null = " AND ".join(f"{_q(c.sql_name)} IS NOT NULL" for c in b.columns)
    groups = f"SELECT {cols}, COUNT(*) AS n FROM t WHERE {not_null} GROUP BY {cols} HAVING COUNT(*) > 1"
    row = con.execute(f"SELECT COALESCE(SUM(n), 0), COUNT(*) FROM ({groups})").fetchone()
    failed, dup_values = (int(row[0]), int(row[1])) if row else (0, 0)
    samples = []
    if failed:
        for r in con.execute(f"{groups} ORDER BY n DESC, {cols} LIMIT {int(sample)}").fetchall():
            samples.append({**{c.column_name: v for c, v in zip(b.columns, r, strict=False)}, "rows": r[-1]})
    observed = _rows_text(failed, total) + (f" share {dup_values:,} duplicated value(s)" if failed else "")
    return RuleResult(b.rule, b.column_label, _passes(failed, total, b.rule), failed, total, observed, samples)


def _as_dt(v: Any) -> datetime | None:
    if v is None:
        return None
    if isinstance(v, datetime):
        return v.replace(tzinfo=None) if v.tzinfo is None else v.astimezone().replace(tzinfo=None)
    if isinstance(v, date):
        return datetime(v.year, v.month, v.day)
    return datetime.fromisoformat(str(v))


def source_now(manifest: Manifest) -> datetime:
    """Now on the source's clock: the extract's source clock plus the time elapsed since the extract."""
    try:
        created = datetime.fromisoformat(manifest.created)
    except ValueError:
        return manifest.source_clock_ts
    return manifest.source_clock_ts + max(datetime.now() - created, timedelta(0))


def _freshness(con: duckdb.DuckDBPyConnection, spec: TableSpec, b: BoundRule, total: int, manifest: Manifest,
               target: Target | None, now: datetime | None) -> RuleResult:
    col = b.columns[0]
    row = con.execute(f"SELECT MAX({_q(col.sql_name)}) FROM t").fetchone() if total else None
    newest = _as_dt(row[0]) if row else None
    where = "extract"
    if target is not None and col.sql_name == spec.date_modif_col:
        ods = _ods_max_ts_source(target, spec)
        if ods is not None and (newest is None or ods > newest):
            newest, where = ods, "ODS"
    ref = now or source_now(manifest)
    max_age: timedelta = b.rule.fields["max_age"]
    if newest is None:
        return RuleResult(b.rule, b.column_label, False, None, total,
                          f"no {col.column_name} value in the extract or the ODS to judge freshness")
    age = ref - newest
    hours = age.total_seconds() / 3600
    observed = (f"newest {col.column_name} {newest:%Y-%m-%d %H:%M:%S} ({where}) is {hours:,.1f} h old "
                f"at {ref:%Y-%m-%d %H:%M:%S}; allowed {max_age.total_seconds() / 3600:g} h")
    return RuleResult(b.rule, b.column_label, age <= max_age, None, total, observed)


def _ods_max_ts_source(target: Target, spec: TableSpec) -> datetime | None:
    d = target.dialect
    with target.begin() as conn:
        if "ts_source" not in {c.lower() for c in target.existing_columns(conn, "ods", spec.sql_name)}:
            return None
        return _as_dt(conn.scalar(f"SELECT MAX({d.quote('ts_source')}) FROM {d.qualified('ods', spec.sql_name)}"))


def _volume(spec: TableSpec, b: BoundRule, manifest: Manifest, target: Target | None) -> RuleResult:
    f = b.rule.fields
    current = manifest.rows
    prev = previous_run_rows(target, spec.table_name, manifest.mode, manifest.batch) if target is not None else None
    if prev is None or prev[0] < f["min_previous_rows"]:
        note = "no previous successful run" if prev is None else f"previous run had {prev[0]:,} rows"
        return RuleResult(b.rule, None, True, None, current,
                          f"{current:,} rows; {note} in {manifest.mode} mode to compare with (not judged)")
    before, batch = prev
    change = 100.0 * (current - before) / before if before else 0.0
    limit = float(f["max_change_pct"])
    direction = f["direction"]
    bad = (abs(change) > limit if direction == "both" else change < -limit if direction == "drop" else change > limit)
    observed = (f"{current:,} rows vs {before:,} in the previous {manifest.mode} run (batch {batch}): "
                f"{change:+.1f}%, allowed {'±' if direction == 'both' else '-' if direction == 'drop' else '+'}"
                f"{limit:g}%")
    return RuleResult(b.rule, None, not bad, None, current, observed)


# -- logging, reports, the pipeline hook ---------------------------------------------------------------------------


def log_results(target: Target, run: DqRun) -> None:
    """One etl.DataQuality_Log row per evaluated rule, in one transaction."""
    rows = []
    for r in run.results:
        details = reports.to_json({"observed": r.observed, "samples": r.samples,
                                   "max_failed_pct": r.rule.max_failed_pct}, indent=None)
        rows.append({
            "CheckId": str(uuid.uuid4()), "RunId": runlog.RUN_ID, "TableName": run.table, "Batch": run.batch,
            "RuleName": r.rule.name, "RuleType": r.rule.type, "ColumnName": (r.column or None) and r.column[:128],
            "Severity": r.severity, "Passed": r.passed, "FailedRows": r.failed_rows,
            "Details": details[:4000], "CheckedTs": run.checked_at,
        })
    record_quality(target, rows)


def run_rules(target: Target, spec: TableSpec, manifest: Manifest, files: Sequence[Path], path: Path,
              now: datetime | None = None) -> DqRun:
    """Load, bind and evaluate a rules file on an extract, and log the results."""
    bound = bind(load_rules(path), spec)
    results = evaluate(spec, bound, files, manifest=manifest, target=target, now=now)
    run = DqRun(spec.table_name, manifest.batch, manifest.mode, path, results)
    log_results(target, run)
    for r in run.warnings:
        log.warning("%s: data-quality warning: %s", spec.table_name, r.describe())
    log.info("%s: %d data-quality rule(s) on batch %s: %d passed, %d warning(s), %d critical failure(s)",
             spec.table_name, len(results), manifest.batch, sum(r.passed for r in results), len(run.warnings),
             len(run.critical_failures))
    return run


def check_before_merge(target: Target, spec: TableSpec, manifest: Manifest, files: Sequence[Path]) -> DqRun | None:
    """The pipeline hook (MergeOds, before the MERGE).  Raises DataError when a critical rule fails."""
    path = rules_file(spec)
    if path is None:
        log.debug("%s: no data-quality rules file in %s", spec.table_name, dq_dir())
        return None
    run = run_rules(target, spec, manifest, files, path)
    report = None
    if run.critical_failures or run.warnings:
        try:
            report = write_report(run)
        except Exception:
            log.exception("%s: could not write the data-quality report", spec.table_name)
    if run.critical_failures:
        where = f" Report: {report.html}." if report else ""
        raise DataError(f"{run.failure_message()}. The merge was not run: the ODS is unchanged.{where} "
                        "Fix the source rows (then load a new batch) or change the rule.")
    return run


def write_report(run: DqRun, base: Path | None = None) -> reports.ReportFiles:
    failed, warned = len(run.critical_failures), len(run.warnings)
    blocks: list[Any] = [reports.cards([
        ("rules", len(run.results), None), ("passed", sum(r.passed for r in run.results), "ok"),
        ("warnings", warned, "warn" if warned else None), ("critical failures", failed, "bad" if failed else None),
    ]), reports.paragraph(f"Rules file: {run.rules_path}", "note")]
    rows, classes = [], []
    for r in run.results:
        share = (reports.bar(r.failed_rows, r.total_rows, "bad" if r.severity == "critical" else "warn",
                             label=f"{reports.pct(r.failed_rows, r.total_rows) or 0}%")
                 if r.failed_rows else "")
        sample = "; ".join(", ".join(f"{k}={v}" for k, v in s.items()) for s in r.samples)
        rows.append((r.rule.name, r.rule.type, r.column or "", r.severity, reports.badge(r.status), r.failed_rows,
                     share, r.observed, sample))
        classes.append(None if r.passed else ("bad" if r.severity == "critical" else "warn"))
    blocks += [reports.heading("Rules"), reports.table(
        ("rule", "type", "column", "severity", "result", "failed rows", "share", "observed", "sample rows"),
        rows, classes, numeric=(5,))]
    verdict = "merge blocked" if failed else "passed" if not warned else "passed with warnings"
    html_text = reports.page(f"Data quality of {run.table}: {verdict}",
                             f"batch {run.batch} ({run.mode}) · run {runlog.RUN_ID}", blocks)
    data = {"table": run.table, "batch": run.batch, "mode": run.mode, "rules_file": str(run.rules_path),
            "checked_at": run.checked_at, "verdict": verdict, "results": [r.as_dict() for r in run.results]}
    stem = f"{run.table}_{re.sub(r'[^A-Za-z0-9_.-]', '-', run.batch)}_{reports.stamp(run.checked_at)}"
    return reports.write_report("dq", stem, html_text, [r.as_dict() for r in run.results], data, base=base)
