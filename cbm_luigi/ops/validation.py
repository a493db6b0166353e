"""Validation: prove that ``ods.<table>`` matches the source, and say where it does not.

For each table it reads (streaming, bounded memory):

* the source, with exactly the SELECT of a full extract (``flavor.select_sql(spec, schema, Window(None))``, so
  ``FilterClause`` applies), each batch cleaned as the load cleans it (:func:`transform.clean_batch`), then the
  canonical text of the primary key and the row's hashdiff (:func:`transform.compute_hashdiff` over the
  business columns), and whether the row changed after the table's watermark (``pending``);
* the ODS, the same business columns plus the stored ``hashdiff``: the hashdiff is recomputed from the values
  read back, so a value edited in the ODS behind the pipeline's back is found even when the stored hashdiff
  was left alone.

Both sides are spilled as (key texts, first 64 bits of the hashes) into a temporary DuckDB file under the cache
dir (memory limit ``CBM_VALIDATE_MEMORY``, default 1GB; DuckDB spills joins to disk beyond it) and compared:

* rows: source rows (after FilterClause) vs ODS rows (soft-deleted rows left out once the ODS has them);
* keys missing in the ODS, keys extra in the ODS, with samples;
* content mismatches: keys on both sides whose source hashdiff differs from the ODS row (recomputed or stored),
  with samples and, for the samples, the columns that differ (one more pass over each side, stopped as soon
  as the sample rows are found; skip it with ``column_diff=False``).

Differences on source rows modified at or after the watermark (``LastSuccessTs``: the next incremental run
picks them up) are counted as *pending*: alone they give the status ``behind``, not ``mismatch``.

Statuses: ``match``, ``behind``, ``mismatch``, ``error``.  One row per table goes to ``etl.Validation_Log``
(counts, status, details JSON with samples); reports go to ``<reports>/validation/``.

Run it with ``cbm-etl validate --filter all|dimensions|facts|critical`` or ``cbm-etl validate --tables a,b``.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
import uuid
from collections.abc import Generator, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from cbm_luigi.config.options import quality_option
from cbm_luigi.config.settings import Settings, load_settings
from cbm_luigi.destinations import open_target
from cbm_luigi.destinations.client import Target
from cbm_luigi.errors import CbmError, ConfigError, MetadataError, SourceError, TargetError
from cbm_luigi.model.naming import quote_ident as _dq
from cbm_luigi.model.specs import TABLE_FILTERS, TableSpec
from cbm_luigi.model.types import DECIMAL, HASHDIFF
from cbm_luigi.ops import reports
from cbm_luigi.pipeline import openedge, transform
from cbm_luigi.pipeline.extract import source_schema, stored_schema
from cbm_luigi.pipeline.sources import Source, open_source
from cbm_luigi.pipeline.sources.flavors import Window
from cbm_luigi.store import runlog
from cbm_luigi.store.checks_log import record_validation
from cbm_luigi.store.config_tables import MetadataStore

log = logging.getLogger(__name__)

FILTERS = TABLE_FILTERS
STATUSES = ("match", "behind", "mismatch", "error")
#: ODS columns that, when present (and not a business column), mark a soft-deleted row: a ``*_ts`` column is
#: deleted when NOT NULL, a flag when true.  Rows marked deleted are not expected in the source.
SOFT_DELETE_COLUMNS = ("etl_deleted_ts", "etl_is_deleted", "is_deleted", "deleted_ts")
DETAILS_MAX = 4000
_SHOWN_VALUE = 120


@dataclass
class TableValidation:
    """What the validation of one table found."""

    table: str
    status: str = "error"
    source_rows: int | None = None
    target_rows: int | None = None
    missing: int = 0
    missing_pending: int = 0
    extra: int = 0
    mismatched: int = 0
    mismatched_pending: int = 0
    hashdiff_only: int = 0
    source_duplicate_keys: int = 0
    key_columns: list[str] = field(default_factory=list)
    samples_missing: list[dict[str, Any]] = field(default_factory=list)
    samples_extra: list[dict[str, Any]] = field(default_factory=list)
    samples_mismatched: list[dict[str, Any]] = field(default_factory=list)
    pending_since: datetime | None = None
    soft_delete_column: str | None = None
    error: str | None = None
    seconds: float = 0.0
    validated_at: datetime = field(default_factory=runlog.now)

    @property
    def differences(self) -> int:
        """Differences that are not explained by pending source changes."""
        return (self.missing - self.missing_pending) + self.extra + (self.mismatched - self.mismatched_pending) \
            + self.source_duplicate_keys

    @property
    def pending(self) -> int:
        return self.missing_pending + self.mismatched_pending

    def decide_status(self) -> str:
        if self.error:
            return "error"
        if self.differences:
            return "mismatch"
        if self.pending:
            return "behind"
        return "match"

    def summary(self) -> str:
        if self.status == "error":
            return f"error: {self.error}"
        parts = [f"source {self.source_rows:,} rows, ODS {self.target_rows:,} rows"]
        if self.missing:
            parts.append(f"{self.missing:,} missing in ODS" + (f" ({self.missing_pending:,} pending)"
                                                               if self.missing_pending else ""))
        if self.extra:
            parts.append(f"{self.extra:,} extra in ODS")
        if self.mismatched:
            parts.append(f"{self.mismatched:,} content mismatches" + (
                f" ({self.mismatched_pending:,} pending)" if self.mismatched_pending else ""))
        if self.source_duplicate_keys:
            parts.append(f"{self.source_duplicate_keys:,} duplicate keys in the source")
        return "; ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["differences"] = self.differences
        d["pending"] = self.pending
        d["summary"] = self.summary()
        return d

    def details_text(self) -> str:
        """JSON for etl.Validation_Log.Details, samples shortened until it fits."""
        for n in (10, 5, 3, 1, 0):
            data = {
                "summary": self.summary(), "hashdiff_only": self.hashdiff_only,
                "missing_pending": self.missing_pending, "mismatched_pending": self.mismatched_pending,
                "source_duplicate_keys": self.source_duplicate_keys,
                "pending_since": self.pending_since, "soft_delete_column": self.soft_delete_column,
                "samples_missing": self.samples_missing[:n], "samples_extra": self.samples_extra[:n],
                "samples_mismatched": self.samples_mismatched[:n],
            }
            text = reports.to_json(data, indent=None)
            if len(text) <= DETAILS_MAX:
                return text
        return text[:DETAILS_MAX]


# -- which tables --------------------------------------------------------------------------------------------------


def select_tables(store: MetadataStore, filter_name: str = "all", tables: Sequence[str] | None = None) -> list[str]:
    """Registered names to validate: ``tables`` as given (any state), or the active tables of a filter."""
    if tables:
        return [store.resolve_table(t) for t in tables]
    if filter_name not in FILTERS:
        raise ConfigError(f"--filter {filter_name!r} is not valid; use one of {', '.join(FILTERS)}")
    names = store.table_names(active_only=True)
    if filter_name == "all":
        return names
    out = []
    for name in names:
        try:
            spec = store.table_spec(name)
        except MetadataError as exc:  # shown as an error row rather than silently skipped
            log.warning("%s: cannot read its configuration (%s); validated as an error", name, exc)
            out.append(name)
            continue
        if (filter_name == "dimensions" and spec.is_dimension) or (filter_name == "facts" and spec.is_fact) or \
                (filter_name == "critical" and spec.priority == "critical"):
            out.append(name)
    return out


# -- reading both sides --------------------------------------------------------------------------------------------


def source_batches(spec: TableSpec, source: Source, *, batch_rows: int, min_date: Any, max_date: Any
                   ) -> Generator[pa.RecordBatch, None, None]:
    """The source rows as a full extract reads them, cleaned as the load cleans them.

    Decimals are read as the source's own text (where the flavour can, :meth:`SourceFlavor.decimal_text_sql`)
    and turned into their canonical text (docs/HASHDIFF.md): a value the load cut or rounded differs from it,
    whereas a copy read through the load's own conversion would match.
    """
    as_text = source.flavor.decimal_text_sql("x") is not None
    sql, params = source.flavor.select_sql(spec, source.schema, Window(None, reason="validation"),
                                           decimals_as_text=as_text)
    log.debug("%s: %s %s", spec.table_name, sql, params)
    schema = source_schema(spec)
    if as_text:
        schema = pa.schema([f.with_type(pa.string()) if pa.types.is_decimal(f.type) else f for f in schema])
    for rb in source.read_batches(sql, params, schema, batch_rows):
        if as_text:
            rb = pa.RecordBatch.from_arrays(
                [decimal_text_canonical(a, spec.table_name, f.name) if spec_decimal(spec, f.name) else a
                 for a, f in zip(rb.columns, rb.schema, strict=True)], schema=rb.schema)
        # as the extract does: extent elements split, a DATETIME-TZ as instant + offset (ods/stored_columns)
        cleaned, _ = transform.clean_batch(openedge.reshape_batch(rb, spec), min_date=min_date, max_date=max_date)
        yield cleaned


def spec_decimal(spec: TableSpec, sql_name: str) -> bool:
    return spec.column(sql_name).logical_type == DECIMAL


_PLAIN_DECIMAL = r"^-?(0|[1-9][0-9]*)(\.[0-9]*)?$"


def decimal_text_canonical(arr: pa.Array, table: str, column: str) -> pa.Array:
    """A decimal's source text as its canonical text (``12.50`` -> ``12.5``, ``-0.000`` -> ``0``, ``1E-7`` ->
    ``0.0000001``): equal to what the hashdiff makes of the same value held exactly as a decimal."""
    text = pc.utf8_trim_whitespace(arr)
    plain = pc.match_substring_regex(text, _PLAIN_DECIMAL)
    if pc.all(pc.fill_null(plain, True)).as_py():  # the usual form: vectorised
        trimmed = pc.utf8_rtrim(pc.utf8_rtrim(text, "0"), ".")
        out = pc.if_else(pc.match_substring(text, "."), trimmed, text)
        return pc.if_else(pc.equal(out, "-0"), "0", out)
    values: list[str | None] = []
    for t in text.to_pylist():
        if t is None:
            values.append(None)
            continue
        try:
            d = Decimal(t)
        except ArithmeticError as exc:
            raise SourceError(f"table {table}: column {column}: the source value {t!r} is not a number") from exc
        plain_text = format(d, "f")
        if "." in plain_text:
            plain_text = plain_text.rstrip("0").rstrip(".")
        values.append("0" if d == 0 else plain_text)
    return pa.array(values, pa.string())


def _soft_delete(spec: TableSpec, existing: Sequence[str]) -> str | None:
    business = {c.lower() for c in spec.business_columns}
    have = {c.lower(): c for c in existing}
    for name in SOFT_DELETE_COLUMNS:
        if name in have and name not in business:
            return have[name]
    return None


def ods_layout(target: Target, spec: TableSpec) -> tuple[list[str], str | None]:
    """The ODS table's columns and its soft-delete column; a clear error when it cannot be validated."""
    with target.begin() as conn:
        existing = target.existing_columns(conn, "ods", spec.sql_name)
    if not existing:
        raise TargetError(
            f"table {spec.table_name}: ods.{spec.sql_name} does not exist (never loaded); "
            f"run: cbm-etl run {spec.table_name} --mode full"
        )
    have = {c.lower() for c in existing}
    missing = [c for c in [*spec.business_columns, HASHDIFF] if c.lower() not in have]
    if missing:
        raise TargetError(
            f"table {spec.table_name}: ods.{spec.sql_name} lacks column(s) {', '.join(missing)} "
            "(new in config.ETL_Columns since the last load); run a load of the table first"
        )
    return existing, _soft_delete(spec, existing)


