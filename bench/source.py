"""The benchmark's source: a synthetic, Progress-like wide table in the machine's PostgreSQL, read over ODBC.

Writes (once, then reuses) ``"PUB"."bench-wide-<rows>x<cols>"`` in the database ``cbm_bench`` (created if missing):
an integer key ``num-enreg``, a modification timestamp ``date-modif`` (indexed, as an ERP table read
incrementally should be) and business columns cycling through Progress's types: ``varchar(n)`` (35 %),
``integer`` (15 %), ``decimal`` (20 %), ``date``, ``logical``, ``bigint``, ``timestamp`` and ``float``; about
10 % NULLs, accented text, hyphenated names and a few with ``#``, ``$``, ``%``, ``&`` or a reserved word.  Values
are a deterministic function of (row, column), so two machines build the same table.  A table is reused when its
comment names the same generator version and it holds the expected number of rows.

    from bench.source import BenchSource
    src = BenchSource("host=127.0.0.1 port=5432 user=postgres")
    table = src.ensure_table(40_000, 300)       # creates it the first time (~1 s per 10k rows here)
    src.change_rows(table, fraction=0.01)       # 1 % of the rows get new values and a new date-modif
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from cbm_luigi.model.naming import quote_ident as _q

log = logging.getLogger(__name__)

GENERATOR_VERSION = "cbm-bench-source v1"
KEY = "num-enreg"
DATE_MODIF = "date-modif"
SCHEMA = "PUB"
# Business column kinds, one cycle of 20 (Progress tables are mostly text, integers and decimals).
_CYCLE = ("v", "i", "d", "v", "dt", "l", "v", "d", "i", "v", "ts", "d", "v", "i", "b", "v", "d", "l", "v", "f")
_PREFIX = {"v": "lib", "i": "qte", "d": "mnt", "dt": "dat", "l": "flg", "ts": "hor", "b": "num", "f": "tx"}
_SPECIAL = ("#", "$", "%", "&")
_RESERVED = ("order", "type", "desc", "user")
_WIDTHS = (8, 20, 30, 60)



@dataclass(frozen=True)
class BenchColumn:
    name: str
    kind: str  # key, modif, v, i, d, dt, l, ts, b, f
    sql_type: str

    def expression(self, position: int) -> str:
        """SQL computing this column's value for row ``g`` (generate_series), ~10 % NULL."""
        h = f"((g::bigint * 1103515245 + {position * 12345 + 7}) % 2147483647)"
        k = self.kind
        if k == "key":
            return "g"
        if k == "modif":
            return "TIMESTAMP '2020-01-01' + make_interval(secs => (g::bigint * 7919 % 100000000))"
        if k == "v":
            width = int(self.sql_type.split("(")[1].rstrip(")"))
            if position % 3 == 0:
                value = f"'C' || lpad(({h} % 1000000)::text, 6, '0')"
            elif position % 3 == 1:
                value = f"'Pièce n°' || ({h} % 1000)::text || ' ' || left(md5({h}::text), {width})"
            else:
                value = f"left(md5({h}::text), ({h} % {width} + 1)::int)"
            expr = f"left({value}, {width})"
        elif k == "i":
            expr = f"({h} % 200001 - 100000)::integer"
        elif k == "d":
            expr = f"(({h} % 100000000) / 100.0 - 250000)::{self.sql_type}"
        elif k == "dt":
            expr = f"DATE '2000-01-01' + ({h} % 9000)::integer"
        elif k == "l":
            expr = f"({h} % 2 = 0)"
        elif k == "ts":
            expr = f"TIMESTAMP '2000-01-01' + make_interval(secs => ({h} % 700000000) + ({h} % 1000) / 1000.0)"
        elif k == "b":
            expr = f"({h} * 1000003)::bigint"
        elif k == "f":
            expr = f"(({h} % 1000000) / 7.0)::double precision"
        else:  # pragma: no cover - the kinds are fixed above
            raise ValueError(k)
        return f"CASE WHEN (g + {position}) % 10 = 0 THEN NULL ELSE {expr} END"


def bench_columns(cols: int) -> list[BenchColumn]:
    """The ``cols`` columns of the table: key, date-modif, then business columns."""
    if cols < 4:
        raise ValueError("--cols must be at least 4 (key, date-modif and two business columns)")
    out = [BenchColumn(KEY, "key", "integer"), BenchColumn(DATE_MODIF, "modif", "timestamp")]
    for position in range(2, cols):
        kind = _CYCLE[(position - 2) % len(_CYCLE)]
        if position - 2 < len(_RESERVED):
            name = _RESERVED[position - 2]
        elif position % 50 == 0:
            name = f"{_PREFIX[kind]}{_SPECIAL[(position // 50) % len(_SPECIAL)]}-{position:03d}"
        else:
            name = f"{_PREFIX[kind]}-{position:03d}"
        sql_type = {
            "v": f"varchar({_WIDTHS[position % len(_WIDTHS)]})", "i": "integer",
            "d": "numeric(15,2)" if position % 2 else "numeric(18,4)", "dt": "date", "l": "boolean",
            "ts": "timestamp", "b": "bigint", "f": "double precision",
        }[kind]
        out.append(BenchColumn(name, kind, sql_type))
    return out


def table_name(rows: int, cols: int) -> str:
    return f"bench-wide-{rows}x{cols}"


def small_table_name(index: int, rows: int, cols: int) -> str:
    """The ``index``-th table of the night of small tables (``bench-small-007-1000x20``)."""
    return f"bench-small-{index:03d}-{rows}x{cols}"


