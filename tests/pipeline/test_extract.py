"""The extract step (cbm_luigi/pipeline/extract.py): source rows -> snappy parquet files + ``_manifest.json``.

A real SQLite source (stdlib path, as the demo uses it).  The extract is written into a temporary sibling
directory and renamed when complete: a failure mid-way leaves neither a manifest nor a half extract.  The manifest
tells what the extract holds; the parquet schema depends on the table spec only, never on the values read.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from dataclasses import asdict
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cbm_luigi.errors import SourceError
from cbm_luigi.model.specs import ColumnSpec, TableSpec
from cbm_luigi.pipeline.extract import (
    MANIFEST,
    Manifest,
    extract_dir,
    extract_to_parquet,
    source_schema,
    table_cache_dir,
)
from cbm_luigi.pipeline.sources import SqliteSource
from cbm_luigi.pipeline.sources.flavors import SqliteFlavor, Window

COLUMNS = (
    ColumnSpec("cod-cli", "cod_cli", "integer", position=1),
    ColumnSpec("nom", "nom", "string", width=30, position=2),
    ColumnSpec("solde", "solde", "decimal", precision=12, scale=2, position=3),
    ColumnSpec("secret", "secret", "string", position=4, is_excluded=True),
    ColumnSpec("dat-mod", "dat_mod", "timestamp", position=5),
)
SPEC = TableSpec("client-x", "client_x", "ods.client_x", ("cod_cli",), True, "dat_mod", "datetime", columns=COLUMNS)
TECHNICAL = [pa.field("hashdiff", pa.string()), pa.field("ts_source", pa.timestamp("us")),
             pa.field("load_ts", pa.timestamp("us"))]


def row(i: Any, nom: str | None = "x", solde: str | None = "12.50") -> tuple[Any, ...]:
    return (i, nom, solde, "do-not-extract", f"2026-01-{int(i) if isinstance(i, int) else 1:02d} 08:00:00")


class Erp:
    """The SQLite source file with its ``client-x`` table (rewritten by :meth:`load`)."""

    def __init__(self, tmp_path: Path) -> None:
        self.db = tmp_path / "erp.sqlite"
        self.cache = tmp_path / "cache"

    def load(self, rows: list[tuple[Any, ...]]) -> None:
        with contextlib.closing(sqlite3.connect(self.db)) as con, con:
            con.execute('DROP TABLE IF EXISTS "client-x"')
            con.execute('CREATE TABLE "client-x" ("cod-cli" INTEGER, nom VARCHAR(30), solde DECIMAL(12,2), '
                        'secret VARCHAR(10), "dat-mod" TIMESTAMP)')
            con.executemany('INSERT INTO "client-x" VALUES (?, ?, ?, ?, ?)', rows)

    def out_dir(self, batch: str, mode: str = "full") -> Path:
        return extract_dir(self.cache, SPEC.table_name, batch, mode)

    def extract(self, batch: str, *, window: Window | None = None, mode: str = "full", **kw: Any) -> Manifest:
        source = SqliteSource(str(self.db), SqliteFlavor(), "PUB")
        try:
            return extract_to_parquet(SPEC, source, window=window or Window(None), out_dir=self.out_dir(batch, mode),
                                      batch=batch, mode=mode, run_id="run-42", min_date=date(1, 1, 1),
                                      max_date=date(9999, 12, 31), **{"batch_rows": 2, **kw})
        finally:
            source.close()

    def leftovers(self) -> list[str]:
        """What the table's cache folder holds besides complete extracts (temporary directories)."""
        folder = table_cache_dir(self.cache, SPEC.table_name)
        return sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) if folder.exists() else []


@pytest.fixture
def erp(tmp_path: Path) -> Erp:
    return Erp(tmp_path)


def test_an_extract_is_written_aside_and_renamed_when_complete(erp):
    erp.load([row(i) for i in range(1, 8)])
    out = erp.out_dir("b1")
    seen: list[tuple[bool, list[str]]] = []
    m = erp.extract("b1", progress=lambda rows, secs: seen.append((out.exists(), erp.leftovers())))
    assert len(seen) == 4  # one call per batch of 2 rows
    # while it was being written: no extract directory yet, one temporary sibling
    assert all(not exists for exists, _ in seen)
    assert all(len(tmp) == 1 and tmp[0].startswith(f".tmp-{out.name}-") for _, tmp in seen)
    # complete: renamed, manifest written, nothing left aside
    assert out.is_dir() and (out / MANIFEST).is_file()
    assert sorted(p.name for p in out.iterdir()) == sorted([MANIFEST, *m.files])
    assert erp.leftovers() == []


def test_a_failure_mid_way_leaves_no_manifest_and_no_half_extract(erp):
    # SQLite keeps any value: row 5 cannot be read as the INTEGER the catalog declares (the 3rd batch of 2)
    erp.load([row(1), row(2), row(3), row(4), row("abc"), row(6)])
    progressed: list[int] = []
    # the reader names the column and the fix (tests/pipeline/sources/test_source_errors.py), the driver's text kept
    with pytest.raises(SourceError, match="column cod-cli no longer holds integer values.*'abc'"):
        erp.extract("b1", progress=lambda rows, secs: progressed.append(rows))
    assert len(progressed) == 2  # two batches were read and handed over before the failure
    assert not erp.out_dir("b1").exists()
    assert erp.leftovers() == []