def ods_batches(target: Target, spec: TableSpec, *, batch_rows: int, soft_delete: str | None
                ) -> Generator[pa.RecordBatch, None, None]:
    """``ods.<table>``'s business columns and stored hashdiff, streamed, typed like the extract."""
    d = target.dialect
    cols = [*spec.business_columns, HASHDIFF]
    sql = f"SELECT {', '.join(d.quote(c) for c in cols)} FROM {d.qualified('ods', spec.sql_name)}"
    params: dict[str, Any] = {}
    if soft_delete:
        if soft_delete.lower().endswith("_ts"):
            sql += f" WHERE {d.quote(soft_delete)} IS NULL"
        else:
            sql += f" WHERE ({d.quote(soft_delete)} IS NULL OR {d.quote(soft_delete)} = :not_deleted)"
            params["not_deleted"] = False
    schema = stored_schema(spec).append(pa.field(HASHDIFF, pa.string()))
    with target.begin() as conn:
        log.debug("SQL: %s", sql)
        result = conn.sa.execution_options(stream_results=True, yield_per=batch_rows).execute(sa.text(sql), params)
        for part in result.partitions(batch_rows):
            columns = list(zip(*part, strict=True)) if part else [() for _ in schema]
            arrays = [_to_arrow(list(col), f.type, spec, f.name) for col, f in zip(columns, schema, strict=True)]
            yield pa.RecordBatch.from_arrays(arrays, schema=schema)