@dataclass(frozen=True)
class BenchTable:
    name: str
    rows: int
    cols: int
    columns: tuple[BenchColumn, ...]
    created_seconds: float  # 0 when reused


class BenchSource:
    """The benchmark source database (``cbm_bench`` by default) in the machine's PostgreSQL."""

    def __init__(self, conninfo: str, database: str = "cbm_bench", schema: str = SCHEMA) -> None:
        self.admin_conninfo = conninfo  # without dbname, or with the admin database
        self.database = database
        self.schema = schema

    @property
    def conninfo(self) -> str:
        parts = [p for p in self.admin_conninfo.split() if not p.startswith("dbname=")]
        return " ".join([*parts, f"dbname={self.database}"])

    def params(self) -> dict[str, str]:
        return dict(p.split("=", 1) for p in self.conninfo.split())

    def odbc(self, driver: str) -> str:
        """The ODBC connection string of the source (the flavour adds its own options)."""
        p = self.params()
        return (f"DRIVER={{{driver}}};SERVER={p.get('host', '127.0.0.1')};PORT={p.get('port', '5432')};"
                f"DATABASE={self.database};UID={p.get('user', 'postgres')}")

    @contextmanager
    def connect(self) -> Iterator[Any]:
        import psycopg

        self._ensure_database()
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            yield conn

    def _ensure_database(self) -> None:
        import psycopg

        admin = " ".join([*(p for p in self.admin_conninfo.split() if not p.startswith("dbname=")),
                          "dbname=postgres"])
        with psycopg.connect(admin, autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)).fetchone() is None:
                conn.execute(f"CREATE DATABASE {_q(self.database)}")

    def ensure_table(self, rows: int, cols: int, chunk: int = 20_000, name: str | None = None) -> BenchTable:
        """Create the table unless an identical one (same generator, same row count) is already there.
        ``name``: another name than ``bench-wide-<rows>x<cols>`` (the small tables of the night benchmark)."""
        columns = bench_columns(cols)
        name = name or table_name(rows, cols)
        qualified = f"{_q(self.schema)}.{_q(name)}"
        comment = f"{GENERATOR_VERSION} rows={rows} cols={cols}"
        with self.connect() as conn:
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {_q(self.schema)}")
            row = conn.execute(
                "SELECT obj_description(c.oid, 'pg_class') FROM pg_class c JOIN pg_namespace n "
                "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s", (self.schema, name),
            ).fetchone()
            if row is not None and row[0] == comment:
                count = conn.execute(f"SELECT COUNT(*) FROM {qualified}").fetchone()
                if count and count[0] == rows:
                    log.info("reusing source table %s (%d rows x %d columns)", qualified, rows, cols)
                    return BenchTable(name, rows, cols, tuple(columns), 0.0)
            started = time.perf_counter()
            log.info("creating source table %s (%d rows x %d columns), once", qualified, rows, cols)
            conn.execute(f"DROP TABLE IF EXISTS {qualified}")
            body = ",\n".join(
                f"  {_q(c.name)} {c.sql_type}{' NOT NULL' if c.kind in ('key', 'modif') else ''}" for c in columns
            )
            conn.execute(f"CREATE TABLE {qualified} (\n{body},\n  PRIMARY KEY ({_q(KEY)})\n)")
            names = ", ".join(_q(c.name) for c in columns)
            exprs = ",\n  ".join(c.expression(i) for i, c in enumerate(columns))
            insert = f"INSERT INTO {qualified} ({names})\nSELECT {exprs}\nFROM generate_series({{low}}, {{high}}) AS g"
            for low in range(1, rows + 1, chunk):
                high = min(low + chunk - 1, rows)
                conn.execute(insert.format(low=int(low), high=int(high)))
                log.info("  %s: %d / %d rows", name, high, rows)
            conn.execute(f"CREATE INDEX ON {qualified} ({_q(DATE_MODIF)})")
            conn.execute(f"VACUUM ANALYZE {qualified}")
            conn.execute(f"COMMENT ON TABLE {qualified} IS {_literal(comment)}")
            seconds = time.perf_counter() - started
        log.info("created %s in %.1fs", qualified, seconds)
        return BenchTable(name, rows, cols, tuple(columns), seconds)

    def change_rows(self, table: BenchTable, fraction: float = 0.01, seed: int | None = None) -> int:
        """Give ``fraction`` of the rows new values and a new ``date-modif`` (now); returns how many changed.

        The changed rows are those whose key is congruent to ``seed`` modulo ``1 / fraction``.
        """
        step = max(1, round(1 / fraction))
        seed = int(time.time()) % step if seed is None else seed % step
        v = next((c for c in table.columns if c.kind == "v"), None)
        d = next((c for c in table.columns if c.kind == "d"), None)
        sets = [f"{_q(DATE_MODIF)} = LOCALTIMESTAMP"]
        if v is not None:
            width = int(v.sql_type.split("(")[1].rstrip(")"))
            sets.append(f"{_q(v.name)} = left('chg ' || md5(random()::text), {width})")
        if d is not None:
            sets.append(f"{_q(d.name)} = COALESCE({_q(d.name)}, 0) + 1")
        with self.connect() as conn:
            cur = conn.execute(
                f"UPDATE {_q(self.schema)}.{_q(table.name)} SET {', '.join(sets)} WHERE {_q(KEY)} % {int(step)} = {int(seed)}"
            )
            changed = cur.rowcount
        log.info("changed %d rows of %s (key mod %d = %d)", changed, table.name, step, seed)
        return changed

    def drop(self, table: BenchTable) -> None:
        with self.connect() as conn:
            conn.execute(f"DROP TABLE IF EXISTS {_q(self.schema)}.{_q(table.name)}")


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"

