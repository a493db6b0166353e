"""The staging step (cbm_luigi/pipeline/stage.py): parquet extract -> ``stg.<table>``, in one transaction.

A real SQLite source is extracted to parquet (``extract_to_parquet``), then staged into a real DuckDB file or a
fresh PostgreSQL database.  Staging replaces what ``stg.<table>`` held and records its batch in
etl.ETL_StagingState in the same transaction; an extract with duplicate or NULL keys is refused before anything is
touched; PostgreSQL's staging-while-extracting (COPY fed by the extract) commits only on ``commit()``.
"""

from __future__ import annotations

import contextlib
import itertools
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from cbm_luigi.destinations import open_target
from cbm_luigi.destinations.client import Target
from cbm_luigi.errors import DataError, TargetError
from cbm_luigi.model.specs import ColumnSpec, TableSpec
from cbm_luigi.pipeline.extract import Manifest, extract_dir, extract_to_parquet
from cbm_luigi.pipeline.merge import merge
from cbm_luigi.pipeline.sources import SqliteSource
from cbm_luigi.pipeline.sources.flavors import SqliteFlavor, Window
from cbm_luigi.pipeline.stage import stage, staging_while_extracting
from cbm_luigi.store.schema import init_db
from cbm_luigi.store.staging_state import StagingState, staged_batches, staging_state

COLUMNS = (
    ColumnSpec("id", "id", "integer", position=1),
    ColumnSpec("name", "name", "string", width=20, position=2),
    ColumnSpec("dat_mod", "dat_mod", "timestamp", position=3),
)
SPEC = TableSpec("item", "item", "ods.item", ("id",), True, "dat_mod", "datetime", columns=COLUMNS)

Row = tuple[Any, str | None, str]


def rows_of(*ids: int, tag: str = "") -> list[Row]:
    return [(i, f"name-{i}{tag}", f"2026-01-{i:02d} 10:00:00") for i in ids]


class Extractor:
    """A SQLite ``PUB.item`` table, rewritten before each extract, and the extracts taken from it."""

    def __init__(self, tmp_path: Path) -> None:
        self.db = tmp_path / "erp.sqlite"
        self.cache = tmp_path / "cache"

    def __call__(self, batch: str, rows: list[Row], spec: TableSpec, sink: Any = None
                 ) -> tuple[Manifest, list[Path]]:
        t = spec.table_name
        with contextlib.closing(sqlite3.connect(self.db)) as con, con:
            con.execute(f'DROP TABLE IF EXISTS "{t}"')
            con.execute(f'CREATE TABLE "{t}" (id INTEGER, name VARCHAR(20), dat_mod TIMESTAMP)')
            con.executemany(f'INSERT INTO "{t}" VALUES (?, ?, ?)', rows)
        out = extract_dir(self.cache, spec.table_name, batch, "full")
        source = SqliteSource(str(self.db), SqliteFlavor(), "PUB")
        try:
            manifest = extract_to_parquet(spec, source, window=Window(None), out_dir=out, batch=batch, mode="full",
                                          run_id="test-run", min_date=date(1, 1, 1), max_date=date(9999, 12, 31),
                                          batch_rows=2, sink=sink)
        finally:
            source.close()
        return manifest, manifest.paths(out)


@pytest.fixture
def extract(tmp_path: Path) -> Extractor:
    return Extractor(tmp_path)