def _to_arrow(values: list[Any], typ: pa.DataType, spec: TableSpec, name: str) -> pa.Array:
    """Values read back from the ODS as the extract's Arrow type (drivers differ in the Python types they give)."""
    try:
        return pa.array(values, type=typ)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        pass
    fixed: list[Any] = []
    for v in values:
        if isinstance(v, memoryview | bytearray):
            v = bytes(v)
        if v is not None and pa.types.is_string(typ) and not isinstance(v, str):
            v = v.decode("utf-8") if isinstance(v, bytes) else str(v)
        fixed.append(v)
    try:
        return pa.array(fixed, type=typ)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        pass
    try:  # last resort: through the text form (e.g. a driver returning numbers as strings)
        return pa.array([None if v is None else str(v) for v in fixed], pa.string()).cast(typ)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise TargetError(
            f"table {spec.table_name}: column {name} of ods.{spec.sql_name} cannot be read back as {typ}: {exc}"
        ) from exc


def _key_texts(batch: pa.RecordBatch, spec: TableSpec) -> list[pa.Array]:
    return [transform.canonical_text(batch.column(k)).cast(pa.string()) for k in spec.primary_key]


def _pending_mask(batch: pa.RecordBatch, spec: TableSpec, since: datetime | None) -> pa.Array:
    if since is None or not spec.date_modif_col:
        return pa.repeat(pa.scalar(False), batch.num_rows)
    arr = batch.column(spec.date_modif_col)
    if pa.types.is_date(arr.type):
        mask = pc.greater_equal(arr.cast(pa.date32()), pa.scalar(since.date(), pa.date32()))
    elif pa.types.is_timestamp(arr.type):
        naive = arr.cast(pa.timestamp("us", tz=arr.type.tz)).cast(pa.timestamp("us"))
        mask = pc.greater_equal(naive, pa.scalar(since, pa.timestamp("us")))
    else:
        return pa.repeat(pa.scalar(False), batch.num_rows)
    return pc.fill_null(mask, False)


