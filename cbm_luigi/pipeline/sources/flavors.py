"""SQL flavours of the sources: how to quote, qualify, select a window, read the clock and the catalog.

``progress`` is production (OpenEdge SQL over ODBC): double-quoted identifiers, the ``PUB`` schema,
``SET TRANSACTION ISOLATION LEVEL READ UNCOMMITTED`` before extraction (no share locks on a busy ERP), the source
clock read from ``SYSPROGRESS.SYSCALCTABLE``, and the catalog from ``SYSPROGRESS.SYSCOLUMNS_FULL`` (SQL width,
scale, array extent).  ``postgresql`` and ``sqlite`` serve the tests and the demo.

Every identifier is quoted here; the window boundary is a bound parameter (ODBC ``?``), never text.
``FilterClause`` is the operator's own source predicate and is inserted as written (documented).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from cbm_luigi.errors import MetadataError
from cbm_luigi.model.naming import quote_ident
from cbm_luigi.model.specs import ColumnSpec, TableSpec, parse_lookback
from cbm_luigi.model.types import (
    BIGINT,
    BINARY,
    BOOLEAN,
    DATE,
    DECIMAL,
    FLOAT,
    INTEGER,
    STRING,
    TIMESTAMP,
    TIMESTAMP_TZ,
)


@dataclass(frozen=True)
class Window:
    """What an extraction reads: everything (``since`` None) or rows modified at or after ``since``."""

    since: datetime | None
    precision: str = "datetime"
    reason: str = "full"
    #: one partition of a partitioned extract (pipeline/partitions.py): rows whose key column (its source name)
    #: is >= key_low and < key_high (None: no bound on that side); key_nulls also reads the rows whose key is NULL
    key_column: str | None = None
    key_low: int | None = None
    key_high: int | None = None
    key_nulls: bool = False

    def boundary_text(self) -> str | None:
        if self.since is None:
            return None
        if self.precision == "date":
            return self.since.strftime("%Y-%m-%d")
        return self.since.strftime("%Y-%m-%d %H:%M:%S")


def incremental_window(spec: TableSpec, mode: str, watermark: datetime | None) -> Window:
    """Full when asked, when the table has no timestamps, or when it was never loaded; else watermark - lookback.

    With ``date`` precision the boundary is the date of (watermark - lookback): the whole day is re-read.
    """
    if mode == "full":
        return Window(None, reason="full mode")
    if not spec.is_incremental_capable:
        return Window(None, reason="no timestamps: always full")
    if watermark is None:
        return Window(None, reason="never loaded: first run is full")
    try:
        since = watermark - parse_lookback(spec.lookback)
    except MetadataError as exc:  # name the table and where the setting lives
        raise MetadataError(f"table {spec.table_name}: config.ETL_Tables.{exc}") from exc
    except OverflowError as exc:
        raise MetadataError(f"table {spec.table_name}: config.ETL_Tables.LookbackInterval {spec.lookback!r} goes "
                            f"back before year 1 from the watermark {watermark:%Y-%m-%d}: set a shorter one (e.g. "
                            f"1d) ({exc})") from exc
    if spec.date_modif_precision == "date":
        since = datetime(since.year, since.month, since.day)
    return Window(since, spec.date_modif_precision, reason=f"incremental since {since:%Y-%m-%d %H:%M:%S}")


class SourceFlavor:
    """Defaults (ANSI, double quotes); subclasses override the differences."""

    name = "ansi"
    #: ODBC parameter marker
    param = "?"

    def quote(self, ident: str) -> str:
        return quote_ident(ident)

    def qualify(self, schema: str, table: str) -> str:
        return f"{self.quote(schema)}.{self.quote(table)}" if schema else self.quote(table)

    def source_expression(self, column_name: str, sql_name: str) -> str:
        """``"gencod-v" AS "gencod_v"`` as stored in config.ETL_Columns.SourceExpression."""
        return f"{self.quote(column_name)} AS {self.quote(sql_name)}"

    def decimal_text_sql(self, expr: str) -> str | None:
        """A decimal read as the source's own text (exact, whatever the driver describes); None: not supported.

        Progress decimals hold at most 50 digits: 60 characters hold any of them with its sign and point.
        """
        return f"CAST({expr} AS VARCHAR(60))"

    def unconstrained_decimals_sql(self) -> str | None:
        """Names of the table's decimals declared without precision, taking (schema, table); None: not known."""
        return None

    def text_cut_sql(self, expr: str, width: int) -> str | None:
        """A character value cut to ``width`` characters by the source itself (WidthPolicy=truncate), or None:
        the value is read whole and cut after the read, counted (``transform.clean_batch``)."""
        return None

    def timestamp_tz_text_sql(self, expr: str) -> str | None:
        """A DATETIME-TZ read as its text, offset included (``2026-03-01 10:00:00.000+02:00``): an ODBC driver
        reading it as a timestamp would drop the offset.  None: the value is already text (SQLite).  40
        characters hold any timestamp with its fraction and offset."""
        return f"CAST({expr} AS VARCHAR(40))"

    def boundary_param(self, precision: str) -> str:
        cast = "DATE" if precision == "date" else "TIMESTAMP"
        return f"CAST({self.param} AS {cast})"

    def key_param(self) -> str:
        """A partition's key bound (bound as text, like every parameter of the ODBC reader)."""
        return f"CAST({self.param} AS BIGINT)"

    def key_range_where(self, window: Window) -> tuple[list[str], list[str]]:
        """The predicates and parameters of a partition's key range (none for an unpartitioned window)."""
        if window.key_column is None:
            return [], []
        k = self.quote(window.key_column)
        where, params = [], []
        if window.key_low is not None:
            where.append(f"{k} >= {self.key_param()}")
            params.append(str(window.key_low))
        if window.key_high is not None:
            below = f"{k} < {self.key_param()}"
            where.append(f"({below} OR {k} IS NULL)" if window.key_nulls else below)
            params.append(str(window.key_high))
        return where, params

    def key_bounds_sql(self, spec: TableSpec, schema: str, window: Window, key_column: str
                       ) -> tuple[str, str, list[str]]:
        """MIN and MAX of a key column over what the window reads (two statements: one value each)."""
        rest, params = self._from_where(spec, schema, window)
        k = self.quote(key_column)
        return f"SELECT MIN({k})" + rest, f"SELECT MAX({k})" + rest, params

    def select_sql(self, spec: TableSpec, schema: str, window: Window, decimals_as_text: bool = False
                   ) -> tuple[str, list[str]]:
        """The extraction SELECT and its parameters.

        A decimal without a declared precision is selected as its text (:meth:`decimal_text_sql`): a driver
        describes it with a made-up scale (psqlODBC: 28,6) and the ODBC reader would cut its digits to it.
        ``decimals_as_text`` selects every decimal so (validation compares with the source's own text).
        """
        cut = spec.width_policy == "truncate"  # character values cut to their SQL width (text_cut_sql)
        cols = ",\n       ".join(self.column_expression(c, decimals_as_text, truncate_to_width=cut)
                                  for c in spec.loaded_columns)
        sql = f"SELECT {cols}\nFROM {self.qualify(schema, spec.table_name)}"
        where, params = [], []
        if window.since is not None and spec.date_modif_col:
            dm = spec.column(spec.date_modif_col).column_name
            where.append(f"{self.quote(dm)} >= {self.boundary_param(window.precision)}")
            params.append(window.boundary_text() or "")
        if spec.filter_clause:
            where.append(f"({spec.filter_clause})")
        key_where, key_params = self.key_range_where(window)
        where += key_where
        params += key_params
        if where:
            sql += "\nWHERE " + "\n  AND ".join(where)
        return sql, params

    def column_expression(self, c: ColumnSpec, decimals_as_text: bool = False, *, truncate_to_width: bool = False
                          ) -> str:
        """One column of a SELECT, named by its SQL name (a decimal without precision as its text, a DATETIME-TZ
        as its text with the offset; an extent column as OpenEdge gives it, its ';'-joined text).
        ``truncate_to_width`` (WidthPolicy=truncate): a character column with a SQL width cut to it where the
        flavour cuts in SQL (:meth:`text_cut_sql`)."""
        if truncate_to_width and c.extent == 0 and c.logical_type == STRING and c.width and c.width > 0:
            cut = self.text_cut_sql(self.quote(c.column_name), int(c.width))
            if cut is not None:
                return f"{cut} AS {self.quote(c.sql_name)}"
        if c.extent == 0 and c.logical_type == TIMESTAMP_TZ:
            tz_text = self.timestamp_tz_text_sql(self.quote(c.column_name))
            if tz_text is not None:
                return f"{tz_text} AS {self.quote(c.sql_name)}"
        if c.extent == 0 and c.logical_type == DECIMAL and (decimals_as_text or c.precision is None):
            text = self.decimal_text_sql(self.quote(c.column_name))
            if text is not None:
                return f"{text} AS {self.quote(c.sql_name)}"
        return self.source_expression(c.column_name, c.sql_name)

    def select_keys_sql(self, spec: TableSpec, schema: str) -> tuple[str, list[str]]:
        """The key scan of an incremental run with DeleteScan: the primary key columns of every row the table's
        FilterClause keeps (no window: deletes can hit any row), read as the extraction reads them."""
        cut = spec.width_policy == "truncate"
        cols = ",\n       ".join(self.column_expression(spec.column(k), truncate_to_width=cut)
                                  for k in spec.primary_key)
        sql = f"SELECT {cols}\nFROM {self.qualify(schema, spec.table_name)}"
        if spec.filter_clause:
            sql += f"\nWHERE ({spec.filter_clause})"
        return sql, []

    def count_sql(self, spec: TableSpec, schema: str, window: Window) -> tuple[str, list[str]]:
        rest, params = self._from_where(spec, schema, window)
        return "SELECT COUNT(*)" + rest, params

    def _from_where(self, spec: TableSpec, schema: str, window: Window) -> tuple[str, list[str]]:
        """The extraction SELECT's FROM and WHERE (from its leading newline) and parameters, for an aggregate."""
        select, params = self.select_sql(spec, schema, window)
        return select[select.index("\nFROM "):], params

    def session_setup_sql(self) -> list[str]:
        return []

    def clock_sql(self) -> str:
        return "SELECT CURRENT_TIMESTAMP"

    def catalog_sql(self) -> str | None:
        """A catalog query taking (schema, table) parameters, or None to use ODBC SQLColumns."""
        return None

    def connection_string(self, conn_str: str, batch_rows: int) -> str:
        return conn_str

    def logical_type(self, type_name: str, width: int | None, scale: int | None) -> str:
        return logical_from_type_name(type_name, scale)


