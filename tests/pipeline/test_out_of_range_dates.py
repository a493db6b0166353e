"""OutOfRangeDates (issue 14): dates and timestamps outside the target's range (0001-01-01..9999-12-31).

null (default): the values are loaded as NULL, and each column is reported with its count and first value in the run
log's extract row (etl.ETL_Log) and the run summary.  refuse: the extract fails naming the table, the column, the
first value (as text: Python cannot hold year 0 or 12000), the range and the fix.

Stand-ins: the SQLite ODBC driver hands '12000-01-01' and '0000-12-31' over as they are (Arrow holds them), through
the real ``cbm-etl`` command; psqlODBC hands a BC timestamp over as year -44 (a BC *date* arrives as the same date AD,
in range: nothing can tell, see docs/OPERATIONS.md).
"""

from __future__ import annotations

import datetime as dt
import pickle
from pathlib import Path

import pyarrow as pa
import pytest
from conftest import PgSource, configure
from standin import StandIn, sqlite_odbc_standin

from cbm_luigi.cli import main
from cbm_luigi.destinations import open_target
from cbm_luigi.model.specs import ColumnSpec, TableSpec
from cbm_luigi.model.types import DATE, INTEGER
from cbm_luigi.pipeline import transform
from cbm_luigi.pipeline.extract import Manifest, cleaning_warning
from cbm_luigi.tasks.context import clear_caches, settings

MIN, MAX = dt.date(1, 1, 1), dt.date(9999, 12, 31)
EPOCH = dt.date(1970, 1, 1)
DAY_12000 = 3663382  # 12000-01-01, days since 1970-01-01 (as the SQLite ODBC driver delivers it)
DAY_0 = -719163  # 0000-12-31


def dates(days: list[int | None]) -> pa.Array:
    return pa.array(days, pa.int32()).view(pa.date32())


def test_null_nulls_them_and_keeps_the_first_value_as_text() -> None:
    ts = pa.array([None, -63549324000000000, 0, None], pa.int64()).view(pa.timestamp("us"))
    rb = pa.RecordBatch.from_pydict({"d": dates([(dt.date(2024, 1, 1) - EPOCH).days, DAY_12000, DAY_0, None]),
                                     "ts": ts})
    out, stats = transform.clean_batch(rb, min_date=MIN, max_date=MAX)
    assert out.column("d").to_pylist() == [dt.date(2024, 1, 1), None, None, None]
    assert out.column("ts").to_pylist() == [None, None, dt.datetime(1970, 1, 1), None]
    assert stats.nulled_out_of_range == {"d": 2, "ts": 1}
    assert stats.first_out_of_range == {"d": "12000-01-01", "ts": "-0044-03-15 10:00:00"}


def test_the_first_value_of_the_first_batch_is_kept() -> None:
    stats = transform.CleaningStats(nulled_out_of_range={"d": 1}, first_out_of_range={"d": "12000-01-01"})
    stats.merge(transform.CleaningStats(nulled_out_of_range={"d": 2}, first_out_of_range={"d": "0000-12-31"}))
    assert stats.as_dict()["nulled_out_of_range"] == {"d": 3}
    assert stats.as_dict()["first_out_of_range"] == {"d": "12000-01-01"}


def test_refuse_raises_naming_the_column_and_the_first_value() -> None:
    rb = pa.RecordBatch.from_pydict({"d": dates([0, DAY_0, DAY_12000])})
    with pytest.raises(transform.DateOutOfRange) as caught:
        transform.clean_batch(rb, min_date=MIN, max_date=MAX, refuse_out_of_range=True)
    assert (caught.value.column, caught.value.first, caught.value.count) == ("d", "0000-12-31", 2)
    # it crosses the isolated extract's pipe intact
    again = pickle.loads(pickle.dumps(caught.value))
    assert (again.column, again.first, again.count, again.max_date) == ("d", "0000-12-31", 2, MAX)


def test_the_warning_names_each_column_its_count_and_first_value() -> None:
    spec = TableSpec("commande", "commande", "ods.commande", ("id",), False, None, "datetime",
                     columns=(ColumnSpec("id", "id", INTEGER), ColumnSpec("dat-liv", "dat_liv", DATE)))
    manifest = Manifest("commande", "b1", "full", "2026-01-01T00:00:00", "full", None, 3, [], [], [], "r", 0, 0,
                        cleaning={"nulled_out_of_range": {"dat_liv": 2}, "removed_nul_chars": {},
                                  "first_out_of_range": {"dat_liv": "12000-01-01"}})
    assert cleaning_warning(spec, manifest, MIN, MAX) == (
        "WARNING: table commande: dates outside the target's range 0001-01-01..9999-12-31 loaded as NULL: dat-liv "
        "(2 value(s), the first 12000-01-01) (correct them in the source, or OutOfRangeDates = 'refuse' to fail "
        "instead)")
    manifest.cleaning = {"nulled_out_of_range": {}, "removed_nul_chars": {"dat_liv": 1}}
    assert cleaning_warning(spec, manifest, MIN, MAX) is None