def pending_threshold(spec: TableSpec, watermark: datetime | None) -> datetime | None:
    """Source rows modified at or after this instant may not be loaded yet (None: no such notion)."""
    if watermark is None or not spec.is_incremental_capable:
        return None
    if spec.date_modif_precision == "date":
        return datetime(watermark.year, watermark.month, watermark.day)
    return watermark


# -- the comparison ------------------------------------------------------------------------------------------------


class _Spill:
    """(key texts, hashes) of both sides in a temporary DuckDB file, compared with SQL."""

    def __init__(self, workdir: Path, nkeys: int, memory_limit: str) -> None:
        (workdir / "tmp").mkdir(exist_ok=True)
        self.con = duckdb.connect(str(workdir / "validate.duckdb"),
                                  config={"memory_limit": memory_limit, "temp_directory": str(workdir / "tmp"),
                                          "preserve_insertion_order": False})
        self.keys = [f"k{i}" for i in range(nkeys)]
        kdef = ", ".join(f"{k} VARCHAR" for k in self.keys)
        # Hashes are kept as their first 64 bits (16 hex digits): a changed row keeps the same 64 bits with a
        # probability of 2^-64, and the spill is 3x smaller and its joins 4x faster than with the 64-char text.
        # A stored hashdiff that is not hex (damaged) becomes NULL, compared with IS DISTINCT FROM.
        self.con.execute(f"CREATE TABLE src ({kdef}, h UBIGINT, p BOOLEAN)")
        self.con.execute(f"CREATE TABLE tgt ({kdef}, hs UBIGINT, hc UBIGINT)")

    def add(self, table: str, data: pa.Table) -> None:
        cols = [f"TRY_CAST('0x' || substr({_dq(n)}, 1, 16) AS UBIGINT)" if n in ("h", "hs", "hc") else _dq(n)
                for n in data.column_names]
        self.con.register("_batch", data)
        try:
            self.con.execute(f"INSERT INTO {table} SELECT {', '.join(cols)} FROM _batch")
        finally:
            self.con.unregister("_batch")

    def scalar_row(self, sql: str) -> tuple[Any, ...]:
        row = self.con.execute(sql).fetchone()
        assert row is not None
        return tuple(row)

    def close(self) -> None:
        self.con.close()



