"""WidthPolicy (issue 14): a character value longer than its column's SQL width.

Progress's ABL does not enforce the SQL width (_Field._Width); its SQL engine then refuses the row ("Column <col> in
table <owner>.<table> has value exceeding its max length or precision", -210012).  Here:

* the driver's error said in the table's terms (unit test on the text: no Progress server runs here);
* the Progress SELECT with WidthPolicy=truncate (``SUBSTR(col, 1, width)``): pinned by
  tests/golden/progress/select_truncate_widths.sql and parsed here, and run for real against the PostgreSQL
  stand-in of the progress flavour;
* the per-batch check on the stand-in sources that hold longer values (SQLite over ODBC: refuse names the column,
  the longest length, the width and the fix; truncate cuts to the width in characters, counted and reported), through
  the real ``cbm-etl`` command.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pytest
import sqlglot
from conftest import PgSource, configure
from standin import StandIn, sqlite_odbc_standin

from cbm_luigi.cli import main
from cbm_luigi.destinations import open_target
from cbm_luigi.errors import SourceError
from cbm_luigi.model.specs import ColumnSpec, TableSpec
from cbm_luigi.model.types import INTEGER, STRING, TIMESTAMP
from cbm_luigi.pipeline import transform
from cbm_luigi.pipeline.extract import sql_widths
from cbm_luigi.pipeline.sources.errors import explain
from cbm_luigi.pipeline.sources.flavors import PostgresFlavor, ProgressFlavor, SqliteFlavor, Window
from cbm_luigi.tasks.context import clear_caches, settings

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "progress"
MIN, MAX = dt.date(1, 1, 1), dt.date(9999, 12, 31)


def article(**changes: object) -> TableSpec:
    cols = (ColumnSpec("id", "id", INTEGER, "integer", position=1, nullable=False),
            ColumnSpec("lib-court", "lib_court", STRING, "varchar", width=5, position=2),
            ColumnSpec("tags", "tags", STRING, "varchar", width=4, position=3, extent=2),
            ColumnSpec("dat-mod", "dat_mod", TIMESTAMP, "timestamp", position=4))
    base: dict[str, object] = dict(table_name="article", sql_name="article", destination_table="ods.article",
                                   primary_key=("id",), has_timestamps=True, date_modif_col="dat_mod",
                                   date_modif_precision="datetime", columns=cols)
    base.update(changes)
    return TableSpec(**base)  # type: ignore[arg-type]


# --- the check itself (transform.clean_batch) ------------------------------------------------------------------


def batch(values: list[str | None]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict({"id": pa.array(range(len(values)), pa.int32()),
                                       "lib_court": pa.array(values, pa.string())})


def test_refuse_raises_naming_the_column_the_longest_value_and_the_width() -> None:
    with pytest.raises(transform.ValueTooWide) as caught:
        transform.clean_batch(batch(["abcde", "abcdefgh", None, "ééééééé"]), min_date=MIN, max_date=MAX,
                              widths={"lib_court": 5})
    assert (caught.value.column, caught.value.longest, caught.value.width, caught.value.count) == \
        ("lib_court", 8, 5, 2)


def test_values_that_fit_are_returned_untouched() -> None:
    rb = batch(["abcde", "ééééé", None, ""])  # 5 characters (10 UTF-8 bytes) fit a width of 5
    out, stats = transform.clean_batch(rb, min_date=MIN, max_date=MAX, widths={"lib_court": 5})
    assert out is rb and stats.total() == 0 and "truncated_too_wide" not in stats.as_dict()


def test_truncate_cuts_to_the_width_in_characters_and_counts_per_column() -> None:
    out, stats = transform.clean_batch(batch(["abcdefgh", "éééééééé", "😀😀😀😀😀😀", "abc", None]), min_date=MIN,
                                       max_date=MAX, widths={"lib_court": 5}, truncate_too_wide=True)
    assert out.column("lib_court").to_pylist() == ["abcde", "ééééé", "😀😀😀😀😀", "abc", None]
    assert stats.truncated_too_wide == {"lib_court": 3}
    assert stats.as_dict()["truncated_too_wide"] == {"lib_court": 3}


def test_the_widths_checked_are_the_character_columns_with_a_width_and_no_extent() -> None:
    assert sql_widths(article()) == {"lib_court": 5}


# --- Progress: the SQL engine's error, and the SELECT with WidthPolicy=truncate (pinned, parsed) --------------------

PROGRESS_ERROR = ("ODBC emitted an error calling 'SQLFetch':\nState: 22001, Native error: -210012, Message: "
                  "[DataDirect][ODBC Progress OpenEdge Wire Protocol driver][OPENEDGE]Column lib-court in table "
                  "PUB.article has value exceeding its max length or precision.")


def test_the_progress_error_names_the_table_the_column_and_the_fixes() -> None:
    better = explain(article(), "PUB", SourceError(PROGRESS_ERROR))
    assert isinstance(better, SourceError)
    text = str(better)
    for said in ("table article: column lib-court holds a value longer than its SQL width",
                 "5 characters in config.ETL_Columns", "dbtool", "option 2 'SQL Width Scan w/Fix Option'",
                 "cbm-etl sync-columns article", "WidthPolicy = 'truncate'", "--width-policy truncate",
                 "(driver: ODBC emitted an error calling 'SQLFetch': State: 22001, Native error: -210012"):
        assert said in text, text


def test_the_progress_error_with_truncate_already_set_says_the_server_side_fix() -> None:
    text = str(explain(article(width_policy="truncate"), "PUB",
                       SourceError("Column lib-court at rowid 1234 in table PUB.article has value exceeding it max "
                                   "length or precision")))
    assert "column lib-court" in text and "WidthPolicy is already 'truncate'" in text
    assert "-SQLTruncateTooLarge OUTPUT" in text and "SQL Width Scan w/Fix Option" in text


def test_progress_truncate_select_is_pinned_and_parses() -> None:
    sql, params = ProgressFlavor().select_sql(article(width_policy="truncate"), "PUB", Window(None))
    assert 'SUBSTR("lib-court", 1, 5) AS "lib_court"' in sql
    assert '"tags" AS "tags"' in sql  # an extent column is not cut (its ';'-joined text has no single width)
    assert params == []
    golden = (GOLDEN / "select_truncate_widths.sql").read_text(encoding="utf-8")
    assert "SUBSTR(\"item#\", 1, 20) AS \"item_\"" in golden
    assert sqlglot.parse_one(golden, read="postgres") is not None  # ANSI SUBSTR, double-quoted identifiers
    # the other flavours cut after the read, where the cut values are counted
    for flavor in (PostgresFlavor(), SqliteFlavor()):
        assert "SUBSTR" not in flavor.select_sql(article(width_policy="truncate"), "PUB", Window(None))[0]
    assert "SUBSTR" not in ProgressFlavor().select_sql(article(), "PUB", Window(None))[0]  # refuse: read as is


# --- the stand-ins, through the real command -------------------------------------------------------------------


@pytest.fixture
def standin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StandIn:
    site = sqlite_odbc_standin(tmp_path, monkeypatch)
    site.source_sql('CREATE TABLE article (id INTEGER PRIMARY KEY, "lib-court" VARCHAR(5), note TEXT)',
                    insert="INSERT INTO article VALUES (?, ?, ?)",
                    rows=[(1, "abcdefgh", "a"), (2, "ééééééé", "b"), (3, "abc", None), (4, None, None),
                          (5, "abcde", "c")])
    return site


@pytest.mark.odbc
def test_refuse_then_truncate_through_cbm_etl(standin: StandIn) -> None:
    for argv in (["init-db"], ["sync-columns", "article"], ["add-table", "article", "--pk", "id"]):
        done = standin.cbm(*argv)
        assert done.returncode == 0, done.stdout + done.stderr
    refused = standin.cbm("run", "article", "--mode", "full", "--batch", "b1")
    out = refused.stdout + refused.stderr
    assert refused.returncode == 1, out
    for said in ("table article: column lib-court holds values longer than its SQL width of 5 characters",
                 "the longest 8 characters", "dbtool (option 2, 'SQL Width Scan w/Fix Option'",
                 "cbm-etl sync-columns article", "WidthPolicy = 'truncate'",
                 "cbm-etl add-table article --pk id --width-policy truncate"):
        assert said in out, out
    assert not standin.fetch('SELECT COUNT(*) FROM etl."ETL_Markers"')[0][0]  # nothing merged

    # the documented fix: WidthPolicy=truncate
    done = standin.cbm("add-table", "article", "--pk", "id", "--width-policy", "truncate")
    assert done.returncode == 0, done.stdout + done.stderr
    loaded = standin.cbm("run", "article", "--mode", "full", "--batch", "b2")
    out = loaded.stdout + loaded.stderr
    assert loaded.returncode == 0, out
    assert standin.fetch('SELECT id, lib_court FROM ods.article ORDER BY id') == [
        (1, "abcde"), (2, "ééééé"), (3, "abc"), (4, None), (5, "abcde")]
    warning = "WARNING: table article: values longer than their SQL width truncated (WidthPolicy = 'truncate'): " \
              "lib-court (2 value(s) cut to 5 characters)"
    assert standin.extract_log("article", "b2") == [warning]  # the run log's extract row
    assert warning in out  # the run summary shows it
    manifest = json.loads(next((standin.root / "cache" / "article").glob("b2__full/_manifest.json")).read_text())
    assert manifest["cleaning"]["truncated_too_wide"] == {"lib_court": 2}


@pytest.mark.postgres
@pytest.mark.odbc
def test_progress_flavor_truncate_cuts_in_the_select_on_the_postgresql_standin(
        pg_source: PgSource, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The progress flavour's SQL run for real (PostgreSQL's SYSPROGRESS emulation): PostgreSQL enforces
    varchar(n), so the column is text and its registered width 5 (config.ETL_Columns.CharMaxLength), narrower than
    what it holds, as a Progress SQL width can be."""
    pg_source.execute(f'CREATE TABLE "{pg_source.schema}".article (id integer PRIMARY KEY, "lib-court" text)')
    pg_source.execute(f'INSERT INTO "{pg_source.schema}".article VALUES (1, \'abcdefgh\'), (2, \'ééééééé\'), '
                      "(3, 'abc'), (4, NULL)")
    configure(monkeypatch, source=pg_source.odbc, flavor="progress", schema=pg_source.schema,
              target=f"duckdb:///{tmp_path / 'cbm_ods.duckdb'}")
    monkeypatch.setenv("CBM_RETRY_DELAY", "0")
    assert main(["init-db"]) == 0
    assert main(["sync-columns", "article"]) == 0
    target = open_target(settings().target)
    with target.begin() as conn:
        conn.execute('UPDATE config."ETL_Columns" SET "CharMaxLength" = 5 WHERE "TableName" = \'article\' AND '
                     '"ColumnName" = \'lib-court\'')
    assert main(["add-table", "article", "--pk", "id"]) == 0
    clear_caches()
    capsys.readouterr()
    # refuse: the SELECT reads the whole value (PostgreSQL, unlike Progress, hands it over): the per-batch check
    assert main(["run", "article", "--mode", "full", "--batch", "b1"]) == 1
    out = capsys.readouterr().out
    assert "column lib-court holds values longer than its SQL width of 5 characters" in out, out
    assert main(["add-table", "article", "--pk", "id", "--width-policy", "truncate"]) == 0
    clear_caches()
    assert main(["run", "article", "--mode", "full", "--batch", "b2"]) == 0
    clear_caches()
    rows = open_target(settings().target).fetchall('SELECT id, lib_court FROM ods.article ORDER BY id')
    assert [tuple(r) for r in rows] == [(1, "abcde"), (2, "ééééé"), (3, "abc"), (4, None)]
    manifest = json.loads(next((tmp_path / "cache" / "article").glob("b2__full/_manifest.json")).read_text())
    # cut by the SELECT's SUBSTR (the Python cut would have counted 2): what reached the reader already fitted
    assert "truncated_too_wide" not in manifest["cleaning"]