@pytest.fixture
def standin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StandIn:
    site = sqlite_odbc_standin(tmp_path, monkeypatch)
    site.source_sql('CREATE TABLE commande (id INTEGER PRIMARY KEY, "dat-liv" DATE, "dat-mod" TIMESTAMP)',
                    insert="INSERT INTO commande VALUES (?, ?, ?)",
                    rows=[(1, "12000-01-01", "2024-01-01 10:00:00"), (2, "0000-12-31", "12000-01-01 00:00:00"),
                          (3, "2024-05-01", "2024-01-01 10:00:00"), (4, None, None)])
    return site


@pytest.mark.odbc
def test_null_then_refuse_through_cbm_etl(standin: StandIn) -> None:
    for argv in (["init-db"], ["sync-columns", "commande"], ["add-table", "commande", "--pk", "id"]):
        done = standin.cbm(*argv)
        assert done.returncode == 0, done.stdout + done.stderr
    loaded = standin.cbm("run", "commande", "--mode", "full", "--batch", "b1")
    out = loaded.stdout + loaded.stderr
    assert loaded.returncode == 0, out
    assert standin.fetch("SELECT id, dat_liv, dat_mod FROM ods.commande ORDER BY id") == [
        (1, None, dt.datetime(2024, 1, 1, 10)), (2, None, None), (3, dt.date(2024, 5, 1), dt.datetime(2024, 1, 1, 10)),
        (4, None, None)]
    warning = ("WARNING: table commande: dates outside the target's range 0001-01-01..9999-12-31 loaded as NULL: "
               "dat-liv (2 value(s), the first 12000-01-01), dat-mod (1 value(s), the first 12000-01-01 00:00:00) "
               "(correct them in the source, or OutOfRangeDates = 'refuse' to fail instead)")
    assert standin.extract_log("commande", "b1") == [warning]  # the run log's extract row
    assert warning in out  # the run summary's detail column

    done = standin.cbm("add-table", "commande", "--pk", "id", "--out-of-range-dates", "refuse")
    assert done.returncode == 0, done.stdout + done.stderr
    before = standin.fetch("SELECT * FROM ods.commande ORDER BY id")
    refused = standin.cbm("run", "commande", "--mode", "full", "--batch", "b2")
    out = refused.stdout + refused.stderr
    assert refused.returncode == 1, out
    for said in ("table commande: column dat-liv holds dates outside the target's range 0001-01-01..9999-12-31",
                 "the first 12000-01-01", "OutOfRangeDates is 'refuse', so nothing is loaded",
                 "correct the value in the source", "OutOfRangeDates = 'null'",
                 "cbm-etl add-table commande --pk id --out-of-range-dates null"):
        assert said in out, out
    assert standin.fetch("SELECT * FROM ods.commande ORDER BY id") == before
    assert standin.fetch("SELECT COUNT(*) FROM etl.\"ETL_Markers\" WHERE \"Batch\" = 'b2'") == [(0,)]


@pytest.mark.postgres
@pytest.mark.odbc
def test_a_bc_timestamp_read_over_psqlodbc_is_nulled_and_reported(
        pg_source: PgSource, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    pg_source.execute(f'CREATE TABLE "{pg_source.schema}".evenement (id integer PRIMARY KEY, "dat-evt" timestamp)')
    pg_source.execute(f'INSERT INTO "{pg_source.schema}".evenement VALUES (1, \'0044-03-15 10:00:00 BC\'), '
                      "(2, '2024-01-01 08:00:00')")
    configure(monkeypatch, source=pg_source.odbc, flavor="postgresql", schema=pg_source.schema,
              target=f"duckdb:///{tmp_path / 'cbm_ods.duckdb'}")
    monkeypatch.setenv("CBM_RETRY_DELAY", "0")
    for argv in (["init-db"], ["sync-columns", "evenement"], ["add-table", "evenement", "--pk", "id"]):
        assert main(argv) == 0
    clear_caches()
    capsys.readouterr()
    assert main(["run", "evenement", "--mode", "full", "--batch", "b1"]) == 0
    assert "dat-evt (1 value(s), the first -0044-03-15 10:00:00)" in capsys.readouterr().out
    clear_caches()
    rows = open_target(settings().target).fetchall("SELECT id, dat_evt FROM ods.evenement ORDER BY id")
    assert [tuple(r) for r in rows] == [(1, None), (2, dt.datetime(2024, 1, 1, 8))]
    assert main(["add-table", "evenement", "--pk", "id", "--out-of-range-dates", "refuse"]) == 0
    clear_caches()
    assert main(["run", "evenement", "--mode", "full", "--batch", "b2"]) == 1
    out = capsys.readouterr().out
    assert "table evenement: column dat-evt holds dates outside the target's range" in out, out
    assert "the first -0044-03-15 10:00:00" in out
