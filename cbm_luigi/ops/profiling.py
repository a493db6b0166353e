"""Column profiling: null / empty percentages, distinct counts, min / max, lengths against the declared width.

Where the data comes from (and why):

* by default, the **latest full extract** of the table in the parquet cache (``<cache>/<table>/*__full``), read
  by DuckDB: no load on the ERP, vectorised, and exactly the values the pipeline loads (cleaned).  It holds
  only the columns that are loaded (not excluded);
* when there is no full extract yet, or with ``--source``: a **full SELECT on the source** of every column the
  catalog still has (excluded ones too, so an exclusion can be reviewed), streamed through the same cleaning
  into a temporary parquet file under the cache dir (bounded memory), then profiled the same way.  On Progress,
  a value longer than its column's SQL width aborts that SELECT: the error then says which fix applies.

Figures per column: rows, NULLs, empties (strings that are ``''`` or only spaces), distinct non-NULL values,
min, max, max length in characters and in bytes against the declared width (``CharMaxLength``: the Progress SQL
width).  Flags: ``all_null``, ``always_empty``, ``constant`` (every row holds the same non-NULL value),
``overflow`` (a value longer than the width: Progress aborts the whole SELECT on such a value) and
``near_width`` (max length at or above ``width_warn_pct`` % of the width).  Columns flagged ``all_null``,
``always_empty`` or ``constant`` are suggested for exclusion, never a primary-key or modification column.
:func:`apply_suggestions` sets ``IsExcluded`` with a note on exactly those; every profile records
``config.ETL_Tables.LastProfilingTs``.

Run it with ``cbm-etl profile TABLE [--apply] [--source]``; reports go to ``<reports>/profiling/``.
"""

from __future__ import annotations

import logging
import re
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from cbm_luigi.config.settings import Settings, load_settings
from cbm_luigi.destinations import open_target
from cbm_luigi.errors import SourceError
from cbm_luigi.model.naming import quote_ident as _q
from cbm_luigi.model.specs import ColumnSpec, TableSpec
from cbm_luigi.model.types import BINARY, STRING
from cbm_luigi.ops import reports
from cbm_luigi.ops.validation import source_batches
from cbm_luigi.pipeline import transform
from cbm_luigi.pipeline.extract import MANIFEST, Manifest, stored_schema, table_cache_dir
from cbm_luigi.pipeline.sources import open_source
from cbm_luigi.store.config_tables import MetadataStore

log = logging.getLogger(__name__)

SUGGEST_FLAGS = ("all_null", "always_empty", "constant")
_COLUMNS_PER_SCAN = 16
_SHOWN = 60
_FIXED = re.compile(r"^\s*(n?char|bpchar|character)\s*(\(|$)", re.I)


@dataclass
class ColumnProfile:
    column_name: str
    sql_name: str
    logical_type: str
    declared_width: int | None
    rows: int
    nulls: int
    empties: int | None
    distinct: int
    min: Any
    max: Any
    max_length: int | None
    max_bytes: int | None
    excluded: bool = False
    protected: str | None = None
    flags: list[str] = field(default_factory=list)
    suggestion: str | None = None

    @property
    def null_pct(self) -> float | None:
        return reports.pct(self.nulls, self.rows)

    @property
    def empty_pct(self) -> float | None:
        return reports.pct(self.empties, self.rows) if self.empties is not None else None

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["null_pct"], d["empty_pct"] = self.null_pct, self.empty_pct
        return d


@dataclass
class TableProfile:
    table: str
    origin: str  # "extract" | "source"
    origin_detail: str
    rows: int
    columns: list[ColumnProfile]
    profiled_at: datetime
    seconds: float = 0.0
    width_warn_pct: float = 90.0

    @property
    def suggestions(self) -> list[ColumnProfile]:
        return [c for c in self.columns if c.suggestion]

    @property
    def width_risks(self) -> list[ColumnProfile]:
        return [c for c in self.columns if "overflow" in c.flags or "near_width" in c.flags]


# -- finding the data ----------------------------------------------------------------------------------------------