class ProgressFlavor(SourceFlavor):
    name = "progress"

    def session_setup_sql(self) -> list[str]:
        return ["SET TRANSACTION ISOLATION LEVEL READ UNCOMMITTED"]

    def clock_sql(self) -> str:
        return "SELECT SYSTIMESTAMP FROM SYSPROGRESS.SYSCALCTABLE"

    def text_cut_sql(self, expr: str, width: int) -> str | None:
        """Progress's SQL engine refuses a row holding a value longer than the column's SQL width, so the SELECT
        asks for at most the width (the width is an integer from the catalog, not text).  The count of cut values
        is then unknown (the SQL engine cut them).  No Progress server runs here: pinned by a golden file; whether
        SUBSTR is enough depends on the server, -SQLTruncateTooLarge OUTPUT is the server-side switch
        (docs/OPERATIONS.md, "OpenEdge: SQL width and out-of-range dates")."""
        return f"SUBSTR({expr}, 1, {int(width)})"

    def catalog_sql(self) -> str | None:
        # nullflag is 'Y'/'N'; width is the SQL width (characters) or the decimal precision; array_extent > 0
        # for extent (array) fields, which OpenEdge SQL returns as one ';'-joined string.
        return (
            "SELECT col, coltype, width, scale, nullflag, id, array_extent\n"
            "FROM SYSPROGRESS.SYSCOLUMNS_FULL\n"
            "WHERE owner = ? AND tbl = ?\n"
            "ORDER BY id"
        )

    def logical_type(self, type_name: str, width: int | None, scale: int | None) -> str:
        t = type_name.strip().lower()
        return {
            "varchar": STRING, "character": STRING, "char": STRING, "lvarchar": STRING, "clob": STRING,
            "integer": INTEGER, "int": INTEGER, "smallint": INTEGER, "tinyint": INTEGER,
            "bigint": BIGINT, "int64": BIGINT, "recid": BIGINT,
            "decimal": DECIMAL, "numeric": DECIMAL,
            "float": FLOAT, "real": FLOAT, "double precision": FLOAT,
            "bit": BOOLEAN, "logical": BOOLEAN,
            "date": DATE, "timestamp": TIMESTAMP, "datetime": TIMESTAMP,
            "timestamp_timezone": TIMESTAMP_TZ, "datetime-tz": TIMESTAMP_TZ,
            "varbinary": BINARY, "lvarbinary": BINARY, "binary": BINARY, "blob": BINARY, "raw": BINARY,
        }.get(t, STRING)


