"""The client of a destination database: a :class:`Target` (SQLAlchemy engine + dialect) and the
:class:`Connection` of one transaction.  Driver errors are translated here, once, with the statement at hand.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from cbm_luigi.destinations.dialect import Dialect
from cbm_luigi.destinations.errors import connection_error
from cbm_luigi.destinations.locking import KeptConnection, kept_connection, lock_path, target_lock
from cbm_luigi.destinations.type_changes import TypeChange, holds, type_family, widened_type
from cbm_luigi.destinations.types import ColumnDef, decimal_would_round, needs_widening
from cbm_luigi.errors import CbmError, DataError, TargetError, TransientTargetError

log = logging.getLogger(__name__)


#: Root modules of the database drivers whose exceptions are translated (besides SQLAlchemy's own)
DRIVER_MODULES = frozenset({"psycopg", "duckdb", "_duckdb", "pyodbc", "mssql_python", "sqlalchemy"})


_TEXT_TYPES = ("char", "text", "string", "clob")
_TYPED = ("int", "dec", "numeric", "real", "float", "double", "bool", "bit", "date", "time", "money")


def _text_into_typed(wanted: str, existing: str) -> bool:
    """A text column wanted where the table has a number, boolean or date column (a source type changed)."""
    w, e = wanted.lower(), existing.lower()
    return any(t in w for t in _TEXT_TYPES) and not any(t in e for t in _TEXT_TYPES) and any(t in e for t in _TYPED)


def is_driver_error(exc: BaseException) -> bool:
    """True for an error raised by SQLAlchemy or a database driver (not by our code or by Arrow)."""
    if isinstance(exc, sa.exc.SQLAlchemyError):
        return True
    return type(exc).__module__.split(".")[0] in DRIVER_MODULES


class Connection:
    """A connection inside one transaction: ``execute`` / ``fetchone`` / ``fetchall`` / ``scalar``.

    ``table`` and ``step`` (optional) name the work in translated error messages; ``last_statement`` is the
    statement that failed when a driver error surfaces later (a bulk path on the driver connection, the commit).
    """

    def __init__(self, sa_conn: sa.Connection, dialect: Dialect, table: str | None = None,
                 step: str | None = None) -> None:
        self.sa = sa_conn
        self.dialect = dialect
        self.table, self.step = table, step
        self.last_statement = ""

    def _run(self, sql: str, params: Any) -> sa.CursorResult[Any]:
        log.debug("SQL: %s", sql)
        self.last_statement = sql
        try:
            return self.sa.execute(sa.text(sql), params or {})
        except sa.exc.DBAPIError as exc:
            raise self.dialect.translate_error(exc, table=self.table, step=self.step, statement=sql) from exc

    def execute(self, sql: str, params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None) -> int:
        result = self._run(sql, params)
        return result.rowcount if result.rowcount is not None else -1

    def fetchall(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self._run(sql, params).fetchall()]

    def fetchone(self, sql: str, params: Mapping[str, Any] | None = None) -> tuple[Any, ...] | None:
        row = self._run(sql, params).fetchone()
        return tuple(row) if row is not None else None

    def scalar(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        row = self.fetchone(sql, params)
        return row[0] if row else None

    def lock_table(self, table: str) -> None:
        """Hold the table's lock until this transaction ends (the dialect's ``table_lock_sql``; none on DuckDB,
        whose transactions already run one at a time): staging and merge of one table never overlap."""
        sql = self.dialect.table_lock_sql()
        if not sql:
            return
        code = self.scalar(sql, {"lock": f"cbm-luigi:{table}"})
        if isinstance(code, int) and not isinstance(code, bool) and code < 0:
            raise TransientTargetError(f"table {table}: the table lock was refused (code {code}); run the same "
                                       "command again")

    @property
    def driver_connection(self) -> Any:
        """The DB-API connection of the driver (psycopg, duckdb...) for bulk paths, same transaction."""
        return self.sa.connection.driver_connection


class Target:
    """A destination database: SQLAlchemy engine + dialect.  ``begin()`` yields a :class:`Connection`."""

    def __init__(self, url: str, dialect: Dialect, engine: sa.Engine) -> None:
        self.url = url
        self.dialect = dialect
        self.engine = engine
        self._reads = threading.local()  # the connection of this thread's reading() block, if any
        self._kept: KeptConnection | None = None  # decided at the first transaction
        self._kept_decided = False

    @contextmanager
    def begin(self, *, table: str | None = None, step: str | None = None) -> Iterator[Connection]:
        """One transaction; every driver error inside it (connecting, a statement, a bulk path, the commit)
        becomes a TargetError naming the table, the step and the statement (transient ones retryable)."""
        conn: Connection | None = None
        try:
            with self._transaction() as c:
                conn = Connection(c, self.dialect, table, step)
                yield conn
        except CbmError:
            raise
        except Exception as exc:
            if not is_driver_error(exc):
                raise
            if conn is None:  # connecting failed: name the target and say what to fix
                raise connection_error(self.dialect, self.url, exc) from exc
            raise self.dialect.translate_error(exc, table=table, step=step, statement=conn.last_statement) from exc

    @contextmanager
    def _transaction(self) -> Iterator[sa.Connection]:
        """A single-writer target (DuckDB file) is used by one process at a time: wait for it, do not fail; and
        keep it open between transactions (:class:`~cbm_luigi.destinations.locking.KeptConnection`)."""
        if not self._kept_decided:
            path = lock_path(self)
            self._kept = kept_connection(self.engine, path) if path is not None else None
            self._kept_decided = True
        if self._kept is not None:
            with self._kept.transaction() as c:
                yield c
            return
        with target_lock(self), self.engine.begin() as c:
            yield c

    def release(self) -> None:
        """Close the connection kept open between transactions, if any (the file is free for others at once)."""
        if self._kept is not None:
            self._kept.close()

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Several reads in one transaction: inside the block, this thread's :meth:`fetchall` and :meth:`fetchone`
        share one connection instead of one each (a DuckDB file is opened once: ~20-40 ms per opening, as many
        as the metadata reads of a table, docs/PERFORMANCE.md).  Re-entrant; :meth:`begin` is not affected.  A read
        that fails ends the sharing (on PostgreSQL the transaction is aborted): the reads after it, in the block,
        run in transactions of their own (e.g. :func:`~cbm_luigi.store.schema.needs_metadata`'s diagnosis)."""
        if getattr(self._reads, "conn", None) is not None:
            yield
            return
        with self.begin() as conn:
            self._reads.conn = conn
            try:
                yield
            finally:
                self._reads.conn = None

    def _shared(self) -> Connection | None:
        conn: Connection | None = getattr(self._reads, "conn", None)
        return conn

    def fetchall(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        if (shared := self._shared()) is not None:
            try:
                return shared.fetchall(sql, params)
            except Exception:
                self._reads.conn = None  # the block's transaction is lost: later reads get their own
                raise
        with self.begin() as c:
            return c.fetchall(sql, params)

    def fetchone(self, sql: str, params: Mapping[str, Any] | None = None) -> tuple[Any, ...] | None:
        if (shared := self._shared()) is not None:
            try:
                return shared.fetchone(sql, params)
            except Exception:
                self._reads.conn = None
                raise
        with self.begin() as c:
            return c.fetchone(sql, params)

    def existing_columns(self, conn: Connection, schema: str, table: str) -> list[str]:
        return [r[0] for r in self.existing_column_types(conn, schema, table)]

    def existing_column_types(self, conn: Connection, schema: str, table: str) -> list[tuple[Any, ...]]:
        """(name, type name, character length, numeric precision, numeric scale) per existing column."""
        params = {"schema": schema, "table": table, **self.dialect.existing_columns_params()}
        return conn.fetchall(self.dialect.existing_columns_sql(), params)

    def ensure_table(self, conn: Connection, schema: str, table: str, columns: Sequence[ColumnDef],
                     primary_key: Sequence[str] = (), *, type_change_policy: str | None = None,
                     type_changes: list[TypeChange] | None = None) -> list[str]:
        """Create the table if missing; add columns that are missing (schema drift).  Returns added names.

        A column whose type family changed (config.ETL_Columns after ``sync-columns``, destinations/type_changes.py)
        follows ``type_change_policy`` (the table's TypeChangePolicy, for ods and hist tables): ``refuse`` raises
        a DataError naming it before any DDL; ``widen`` alters it to a type that holds both (or keeps it when it
        already does), logs a warning and appends the change to ``type_changes`` for the caller's run log.
        Staging (``stg``) is emptied and altered to the wanted type, whatever the policy.  Without a policy (the
        metadata tables) only text wanted where the column is typed is refused, as before.
        """
        existing = {str(r[0]).lower(): r for r in self.existing_column_types(conn, schema, table)}
        if not existing:
            conn.execute(self.dialect.create_table_sql(schema, table, columns, primary_key))
            return []
        keys = {k.lower() for k in primary_key}
        changed: dict[str, TypeChange] = {}
        if type_change_policy is not None or schema == "stg":
            changed = self._type_changes(schema, table, columns, existing, keys)
            if schema != "stg":
                refuse_type_changes(list(changed.values()), type_change_policy or "refuse", primary_key)
        added, widened = [], []
        for col in columns:
            info = existing.get(col.name.lower())
            change = changed.get(col.name.lower())
            if info is None:
                conn.execute(self.dialect.add_column_sql(schema, table, ColumnDef(col.name, col.type, True)))
                added.append(col.name)
            elif change is not None and schema == "stg":  # emptied before every load: empty it, alter it
                conn.execute(self.dialect.truncate_sql(schema, table))
                conn.execute(self.dialect.convert_column_type_sql(schema, table, ColumnDef(col.name, col.type)))
                widened.append(f"{col.name} -> {col.type}")
            elif change is not None:
                if change.alter and change.widened_to:
                    self._convert_column(conn, change, change.widened_to)
                log.warning("%s", change.warning())
                if type_changes is not None:
                    type_changes.append(change)
            elif _text_into_typed(col.type, str(info[1])) and schema != "stg":  # stg: altered below (emptied)
                raise DataError(
                    f"{schema}.{table}.{col.name} is {info[1]} but config.ETL_Columns now gives it text "
                    f"({col.type}): the column changed type in the source (e.g. integer to text) and nothing is "
                    f"converted automatically. Fix: alter {schema}.{table}.{col.name} to {col.type} yourself, or "
                    "exclude the column (IsExcluded = 1 in config.ETL_Columns), then run again"
                )
            elif (decimal_would_round(col.type, info[1], info[3], info[4])
                  or _text_into_typed(col.type, str(info[1]))) and schema == "stg":
                # staging is emptied before every load: empty it now and give the column the wanted type
                conn.execute(self.dialect.truncate_sql(schema, table))
                conn.execute(self.dialect.alter_column_type_sql(schema, table, ColumnDef(col.name, col.type, True)))
                widened.append(f"{col.name} -> {col.type}")
            elif decimal_would_round(col.type, info[1], info[3], info[4]):
                raise TargetError(
                    f"{schema}.{table}.{col.name} is DECIMAL({info[3]},{info[4]}) but the load brings {col.type} "
                    f"(NumericScale raised in config.ETL_Columns): merged into it, values would be rounded to "
                    f"{info[4]} decimals, so nothing is merged. Fix: alter the column to {col.type} yourself "
                    f"(if its values allow the fewer digits before the point), or set NumericScale back to {info[4]}"
                )
            elif col.name.lower() not in keys and needs_widening(col.type, *info[1:5]):
                conn.execute(self.dialect.alter_column_type_sql(schema, table, ColumnDef(col.name, col.type, True)))
                widened.append(f"{col.name} -> {col.type}")
        if added:
            log.warning("%s.%s: added column(s) %s", schema, table, ", ".join(added))
        if widened:
            log.warning("%s.%s: widened column(s) %s", schema, table,
                        ", ".join(widened))
        return added

    def _convert_column(self, conn: Connection, change: TypeChange, to: str) -> None:
        """ALTER a column to its widened type; a refusal by the database (a view of the operator's own on it, a
        value the conversion rejects) as a DataError naming the column and the fix, not the driver's words alone."""
        try:
            conn.execute(self.dialect.convert_column_type_sql(change.schema, change.table,
                                                              ColumnDef(change.column, to, True)))
        except TransientTargetError:
            raise  # a deadlock or lock timeout: retried as any other statement
        except TargetError as exc:
            raise DataError(
                f"{change.qualified} changed type in the source ({change.describe()}) and TypeChangePolicy widen "
                f"could not alter it to {to}: {exc}; nothing was merged. Fix: drop the views or other "
                "objects of your own that use the column (PostgreSQL refuses to alter a column a view reads), run "
                f"again and recreate them; or alter {change.qualified} to {to} yourself, or exclude "
                "the column (IsExcluded = 1 in config.ETL_Columns)"
            ) from exc

    def _type_changes(self, schema: str, table: str, columns: Sequence[ColumnDef],
                      existing: Mapping[str, tuple[Any, ...]], keys: set[str]) -> dict[str, TypeChange]:
        """The wanted columns whose type family differs from the existing one's, with the type that holds both."""
        out = {}
        for col in columns:
            info = existing.get(col.name.lower())
            old_family, new_family = type_family(info[1]) if info else None, type_family(col.type)
            if info is None or old_family is None or new_family is None or old_family == new_family:
                continue
            widened, why = widened_type(self.dialect, old_family, info, new_family, col.type)
            if col.name.lower() in keys:
                widened, why = None, ("it is part of the primary key, which is never altered in place (DuckDB and "
                                      "SQL Server refuse it)")
            out[col.name.lower()] = TypeChange(
                schema, table, col.name, str(info[1]), old_family, col.type, new_family, widened,
                alter=widened is not None and not holds(info, old_family, widened), reason=why)
        return out

    def dispose(self) -> None:
        self.release()
        self.engine.dispose()


def refuse_type_changes(changes: Sequence[TypeChange], policy: str, primary_key: Sequence[str]) -> None:
    """Raise a DataError for the first type change the policy does not let through (``refuse``: every one;
    ``widen``: those with no type that holds both), naming the column, both types, the policy and the fix."""
    refused = [c for c in changes if policy != "widen" or c.widened_to is None]
    if not refused:
        return
    c = refused[0]
    also = "; also changed: " + ", ".join(f"{o.column} {o.describe()}" for o in refused[1:]) if refused[1:] else ""
    head = (f"{c.qualified} is {c.old_type} but config.ETL_Columns now gives it {c.new_family} ({c.new_type}): "
            f"the column changed type in the source ({c.old_family} -> {c.new_family})")
    own = (f"alter {c.qualified} to {c.widened_to if c.alter else c.new_type} yourself (converting its values), "
           "or exclude the column (IsExcluded = 1 in config.ETL_Columns), then run again")
    if c.widened_to is None:
        raise DataError(f"{head} and no type holds both here: {c.reason}; nothing was merged (TypeChangePolicy "
                        f"{policy}). Fix: {own}{also}")
    keys = ",".join(primary_key) or "..."
    widen = f"widen it to {c.widened_to}" if c.alter else f"keep it as {c.old_type}, which holds both,"
    raise DataError(
        f"{head}, and TypeChangePolicy is refuse for table {c.table}: nothing was merged. Fix: let the load {widen} "
        f"(cbm-etl add-table {c.table} --pk {keys} ... --type-change widen, with the table's other options; "
        f"docs/OPERATIONS.md 'A column changed type in the source'), or {own}{also}"
    )