def _order(prefix: str, keys: Sequence[str]) -> str:
    # numbers held as text sort naturally when shorter texts come first
    return ", ".join(f"length({prefix}.{k}), {prefix}.{k}" for k in keys)


def _compare(spill: _Spill, result: TableValidation, sample: int) -> list[tuple[str, ...]]:
    """Fill the counts and samples of ``result``; returns the key texts of the mismatched samples."""
    k = spill.keys
    on = " AND ".join(f"s.{c} = t.{c}" for c in k)
    sk = ", ".join(f"s.{c}" for c in k)
    tk = ", ".join(f"t.{c}" for c in k)
    names = result.key_columns

    def key_dict(row: Sequence[Any]) -> dict[str, Any]:
        return dict(zip(names, row[: len(k)], strict=True))

    result.source_rows = int(spill.scalar_row("SELECT COUNT(*) FROM src")[0])
    result.target_rows = int(spill.scalar_row("SELECT COUNT(*) FROM tgt")[0])
    result.source_duplicate_keys = int(spill.scalar_row(
        f"SELECT COUNT(*) FROM (SELECT 1 FROM src GROUP BY {', '.join(k)} HAVING COUNT(*) > 1)")[0])

    not_in_tgt = f"FROM src s WHERE NOT EXISTS (SELECT 1 FROM tgt t WHERE {on})"
    n, n_pending = spill.scalar_row(f"SELECT COUNT(*), COUNT(*) FILTER (WHERE s.p) {not_in_tgt}")
    result.missing, result.missing_pending = int(n), int(n_pending)
    if result.missing:
        rows = spill.con.execute(f"SELECT {sk}, s.p {not_in_tgt} ORDER BY s.p, {_order('s', k)} LIMIT {int(sample)}"
                                 ).fetchall()
        result.samples_missing = [{"key": key_dict(r), "pending": bool(r[-1])} for r in rows]

    not_in_src = f"FROM tgt t WHERE NOT EXISTS (SELECT 1 FROM src s WHERE {on})"
    result.extra = int(spill.scalar_row(f"SELECT COUNT(*) {not_in_src}")[0])
    if result.extra:
        rows = spill.con.execute(f"SELECT {tk} {not_in_src} ORDER BY {_order('t', k)} LIMIT {int(sample)}").fetchall()
        result.samples_extra = [{"key": key_dict(r)} for r in rows]

    differs = "(s.h IS DISTINCT FROM t.hc OR s.h IS DISTINCT FROM t.hs)"
    both = f"FROM src s JOIN tgt t ON {on}"
    n, n_pending, hash_only = spill.scalar_row(
        f"SELECT COUNT(*) FILTER (WHERE {differs}), COUNT(*) FILTER (WHERE {differs} AND s.p), "
        f"COUNT(*) FILTER (WHERE s.h = t.hc AND s.h IS DISTINCT FROM t.hs) {both}")
    result.mismatched, result.mismatched_pending, result.hashdiff_only = int(n), int(n_pending), int(hash_only)
    keys: list[tuple[str, ...]] = []
    if result.mismatched:
        rows = spill.con.execute(
            f"SELECT {sk}, s.p, s.h IS NOT DISTINCT FROM t.hc {both} WHERE {differs} ORDER BY s.p, {_order('s', k)} LIMIT {int(sample)}"
        ).fetchall()
        for r in rows:
            result.samples_mismatched.append({
                "key": key_dict(r), "pending": bool(r[-2]), "hashdiff_only": bool(r[-1]), "differences": [],
            })
            keys.append(tuple(r[: len(k)]))
    return keys