def find_extracts(cache_dir: Path, spec: TableSpec, mode: str | None = None) -> list[tuple[Path, Manifest]]:
    """Complete extracts of the table in the cache (those with a manifest), newest first."""
    found: dict[Path, Manifest] = {}
    folder = table_cache_dir(cache_dir, spec.table_name)
    if folder.is_dir():
        for d in folder.iterdir():
            if d.name.startswith(".") or not (d / MANIFEST).is_file():
                continue
            try:
                m = Manifest.read(d)
            except (OSError, ValueError, TypeError) as exc:
                log.warning("%s: unreadable manifest, ignored: %s", d, exc)
                continue
            if m.table == spec.table_name and (mode is None or m.mode == mode):
                found[d.resolve()] = m
    return sorted(found.items(), key=lambda kv: (kv[1].created, kv[1].source_clock), reverse=True)


def spool_source(spec: TableSpec, settings: Settings, out_dir: Path, min_date: Any, max_date: Any) -> tuple[Path, int]:
    """A full SELECT of ``spec``'s loaded columns into one parquet file (cleaned like the load), streamed."""

    path = out_dir / "profile.parquet"
    rows = 0
    writer: pq.ParquetWriter | None = None
    with open_source(settings) as source:
        try:
            for batch in source_batches(spec, source, batch_rows=settings.extract_batch_rows,
                                        min_date=min_date, max_date=max_date):
                if writer is None:
                    writer = pq.ParquetWriter(path, batch.schema)
                writer.write_batch(batch)
                rows += batch.num_rows
        except SourceError as exc:
            raise SourceError(
                f"table {spec.table_name}: the full SELECT for profiling failed: {exc}. If Progress says a value "
                "exceeds its column's max length or precision, that column's SQL width is too small: widen it "
                "with the OpenEdge dbtool utility (SQL Width Scan w/Fix Option), or exclude the column"
            ) from exc
        finally:
            if writer is not None:
                writer.close()
    if writer is None:
        schema = transform.clean_batch(pa.RecordBatch.from_pylist([], schema=stored_schema(spec)),
                                       min_date=min_date, max_date=max_date)[0].schema
        pq.write_table(pa.Table.from_pylist([], schema=schema), path)
    return path, rows


# -- the figures ---------------------------------------------------------------------------------------------------



def profile_files(spec: TableSpec, columns: Sequence[ColumnSpec], files: Sequence[Path], *,
                  width_warn_pct: float = 90.0, excluded: set[str] | None = None) -> tuple[int, list[ColumnProfile]]:
    """Profile ``columns`` (SQL names in the files) with DuckDB; returns (rows, per-column profiles)."""
    con = duckdb.connect()
    try:
        con.execute("SET memory_limit = '1GB'")
        con.read_parquet([str(f) for f in files]).create_view("t")
        row = con.execute("SELECT COUNT(*) FROM t").fetchone()
        rows = int(row[0]) if row else 0
        protected = {k: "primary key" for k in spec.primary_key}
        if spec.date_modif_col:
            protected.setdefault(spec.date_modif_col, "modification column")
        out: list[ColumnProfile] = []
        for start in range(0, len(columns), _COLUMNS_PER_SCAN):
            chunk = columns[start:start + _COLUMNS_PER_SCAN]
            exprs: list[str] = []
            for c in chunk:
                col = _q(c.sql_name)
                is_text = c.logical_type == STRING
                exprs += [
                    f"COUNT(*) FILTER (WHERE {col} IS NULL)",
                    f"COUNT(*) FILTER (WHERE trim({col}) = '')" if is_text else "NULL",
                    f"COUNT(DISTINCT {col})",
                    f"MIN({col})" if c.logical_type != BINARY else "NULL",
                    f"MAX({col})" if c.logical_type != BINARY else "NULL",
                    f"MAX(length({col}))" if is_text else "NULL",
                    f"MAX(strlen({col}))" if is_text else "NULL",
                ]
            values = con.execute(f"SELECT {', '.join(exprs)} FROM t").fetchone()
            assert values is not None
            for i, c in enumerate(chunk):
                nulls, empties, distinct, lo, hi, max_len, max_bytes = values[i * 7:(i + 1) * 7]
                p = ColumnProfile(
                    column_name=c.column_name, sql_name=c.sql_name, logical_type=c.logical_type,
                    declared_width=c.width if c.logical_type == STRING and not _fixed_length(c) else None,
                    rows=rows, nulls=int(nulls),
                    empties=int(empties) if empties is not None else None, distinct=int(distinct),
                    min=_display(lo), max=_display(hi), max_length=max_len, max_bytes=max_bytes,
                    excluded=c.sql_name in (excluded or set()), protected=protected.get(c.sql_name),
                )
                _judge(p, width_warn_pct)
                out.append(p)
        return rows, out
    finally:
        con.close()