def test_a_failure_in_the_writing_thread_leaves_nothing_either(erp):
    erp.load([row(i) for i in range(1, 8)])

    class FailingSink:
        """Staging fed while extracting, failing on the 2nd batch (a lost connection, a full disk)."""

        def __init__(self) -> None:
            self.written = 0

        def encode(self, batch: pa.RecordBatch) -> int:
            return batch.num_rows

        def write(self, encoded: int) -> None:
            self.written += 1
            if self.written == 2:
                raise OSError("No space left on device")

    with pytest.raises(OSError, match="No space left"):
        erp.extract("b1", sink=FailingSink())
    assert not erp.out_dir("b1").exists()
    assert erp.leftovers() == []


def test_a_leftover_without_manifest_is_replaced(erp):
    erp.load([row(1), row(2), row(3)])
    out = erp.out_dir("b1")
    out.mkdir(parents=True)
    (out / "part-00007.parquet").write_bytes(b"half written by a crashed run")
    m = erp.extract("b1")
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, "part-00000.parquet"]
    assert pq.read_table(m.paths(out)[0]).num_rows == 3


def test_manifest_fields(erp):
    erp.load([row(i) for i in range(1, 6)])
    before = datetime.now()
    step_started = before - timedelta(seconds=3)
    m = erp.extract("2026-01-10T06:00", step_started=step_started)
    after = datetime.now()
    out = erp.out_dir("2026-01-10T06:00")
    assert out.name == "2026-01-10T06-00__full"  # no ':' in a folder name
    assert (m.table, m.batch, m.mode, m.run_id, m.rows) == ("client-x", "2026-01-10T06:00", "full", "run-42", 5)
    assert (m.window, m.window_since) == ("full", None)
    # SQL names, the excluded column left out; every loaded column is hashed
    assert m.columns == ["cod_cli", "nom", "solde", "dat_mod"]
    assert m.hash_columns == m.columns
    assert m.files == ["part-00000.parquet"]
    # the source's clock, read before the SELECT (SQLite's local time in ms)
    assert before - timedelta(milliseconds=1) <= m.source_clock_ts <= after
    assert m.started == step_started.isoformat(timespec="microseconds")
    assert m.extract_seconds >= 0 and m.transform_seconds >= 0
    assert m.cleaning == {"nulled_out_of_range": {}, "removed_nul_chars": {}}
    # written as JSON and read back as it was returned
    assert json.loads((out / MANIFEST).read_text(encoding="utf-8")) == asdict(m)
    assert Manifest.read(out) == m
    assert sum(pq.read_metadata(p).num_rows for p in m.paths(out)) == m.rows

    since = datetime(2026, 1, 3)
    inc = erp.extract("b2", mode="incremental", window=Window(since, reason="incremental since 2026-01-03"))
    assert (inc.mode, inc.rows) == ("incremental", 3)  # rows modified on the 3rd, 4th and 5th
    assert (inc.window, inc.window_since) == ("incremental since 2026-01-03", "2026-01-03T00:00:00")
    assert erp.out_dir("b2", "incremental").name == "b2__incremental"


def test_parquet_files_are_snappy_compressed(erp):
    erp.load([row(i) for i in range(1, 6)])
    m = erp.extract("b1", rows_per_file=2)
    paths = m.paths(erp.out_dir("b1"))
    assert m.files == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert [pq.read_metadata(p).num_rows for p in paths] == [2, 2, 1]
    for p in paths:
        meta = pq.read_metadata(p)
        chunks = [meta.row_group(g).column(c) for g in range(meta.num_row_groups) for c in range(meta.num_columns)]
        assert chunks and {c.compression for c in chunks} == {"SNAPPY"}, p
        assert not any(c.has_dictionary_page for c in chunks), p  # no dictionary encoding (docs/PERFORMANCE.md)


def test_the_parquet_schema_is_stable_across_batches(erp):
    expected = pa.schema([*source_schema(SPEC), *TECHNICAL])
    assert [f.type for f in source_schema(SPEC)] == [pa.int32(), pa.string(), pa.decimal128(12, 2),
                                                     pa.timestamp("us")]
    # b1: a first batch with nothing but NULLs where it can; SQLite hands decimals back as INTEGER or REAL
    erp.load([(1, None, None, None, None), (2, None, None, None, None), row(3, "a", "12.00"), row(4, "b", "7.25"),
              row(5, "c", "-0.5")])
    m1 = erp.extract("b1", rows_per_file=2)
    # b2: no rows at all (an incremental window after the last change): one empty file, same schema
    m2 = erp.extract("b2", mode="incremental", window=Window(datetime(2030, 1, 1), reason="incremental"))
    assert m2.rows == 0 and m2.files == ["part-00000.parquet"]
    # b3: other values
    erp.load([row(7, "ü" * 30, "9999999999.99")])
    m3 = erp.extract("b3")
    schemas = [pq.read_schema(p) for m, b, mode in ((m1, "b1", "full"), (m2, "b2", "incremental"),
                                                    (m3, "b3", "full"))
               for p in m.paths(erp.out_dir(b, mode))]
    assert len(schemas) == 5
    for s in schemas:
        assert s.remove_metadata().equals(expected), s
    values = pq.read_table(m1.paths(erp.out_dir("b1"))).column("solde").to_pylist()
    assert values == [None, None, Decimal("12.00"), Decimal("7.25"), Decimal("-0.50")]