class PostgresFlavor(SourceFlavor):
    name = "postgresql"

    def clock_sql(self) -> str:
        return "SELECT LOCALTIMESTAMP"

    def decimal_text_sql(self, expr: str) -> str | None:
        # unbounded VARCHAR: PostgreSQL never truncates it (a CAST to VARCHAR(n) would, silently)
        return f"CAST({expr} AS VARCHAR)"

    def timestamp_tz_text_sql(self, expr: str) -> str | None:
        # a timestamptz's text in the session's TimeZone (PostgreSQL keeps the instant, not the writer's offset)
        return f"CAST({expr} AS VARCHAR)"

    def unconstrained_decimals_sql(self) -> str | None:
        # psqlODBC's SQLColumns describes an unconstrained numeric as numeric(28,6); the catalog says NULL
        return ("SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ? "
                "AND data_type = 'numeric' AND numeric_precision IS NULL")

    def connection_string(self, conn_str: str, batch_rows: int) -> str:
        """psqlODBC: real booleans, and a server-side cursor so memory does not follow table size."""
        extra = {"BoolsAsChar": "0", "UseDeclareFetch": "1", "Fetch": str(min(batch_rows, 100_000))}
        have = {kv.split("=", 1)[0].strip().lower() for kv in conn_str.split(";") if "=" in kv}
        add = ";".join(f"{k}={v}" for k, v in extra.items() if k.lower() not in have)
        return conn_str.rstrip(";") + (";" + add if add else "")