def _fixed_length(c: ColumnSpec) -> bool:
    """CHAR(n) values are always n long: their width says nothing about overflow (Progress exposes its
    CHARACTER fields as VARCHAR, so this only concerns the test and demo sources)."""
    return bool(_FIXED.match(c.source_type or ""))


def _display(v: Any) -> Any:
    if isinstance(v, str) and len(v) > _SHOWN:
        return v[:_SHOWN] + "..."
    if isinstance(v, bytes):
        return v.hex()[:_SHOWN]
    return v


def _judge(p: ColumnProfile, width_warn_pct: float) -> None:
    """Flags and the exclusion suggestion of one column."""
    if p.rows:
        if p.nulls == p.rows:
            p.flags.append("all_null")
        elif p.empties and p.nulls + p.empties == p.rows:
            p.flags.append("always_empty")
        elif p.distinct == 1 and p.nulls == 0:
            p.flags.append("constant")
    width = p.declared_width
    if width and p.max_bytes is not None:
        longest = max(p.max_bytes, p.max_length or 0)
        if longest > width:
            p.flags.append("overflow")
        elif longest >= width * width_warn_pct / 100.0:
            p.flags.append("near_width")
    reason = {"all_null": f"all NULL in {p.rows:,} rows",
              "always_empty": f"always empty or NULL in {p.rows:,} rows",
              "constant": f"constant value {p.min!r} in {p.rows:,} rows"}
    flag = next((f for f in p.flags if f in SUGGEST_FLAGS), None)
    if flag and not p.protected and not p.excluded:
        p.suggestion = reason[flag]


# -- the command's work --------------------------------------------------------------------------------------------


def profile_table(table: str, *, from_source: bool = False, width_warn_pct: float = 90.0,
                  settings: Settings | None = None) -> TableProfile:
    """Profile one registered table (see the module docstring for where the data comes from)."""
    s = settings or load_settings()
    target = open_target(s.target)
    store = MetadataStore(target)
    spec = store.table_spec(table)
    started = time.perf_counter()
    profiled_at = datetime.now().replace(microsecond=0)
    extracts = [] if from_source else find_extracts(s.cache_dir, spec, mode="full")
    known = {c.sql_name for c in (*spec.columns, *spec.stored_columns)}
    extracts = [(d, m) for d, m in extracts if set(m.columns) <= known]
    if extracts:
        folder, manifest = extracts[0]
        columns = [spec.column(c) for c in manifest.columns]
        rows, profiles = profile_files(spec, columns, manifest.paths(folder), width_warn_pct=width_warn_pct)
        origin, detail = "extract", (f"full extract {folder.name} of {manifest.created} "
                                     f"(batch {manifest.batch}, {manifest.rows:,} rows)")
    else:
        in_source = store.columns_in_source(spec.table_name)
        excluded = {c.sql_name for c in spec.columns if c.is_excluded}
        cols = tuple(replace(c, is_excluded=False) for c in spec.columns if c.column_name in in_source)
        spec_all = replace(spec, columns=cols)
        s.cache_dir.mkdir(parents=True, exist_ok=True)
        d = target.dialect
        with tempfile.TemporaryDirectory(prefix="cbm-profile-", dir=s.cache_dir) as tmp:
            path, _ = spool_source(spec_all, s, Path(tmp), d.min_date, d.max_date)
            rows, profiles = profile_files(spec_all, list(cols), [path], width_warn_pct=width_warn_pct,
                                           excluded=excluded)
        origin, detail = "source", f"full SELECT on the source at {profiled_at:%Y-%m-%d %H:%M:%S} ({rows:,} rows)"
    store.set_last_profiling(spec.table_name, profiled_at)
    result = TableProfile(spec.table_name, origin, detail, rows, profiles, profiled_at,
                          round(time.perf_counter() - started, 3), width_warn_pct)
    log.info("%s: profiled %d columns over %d rows from %s (%.1fs): %d suggested exclusion(s), %d width risk(s)",
             spec.table_name, len(profiles), rows, origin, result.seconds, len(result.suggestions),
             len(result.width_risks))
    return result


