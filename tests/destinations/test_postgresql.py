"""The PostgreSQL dialect (cbm_luigi/destinations/postgresql.py) on a real, fresh PostgreSQL database.

COPY (CSV from Arrow) into staging keeps NULL apart from '' and carries bytea unchanged; the MERGE rewrites only
new keys and rows whose hashdiff changed (counted with ``xmin``: a row written by the MERGE gets a new one);
``row_lock_clauses`` make the merge's read of the staging state lock the row until the transaction ends.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cbm_luigi.destinations import open_target
from cbm_luigi.destinations.client import Target
from cbm_luigi.destinations.merge import MergeCounts
from cbm_luigi.destinations.postgresql import TOAST_TUPLE_TARGET, PostgresDialect
from cbm_luigi.errors import TargetError, TransientTargetError
from cbm_luigi.model.specs import ColumnSpec, TableSpec
from cbm_luigi.pipeline.transform import TECHNICAL_COLUMNS, add_technical_columns
from cbm_luigi.store.schema import init_db
from cbm_luigi.store.staging_state import StagingState, read_sql, set_staging_state, staging_state

pytestmark = pytest.mark.postgres

SPEC = TableSpec("art-x", "art_x", "ods.art_x", ("id",), False, None, "datetime", columns=(
    ColumnSpec("id", "id", "integer", position=1),
    ColumnSpec("txt", "txt", "string", position=2),
    ColumnSpec("bin", "bin", "binary", position=3),
))
COLUMNS = [*(c.sql_name for c in SPEC.loaded_columns), *TECHNICAL_COLUMNS]
_numbers = itertools.count(1)


@pytest.fixture(scope="module")
def pg_url(pg_conninfo: str) -> Iterator[str]:
    """One fresh database for the module (as conftest's ``pg_database``, initialised once); tables are named per
    test."""
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


@pytest.fixture
def target(pg_url: str) -> Target:
    t = open_target(pg_url)
    assert isinstance(t.dialect, PostgresDialect)
    return t


@pytest.fixture
def spec() -> TableSpec:
    n = next(_numbers)
    return replace(SPEC, table_name=f"art-x{n}", sql_name=f"art_x{n}", destination_table=f"ods.art_x{n}")


def raw(target: Target, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    """Read with the driver itself (psycopg), outside the code under test."""
    import psycopg

    u = target.engine.url
    with psycopg.connect(host=u.host, port=u.port, user=u.username, dbname=u.database, autocommit=True) as c:
        cur = c.execute(sql, params)
        return cur.fetchall() if cur.description else []


def parquet_files(tmp_path: Path, ids: list[int], txt: list[str | None], bins: list[bytes | None],
                  per_file: int) -> list[Path]:
    """An extract's parquet files: the business columns plus the technical columns the transform adds."""
    batch = pa.RecordBatch.from_arrays([pa.array(ids, pa.int32()), pa.array(txt, pa.string()),
                                        pa.array(bins, pa.binary())], names=["id", "txt", "bin"])
    full = add_technical_columns(batch, hash_columns=["id", "txt", "bin"], date_modif_col=None,
                                 load_ts=datetime(2026, 1, 15, 12, 0))
    files = []
    for i, start in enumerate(range(0, len(ids), per_file)):
        path = tmp_path / f"part-{i:05d}.parquet"
        pq.write_table(pa.Table.from_batches([full.slice(start, per_file)]), path, compression="snappy")
        files.append(path)
    return files


def test_copy_staging_keeps_null_apart_from_empty_and_bytea_round_trips(target, spec, tmp_path):
    txt = [None, "", " ", 'a,"b";c', "line\nbreak\r\n", "\\x41 is text", "NULL", "ü€ 漢字", '"', ","]
    bins = [b"", None, b"\x00", bytes(range(256)), b"\\x41", b'",\n', b"\xff" * 3, None, b"NULL", b" "]
    ids = list(range(1, len(txt) + 1))
    files = parquet_files(tmp_path, ids, txt, bins, per_file=4)
    d = target.dialect
    with target.begin(table=spec.table_name, step="load_staging") as conn:
        target.ensure_table(conn, "stg", spec.sql_name, d.staging_columns(spec))
        conn.execute(d.truncate_sql("stg", spec.sql_name))
        assert d.load_staging(conn, spec, files, COLUMNS) == len(ids)
    rows = raw(target, f'SELECT id, txt, bin FROM stg."{spec.sql_name}" ORDER BY id')
    assert rows == [(i, t, b) for i, t, b in zip(ids, txt, bins, strict=True)]
    nulls = raw(target, f'SELECT count(*) FILTER (WHERE txt IS NULL), count(*) FILTER (WHERE txt = \'\'), '
                        f'count(*) FILTER (WHERE bin IS NULL), count(*) FILTER (WHERE bin = \'\'::bytea) '
                        f'FROM stg."{spec.sql_name}"')
    assert nulls == [(1, 1, 2, 1)]
    # the hashdiff computed from Arrow arrives as written
    hashes = pq.read_table(files, columns=["id", "hashdiff"]).to_pylist()
    assert raw(target, f'SELECT id, hashdiff FROM stg."{spec.sql_name}" ORDER BY id') == \
        [(h["id"], h["hashdiff"]) for h in hashes]
    # staging is created with the wide-row toast threshold
    assert raw(target, "SELECT reloptions FROM pg_class WHERE oid = %s::regclass",
               (f'stg."{spec.sql_name}"',)) == [([f"toast_tuple_target={TOAST_TUPLE_TARGET}"],)]


def test_copy_staging_streams_batches_in_the_callers_transaction(target, spec, tmp_path):
    files = parquet_files(tmp_path, [1, 2, 3], ["a", None, ""], [b"\x01", None, b""], per_file=3)
    d = target.dialect
    batch = pq.read_table(files).to_batches()[0]
    with pytest.raises(RuntimeError, match="abandoned"), \
            target.begin(table=spec.table_name, step="load_staging") as conn:
        target.ensure_table(conn, "stg", spec.sql_name, d.staging_columns(spec))
        stream = d.open_staging_stream(conn, spec, COLUMNS)
        stream.write(stream.encode(batch))
        assert stream.close() == 3
        raise RuntimeError("abandoned")  # rolled back: the COPY went with it
    assert raw(target, "SELECT to_regclass(%s)", (f'stg."{spec.sql_name}"',)) == [(None,)]


def ods_row(key: int, txt: str, hashdiff: str, batch: str) -> dict[str, Any]:
    return {"id": key, "txt": txt, "bin": None, "hashdiff": hashdiff, "ts_source": None,
            "load_ts": datetime(2026, 1, 1), "etl_batch": batch}


def test_merge_touches_only_new_keys_and_changed_hashdiffs(target, spec):
    d = target.dialect
    stg, ods = d.qualified("stg", spec.sql_name), d.qualified("ods", spec.sql_name)
    insert = "INSERT INTO {t} (id, txt, bin, hashdiff, ts_source, load_ts{b}) VALUES " \
             "(:id, :txt, :bin, :hashdiff, :ts_source, :load_ts{vb})"
    with target.begin() as conn:
        target.ensure_table(conn, "ods", spec.sql_name, d.ods_columns(spec), spec.primary_key)
        target.ensure_table(conn, "stg", spec.sql_name, d.staging_columns(spec))
        conn.execute(insert.format(t=ods, b=", etl_batch", vb=", :etl_batch"),
                     [ods_row(k, f"old-{k}", f"h{k}".ljust(64, "0"), "b1") for k in (1, 2, 3, 4)])
        conn.execute(insert.format(t=stg, b="", vb=""), [
            # same hashdiff: not rewritten, even though a value differs (the hashdiff is the rule)
            {**ods_row(1, "other-1", "h1".ljust(64, "0"), ""), "load_ts": datetime(2026, 2, 1)},
            {**ods_row(2, "new-2", "h2".ljust(64, "9"), ""), "load_ts": datetime(2026, 2, 1)},  # changed
            {**ods_row(3, "old-3", "h3".ljust(64, "0"), ""), "load_ts": datetime(2026, 2, 1)},  # unchanged
            {**ods_row(5, "new-5", "h5".ljust(64, "0"), ""), "load_ts": datetime(2026, 2, 1)},  # new key
        ])
    xmin_sql = f"SELECT id, xmin::text FROM ods.\"{spec.sql_name}\""
    before = dict(raw(target, xmin_sql))

    with target.begin(table=spec.table_name, step="merge_ods") as conn:
        counts = d.merge(conn, spec, "b2", staged=4)
    assert counts == MergeCounts(staged=4, inserted=1, updated=1) and counts.unchanged == 2
    after = dict(raw(target, xmin_sql))
    assert sorted(after) == [1, 2, 3, 4, 5]
    assert sorted(k for k in before if after[k] != before[k]) == [2]  # the one updated row
    assert raw(target, f'SELECT id, txt, etl_batch, load_ts FROM ods."{spec.sql_name}" ORDER BY id') == [
        (1, "old-1", "b1", datetime(2026, 1, 1)), (2, "new-2", "b2", datetime(2026, 2, 1)),
        (3, "old-3", "b1", datetime(2026, 1, 1)), (4, "old-4", "b1", datetime(2026, 1, 1)),
        (5, "new-5", "b2", datetime(2026, 2, 1)),
    ]

    # merged again: nothing is new or changed, nothing is written
    with target.begin(table=spec.table_name, step="merge_ods") as conn:
        assert d.merge(conn, spec, "b3", staged=4) == MergeCounts(staged=4, inserted=0, updated=0)
    assert dict(raw(target, xmin_sql)) == after


def test_row_lock_clauses_make_a_second_transaction_wait(target, spec):
    import psycopg

    d = target.dialect
    assert d.row_lock_clauses() == ("", " FOR UPDATE")
    with target.begin() as conn:
        set_staging_state(conn, spec.table_name, batch="b1", mode="full", rows=3, source_clock_ts=None)
    params = {"t": spec.table_name}
    locked_read = read_sql(d, lock=True)
    assert locked_read.endswith(" FOR UPDATE")
    got_row: list[float] = []

    def second_merge() -> None:
        with target.begin(table=spec.table_name, step="merge_ods") as conn2:
            assert staging_state(target, spec.table_name, conn2) == StagingState("b1", "full", 3)
            got_row.append(time.monotonic())

    with target.begin(table=spec.table_name, step="merge_ods") as conn:
        assert staging_state(target, spec.table_name, conn) == StagingState("b1", "full", 3)  # locks the row
        # the lock is held: NOWAIT fails at once, from the driver and through the Target (a transient error)
        u = target.engine.url
        with psycopg.connect(host=u.host, port=u.port, user=u.username, dbname=u.database) as other, \
                pytest.raises(psycopg.errors.LockNotAvailable):
            other.execute(locked_read.replace(":t", "%(t)s") + " NOWAIT", params)
        with pytest.raises(TransientTargetError, match=rf"table {spec.table_name}, step merge_ods: LockNotAvailable"), \
                target.begin(table=spec.table_name, step="merge_ods") as conn3:
            conn3.fetchone(locked_read + " NOWAIT", params)
        # a plain read does not wait
        started = time.monotonic()
        assert staging_state(target, spec.table_name) == StagingState("b1", "full", 3)
        assert time.monotonic() - started < 0.3
        # a second merge waits for this transaction to end
        thread = threading.Thread(target=second_merge)
        thread.start()
        time.sleep(0.5)
        assert got_row == [] and thread.is_alive()
        committing = time.monotonic()  # the lock goes with the commit, at the end of this block
    thread.join(10)
    assert len(got_row) == 1 and got_row[0] >= committing


def test_driver_errors_become_target_errors_transient_or_not(target, spec):
    d = target.dialect
    with target.begin() as conn:
        target.ensure_table(conn, "ods", spec.sql_name, d.ods_columns(spec), spec.primary_key)
    insert = (f"INSERT INTO {d.qualified('ods', spec.sql_name)} (id, hashdiff, load_ts) "
              "VALUES (1, 'h', LOCALTIMESTAMP)")
    with target.begin() as conn:
        conn.execute(insert)
    with pytest.raises(TargetError) as err, target.begin(table=spec.table_name, step="merge_ods") as conn:
        conn.execute(insert)
    assert not isinstance(err.value, TransientTargetError) and not err.value.transient
    msg = str(err.value)
    assert msg.startswith(f"table {spec.table_name}, step merge_ods: UniqueViolation: duplicate key value")
    assert f'in statement: INSERT INTO "ods"."{spec.sql_name}"' in msg
