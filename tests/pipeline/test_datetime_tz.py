"""DATETIME-TZ kept with its offset: the instant in the column, the source's offset in ``<col>_tz_offset``."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pyarrow as pa
import pytest
from conftest import configure
from openedge_sources import cbm, ods, ods_column_names, sqlite_exec, sqlite_source

from cbm_luigi.cli import main
from cbm_luigi.errors import SourceError
from cbm_luigi.model.specs import ColumnSpec, TableSpec
from cbm_luigi.model.types import INTEGER, TIMESTAMP, TIMESTAMP_TZ
from cbm_luigi.pipeline import transform
from cbm_luigi.pipeline.openedge import datetime_tz_parts, reshape_batch
from cbm_luigi.pipeline.sources.flavors import FLAVORS, Window

pytestmark = [pytest.mark.postgres, pytest.mark.odbc]

TZ = ColumnSpec("dat-tz", "dat_tz", TIMESTAMP_TZ, "datetime-tz", position=2)
SPEC = TableSpec("rdv", "rdv", "ods.rdv", ("cod",), True, "dat_mod", "datetime", columns=(
    ColumnSpec("cod", "cod", INTEGER, position=1), TZ, ColumnSpec("dat_mod", "dat_mod", TIMESTAMP, position=3)))


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


# -- the parse (Arrow compute) -------------------------------------------------------------------------------


def test_every_offset_form_gives_the_instant_and_the_minutes() -> None:
    instant, offset = datetime_tz_parts(pa.array([
        "2026-03-01 10:00:00+02:00",  # SQLite stand-in, OpenEdge's text without fraction
        "2026-03-01 10:00:00.250-05:30", "2026-03-01T08:00:00Z", "2026-03-01 08:00:00+00",  # PostgreSQL's text
        " 2026-03-01 12:00+0400 ", None]), TZ, "rdv")
    assert instant.to_pylist() == [utc(2026, 3, 1, 8), utc(2026, 3, 1, 15, 30, 0, 250000), utc(2026, 3, 1, 8),
                                   utc(2026, 3, 1, 8), utc(2026, 3, 1, 8), None]
    assert offset.to_pylist() == [120, -330, 0, 0, 240, None]
    assert instant.type == pa.timestamp("us", tz="UTC") and offset.type == pa.int32()


@pytest.mark.parametrize("bad", ["2026-03-01 10:00:00", "01/03/2026 10:00 +02:00", "2026-13-01 10:00:00+02:00"])
def test_a_text_without_offset_or_no_timestamp_is_refused_naming_the_column(bad: str) -> None:
    with pytest.raises(SourceError, match=r"table rdv: column dat-tz: .*(not a DATETIME-TZ text|not a valid date)"):
        datetime_tz_parts(pa.array(["2026-03-01 10:00:00+02:00", bad]), TZ, "rdv")


def test_the_offset_column_follows_its_column_and_both_are_hashed() -> None:
    assert SPEC.business_columns == ("cod", "dat_tz", "dat_tz_tz_offset", "dat_mod")
    batch = reshape_batch(pa.RecordBatch.from_pydict({
        "cod": pa.array([1, 2], pa.int32()),
        "dat_tz": ["2026-03-01 10:00:00+02:00", "2026-03-01 09:00:00+01:00"],  # the same instant, two offsets
        "dat_mod": pa.array([datetime(2026, 3, 1)] * 2, pa.timestamp("us"))}), SPEC)
    rows = transform.row_strings(batch, SPEC.business_columns).to_pylist()
    assert rows == ["1:1|26:2026-03-01T08:00:00.000000|3:120|26:2026-03-01T00:00:00.000000",
                    "1:2|26:2026-03-01T08:00:00.000000|2:60|26:2026-03-01T00:00:00.000000"]


def test_progress_selects_the_column_as_its_text() -> None:
    sql, _ = FLAVORS["progress"]().select_sql(SPEC, "PUB", Window(None))
    assert 'CAST("dat-tz" AS VARCHAR(40)) AS "dat_tz"' in sql
    assert '"dat-tz" AS "dat_tz"' in FLAVORS["sqlite"]().select_sql(SPEC, "PUB", Window(None))[0].replace("`", '"')


# -- through the product -------------------------------------------------------------------------------------

DDL = '"cod" INTEGER NOT NULL PRIMARY KEY, "dat-tz" "DATETIME-TZ", "dat_mod" TIMESTAMP'  # declared type DATETIME-TZ
ROWS = [(1, "2026-03-01 10:00:00+02:00", "2026-03-01 10:00:00"),
        (2, "2026-03-01 10:00:00.250-05:30", "2026-03-01 10:00:00"),
        (3, None, "2026-03-01 10:00:00"),
        (4, "2026-03-01T08:00:00Z", "2026-03-01 10:00:00")]
COLS = ["cod", "dat_tz", "dat_tz_tz_offset"]


def loaded() -> list[tuple[int, datetime | None, int | None]]:
    return [(int(c), None if t is None else t.astimezone(UTC), None if o is None else int(o))
            for c, t, o in ods("rdv", COLS, "cod")]


def test_the_offset_survives_into_the_ods(tmp_path, target_url, monkeypatch) -> None:
    source = sqlite_source(tmp_path / "erp.sqlite", DDL, ROWS, table="rdv")
    configure(monkeypatch, source=source, flavor="sqlite", schema="PUB", target=target_url)
    assert main(["init-db"]) == 0 and main(["sync-columns", "rdv"]) == 0
    assert main(["add-table", "rdv", "--pk", "cod", "--date-modif-col", "dat_mod"]) == 0
    done = cbm("run", "rdv", "--mode", "full", "--batch-id", "b1", cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert [n for n in ods_column_names("rdv") if n.startswith("dat_tz")] == ["dat_tz", "dat_tz_tz_offset"]
    assert loaded() == [(1, utc(2026, 3, 1, 8), 120), (2, utc(2026, 3, 1, 15, 30, 0, 250000), -330),
                        (3, None, None), (4, utc(2026, 3, 1, 8), 0)]
    # the same instant written from another zone is a change (the offset is part of the value)
    before = dict(ods("rdv", ["cod", "hashdiff"], "cod"))
    sqlite_exec(source, 'UPDATE "rdv" SET "dat-tz" = ? WHERE "cod" = 1', ("2026-03-01 09:00:00+01:00",))
    done = cbm("run", "rdv", "--mode", "full", "--batch-id", "b2", cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert loaded()[0] == (1, utc(2026, 3, 1, 8), 60)
    after = dict(ods("rdv", ["cod", "hashdiff"], "cod"))
    assert [k for k in before if before[k] != after[k]] == [1]
    checked = cbm("validate", "--tables", "rdv", "--no-report", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert re.search(r"^rdv\s+match\s+4\s+4\s", checked.stdout, re.M), checked.stdout


def test_a_value_without_its_offset_fails_the_table_naming_the_column(tmp_path, monkeypatch) -> None:
    source = sqlite_source(tmp_path / "erp.sqlite", DDL, [*ROWS, (5, "2026-03-01 10:00:00", "2026-03-01")],
                           table="rdv")
    configure(monkeypatch, source=source, flavor="sqlite", schema="PUB", target=f"duckdb:///{tmp_path / 'o.duckdb'}")
    assert main(["init-db"]) == 0 and main(["sync-columns", "rdv"]) == 0
    assert main(["add-table", "rdv", "--pk", "cod"]) == 0
    done = cbm("run", "rdv", "--mode", "full", "--batch-id", "b1", cwd=tmp_path)
    assert done.returncode == 1
    out = done.stdout + done.stderr
    assert "column dat-tz: '2026-03-01 10:00:00' is not a DATETIME-TZ text" in out
    assert "set its LogicalType in config.ETL_Columns" in out


@pytest.mark.parametrize("flavor", ["postgresql", "progress"])
def test_a_postgresql_timestamptz_keeps_the_sessions_offset(pg_source, target_url, monkeypatch, flavor) -> None:
    """PostgreSQL keeps the instant only: its text carries the session's offset (here Asia/Kolkata, +05:30, set
    by psqlODBC's ConnSettings), which is what the ODS keeps; read through the Progress flavour's CAST too."""
    t = f'"{pg_source.schema}"."rdv"'
    pg_source.execute(f'CREATE TABLE {t} ("cod" integer PRIMARY KEY, "dat-tz" timestamptz, "dat_mod" timestamp)')
    pg_source.execute(f"INSERT INTO {t} VALUES (1, '2026-03-01 10:00:00+02:00', '2026-03-01'), "
                      "(2, NULL, '2026-03-01'), (3, '2026-07-01 23:59:59.5-07:00', '2026-03-01')")
    odbc = pg_source.odbc + ";ConnSettings={SET TIME ZONE 'Asia/Kolkata'}"
    configure(monkeypatch, source=odbc, flavor=flavor, schema=pg_source.schema, target=target_url)
    assert main(["sync-columns", "rdv"]) == 0
    assert main(["add-table", "rdv", "--pk", "cod"]) == 0
    assert main(["run", "rdv", "--mode", "full", "--batch-id", "b1"]) == 0
    assert loaded() == [(1, utc(2026, 3, 1, 8), 330), (2, None, None), (3, utc(2026, 7, 2, 6, 59, 59, 500000), 330)]