@pytest.fixture(scope="module")
def pg_url(pg_conninfo: str) -> Iterator[str]:
    """One fresh PostgreSQL database for this module (created like conftest's ``pg_database``, initialised
    once); every test uses a table name of its own, so staging states do not meet."""
    import psycopg
    from conftest import pg_params

    name = f"cbm_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_conninfo, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    p = pg_params(pg_conninfo)
    url = f"postgresql+psycopg://{p.get('user', 'postgres')}@{p.get('host', '127.0.0.1')}:{p.get('port', '5432')}/{name}"
    init_db(open_target(url))
    yield url
    open_target(url).dispose()
    open_target.cache_clear()
    with psycopg.connect(pg_conninfo, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def duck_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One DuckDB file for this module, initialised once (tables named per test, as in PostgreSQL)."""
    url = f"duckdb:///{tmp_path_factory.mktemp('stage') / 'ods.duckdb'}"
    init_db(open_target(url))
    return url


@pytest.fixture
def duck_target(duck_url: str) -> Target:
    return open_target(duck_url)


@pytest.fixture(params=["duckdb", pytest.param("postgresql", marks=pytest.mark.postgres)])
def target(request: pytest.FixtureRequest) -> Target:
    return open_target(str(request.getfixturevalue("duck_url" if request.param == "duckdb" else "pg_url")))


@pytest.fixture
def pg_target(pg_url: str) -> Target:
    return open_target(pg_url)


_numbers = itertools.count(1)


@pytest.fixture
def spec() -> TableSpec:
    """The item table under a name of its own (the tests of this module share one PostgreSQL database)."""
    name = f"item{next(_numbers)}"
    return replace(SPEC, table_name=name, sql_name=name, destination_table=f"ods.{name}")


def staged(target: Target, spec: TableSpec, schema: str = "stg") -> list[tuple[Any, ...]]:
    d = target.dialect
    return target.fetchall(f"SELECT {d.quote('id')}, {d.quote('name')} FROM {d.qualified(schema, spec.sql_name)} "
                           f"ORDER BY {d.quote('id')}")


def staging_log(target: Target, spec: TableSpec) -> list[tuple[Any, ...]]:
    d = target.dialect
    q = d.quote
    return target.fetchall(
        f"SELECT {q('Batch')}, {q('Status')}, {q('RowsProcessed')} FROM {d.qualified('etl', 'ETL_Log')} "
        f"WHERE {q('TableName')} = :t AND {q('StepName')} = 'load_staging' ORDER BY {q('LogTs')}",
        {"t": spec.table_name})


def test_stage_replaces_staging_and_records_its_batch(target, extract, spec):
    m1, files1 = extract("b1", rows_of(1, 2, 3), spec)
    assert stage(target, spec, m1, files1) == 3
    assert staged(target, spec) == [(1, "name-1"), (2, "name-2"), (3, "name-3")]
    assert staging_state(target, spec.table_name) == StagingState("b1", "full", 3)

    m2, files2 = extract("b2", rows_of(2, 4, tag="'"), spec)
    assert stage(target, spec, m2, files2) == 2
    # replaced, not appended: nothing of b1 is left
    assert staged(target, spec) == [(2, "name-2'"), (4, "name-4'")]
    assert staging_state(target, spec.table_name) == StagingState("b2", "full", 2)
    assert {b for t, b in staged_batches(target) if t == spec.table_name} == {"b2"}
    assert [tuple(r) for r in staging_log(target, spec)] == [("b1", "success", 3), ("b2", "success", 2)]


def test_a_failed_stage_leaves_what_staging_held(target, extract, spec):
    m1, files1 = extract("b1", rows_of(1, 2, 3), spec)
    stage(target, spec, m1, files1)
    m2, files2 = extract("b2", rows_of(7, 8), spec)
    # the extract says 3 rows, its files hold 2: the check fails after the table was emptied and reloaded
    with pytest.raises(TargetError, match="staged 2 rows but the extract holds 3; rolled back"):
        stage(target, spec, replace(m2, rows=3), files2)
    # the emptying, the load and the batch record were one transaction: all rolled back
    assert staged(target, spec) == [(1, "name-1"), (2, "name-2"), (3, "name-3")]
    assert staging_state(target, spec.table_name) == StagingState("b1", "full", 3)
    assert [r[0] for r in staging_log(target, spec)] == ["b1"]


def test_duplicate_keys_stop_the_table_and_leave_staging_and_ods_untouched(target, extract, spec):
    m1, files1 = extract("b1", rows_of(1, 2, 3), spec)
    stage(target, spec, m1, files1)
    merge(target, spec, m1)
    ods_before = staged(target, spec, "ods")
    assert len(ods_before) == 3

    m2, files2 = extract("b2", rows_of(1, 2, 2, 5, 5, 5, 6, tag="-new"), spec)
    assert m2.rows == 7
    with pytest.raises(DataError) as err:
        stage(target, spec, m2, files2)
    msg = str(err.value)
    assert f"table {spec.table_name}: 2 duplicate primary key(s) (id) in the extract" in msg
    # sample keys, the most repeated first
    assert "e.g. id=5 (x3); id=2 (x2)." in msg
    assert "id=1" not in msg and "id=6" not in msg
    assert staged(target, spec) == [(1, "name-1"), (2, "name-2"), (3, "name-3")]
    assert staging_state(target, spec.table_name) == StagingState("b1", "full", 3)
    # the merge of the refused batch does not run on what staging holds
    with pytest.raises(TargetError, match="staging holds b1, not batch b2"):
        merge(target, spec, m2)
    assert staged(target, spec, "ods") == ods_before


def test_null_keys_stop_the_table_and_leave_staging_untouched(duck_target, extract, spec):
    target = duck_target
    spec = replace(spec, primary_key=("id", "name"))  # a NULL in any key column counts
    m1, files1 = extract("b1", rows_of(1, 2), spec)
    stage(target, spec, m1, files1)

    rows = [*rows_of(3, 4), (5, None, "2026-01-05 10:00:00"), (None, "x", "2026-01-06 10:00:00")]
    m2, files2 = extract("b2", rows, spec)
    with pytest.raises(DataError, match=rf"table {spec.table_name}: 2 row\(s\) have a NULL in the primary key "
                                        r"\(id, name\)"):
        stage(target, spec, m2, files2)
    assert staged(target, spec) == [(1, "name-1"), (2, "name-2")]
    assert staging_state(target, spec.table_name) == StagingState("b1", "full", 2)


def test_dialects_without_a_stream_stage_after_the_extract(duck_target, spec):
    with staging_while_extracting(duck_target, spec) as sink:
        assert sink is None


# --- PostgreSQL: staging while extracting (COPY fed by the extract's batches) -----------------------------------

pg = pytest.mark.postgres


@pg
def test_staging_while_extracting_commits_only_on_commit(pg_target, extract, spec):
    m1, files1 = extract("b1", rows_of(1, 2, 3), spec)
    stage(pg_target, spec, m1, files1)
    with staging_while_extracting(pg_target, spec, enabled=False) as off:
        assert off is None

    with staging_while_extracting(pg_target, spec) as sink:
        assert sink is not None
        m2, files2 = extract("b2", rows_of(4, 5, 6, 7, 8), spec, sink=sink)  # 3 batches streamed
        assert sink.stream.rows == 5
        # streamed but not committed: another connection still sees staging holding b1
        assert staging_state(pg_target, spec.table_name) == StagingState("b1", "full", 3)
        assert sink.commit(m2, files2) is True
    assert staged(pg_target, spec) == [(i, f"name-{i}") for i in (4, 5, 6, 7, 8)]
    assert staging_state(pg_target, spec.table_name) == StagingState("b2", "full", 5)
    assert [r[0] for r in staging_log(pg_target, spec)] == ["b1", "b2"]


@pg
@pytest.mark.parametrize("how", ["failure", "no_commit"])
def test_staging_while_extracting_rolls_back_unless_committed(pg_target, extract, spec, how):
    m1, files1 = extract("b1", rows_of(1, 2, 3), spec)
    stage(pg_target, spec, m1, files1)
    if how == "failure":
        with pytest.raises(RuntimeError, match="extract step failed"), \
                staging_while_extracting(pg_target, spec) as sink:
            extract("b2", rows_of(4, 5, 6), spec, sink=sink)
            raise RuntimeError("extract step failed")
    else:
        with staging_while_extracting(pg_target, spec) as sink:
            extract("b2", rows_of(4, 5, 6), spec, sink=sink)
    assert staged(pg_target, spec) == [(1, "name-1"), (2, "name-2"), (3, "name-3")]
    assert staging_state(pg_target, spec.table_name) == StagingState("b1", "full", 3)
    assert [r[0] for r in staging_log(pg_target, spec)] == ["b1"]


@pg
@pytest.mark.parametrize("fault", ["duplicate_keys", "row_count"])
def test_staging_while_extracting_rolls_back_a_refused_extract(pg_target, extract, spec, fault):
    m1, files1 = extract("b1", rows_of(1, 2, 3), spec)
    stage(pg_target, spec, m1, files1)
    with staging_while_extracting(pg_target, spec) as sink:
        if fault == "duplicate_keys":
            m2, files2 = extract("b2", rows_of(4, 4, 5), spec, sink=sink)
        else:
            m2, files2 = extract("b2", rows_of(4, 5), spec, sink=sink)
            m2 = replace(m2, rows=3)
        assert sink.commit(m2, files2) is False
    assert staged(pg_target, spec) == [(1, "name-1"), (2, "name-2"), (3, "name-3")]
    assert staging_state(pg_target, spec.table_name) == StagingState("b1", "full", 3)
    if fault == "duplicate_keys":  # the staging step then reports it
        with pytest.raises(DataError, match=r"1 duplicate primary key\(s\) \(id\) in the extract, e.g. id=4 \(x2\)"):
            stage(pg_target, spec, m2, files2)
    # and a good extract stages afterwards (the connection went back to the pool clean)
    m3, files3 = extract("b3", rows_of(9), spec)
    stage(pg_target, spec, m3, files3)
    assert staging_state(pg_target, spec.table_name) == StagingState("b3", "full", 1)
