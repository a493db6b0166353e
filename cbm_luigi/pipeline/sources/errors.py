"""Source driver errors said in the operator's terms: the table, the column or the setting, and the fix.

The readers (:mod:`cbm_luigi.pipeline.sources`) know the statement, the extract knows the table spec: a driver
message such as ``no such column: designation`` or ``relation "PUB.produit" does not exist`` becomes
``table produit: column designation is no longer in the source ...: run cbm-etl sync-columns produit``.  Every
translated message keeps the driver's first line at its end (``(driver: ...)``), passwords redacted.

Patterns cover OpenEdge SQL (production), psqlODBC/PostgreSQL (the tests' stand-in) and SQLite (the demo).
"""

from __future__ import annotations

import re

from cbm_luigi.config.secrets import redact
from cbm_luigi.errors import SourceError
from cbm_luigi.model.specs import TableSpec

# SQLSTATE 28xxx (invalid authorization), PostgreSQL 28P01/28000 text, OpenEdge "Access denied", SQL Server 18456.
_LOGIN = re.compile(
    r"28P01|28000|password authentication failed|authentication failed|role \"[^\"]*\" does not exist|"
    r"login failed|access denied|invalid user|authori[sz]ation failed|no password supplied|\b18456\b",
    re.I,
)
_NO_TABLE = re.compile(
    r"no such table|relation \"[^\"]*\" does not exist|table/view/synonym not found|\(7519\)|"
    r"invalid object name|table or view does not exist|42S02|42P01", re.I)
_NO_COLUMN = re.compile(
    r"no such column: ?\"?([^\s\"]+)\"?|column \"?([^\s\"]+)\"? does not exist|"
    r"column \"?([^\s\"]+)\"? (?:could not be found|not found)|invalid column name '([^']+)'|42S22|42703",
    re.I)
_SYNTAX = re.compile(r"syntax error|42601|42000|\(10713\)|incorrect syntax|unrecognized token|"
                     r"operator does not exist|42883|no such function", re.I)
# OpenEdge SQL: "Column <col> [at rowid <n>] in table <owner>.<table> has value exceeding its max length or
# precision" (SQLSTATE 22P00 / S1000 / 22001, native error -210012): a value longer than the SQL width.
_TOO_WIDE_COLUMN = re.compile(
    r"column\s+\"?(?P<col>[^\s\"]+?)\"?\s+(?:at\s+rowid\s+\S+\s+)?in\s+table\s+\S+\s+has\s+value\s+exceeding", re.I)
_TOO_WIDE = re.compile(r"has\s+value\s+exceeding\s+its?\s+max\s+length|\b210012\b", re.I)
_UTF8 = re.compile(r"could not decode to utf-?8 column '([^']+)'|invalid utf-?8|not valid utf-?8|"
                   r"invalid byte sequence for encoding|codec can't decode|character with byte sequence", re.I)


def driver_line(exc: BaseException | str) -> str:
    """The driver's first line, redacted (kept in every translated message)."""
    cause = exc.__cause__ if isinstance(exc, SourceError) and exc.__cause__ is not None else exc
    lines = [ln.strip() for ln in str(cause).strip().splitlines() if ln.strip()]
    if not lines:
        return type(cause).__name__ if isinstance(cause, BaseException) else ""
    line = lines[0]
    for more in lines[1:3]:  # arrow-odbc: "ODBC emitted an error calling 'SQLExecDirect':" then the record
        if not line.endswith(":"):
            break
        line = f"{line} {more}"
    return redact(line)[:400]


def is_login_failure(exc: BaseException | str) -> bool:
    """Wrong user or password: retrying cannot help (and a breaker must not open for it)."""
    return bool(_LOGIN.search(str(exc)))


def connect_fix(exc: BaseException | str, setting: str = "CBM_SOURCE", password: str = "CBM_SOURCE_PASSWORD"
                ) -> str:
    """What to do about a connection that failed (shared by ``cbm-etl preflight`` and the run's message)."""
    text = str(exc).lower()
    if "can't open lib" in text or "im002" in text or "data source name not found" in text:
        return f"the ODBC driver or DSN named in {setting} is not installed: see the ODBC driver line"
    if "does not exist" in text or "unknown database" in text or "cannot open database" in text:
        return f"the database or user named in {setting} does not exist: fix the name, or create it"
    if is_login_failure(text) or "password" in text:
        return f"wrong user or password: check the user in {setting} and {password} in .env"
    if "refused" in text or "could not connect" in text or "timeout" in text or "unreachable" in text:
        return f"the server in {setting} does not answer: check host, port, firewall, and that it is running"
    return f"check {setting} (server, port, database, user) and {password} in .env"


def _column_named(spec: TableSpec, name: str) -> str | None:
    """The source name of a column the driver named (by source or SQL-safe name, any case)."""
    low = name.strip().strip('"').lower().rsplit(".", 1)[-1]
    for c in spec.loaded_columns:
        if low in (c.column_name.lower(), c.sql_name.lower()):
            return c.column_name
    return None