class SqliteFlavor(SourceFlavor):
    name = "sqlite"

    def source_expression(self, column_name: str, sql_name: str) -> str:
        """The column in backticks: SQLite reads a double-quoted name that is no column (renamed, dropped) as a
        string literal, which would load the column's name as every row's value instead of failing."""
        return "`" + column_name.replace("`", "``") + "` AS " + self.quote(sql_name)

    def boundary_param(self, precision: str) -> str:
        # SQLite keeps dates as ISO text: the text comparison is the date comparison.
        return self.param

    def clock_sql(self) -> str:
        return "SELECT strftime('%Y-%m-%d %H:%M:%f', 'now', 'localtime')"

    def decimal_text_sql(self, expr: str) -> str | None:
        return None  # SQLite stores decimals as REAL: no exact text to read (the reader rounds to the scale)

    def timestamp_tz_text_sql(self, expr: str) -> str | None:
        return None  # SQLite keeps a DATETIME-TZ as the text it was given ('2026-03-01 10:00:00+02:00')


FLAVORS: dict[str, type[SourceFlavor]] = {
    "progress": ProgressFlavor, "postgresql": PostgresFlavor, "sqlite": SqliteFlavor,
}

_DECL = re.compile(r"^\s*([A-Za-z ]+?)\s*(?:\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\))?\s*$")


def parse_declared_type(decl: str) -> tuple[str, int | None, int | None]:
    """``'DECIMAL(18,6)'`` -> ``('decimal', 18, 6)``; ``'VARCHAR(60)'`` -> ``('varchar', 60, None)``."""
    m = _DECL.match(decl or "")
    if not m:
        return (decl or "").strip().lower(), None, None
    return m.group(1).lower(), int(m.group(2)) if m.group(2) else None, int(m.group(3)) if m.group(3) else None


def logical_from_type_name(type_name: str, scale: int | None = None) -> str:
    """Map a generic SQL type name (ODBC TYPE_NAME, SQLite declared type) to a logical type."""
    t = type_name.strip().lower()
    if t in ("bool", "boolean", "bit", "logical"):
        return BOOLEAN
    if t in ("bigint", "int8", "int64"):
        return BIGINT
    if "int" in t:
        return INTEGER
    if t in ("decimal", "numeric", "number", "money"):
        return DECIMAL
    if t in ("real", "float", "double", "double precision", "float4", "float8"):
        return FLOAT
    if "timestamptz" in t or "with time zone" in t or t == "datetime-tz":
        return TIMESTAMP_TZ
    if "timestamp" in t or t == "datetime":
        return TIMESTAMP
    if t == "date":
        return DATE
    if t in ("bytea", "blob", "binary", "varbinary", "longvarbinary"):
        return BINARY
    return STRING