def _find_rows(batches: Generator[pa.RecordBatch, None, None], spec: TableSpec, wanted: list[tuple[str, ...]]
               ) -> dict[tuple[str, ...], dict[str, str | None]]:
    """Canonical texts of the business columns of the rows whose key is in ``wanted`` (stops when all found)."""
    with contextlib.closing(batches):
        return _find_in(batches, spec, wanted)


def _find_in(batches: Iterator[pa.RecordBatch], spec: TableSpec, wanted: list[tuple[str, ...]]
             ) -> dict[tuple[str, ...], dict[str, str | None]]:
    found: dict[tuple[str, ...], dict[str, str | None]] = {}
    todo = set(wanted)
    for batch in batches:
        keys = _key_texts(batch, spec)
        mask = None
        for key in todo:
            m = None
            for arr, value in zip(keys, key, strict=True):
                eq = pc.equal(arr, pa.scalar(value, pa.string()))
                m = eq if m is None else pc.and_(m, eq)
            mask = m if mask is None else pc.or_(mask, m)
        if mask is None:
            break
        hit = batch.filter(pc.fill_null(mask, False))
        if hit.num_rows:
            texts = {c: transform.canonical_text(hit.column(c)).to_pylist() for c in spec.business_columns}
            hit_keys = [transform.canonical_text(hit.column(k)).to_pylist() for k in spec.primary_key]
            for i in range(hit.num_rows):
                key = tuple(str(a[i]) for a in hit_keys)
                found[key] = {c: texts[c][i] for c in spec.business_columns}
                todo.discard(key)
        if not todo:
            break
    return found


def _shown(v: str | None) -> str | None:
    if v is None:
        return None
    return v if len(v) <= _SHOWN_VALUE else v[:_SHOWN_VALUE] + f"... ({len(v)} chars)"