def apply_suggestions(profile: TableProfile, settings: Settings | None = None) -> list[str]:
    """Exclude exactly the suggested columns (IsExcluded = true, a note in Notes); returns their names."""
    s = settings or load_settings()
    store = MetadataStore(open_target(s.target))
    notes = {c.column_name: f"excluded by cbm-etl profile on {profile.profiled_at:%Y-%m-%d}: {c.suggestion} "
                            f"({profile.origin})" for c in profile.suggestions}
    if notes:
        store.exclude_columns(profile.table, notes)
    return list(notes)


# -- report --------------------------------------------------------------------------------------------------------


def write_report(profile: TableProfile, applied: Sequence[str] = (), base: Path | None = None) -> reports.ReportFiles:
    p = profile
    blocks: list[Any] = [reports.cards([
        ("rows", p.rows, None), ("columns", len(p.columns), None),
        ("suggested exclusions", len(p.suggestions), "warn" if p.suggestions else "ok"),
        ("width risks", len(p.width_risks),
         "bad" if any("overflow" in c.flags for c in p.columns) else ("warn" if p.width_risks else "ok")),
    ]), reports.paragraph(f"Data: {p.origin_detail}.", "note")]
    rows, classes = [], []
    for c in p.columns:
        width_cell: Any = ""
        if c.declared_width and c.max_bytes is not None:
            longest = max(c.max_bytes, c.max_length or 0)
            css = "bad" if "overflow" in c.flags else "warn" if "near_width" in c.flags else "ok"
            width_cell = reports.bar(longest, max(c.declared_width, longest), css,
                                     label=f"{longest} / {c.declared_width}")
        elif c.max_length is not None:
            width_cell = f"{c.max_length} / -"
        flags = ", ".join(c.flags) + (" (excluded)" if c.excluded else "") + (
            f" ({c.protected})" if c.protected else "")
        rows.append((c.column_name, c.logical_type,
                     reports.bar(c.nulls, c.rows, "na", label=f"{c.null_pct or 0}%"),
                     reports.bar(c.empties, c.rows, "na", label=f"{c.empty_pct or 0}%") if c.empties is not None
                     else "", c.distinct, c.min, c.max, width_cell, flags,
                     ("applied: " if c.column_name in applied else "") + (c.suggestion or "")))
        classes.append("bad" if "overflow" in c.flags else "warn" if (c.suggestion or "near_width" in c.flags)
                       else None)
    blocks += [reports.heading("Columns"), reports.table(
        ("column", "type", "NULL", "empty", "distinct", "min", "max", "max length / width (bytes)", "flags",
         "suggested exclusion"), rows, classes, numeric=(4,))]
    if p.width_risks:
        blocks.append(reports.paragraph(
            "overflow: a value is longer than the column's SQL width; Progress aborts the whole SELECT when it "
            "meets such a value. near_width: the longest value is close to the width. Fix: widen the SQL width "
            "with the OpenEdge dbtool utility (SQL Width Scan w/Fix Option), then cbm-etl sync-columns.", "note"))
    if p.suggestions:
        blocks.append(reports.paragraph(
            "Apply the suggestions with: cbm-etl profile " + p.table + " --apply (the next load rewrites every row: "
            "the hashdiff covers the loaded columns).", "note"))
    html_text = reports.page(f"Profile of {p.table}", f"{p.rows:,} rows · {p.profiled_at:%Y-%m-%d %H:%M:%S}", blocks)
    csv_rows = [{**{k: v for k, v in c.as_dict().items() if k not in ("flags",)}, "flags": " ".join(c.flags),
                 "applied": c.column_name in applied} for c in p.columns]
    data = {"table": p.table, "origin": p.origin, "origin_detail": p.origin_detail, "rows": p.rows,
            "profiled_at": p.profiled_at, "width_warn_pct": p.width_warn_pct,
            "suggested_exclusions": [c.column_name for c in p.suggestions], "applied": list(applied),
            "columns": [c.as_dict() for c in p.columns]}
    return reports.write_report("profiling", f"{p.table}_{reports.stamp(p.profiled_at)}", html_text, csv_rows, data,
                                base=base)
