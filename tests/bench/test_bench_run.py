"""The benchmark (bench/run.py, ``cbm-etl bench``) at a tiny size: its figures are produced, and the loads it measures
are correct (checked here again, independently of the benchmark's own checks).  Then the performance paths it led
to keep the results: staging while extracting (PostgreSQL), its fallback, and DuckDB's row replacement.  No timed
assertion."""

from __future__ import annotations

import json
import re
import sys
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from conftest import pg_params
from helpers import norm

from cbm_luigi.cli import main as cbm_etl
from cbm_luigi.model.naming import sql_safe

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.measure import compare_ods  # noqa: E402
from bench.source import KEY, BenchSource, bench_columns  # noqa: E402

ROWS, COLS, SCALE = 300, 22, 2  # 22 columns: every kind, float and bigint included
SMALL, SMALL_ROWS, SMALL_COLS = 2, 40, 8  # the night of small tables, tiny


def test_columns_are_progress_like() -> None:
    cols = bench_columns(300)
    assert len(cols) == 300 and cols[0].name == KEY
    kinds = {c.kind for c in cols}
    assert {"v", "i", "d", "dt", "l", "ts", "b", "f"} <= kinds
    names = [c.name for c in cols]
    assert len(set(names)) == 300
    assert sum("-" in n for n in names) > 250
    assert any(ch in n for n in names for ch in "#$%&") and "order" in names


def test_compare_ods_finds_differences() -> None:
    src = pa.table({KEY: [1, 2, 3], "a": ["x", None, "z"], "b": [1.5, 2.5, None]})
    same = pa.table({KEY: [3, 1, 2], "a": ["z", "x", None], "b": [None, 1.5, 2.5]})
    assert compare_ods(src, same, KEY) == []
    changed = pa.table({KEY: [1, 2, 3], "a": ["x", "y", "z"], "b": [1.5, 2.5, None]})
    assert compare_ods(src, changed, KEY) == ["a: 1 value(s) differ"]
    assert compare_ods(src, src.slice(0, 2), KEY) == ["2 rows in the ODS, 3 in the source"]