def validate_table(spec: TableSpec, source: Source, target: Target, *, workdir: Path, batch_rows: int,
                   sample: int = 10, column_diff: bool = True, memory_limit: str = "1GB") -> TableValidation:
    """Compare one table's source and ODS; errors are raised (the caller records them)."""
    started = time.perf_counter()
    result = TableValidation(spec.table_name, key_columns=list(spec.primary_key))
    store = MetadataStore(target)
    since = pending_threshold(spec, store.watermark(spec.table_name))
    result.pending_since = since
    _, soft = ods_layout(target, spec)
    result.soft_delete_column = soft
    d = target.dialect
    spill = _Spill(workdir, len(spec.primary_key), memory_limit)
    try:
        n = 0
        for batch in ods_batches(target, spec, batch_rows=batch_rows, soft_delete=soft):
            hc = transform.compute_hashdiff(batch, spec.business_columns)
            hs = batch.column(HASHDIFF).cast(pa.string())
            keys = _key_texts(batch, spec)
            spill.add("tgt", pa.table([*keys, hs, hc], names=[*spill.keys, "hs", "hc"]))
            n += batch.num_rows
        log.info("%s: ODS read, %d rows (%.1fs)", spec.table_name, n, time.perf_counter() - started)
        t0 = time.perf_counter()
        n = 0
        for batch in source_batches(spec, source, batch_rows=batch_rows, min_date=d.min_date, max_date=d.max_date):
            h = transform.compute_hashdiff(batch, spec.business_columns)
            keys = _key_texts(batch, spec)
            p = _pending_mask(batch, spec, since)
            spill.add("src", pa.table([*keys, h, p], names=[*spill.keys, "h", "p"]))
            n += batch.num_rows
        secs = time.perf_counter() - t0
        log.info("%s: source read, %d rows (%.1fs, %.0f rows/s)", spec.table_name, n, secs, n / secs if secs else 0)
        wanted = _compare(spill, result, sample)
    except duckdb.OutOfMemoryException as exc:
        raise ConfigError(
            f"table {spec.table_name}: comparing keys and hashes needs more memory than CBM_VALIDATE_MEMORY="
            f"{memory_limit} allows ({exc}); raise it (256MB or more; DuckDB spills to disk beyond it)"
        ) from exc
    finally:
        spill.close()
    if wanted and column_diff:
        src_rows = _find_rows(source_batches(spec, source, batch_rows=batch_rows, min_date=d.min_date,
                                             max_date=d.max_date), spec, wanted)
        ods_rows = _find_rows(ods_batches(target, spec, batch_rows=batch_rows, soft_delete=soft), spec, wanted)
        for s in result.samples_mismatched:
            key = tuple(str(s["key"][k]) for k in spec.primary_key)
            a, b = src_rows.get(key), ods_rows.get(key)
            if a is None or b is None:
                s["note"] = "row changed again while validating"
                continue
            s["differences"] = [{"column": spec.column(c).column_name, "source": _shown(a[c]), "ods": _shown(b[c])}
                                for c in spec.business_columns if a[c] != b[c]]
            if not s["differences"]:
                s["note"] = "values equal; the stored hashdiff is stale (the next load of the row rewrites it)"
    result.status = result.decide_status()
    result.seconds = round(time.perf_counter() - started, 3)
    log.info("%s: %s - %s (%.1fs)", spec.table_name, result.status, result.summary(), result.seconds)
    return result


# -- the run -------------------------------------------------------------------------------------------------------


def write_validation_log(target: Target, r: TableValidation) -> None:
    values = {
        "ValidationId": str(uuid.uuid4()), "RunId": runlog.RUN_ID, "TableName": r.table,
        "SourceRows": r.source_rows, "TargetRows": r.target_rows, "MissingInTarget": r.missing,
        "ExtraInTarget": r.extra, "ContentMismatches": r.mismatched, "Status": r.status,
        "Details": r.details_text() if r.status != "error" else (r.error or "")[:DETAILS_MAX],
        "DurationSeconds": r.seconds, "ValidatedTs": r.validated_at,
    }
    record_validation(target, values)


def run_validation(tables: Sequence[str], *, sample: int = 10, column_diff: bool = True,
                   settings: Settings | None = None) -> list[TableValidation]:
    """Validate the registered tables named, one after the other; each result is logged as soon as known."""
    s = settings or load_settings()
    target = open_target(s.target)
    store = MetadataStore(target)
    memory = quality_option("validate_memory")
    results: list[TableValidation] = []
    s.cache_dir.mkdir(parents=True, exist_ok=True)
    with open_source(s) as source:
        for name in tables:
            started = time.perf_counter()
            try:
                spec = store.table_spec(name)
                with tempfile.TemporaryDirectory(prefix="cbm-validate-", dir=s.cache_dir) as tmp:
                    r = validate_table(spec, source, target, workdir=Path(tmp), batch_rows=s.extract_batch_rows,
                                       sample=sample, column_diff=column_diff, memory_limit=memory)
            except CbmError as exc:
                r = TableValidation(name, status="error", error=str(exc))
            except Exception as exc:  # one table's failure must not hide the others' results (logged)
                log.exception("%s: validation failed", name)
                r = TableValidation(name, status="error", error=f"{type(exc).__name__}: {exc}")
            if r.status == "error":
                r.seconds = round(time.perf_counter() - started, 3)
                log.error("%s: validation error: %s", name, r.error)
            write_validation_log(target, r)
            results.append(r)
    return results


# -- report --------------------------------------------------------------------------------------------------------


