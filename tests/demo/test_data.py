"""Tests of cbm_luigi.demo.data against real databases: an SQLite file and the machine's PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cbm_luigi.demo.data import (
    DEFAULT_REFERENCE_TS,
    DEMO_TABLES,
    ChangeSummary,
    DemoTable,
    Key,
    Row,
    apply_postgres_changes,
    apply_sqlite_changes,
    create_postgres_source,
    create_sqlite_source,
    demo_table,
    generate_demo_rows,
    progress_extent,
    sqlite_to_neutral,
    to_sqlite_value,
)

PG_CONNINFO = os.environ.get("CBM_TEST_PG_CONNINFO", "host=127.0.0.1 dbname=test user=postgres")
CHANGE_TS = datetime(2026, 1, 16, 8, 30, 0)


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def order_by(table: DemoTable) -> str:
    return ", ".join(q(c) for c in table.primary_key)


def sqlite_rows(path: Path, table: DemoTable) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute(f"SELECT * FROM {q(table.name)} ORDER BY {order_by(table)}").fetchall()


def sqlite_neutral_rows(path: Path, table: DemoTable) -> list[Row]:
    return [
        {c.name: sqlite_to_neutral(c, v) for c, v in zip(table.columns, record, strict=True)}
        for record in sqlite_rows(path, table)
    ]


def key_of(table: DemoTable, row: Row) -> Key:
    return tuple(row[c] for c in table.primary_key)


# ------------------------------------------------------------------------------------------------ SQLite


@pytest.fixture(scope="module")
def sqlite_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    path = tmp_path_factory.mktemp("demo") / "source.db"
    counts = create_sqlite_source(path)
    return path, counts


def test_sqlite_row_counts_as_returned(sqlite_db: tuple[Path, dict[str, int]]) -> None:
    path, counts = sqlite_db
    assert list(counts) == [t.name for t in DEMO_TABLES]
    assert counts == {"client": 1500, "fournis": 300, "produit": 2000, "hisprixa": 3000, "lignecli": 4000}
    with contextlib.closing(sqlite3.connect(path)) as conn:
        for table in DEMO_TABLES:
            (n,) = conn.execute(f"SELECT COUNT(*) FROM {q(table.name)}").fetchone()
            assert n == counts[table.name], table.name


def test_sqlite_primary_keys_unique_and_declared(sqlite_db: tuple[Path, dict[str, int]]) -> None:
    path, _ = sqlite_db
    with contextlib.closing(sqlite3.connect(path)) as conn:
        for table in DEMO_TABLES:
            pk = order_by(table)
            dupes = conn.execute(
                f"SELECT {pk}, COUNT(*) FROM {q(table.name)} GROUP BY {pk} HAVING COUNT(*) > 1"
            ).fetchall()
            assert dupes == [], table.name
            nulls = conn.execute(
                f"SELECT COUNT(*) FROM {q(table.name)} WHERE "
                + " OR ".join(f"{q(c)} IS NULL" for c in table.primary_key)
            ).fetchone()
            assert nulls == (0,), table.name
            info = conn.execute(f"PRAGMA table_info({q(table.name)})").fetchall()
            declared_pk = [name for _, name, _, _, _, pk_pos in sorted(info, key=lambda r: r[5]) if pk_pos]
            assert tuple(declared_pk) == table.primary_key


def test_sqlite_exact_column_names_and_declared_types(sqlite_db: tuple[Path, dict[str, int]]) -> None:
    path, _ = sqlite_db
    with contextlib.closing(sqlite3.connect(path)) as conn:
        for table in DEMO_TABLES:
            info = conn.execute(f"PRAGMA table_info({q(table.name)})").fetchall()
            assert [(r[1], r[2]) for r in info] == [(c.name, c.sqlite_type) for c in table.columns]
        names = {r[1]: r[2] for r in conn.execute('PRAGMA table_info("client")').fetchall()}
    # hyphenated and reserved-word columns keep their exact Progress names
    assert names["adr-1"] == "VARCHAR(60)"
    assert names["code-postal"] == "VARCHAR(10)"
    assert names["order"] == "VARCHAR(20)"
    assert names["user"] == "VARCHAR(20)"
    assert names["credit-max"] == "DECIMAL(15,2)"
    assert names["actif"] == "BOOLEAN"
    assert names["dat_mod"] == "DATE"
    assert {"tel#", "taux$", "remise%", "note&comment"} <= set(demo_table("fournis").column_names)
    assert demo_table("produit").column("prix-achat").sqlite_type == "DECIMAL(18,6)"
    assert demo_table("produit").column("dat_mod").sqlite_type == "TIMESTAMP"


def test_sqlite_client_has_nulls_empty_strings_and_unicode(sqlite_db: tuple[Path, dict[str, int]]) -> None:
    path, _ = sqlite_db
    with contextlib.closing(sqlite3.connect(path)) as conn:
        for col in ("e-mail", "code-postal", "adr-1"):
            (n_null,) = conn.execute(f'SELECT COUNT(*) FROM "client" WHERE {q(col)} IS NULL').fetchone()
            (n_empty,) = conn.execute(f"SELECT COUNT(*) FROM \"client\" WHERE {q(col)} = ''").fetchone()
            assert n_null > 0, col
            assert n_empty > 0, col
        noms = [r[0] for r in conn.execute('SELECT "nom" FROM "client"').fetchall()]
    text = "".join(noms)
    for needle in ("é", "ü", "ß", "中文"):
        assert needle in text, needle
    assert any(ord(ch) > 0xFFFF for ch in text), "an emoji (outside the BMP) in client names"


def test_sqlite_values_are_the_generated_rows(sqlite_db: tuple[Path, dict[str, int]]) -> None:
    path, _ = sqlite_db
    expected = generate_demo_rows()
    for table in DEMO_TABLES:
        assert sqlite_neutral_rows(path, table) == expected[table.name], table.name
    # text dates/timestamps in the documented formats, booleans as 0/1
    with contextlib.closing(sqlite3.connect(path)) as conn:
        dat_mod, actif = conn.execute('SELECT "dat_mod", "actif" FROM "client" ORDER BY "cod_cli"').fetchone()
        (ts,) = conn.execute('SELECT "dat_mod" FROM "produit" ORDER BY "cod_pro"').fetchone()
    assert isinstance(dat_mod, str) and len(dat_mod) == 10 and date.fromisoformat(dat_mod)
    assert isinstance(ts, str) and datetime.strptime(ts, "%Y-%m-%d %H:%M:%S")
    assert actif in (0, 1)


def test_modification_timestamps_spread_over_30_days_before_reference() -> None:
    ref = datetime(2025, 6, 1, 0, 0, 0)
    rows = generate_demo_rows(seed=1, scale=0.5, reference_ts=ref)
    for table in DEMO_TABLES:
        values = [r[table.date_modif_col] for r in rows[table.name]]
        if table.date_modif_precision == "date":
            days = [v for v in values if isinstance(v, date) and not isinstance(v, datetime)]
            assert len(days) == len(values), table.name
            assert min(days) >= (ref - timedelta(days=30)).date() and max(days) <= ref.date()
        else:
            stamps = [v for v in values if isinstance(v, datetime)]
            assert len(stamps) == len(values), table.name
            assert min(stamps) >= ref - timedelta(days=30) and max(stamps) < ref
        assert len(set(values)) > 20, table.name  # spread, not one value


def test_sqlite_creation_is_deterministic(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.db", tmp_path / "b.db", tmp_path / "c.db"
    assert create_sqlite_source(a, seed=5, scale=0.2) == create_sqlite_source(b, seed=5, scale=0.2)
    create_sqlite_source(c, seed=6, scale=0.2)
    for table in DEMO_TABLES:
        rows_a = sqlite_rows(a, table)
        assert rows_a == sqlite_rows(b, table), table.name
        assert rows_a != sqlite_rows(c, table), table.name


def test_sqlite_create_replaces_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "demo.db"
    create_sqlite_source(path, scale=0.1)
    counts = create_sqlite_source(path, scale=0.05)
    assert counts["client"] == 75
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute('SELECT COUNT(*) FROM "client"').fetchone() == (75,)


def test_progress_extent_escaping(sqlite_db: tuple[Path, dict[str, int]]) -> None:
    assert progress_extent(["a;b", None, "x~y", "", "c"]) == "a~;b;?;x~~y;;c"
    path, _ = sqlite_db
    with contextlib.closing(sqlite3.connect(path)) as conn:
        values = [r[0] for r in conn.execute('SELECT "lib-ext" FROM "produit" WHERE "lib-ext" IS NOT NULL')]
    assert any("~;" in v for v in values)
    assert any("?" in v.split(";") for v in values)


def check_changes_applied(
    summary: ChangeSummary,
    before: dict[str, list[Row]],
    after: dict[str, list[Row]],
) -> None:
    """What an incremental load must see: exactly the inserted + updated keys carry the new modif value."""
    assert summary.change_ts == CHANGE_TS
    assert list(summary.tables) == [t.name for t in DEMO_TABLES]
    for table in DEMO_TABLES:
        changes = summary[table.name]
        old = {key_of(table, r): r for r in before[table.name]}
        new = {key_of(table, r): r for r in after[table.name]}
        expected_modif = CHANGE_TS.date() if table.date_modif_precision == "date" else CHANGE_TS
        assert changes.modif_value == expected_modif
        assert changes.inserted >= 2 and changes.updated == max(1, round(len(old) * 0.02)), table.name
        assert summary.inserted(table.name) == changes.inserted
        assert summary.updated(table.name) == changes.updated
        assert not set(changes.inserted_keys) & set(old), table.name
        assert set(changes.updated_keys) <= set(old), table.name
        assert len(new) == len(old) + changes.inserted
        touched = {k for k, r in new.items() if r[table.date_modif_col] == expected_modif}
        assert touched == set(changes.changed_keys), table.name
        for key in changes.updated_keys:
            col = changes.updated_column
            assert new[key][col] != old[key][col], (table.name, key)
            untouched = set(table.column_names) - {col, table.date_modif_col}
            assert {c: new[key][c] for c in untouched} == {c: old[key][c] for c in untouched}
        for key in set(old) - set(changes.updated_keys):
            assert new[key] == old[key], (table.name, key)
    assert summary.total_inserted == sum(summary.inserted(t.name) for t in DEMO_TABLES)
    assert summary.total_updated == sum(summary.updated(t.name) for t in DEMO_TABLES)


def test_sqlite_apply_changes(tmp_path: Path) -> None:
    path = tmp_path / "changes.db"
    create_sqlite_source(path)
    before = {t.name: sqlite_neutral_rows(path, t) for t in DEMO_TABLES}
    summary = apply_sqlite_changes(path, change_ts=CHANGE_TS)
    after = {t.name: sqlite_neutral_rows(path, t) for t in DEMO_TABLES}
    check_changes_applied(summary, before, after)
    # the raw file content: date-only column for client, full timestamp elsewhere
    with contextlib.closing(sqlite3.connect(path)) as conn:
        for key in summary["client"].updated_keys:
            row = conn.execute('SELECT "dat_mod" FROM "client" WHERE "cod_cli" = ?', key).fetchone()
            assert row == ("2026-01-16",)
        for key in summary["hisprixa"].updated_keys:
            row = conn.execute(
                'SELECT "dat_mod" FROM "hisprixa" WHERE "cod_pro" = ? AND "dat_eff" = ?',
                tuple(to_sqlite_value(v) for v in key),
            ).fetchone()
            assert row == ("2026-01-16 08:30:00",)


def test_sqlite_apply_changes_is_deterministic(tmp_path: Path) -> None:
    summaries = []
    for name in ("a.db", "b.db"):
        create_sqlite_source(tmp_path / name, scale=0.2)
        summaries.append(apply_sqlite_changes(tmp_path / name, seed=3, change_ts=CHANGE_TS))
    assert summaries[0] == summaries[1]
    for table in DEMO_TABLES:
        assert sqlite_rows(tmp_path / "a.db", table) == sqlite_rows(tmp_path / "b.db", table)


def test_aware_datetimes_and_missing_file_are_rejected(tmp_path: Path) -> None:

    with pytest.raises(ValueError, match="naive"):
        generate_demo_rows(reference_ts=datetime(2026, 1, 1, tzinfo=UTC))
    with pytest.raises(ValueError, match="scale"):
        generate_demo_rows(scale=0)
    with pytest.raises(FileNotFoundError):
        apply_sqlite_changes(tmp_path / "absent.db", change_ts=CHANGE_TS)
    assert datetime(2026, 1, 15, 12, 0, 0) == DEFAULT_REFERENCE_TS


# -------------------------------------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="module")
def pg_conninfo() -> str:
    try:
        with psycopg.connect(PG_CONNINFO, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        message = f"PostgreSQL unreachable at {PG_CONNINFO!r}: {exc}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return PG_CONNINFO


@pytest.fixture(scope="module")
def pg_schema(pg_conninfo: str) -> Iterator[str]:
    schema = f"PUB_demo_test_{os.getpid()}"
    try:
        yield schema
    finally:
        with psycopg.connect(pg_conninfo) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {q(schema)} CASCADE")


@pytest.fixture(scope="module")
def pg_source(pg_conninfo: str, pg_schema: str) -> dict[str, int]:
    return create_postgres_source(pg_conninfo, schema=pg_schema)


def pg_rows(conninfo: str, schema: str, table: DemoTable) -> list[Row]:
    cols = ", ".join(q(c) for c in table.column_names)
    with psycopg.connect(conninfo) as conn:
        records = conn.execute(
            f"SELECT {cols} FROM {q(schema)}.{q(table.name)} ORDER BY {order_by(table)}"
        ).fetchall()
    return [dict(zip(table.column_names, r, strict=True)) for r in records]


@pytest.mark.postgres
def test_pg_tables_with_primary_keys(pg_conninfo: str, pg_schema: str, pg_source: dict[str, int]) -> None:
    assert pg_source == {t.name: t.row_count() for t in DEMO_TABLES}
    with psycopg.connect(pg_conninfo) as conn:
        for table in DEMO_TABLES:
            pk = conn.execute(
                """
                SELECT kcu.column_name
                FROM information_schema.table_constraints tc
                JOIN information_schema.key_column_usage kcu
                  ON kcu.constraint_schema = tc.constraint_schema
                 AND kcu.constraint_name = tc.constraint_name
                WHERE tc.constraint_type = 'PRIMARY KEY' AND tc.table_schema = %s AND tc.table_name = %s
                ORDER BY kcu.ordinal_position
                """,
                (pg_schema, table.name),
            ).fetchall()
            assert tuple(r[0] for r in pk) == table.primary_key, table.name
            columns = conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
                "ORDER BY ordinal_position",
                (pg_schema, table.name),
            ).fetchall()
            assert tuple(r[0] for r in columns) == table.column_names
            (count,) = conn.execute(f"SELECT COUNT(*) FROM {q(pg_schema)}.{q(table.name)}").fetchone() or (0,)
            assert count == pg_source[table.name]
        types: dict[str, str] = dict(
            conn.execute(
                "SELECT column_name, data_type || coalesce('(' || numeric_precision || ',' || numeric_scale || ')', "
                "'(' || character_maximum_length || ')', '') FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name = 'produit'",
                (pg_schema,),
            ).fetchall()
        )
    assert types["prix-achat"] == "numeric(18,6)"
    assert types["prix-vente"] == "numeric(18,4)"
    assert types["poids"].startswith("double precision")
    assert types["select"] == "character varying(10)"
    assert types["dat_mod"] == "timestamp without time zone"


@pytest.mark.postgres
def test_pg_values_and_six_decimals(pg_conninfo: str, pg_schema: str, pg_source: dict[str, int]) -> None:
    expected = generate_demo_rows()
    for table in DEMO_TABLES:
        assert pg_rows(pg_conninfo, pg_schema, table) == expected[table.name], table.name
    with psycopg.connect(pg_conninfo) as conn:
        texts = [
            r[0]
            for r in conn.execute(
                f'SELECT "prix-achat"::text FROM {q(pg_schema)}."produit" ORDER BY "cod_pro"'
            ).fetchall()
        ]
    assert all(len(t.split(".")[1]) == 6 for t in texts)
    assert any(t[-1] != "0" for t in texts), "sixth decimal significant somewhere"
    generated = [f"{r['prix-achat']:f}" for r in expected["produit"]]
    assert texts == generated
    assert isinstance(expected["produit"][0]["prix-achat"], Decimal)


@pytest.mark.postgres
def test_pg_recreate_touches_only_the_demo_tables(
    pg_conninfo: str, pg_schema: str, pg_source: dict[str, int]
) -> None:
    with psycopg.connect(pg_conninfo) as conn:
        conn.execute(f'CREATE TABLE {q(pg_schema)}."keep_me" (id integer)')
        conn.execute(f'INSERT INTO {q(pg_schema)}."keep_me" VALUES (1)')
    counts = create_postgres_source(pg_conninfo, schema=pg_schema, scale=0.1)
    assert counts["produit"] == 200
    with psycopg.connect(pg_conninfo) as conn:
        assert conn.execute(f'SELECT COUNT(*) FROM {q(pg_schema)}."keep_me"').fetchone() == (1,)
        assert conn.execute(f'SELECT COUNT(*) FROM {q(pg_schema)}."produit"').fetchone() == (200,)
        conn.execute(f'DROP TABLE {q(pg_schema)}."keep_me"')


@pytest.mark.postgres
def test_pg_apply_changes(pg_conninfo: str, pg_schema: str) -> None:
    create_postgres_source(pg_conninfo, schema=pg_schema, scale=0.5)
    before = {t.name: pg_rows(pg_conninfo, pg_schema, t) for t in DEMO_TABLES}
    summary = apply_postgres_changes(pg_conninfo, schema=pg_schema, change_ts=CHANGE_TS)
    after = {t.name: pg_rows(pg_conninfo, pg_schema, t) for t in DEMO_TABLES}
    check_changes_applied(summary, before, after)
    with psycopg.connect(pg_conninfo) as conn:
        (n,) = conn.execute(
            f'SELECT COUNT(*) FROM {q(pg_schema)}."client" WHERE "dat_mod" >= %s', (CHANGE_TS.date(),)
        ).fetchone() or (0,)
    assert n == len(summary["client"].changed_keys)


@pytest.mark.postgres
def test_pg_and_sqlite_changes_are_the_same(pg_conninfo: str, pg_schema: str, tmp_path: Path) -> None:
    create_postgres_source(pg_conninfo, schema=pg_schema, scale=0.2)
    create_sqlite_source(tmp_path / "same.db", scale=0.2)
    pg_summary = apply_postgres_changes(pg_conninfo, schema=pg_schema, change_ts=CHANGE_TS)
    assert pg_summary == apply_sqlite_changes(tmp_path / "same.db", change_ts=CHANGE_TS)
    for table in DEMO_TABLES:
        assert pg_rows(pg_conninfo, pg_schema, table) == sqlite_neutral_rows(tmp_path / "same.db", table)