@pytest.mark.postgres
@pytest.mark.odbc
def test_bench_tiny_run(pg_conninfo: str, odbc_driver: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
                        ) -> None:
    import psycopg

    p = pg_params(pg_conninfo)
    server = " ".join(f"{k}={v}" for k, v in p.items() if k != "dbname")
    source_db = f"cbm_bench_test_{uuid.uuid4().hex[:8]}"
    out = tmp_path / "figures.json"
    ods_dbs: list[str] = []
    try:
        code = cbm_etl(["bench", "--rows", str(ROWS), "--cols", str(COLS), "--scale", str(SCALE),
                        "--pg", server, "--source-db", source_db, "--odbc-driver", odbc_driver,
                        "--small-tables", str(SMALL), "--small-rows", str(SMALL_ROWS), "--small-cols", str(SMALL_COLS),
                        "--partitions", "2", "--throttle-mbps", "8",
                        "--workdir", str(tmp_path / "work"), "--keep", "--json", str(out)])
        printed = capsys.readouterr().out
        figures = json.loads(out.read_text(encoding="utf-8"))
        ods_dbs += [t["url"].rsplit("/", 1)[1] for t in figures["targets"].values() if t["url"].startswith("postgres")]
        ods_dbs += [t["url"].rsplit("/", 1)[1] for t in (figures["small_tables"] or {"targets": {}})["targets"].values()
                    if t["url"].startswith("postgres")]
        assert code == 0, printed
        # the figures
        assert "raw ODBC read into Arrow" in printed and "full load end to end / raw read" in printed
        n_modules = len(list((Path(__file__).resolve().parents[2] / "cbm_luigi").rglob("*.py")))
        assert f"cbm_luigi bytecode cached for {n_modules} of {n_modules} modules" in printed
        assert "incremental + key scan / full" in printed and "key scan s" in printed
        assert figures["raw_read"]["rows"] == ROWS and figures["raw_read"]["seconds"] > 0
        assert figures["raw_read_scaled"]["rows"] == ROWS * SCALE
        # the machine's busy CPU (every process): the read's cores, and the floor the cores set for a full load
        read_cpu = figures["raw_read"]["machine_cpu"]
        assert read_cpu > 0 and re.search(r"machine busy \d+\.\d cpu-s: \d+\.\d of \d+ cores", printed), printed
        for kind in ("postgresql", "duckdb"):
            assert re.search(rf"cpu bound {kind}: the full load kept the machine busy \d+\.\d cpu-s; on \d+ cores "
                             r"no run of it takes less than \d+\.\d\d s = \d+\.\d\dx the raw read", printed), printed
        assert set(figures["targets"]) == {"postgresql", "duckdb"}
        for kind, t in figures["targets"].items():
            runs = {r["run"]: r for r in t["runs"]}
            assert t["checks"] == ["ok"], kind
            full = runs["full load"]
            assert full["inserted"] == ROWS and full["returncode"] == 0
            assert {"extract", "transform", "load_staging", "merge_ods"} <= set(full["steps"])
            assert full["peak_rss_mb"] > 0 and full["seconds"] > 0 and full["machine_cpu_seconds"] > 0
            assert runs["same batch again"]["log_rows"] == 0  # nothing ran
            assert runs["incremental, no change"]["rows"] == 0
            changed = runs["incremental, changed rows"]
            assert changed["updated"] == t["changed_rows"] == ROWS // 100 and changed["inserted"] == 0
            assert runs["full load, scaled"]["inserted"] == ROWS * SCALE
            scanned = runs["incremental + key scan"]  # DeleteScan: every key read, nothing changed or deleted
            assert scanned["returncode"] == 0 and scanned["rows"] == 0 and scanned["steps"]["key_scan"] >= 0
            for ratio in t["ratios"].values():
                assert ratio is not None and ratio > 0
        _check_new_lines(printed, figures)
        # partitioned full loads (bench/partitioned.py): direct and throttled source, 2 key ranges, each checked by
        # its inserted count
        part = figures["partitioned"]
        assert part["checks"] == [] and "partitioned full loads" in printed
        assert [s["source"] for s in part["sources"]] == ["direct", "throttled 8 MiB/s per connection"]
        for s in part["sources"]:
            assert s["raw_seconds"] > 0 and [x["parts"] for x in s["loads"]] == [2]
            assert all(x["seconds"] > 0 and x["max_rss_mb"] > 0 for x in s["loads"])
        # the loads, checked independently: every ODS row equals its source row
        bench = BenchSource(server, source_db)
        src_cols = [c.name for c in bench_columns(COLS)]
        ods_cols = [sql_safe(c) for c in src_cols]
        source = _rows(bench.conninfo, f'SELECT {_cols(src_cols)} FROM "PUB"."bench-wide-{ROWS}x{COLS}"')
        assert len(source) == ROWS
        for kind, t in figures["targets"].items():
            # cbm_ods.duckdb: ods.<table> is the schema ods in DuckDB too (a file named ods.duckdb needed ods.ods)
            sql = f'SELECT {_cols(ods_cols)} FROM ods."bench_wide_{ROWS}x{COLS}"'
            if kind == "duckdb":
                import duckdb

                con = duckdb.connect(str(tmp_path / "work" / "duckdb" / "cbm_ods.duckdb"), read_only=True)
                try:
                    ods = {tuple(norm(v) for v in r) for r in con.execute(sql).fetchall()}
                finally:
                    con.close()
            else:
                dbname = t["url"].rsplit("/", 1)[1]
                ods = _rows(" ".join([server, f"dbname={dbname}"]), sql)
            # the targets run one after the other: rows changed for a later target are newer than this ODS
            newest = max(datetime.fromisoformat(r[1]) for r in ods)
            expected = {r for r in source if datetime.fromisoformat(r[1]) <= newest}
            assert len(expected) >= ROWS - ROWS // 100
            assert {r for r in ods if r[0] in {e[0] for e in expected}} == expected, kind
    finally:
        with psycopg.connect(pg_conninfo, autocommit=True) as c:
            for name in [source_db, *ods_dbs]:
                c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _check_new_lines(printed: str, figures: dict[str, Any]) -> None:
    """The no-change run's overhead above the SELECT of its window, and the night of small tables in one process."""
    number = r"\d+\.\d\d"
    for kind, t in figures["targets"].items():
        o = t["nochange_overhead"]
        assert o["run_seconds"] > 0 and o["source_query_seconds"] > 0 and o["target_seconds"] == 1.0, kind
        assert abs(o["overhead_seconds"] - (o["run_seconds"] - o["source_query_seconds"])) < 0.002, kind
        assert re.search(rf"no-change overhead {kind} = run seconds - source query seconds = {number} - {number} = "
                         rf"-?{number} s \(target <= 1\.0 s\)", printed), printed
    small = figures["small_tables"]
    assert small["tables"] == SMALL and small["rows"] == SMALL_ROWS and small["cols"] == SMALL_COLS
    assert f"{SMALL} small tables ({SMALL_ROWS:,} rows x {SMALL_COLS} columns each), one `cbm-etl run --all`" in printed
    assert set(small["targets"]) == {"postgresql", "duckdb"}
    for kind, runs in small["targets"].items():
        assert set(runs) == {"url", "full", "nochange"}, kind
        for key, r in ((k, runs[k]) for k in ("full", "nochange")):
            assert r["returncode"] == 0 and r["tables"] == SMALL, (kind, key)
            assert r["seconds"] > 0 and r["seconds_per_table"] == pytest.approx(r["seconds"] / SMALL, abs=0.001)
            assert r["cpu_seconds"] > 0 and r["peak_rss_mb"] > 0 and float(r["load_average"]) >= 0
        assert runs["full"]["inserted"] == SMALL * SMALL_ROWS and runs["nochange"]["rows"] == 0, kind
        assert re.search(rf"{kind} +full load +{SMALL} +{SMALL * SMALL_ROWS} +{number} +\d+\.\d{{3}}", printed), printed
        assert re.search(rf"{kind} +incremental, no change +{SMALL} +0 +{number} +\d+\.\d{{3}}", printed), printed