def explain(spec: TableSpec, schema: str, exc: BaseException) -> SourceError | None:
    """The table-level meaning of a source error raised while reading ``spec``'s rows, or None when there is
    nothing better to say than the reader's message."""
    text = str(exc)
    table = spec.table_name
    where = f"{schema}.{table}" if schema else table
    driver = f"(driver: {driver_line(exc)})"
    if _TOO_WIDE.search(text) or _TOO_WIDE_COLUMN.search(text):
        m = _TOO_WIDE_COLUMN.search(text)
        return too_wide_error(spec, m.group("col") if m else None, driver)
    m = _UTF8.search(text)
    if m and not _NO_COLUMN.search(text):
        col = _column_named(spec, m.group(1)) if m.group(1) else None
        what = f"column {col}" if col else "a text column"
        return SourceError(
            f"table {table}: {what} holds text that is not valid UTF-8 in the source: fix the value in the ERP "
            f"(or set the source's code page in CBM_SOURCE, e.g. the driver's client encoding), or exclude the "
            f"column (IsExcluded = 1 in config.ETL_Columns) {driver}")
    if is_login_failure(text):
        return SourceError(f"table {table}: the source refused the login: {connect_fix(text)} {driver}")
    found = list(_NO_COLUMN.finditer(text))
    if found:
        name = next((g for m in found for g in m.groups() if g), "")
        col = _column_named(spec, name) if name else None
        if spec.filter_clause and (col is None or col.lower() in spec.filter_clause.lower()) and name:
            return filter_error(spec, exc)
        label = f"column {col}" if col else "a registered column"
        return SourceError(
            f"table {table}: {label} is no longer in the source {where} (renamed or dropped): run cbm-etl "
            f"sync-columns {table}, then run again (a column gone from the source stays in the ODS) {driver}")
    if _NO_TABLE.search(text):
        return SourceError(
            f"table {table}: {where} is not in the source (dropped or renamed): check CBM_SOURCE_SCHEMA and the "
            f"table name, or deactivate it (cbm-etl add-table {table} --inactive, or IsActive = 0 in "
            f"config.ETL_Tables) {driver}")
    if spec.filter_clause and _SYNTAX.search(text):
        return filter_error(spec, exc)
    m = _CONVERT.match(text)
    if m:
        spec_col = next((c for c in spec.loaded_columns if c.sql_name == m.group(1)), None)
        if spec_col is not None:
            old_type = spec_col.logical_type
            return SourceError(
                f"table {table}: column {spec_col.column_name} no longer holds {old_type} values "
                f"(config.ETL_Columns: {spec_col.source_type or old_type}; the source sent "
                f"{m.group(2) or 'values'} that cannot be read as {old_type}): its type changed in the source; "
                f"run cbm-etl sync-columns {table}, then see docs/OPERATIONS.md 'A column changed type' for the ODS column "
                f"{driver}")
    return None


_CONVERT = re.compile(r"column (\S+): cannot convert (?:the source's values|(\S+)) to ")


def too_wide_error(spec: TableSpec, name: str | None, driver: str) -> SourceError:
    """Progress's "has value exceeding its max length or precision": the column, its SQL width and the fixes."""
    table = spec.table_name
    col = _column_named(spec, name) if name else None
    width = next((c.width for c in spec.loaded_columns if c.column_name == col), None)
    what = f"column {col}" if col else "a character column"
    registered = f", {width} characters in config.ETL_Columns" if width else ""
    if spec.width_policy == "truncate":
        fix = ("WidthPolicy is already 'truncate' (the SELECT reads SUBSTR(column, 1, width)) and the server still "
               "refused the row: the DBA runs dbtool on the database, option 2 'SQL Width Scan w/Fix Option', or "
               "starts it with -SQLTruncateTooLarge OUTPUT (authorized data truncation)")
    else:
        fix = (f"the DBA runs dbtool on the database, option 2 'SQL Width Scan w/Fix Option' (option 1 'SQL Width & "
               f"Date Scan w/Report Option' lists the columns first), then cbm-etl sync-columns {table}; or set "
               f"WidthPolicy = 'truncate' for this table in config.ETL_Tables (cbm-etl add-table {table} --pk "
               f"{','.join(spec.primary_key)} --width-policy truncate, with its other options) to load the values "
               "cut to the width")
    return SourceError(
        f"table {table}: {what} holds a value longer than its SQL width (_Field._Width{registered}), so OpenEdge's "
        f"SQL engine refuses the SELECT (the ABL does not enforce the width). Fix: {fix} {driver}")


def filter_error(spec: TableSpec, exc: BaseException) -> SourceError:
    return SourceError(
        f"table {spec.table_name}: the source refused the FilterClause of this table in config.ETL_Tables "
        f"({spec.filter_clause!r}): fix it (it is inserted as written into the WHERE clause, in the source's SQL) "
        f"or clear it {'(driver: ' + driver_line(exc) + ')'}")
