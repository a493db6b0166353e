"""Sources: read the catalog, the clock and record batches from the ERP.

* :class:`OdbcSource`: any ODBC source (Progress in production, PostgreSQL in tests).  Data is streamed as Arrow
  record batches by arrow-odbc (columnar buffers, the next batch fetched while the current one is processed);
  the catalog and the clock go through pyodbc.
* :class:`SqliteSource`: the stdlib-sqlite demo source (``sqlite:///path``), attached under the schema name
  (``PUB``) so that the same ``"PUB"."client"`` SQL works.

ODBC libraries are imported lazily: the demo runs on a machine without unixODBC.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from cbm_luigi.config.secrets import redact
from cbm_luigi.config.settings import Settings
from cbm_luigi.errors import ConfigError, SourceError, TransientSourceError
from cbm_luigi.model.specs import CatalogColumn
from cbm_luigi.pipeline.sources.errors import connect_fix, driver_line, is_login_failure
from cbm_luigi.pipeline.sources.flavors import (
    FLAVORS,
    SourceFlavor,
    logical_from_type_name,
    parse_declared_type,
)

log = logging.getLogger(__name__)

# ODBC SQLSTATEs worth a retry: communication link failure, connection failures, timeouts, and the session
# terminated by an administrator (57P01: PostgreSQL's pg_terminate_backend, a server restarting).
_TRANSIENT_ODBC = ("08S01", "08001", "08004", "08007", "HYT00", "HYT01", "40001", "57P01")


def is_transient_odbc(exc: BaseException) -> bool:
    text = str(exc)
    if is_login_failure(text):  # psqlODBC reports a refused login as 08001: a retry cannot fix a password
        return False
    return any(s in text for s in _TRANSIENT_ODBC)


def first_error_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class Source:
    """Interface.  One instance per task; ``close()`` releases connections."""

    flavor: SourceFlavor
    schema: str

    def clock(self) -> datetime:
        raise NotImplementedError

    def catalog(self, table: str) -> list[CatalogColumn]:
        raise NotImplementedError

    def read_batches(self, sql: str, params: Sequence[str], schema: pa.Schema, batch_rows: int
                     ) -> Iterator[pa.RecordBatch]:
        raise NotImplementedError

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _parse_clock(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.replace(tzinfo=None)
    return datetime.fromisoformat(str(value).strip())


class OdbcSource(Source):
    def __init__(self, conn_str: str, flavor: SourceFlavor, schema: str, login_timeout: int = 30,
                 batch_rows: int = 10_000, batch_bytes: int = 64 * 2**20) -> None:
        self.flavor = flavor
        self.schema = schema
        self.conn_str = flavor.connection_string(conn_str, batch_rows)
        # arrow-odbc sizes its fetch buffers for the widest values of every column (a 300-column ERP table needs
        # ~15 KB per row): this caps a batch's buffers, so wide tables get fewer rows per batch.
        self.batch_bytes = batch_bytes
        self.login_timeout = login_timeout
        self._pyodbc: Any = None

    def _catalog_conn(self) -> Any:
        if self._pyodbc is None:
            try:
                import pyodbc  # deferred: the ODBC driver manager loads only where ODBC is used
            except ImportError as exc:  # libodbc.so missing
                raise ConfigError(f"pyodbc cannot load the ODBC driver manager ({exc}); install unixODBC") from exc
            try:
                self._pyodbc = pyodbc.connect(self.conn_str, timeout=self.login_timeout, autocommit=True)
            except pyodbc.Error as exc:
                raise self._error(exc, "connect") from exc
        return self._pyodbc

    def _error(self, exc: BaseException, what: str) -> SourceError:
        msg = f"source ({self.flavor.name}, {redact(self.conn_str)}): {what} failed: {exc}"
        if is_login_failure(exc):  # the fix first (the driver's text follows): preflight's hint, not a retry
            msg = (f"source ({self.flavor.name}, {redact(self.conn_str)}): {what} failed: {connect_fix(exc)} "
                   f"(driver: {driver_line(exc)})")
        return TransientSourceError(msg) if is_transient_odbc(exc) else SourceError(msg)

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        cur = self._catalog_conn().cursor()
        try:
            cur.execute(sql, *params)
            row = cur.fetchone()
            return row[0] if row else None
        except Exception as exc:
            raise self._error(exc, f"query {sql.splitlines()[0]!r}") from exc
        finally:
            cur.close()

    def clock(self) -> datetime:
        return _parse_clock(self.scalar(self.flavor.clock_sql()))

    def catalog(self, table: str) -> list[CatalogColumn]:
        sql = self.flavor.catalog_sql()
        conn = self._catalog_conn()
        cur = conn.cursor()
        out: list[CatalogColumn] = []
        try:
            if sql is not None:
                cur.execute(sql, self.schema, table)
                for col, coltype, width, scale, nullflag, pos, extent in cur.fetchall():
                    is_decimal = str(coltype).lower() in ("decimal", "numeric")
                    out.append(CatalogColumn(
                        column_name=str(col), source_type=str(coltype),
                        logical_type=self.flavor.logical_type(str(coltype), width, scale),
                        width=int(width) if width is not None else None,
                        precision=int(width) if is_decimal and width else None,
                        # a decimal of width 0 declares no scale either: read as text, DECIMAL(38, 10)
                        scale=int(scale) if scale is not None and not (is_decimal and not width) else None,
                        nullable=str(nullflag).strip().upper() != "N", position=int(pos),
                        extent=int(extent or 0),
                    ))
            else:
                unconstrained: set[str] = set()
                if (usql := self.flavor.unconstrained_decimals_sql()) is not None:
                    unconstrained = {str(r[0]) for r in cur.execute(usql, self.schema, table).fetchall()}
                for r in cur.columns(table=table, schema=self.schema or None).fetchall():
                    type_name = str(r.type_name)
                    # Some drivers (SQLite's) report the declared type, e.g. DECIMAL(18,6): trust its figures.
                    base, decl_width, decl_scale = parse_declared_type(type_name)
                    logical = logical_from_type_name(base, r.decimal_digits)
                    size = decl_width if decl_width is not None else r.column_size
                    digits = decl_scale if decl_width is not None else r.decimal_digits
                    if logical == "decimal" and str(r.column_name) in unconstrained:
                        size = digits = None  # not the driver's made-up (28,6): read as text, DECIMAL(38, 10)
                    out.append(CatalogColumn(
                        column_name=str(r.column_name), source_type=type_name, logical_type=logical,
                        width=int(size) if size is not None and logical == "string" else None,
                        precision=int(size) if logical == "decimal" and size else None,
                        scale=int(digits or 0) if logical == "decimal" and size else None,
                        nullable=bool(r.nullable), position=int(r.ordinal_position),
                    ))
        except SourceError:
            raise
        except Exception as exc:
            raise self._error(exc, f"reading the catalog of {self.schema}.{table}") from exc
        finally:
            cur.close()
        return out

    def open_reader(self, sql: str, params: Sequence[str], batch_rows: int, schema: pa.Schema | None = None
                    ) -> Any:
        """The arrow-odbc batch reader of a query, as the pipeline opens it (the benchmark's raw read uses it).

        arrow-odbc fetches the next batch on its own thread while the caller works on the current one.  With
        ``schema`` (the catalog's), a column the driver describes as a narrow float but the catalog as a double
        is fetched as a double: psqlODBC describes ``double precision`` as SQL_FLOAT(17), which arrow-odbc reads
        as float32 (110642.42857142857 became 110642.43).
        """
        map_schema = None
        if schema is not None:
            wanted = schema

            def map_schema(detected: pa.Schema) -> pa.Schema:
                self.detected_schema = detected
                for i, f in enumerate(detected):
                    j = wanted.get_field_index(f.name)
                    if j >= 0 and pa.types.is_float32(f.type) and pa.types.is_float64(wanted.field(j).type):
                        detected = detected.set(i, f.with_type(pa.float64()))
                    if j >= 0 and pa.types.is_decimal(f.type) and pa.types.is_decimal(wanted.field(j).type) \
                            and f.type.scale < wanted.field(j).type.scale:
                        # the reader would cut every value to the driver's scale, silently
                        raise SourceError(
                            f"column {f.name}: the ODBC driver describes it as decimal({f.type.precision},"
                            f"{f.type.scale}), fewer decimals than the {wanted.field(j).type} it is loaded as, "
                            "so its values would be cut. If the source declares it without precision, set its "
                            "NumericPrecision to NULL in config.ETL_Columns (it is then read as the source's text "
                            "and checked exactly) and keep its NumericScale"
                        )
                return detected

        try:
            import arrow_odbc  # deferred: the ODBC driver manager loads only where ODBC is used
        except ImportError as exc:
            raise ConfigError(f"arrow-odbc cannot load the ODBC driver manager ({exc}); install unixODBC") from exc
        try:
            conn = arrow_odbc.connect(self.conn_str, login_timeout_sec=self.login_timeout)
            for stmt in self.flavor.session_setup_sql():
                conn.execute(stmt)
            return conn.read_arrow_batches(sql, batch_size=batch_rows, parameters=list(params) or None,
                                           fetch_concurrently=True, map_schema=map_schema,
                                           max_bytes_per_batch=self.batch_bytes)
        except Exception as exc:
            raise self._error(exc, "extraction query") from exc

    def read_batches(self, sql: str, params: Sequence[str], schema: pa.Schema, batch_rows: int
                     ) -> Iterator[pa.RecordBatch]:
        # the clock's and the count's connection is closed before the read opens its own: an extract holds one
        # source connection at a time, so [resources] source_connections caps connections, not only tasks
        self.close()
        reader = self.open_reader(sql, params, batch_rows, schema)
        try:
            for batch in reader:
                yield conform_batch(batch, schema)
        except (SourceError, ConfigError):
            raise
        except Exception as exc:
            if "too large to be written into the allocated buffer" in str(exc):
                raise SourceError(self._too_large(exc)) from exc
            raise self._error(exc, "reading rows") from exc

    def _too_large(self, exc: BaseException) -> str:
        """arrow-odbc's "A value (at least one) is too large" names no column: name the ones it can be."""
        detected = getattr(self, "detected_schema", None)
        suspects = [f"{f.name} ({f.type})" for f in detected or ()
                    if pa.types.is_decimal(f.type) or pa.types.is_string(f.type)]
        return (f"source ({self.flavor.name}): reading rows failed: a value is longer than the ODBC driver "
                f"describes its column, one of: {', '.join(suspects) or 'unknown'} ({exc}). A decimal declared "
                "without precision holding more digits is the usual cause (psqlODBC describes it as "
                "decimal(28,6)): set its NumericPrecision and NumericScale to NULL in config.ETL_Columns, or "
                "run cbm-etl sync-columns TABLE, so that it is read as the source's text and checked exactly")

    def close(self) -> None:
        if self._pyodbc is not None:
            self._pyodbc.close()
            self._pyodbc = None


class SqliteSource(Source):
    """stdlib sqlite3: the demo database file attached as the source schema."""

    def __init__(self, path: str, flavor: SourceFlavor, schema: str) -> None:
        if not Path(path).exists():
            raise ConfigError(f"CBM_SOURCE sqlite file {path!r} does not exist (run: cbm-etl demo)")
        self.flavor = flavor
        self.schema = schema
        self.conn = sqlite3.connect(":memory:")
        self.conn.execute("ATTACH DATABASE ? AS " + flavor.quote(schema or "main"), (path,))

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self.conn.execute(sql, tuple(params)).fetchone()
        return row[0] if row else None

    def clock(self) -> datetime:
        return _parse_clock(self.scalar(self.flavor.clock_sql()))

    def catalog(self, table: str) -> list[CatalogColumn]:
        q = self.flavor.quote
        rows = self.conn.execute(f"PRAGMA {q(self.schema)}.table_info({q(table)})").fetchall()
        out = []
        for cid, name, decl, notnull, _default, _pk in rows:
            type_name, width, scale = parse_declared_type(decl)
            logical = logical_from_type_name(type_name, scale)
            out.append(CatalogColumn(
                column_name=name, source_type=decl or "", logical_type=logical,
                width=width if logical == "string" else None,
                precision=width if logical == "decimal" else None,
                scale=scale if logical == "decimal" else None,
                nullable=not notnull, position=cid + 1,
            ))
        return out

    def read_batches(self, sql: str, params: Sequence[str], schema: pa.Schema, batch_rows: int
                     ) -> Iterator[pa.RecordBatch]:
        try:
            cur = self.conn.execute(sql, tuple(params))
        except sqlite3.Error as exc:
            raise SourceError(f"source (sqlite): extraction query failed: {exc}") from exc
        while True:
            try:  # fetching decodes the text (invalid UTF-8 fails here, naming the column)
                rows = cur.fetchmany(batch_rows)
            except sqlite3.Error as exc:
                raise SourceError(f"source (sqlite): reading rows failed: {exc}") from exc
            if not rows:
                break
            arrays = []
            for i, f in enumerate(schema):
                try:
                    arrays.append(_column_to_arrow([r[i] for r in rows], f.type))
                except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
                    raise SourceError(f"column {f.name}: cannot convert the source's values to {f.type}: "
                                      f"{first_error_line(exc)}") from exc
            yield pa.RecordBatch.from_arrays(arrays, schema=schema)

    def close(self) -> None:
        self.conn.close()


def _column_to_arrow(values: list[Any], typ: pa.DataType) -> pa.Array:
    """SQLite is dynamically typed: take values as they are, else go through their text form.

    SQLite stores DECIMAL(p,s) values with NUMERIC affinity (12.5 as REAL): they are rounded back to the
    declared scale through their shortest text form, which is exact for up to 15 significant digits.
    """
    if pa.types.is_decimal(typ):
        quantum = Decimal(1).scaleb(-typ.scale)
        values = [v if v is None or isinstance(v, Decimal) else Decimal(str(v)).quantize(quantum) for v in values]
    try:
        return pa.array(values, type=typ)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
        text = pa.array([None if v is None else str(v) for v in values], pa.string())
        if pa.types.is_boolean(typ):
            return pa.array([None if v is None else str(v).strip().lower() in ("1", "true", "t", "yes")
                             for v in values], pa.bool_())
        return text.cast(typ)


def conform_batch(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """Cast a batch read from the source to the schema derived from the catalog (stable parquet schema).

    A value that cannot be represented (e.g. a decimal wider than its declared precision) raises a SourceError
    naming the column.
    """
    if batch.num_columns != len(schema):
        raise SourceError(f"source returned {batch.num_columns} columns, expected {len(schema)}")
    for arr, field in zip(batch.columns, schema, strict=True):
        if pa.types.is_decimal(field.type):
            check_decimal_precision(arr, field)
    if batch.schema.equals(schema):
        return batch
    arrays = []
    for arr, field in zip(batch.columns, schema, strict=True):
        if arr.type.equals(field.type):
            arrays.append(arr)
            continue
        try:
            if pa.types.is_decimal(field.type) and pa.types.is_string(arr.type):
                arrays.append(decimal_from_text(arr, field))
                continue
            if pa.types.is_boolean(field.type) and pa.types.is_string(arr.type):
                arrays.append(_column_to_arrow(arr.to_pylist(), field.type))
            elif pa.types.is_float32(arr.type) and pa.types.is_float64(field.type):
                # REAL 229.312 would widen to 229.31199645996094: go through its shortest text instead
                arrays.append(arr.cast(pa.string()).cast(field.type))
            else:
                arrays.append(arr.cast(field.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise SourceError(f"column {field.name}: cannot convert {arr.type} to {field.type}: {exc}") from exc
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def decimal_from_text(arr: pa.Array, field: pa.Field) -> pa.Array:
    """A decimal read as the source's text, converted exactly to the column's type or refused naming the value.

    Arrow's cast refuses a value with more decimals than the scale (never rounds); a value with more digits
    than the precision is refused by :func:`check_decimal_precision`.
    """
    typ = field.type
    wide = pa.decimal128(38, typ.scale)
    try:
        out = pc.cast(pc.utf8_trim_whitespace(arr), wide)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise SourceError(_decimal_refusal(arr, field, exc)) from exc
    check_decimal_precision(out, field)
    return out.cast(typ)


def _decimal_refusal(arr: pa.Array, field: pa.Field, exc: BaseException) -> str:
    """The first value that does not fit, and the NumericScale (or the exclusion) that would hold the batch."""
    typ = field.type
    first, most_before, most_after = None, 0, 0
    for text in arr.to_pylist():
        if text is None:
            continue
        try:
            value = Decimal(text.strip())
        except ArithmeticError:
            return f"column {field.name}: cannot convert string {text!r} to {typ}: not a number ({exc})"
        _sign, digits, exponent = value.as_tuple()
        if not isinstance(exponent, int):
            return f"column {field.name}: cannot convert string {text!r} to {typ}: not a finite number"
        after = max(0, -exponent)
        before = max(0, len(digits) + exponent) if any(digits) else 0
        most_before, most_after = max(most_before, before), max(most_after, after)
        if first is None and (after > typ.scale or before > 38 - typ.scale):
            first = (text, before, after)
    if first is None:
        return f"column {field.name}: cannot convert the source's text to {typ}: {exc}"
    text, before, after = first
    need = most_before + most_after
    fix = (f"set NumericScale to {most_after} for this column in config.ETL_Columns (NumericPrecision left NULL: "
           f"it is then loaded as DECIMAL(38,{most_after}); cbm-etl sync-columns keeps it) and run again"
           if need <= 38 else
           f"its values need {most_before} digits before the point and {most_after} after, more than the 38 a "
           "decimal holds in the parquet cache: exclude the column (IsExcluded = 1 in config.ETL_Columns) or "
           "declare its precision and scale in the source")
    return (f"column {field.name}: the source value {text} does not fit DECIMAL(38,{typ.scale}), the type it is "
            f"loaded as ({before} digit(s) before the point, {after} after); it would be changed, so nothing is "
            f"loaded. Fix: {fix}")


def check_decimal_precision(arr: pa.Array, field: pa.Field) -> None:
    """Refuse decimals wider than the column's declared precision.

    Progress does not enforce DECIMAL precision, and a driver may hand over a decimal128(p, s) array whose values
    need more than p digits: written to parquet as is (INT32/INT64 storage for p <= 18), they would come back as
    different numbers.  Checked on every batch, vectorised; the message names the column and the fix.
    """
    typ = field.type
    if not pa.types.is_decimal(arr.type) or typ.precision >= 38:
        return
    widened = arr.cast(pa.decimal128(38, arr.type.scale), safe=False)
    limit = pa.scalar(Decimal(10) ** (typ.precision - typ.scale), pa.decimal128(38, arr.type.scale))
    too_wide = pc.greater_equal(pc.abs(widened), limit)
    count = pc.sum(too_wide).as_py() or 0
    if count:
        sample = widened.filter(too_wide)[0].as_py()
        raise SourceError(
            f"column {field.name}: {count} value(s) need more than the {typ.precision} digits its catalog declares "
            f"(e.g. {sample}); Progress does not enforce DECIMAL precision. Raise NumericPrecision for this column "
            "in config.ETL_Columns (cbm-etl sync-columns keeps a wider value) or exclude the column"
        )


def check_source_settings(settings: Settings) -> None:
    """The source settings, checked without connecting (``cbm-etl run`` refuses them before any task starts)."""
    src = settings.source.strip()
    if not src:
        # no "PWD=" in the text: the redaction of connection strings would swallow the rest of the message
        raise ConfigError(
            "CBM_SOURCE is not set: put the ODBC connection string of the ERP in .env or the environment, "
            "e.g. CBM_SOURCE='DSN=progress_erp;UID=etl_reader' plus its password, or run `cbm-etl demo` for the "
            "demo source"
        )
    if src.startswith("sqlite:///") and settings.source_flavor != "sqlite":
        raise ConfigError(f"CBM_SOURCE is a sqlite file but CBM_SOURCE_FLAVOR={settings.source_flavor}; "
                          "set it to sqlite")


def open_source(settings: Settings) -> Source:
    """Open the configured source.  ``sqlite:///path`` uses stdlib sqlite3; anything else is ODBC."""
    flavor = FLAVORS[settings.source_flavor]()
    check_source_settings(settings)
    src = settings.source.strip()
    if src.startswith("sqlite:///"):
        return SqliteSource(src[len("sqlite:///"):], flavor, settings.source_schema)
    return OdbcSource(src, flavor, settings.source_schema, settings.source_login_timeout,
                      settings.extract_batch_rows, settings.extract_batch_mb * 2**20)