def _cols(names: list[str]) -> str:
    return ", ".join('"' + n + '"' for n in names)


def _rows(conninfo: str, sql: str) -> set[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(conninfo) as c:
        return {tuple(norm(v) for v in r) for r in c.execute(sql).fetchall()}


# -- the performance paths keep the results ---------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.odbc
def test_postgresql_staging_is_loaded_while_extracting(pg_source: Any, pg_database: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import build, configure
    from helpers import log_rows, ods_rows, pg_source_rows, register_demo_tables

    from cbm_luigi.destinations import open_target
    from cbm_luigi.store.staging_state import staging_state
    from cbm_luigi.tasks.table import ExtractParquet
    from cbm_luigi.tasks.wrappers import LoadTable

    configure(monkeypatch, source=pg_source.odbc, flavor="postgresql", schema=pg_source.schema, target=pg_database)
    register_demo_tables(["produit"])
    assert build(ExtractParquet(table="produit", mode="full", batch_id="b1")).scheduling_succeeded
    target = open_target(pg_database)
    state = staging_state(target, "produit")
    assert state is not None and state.batch == "b1" and state.rows > 0  # staged by the extract step itself
    assert target.fetchone('SELECT COUNT(*) FROM "stg"."produit"') == (state.rows,)
    staged = [r for r in log_rows() if r["StepName"] == "load_staging"]
    assert len(staged) == 1 and staged[0]["RowsProcessed"] == state.rows
    assert build(LoadTable(table="produit", mode="full", batch_id="b1")).scheduling_succeeded
    assert len([r for r in log_rows() if r["StepName"] == "load_staging"]) == 1  # the staging step had nothing to do
    assert ods_rows("produit") == pg_source_rows(pg_source, "produit")

    # switched off: the extract leaves staging alone, the staging step loads it
    monkeypatch.setenv("CBM_STAGE_WHILE_EXTRACTING", "0")
    from cbm_luigi.tasks.context import clear_caches

    clear_caches()
    assert build(ExtractParquet(table="produit", mode="full", batch_id="b2")).scheduling_succeeded
    assert staging_state(open_target(pg_database), "produit").batch == "b1"  # type: ignore[union-attr]
    assert build(LoadTable(table="produit", mode="full", batch_id="b2")).scheduling_succeeded
    assert staging_state(open_target(pg_database), "produit").batch == "b2"  # type: ignore[union-attr]


@pytest.mark.postgres
@pytest.mark.odbc
def test_staging_error_while_extracting_is_left_to_the_staging_step(pg_source: Any, pg_database: str,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A COPY that fails during the extract rolls back; the extract succeeds; the staging step reports the error."""
    from conftest import build, configure
    from helpers import log_rows, register_demo_tables

    from cbm_luigi.destinations import open_target
    from cbm_luigi.store.staging_state import staging_state
    from cbm_luigi.tasks.table import ExtractParquet
    from cbm_luigi.tasks.wrappers import LoadTable

    configure(monkeypatch, source=pg_source.odbc, flavor="postgresql", schema=pg_source.schema, target=pg_database)
    store = register_demo_tables(["produit"])
    spec = store.table_spec("produit")
    target = open_target(pg_database)
    with target.begin() as conn:  # staging that refuses every row
        target.ensure_table(conn, "stg", spec.sql_name, target.dialect.staging_columns(spec))
        conn.execute(f'ALTER TABLE "stg"."{spec.sql_name}" ADD CONSTRAINT no_rows CHECK (false) NOT VALID')
    assert build(ExtractParquet(table="produit", mode="full", batch_id="b1")).scheduling_succeeded
    assert staging_state(target, "produit") is None
    result = build(LoadTable(table="produit", mode="full", batch_id="b1"))
    assert result.status.name != "SUCCESS"
    failed = [r for r in log_rows() if r["Status"] == "failed"]
    assert failed and failed[-1]["StepName"] == "load_staging" and "no_rows" in failed[-1]["ErrorMessage"]


@pytest.mark.postgres
@pytest.mark.odbc
def test_duckdb_merge_replaces_changed_rows_and_keeps_extra_columns(pg_source: Any, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """DuckDB replaces changed rows (DELETE + INSERT); with a column a MERGE would not write, it MERGEs."""
    from conftest import build, configure
    from helpers import log_rows, ods_rows, pg_source_rows, register_demo_tables

    from cbm_luigi.demo import data as demo_data
    from cbm_luigi.destinations import open_target
    from cbm_luigi.tasks.wrappers import LoadTable

    configure(monkeypatch, source=pg_source.odbc, flavor="postgresql", schema=pg_source.schema,
              target=f"duckdb:///{tmp_path / 'ods.duckdb'}")
    register_demo_tables(["produit", "client"])
    assert build(LoadTable(table="produit", mode="full", batch_id="b1"),
                 LoadTable(table="client", mode="full", batch_id="b1")).scheduling_succeeded
    target = open_target(f"duckdb:///{tmp_path / 'ods.duckdb'}")
    ods = target.dialect.qualified("ods", "client")
    with target.begin() as conn:
        conn.execute(f"ALTER TABLE {ods} ADD COLUMN note VARCHAR")
        conn.execute(f"UPDATE {ods} SET note = 'kept'")
    changes = demo_data.apply_postgres_changes(pg_source.conninfo, schema=pg_source.schema,
                                               change_ts=datetime.now().replace(microsecond=0))
    assert build(LoadTable(table="produit", mode="incremental", batch_id="b2"),
                 LoadTable(table="client", mode="incremental", batch_id="b2")).scheduling_succeeded
    merged = {r["TableName"]: r for r in log_rows() if r["Batch"] == "b2" and r["StepName"] == "merge_ods"}
    for table in ("produit", "client"):
        assert changes.tables[table].updated_keys, table  # the case under test: rows were updated
        assert merged[table]["RowsUpdated"] == len(changes.tables[table].updated_keys), table
        assert merged[table]["RowsInserted"] == len(changes.tables[table].inserted_keys), table
        assert ods_rows(table) == pg_source_rows(pg_source, table), table
    notes = target.fetchall(f"SELECT note, COUNT(*) FROM {ods} GROUP BY note")
    inserted = len(changes.tables["client"].inserted_keys)
    assert dict(notes) == ({"kept": len(ods_rows("client")) - inserted, None: inserted} if inserted
                           else {"kept": len(ods_rows("client"))})