def _key_text(key: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in key.items())


def write_report(results: Sequence[TableValidation], scope: str, base: Path | None = None) -> reports.ReportFiles:
    """HTML + CSV + JSON under ``<reports>/validation/``."""
    counts = {s: sum(1 for r in results if r.status == s) for s in STATUSES}
    blocks: list[Any] = [reports.cards([
        ("tables", len(results), None), ("match", counts["match"], "ok"),
        ("behind (pending changes)", counts["behind"], "warn" if counts["behind"] else None),
        ("mismatch", counts["mismatch"], "bad" if counts["mismatch"] else None),
        ("error", counts["error"], "bad" if counts["error"] else None),
    ])]
    rows, classes = [], []
    for r in results:
        cover = None
        if r.source_rows is not None and r.target_rows is not None:
            top = max(r.source_rows, r.target_rows, 1)
            css = "ok" if r.source_rows == r.target_rows else "bad"
            cover = reports.bar(r.target_rows, top, css, label=f"{reports.pct(r.target_rows, r.source_rows) or 0}%")
        rows.append((r.table, reports.badge(r.status), r.source_rows, r.target_rows, cover, r.missing, r.extra,
                     r.mismatched, r.pending, r.seconds, r.error or ""))
        classes.append({"mismatch": "bad", "error": "bad", "behind": "warn"}.get(r.status))
    blocks += [reports.heading("Tables"), reports.table(
        ("table", "status", "source rows", "ODS rows", "ODS / source", "missing in ODS", "extra in ODS",
         "content mismatches", "pending", "seconds", "error"), rows, classes, numeric=(2, 3, 5, 6, 7, 8, 9))]
    for r in results:
        if not (r.samples_missing or r.samples_extra or r.samples_mismatched):
            continue
        blocks.append(reports.heading(f"{r.table}: {r.summary()}"))
        if r.pending_since:
            blocks.append(reports.paragraph(
                f"pending = source row modified at or after {r.pending_since:%Y-%m-%d %H:%M:%S} (the watermark): "
                "the next incremental run loads it", "note"))
        if r.samples_missing:
            blocks += [reports.paragraph(f"Keys missing in the ODS ({r.missing:,}), first {len(r.samples_missing)}:"),
                       reports.table(("key", "pending"), [(_key_text(s["key"]), "yes" if s["pending"] else "")
                                                          for s in r.samples_missing])]
        if r.samples_extra:
            blocks += [reports.paragraph(f"Keys extra in the ODS ({r.extra:,}), first {len(r.samples_extra)}:"),
                       reports.table(("key",), [(_key_text(s["key"]),) for s in r.samples_extra])]
        if r.samples_mismatched:
            diff_rows = []
            for s in r.samples_mismatched:
                diffs = s.get("differences") or []
                text = "; ".join(f"{x['column']}: source {x['source']!r}, ODS {x['ods']!r}" for x in diffs)
                diff_rows.append((_key_text(s["key"]), "yes" if s["pending"] else "", text or s.get("note", "")))
            blocks += [reports.paragraph(f"Content mismatches ({r.mismatched:,}), first {len(diff_rows)}:"),
                       reports.table(("key", "pending", "columns that differ"), diff_rows)]
    html_text = reports.page("Validation: source vs ODS", f"scope {scope} · run {runlog.RUN_ID}", blocks)
    csv_rows = [{
        "table": r.table, "status": r.status, "source_rows": r.source_rows, "ods_rows": r.target_rows,
        "missing_in_ods": r.missing, "missing_pending": r.missing_pending, "extra_in_ods": r.extra,
        "content_mismatches": r.mismatched, "mismatched_pending": r.mismatched_pending,
        "hashdiff_only": r.hashdiff_only, "source_duplicate_keys": r.source_duplicate_keys,
        "seconds": r.seconds, "error": r.error,
    } for r in results]
    data = {"run_id": runlog.RUN_ID, "scope": scope, "counts": counts, "tables": [r.as_dict() for r in results]}
    return reports.write_report("validation", f"validation_{reports.stamp()}", html_text, csv_rows, data, base=base)
