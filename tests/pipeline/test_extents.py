"""Extent (array) fields: one ';'-joined text by default, ``<col>_1`` .. ``<col>_n`` with --split-extents."""

from __future__ import annotations

import random
import re

import pyarrow as pa
import pytest
from conftest import configure
from openedge_sources import cbm, ods, ods_column_names, set_column, sqlite_exec, sqlite_source

from cbm_luigi.cli import main
from cbm_luigi.demo.data import progress_extent
from cbm_luigi.destinations import open_target
from cbm_luigi.errors import MetadataError, SourceError
from cbm_luigi.model.specs import ColumnSpec, TableSpec
from cbm_luigi.model.types import INTEGER, STRING
from cbm_luigi.pipeline import transform
from cbm_luigi.pipeline.openedge import decode_extent, reshape_batch, split_extent
from cbm_luigi.tasks.context import settings

pytestmark = [pytest.mark.postgres, pytest.mark.odbc]

LIB = ColumnSpec("lib-ext", "lib_ext", STRING, "varchar", width=80, position=2, extent=4)

DDL = '"cod" INTEGER NOT NULL PRIMARY KEY, "lib-ext" VARCHAR(80), "qte-ext" INTEGER, "dat_mod" TIMESTAMP'
ROWS = [
    (1, progress_extent(["rouge", "a;b", None, "x~y"]), "1;2;3", "2026-03-01 10:00:00"),
    (2, progress_extent(["vert", ""]), "4", "2026-03-01 10:00:00"),  # fewer elements: the rest NULL
    (3, None, None, "2026-03-01 10:00:00"),
    (4, "~?;~~~;;été;50%", "?;5;?", "2026-03-01 10:00:00"),  # a '?' value is escaped, an unknown one is not
]


def spec(split: bool, *columns: ColumnSpec) -> TableSpec:
    cols = columns or (ColumnSpec("cod", "cod", INTEGER, position=1), LIB)
    return TableSpec("article", "article", "ods.article", ("cod",), False, None, "datetime", columns=cols,
                     split_extents=split)


# -- the split itself (Arrow compute) ------------------------------------------------------------------------


def test_elements_are_unescaped_and_unknown_elements_are_null() -> None:
    out = split_extent(pa.array([progress_extent(["a;b", None, "x~y", ""]), "?;~?;~~;a~b", None, "one"]), LIB,
                       "article")
    assert [a.to_pylist() for a in out] == [
        ["a;b", None, None, "one"],  # ~; is ';'; '?' alone is the unknown value
        [None, "?", None, None],  # ~? is a '?' value
        ["x~y", "~", None, None],  # ~~ is '~'
        ["", "a~b", None, None],  # a '~' before another character is itself (PRO_ARR_ESCAPE)
    ]


def test_the_vectorised_split_agrees_with_the_per_value_decoder() -> None:
    rng = random.Random(14)
    items = ["rouge", None, "a;b", "x~y", "", "été", "~", ";", "?", "~?", "~~;", "a~"]
    values = [progress_extent([rng.choice(items) for _ in range(rng.randint(1, 4))]) for _ in range(2000)]
    out = split_extent(pa.array(values), LIB, "article")
    expected = [decode_extent(v) + [None] * (4 - len(decode_extent(v))) for v in values]
    assert [list(r) for r in zip(*(a.to_pylist() for a in out), strict=True)] == expected
    # the per-value path (a value holding one of the noncharacters the split parks escapes on) gives the same
    parked = split_extent(pa.array(["\ufdd0;x", *values]), LIB, "article")
    assert [a.to_pylist()[1:] for a in parked] == [a.to_pylist() for a in out]
    assert parked[0].to_pylist()[0] == "\ufdd0"


def test_more_elements_than_the_extent_are_refused_naming_the_column() -> None:
    with pytest.raises(SourceError, match=r"table article: column lib-ext: a value holds 5 elements, more than "
                                          r"its extent 4 .*cbm-etl sync-columns article"):
        split_extent(pa.array(["a", "1;2;3;4;5"]), LIB, "article")


def test_split_columns_replace_the_extent_column_in_order_and_in_the_hashdiff() -> None:
    s = spec(True)
    assert s.business_columns == ("cod", "lib_ext_1", "lib_ext_2", "lib_ext_3", "lib_ext_4")
    assert [c.logical_type for c in s.stored_columns[1:]] == [STRING] * 4
    batch = reshape_batch(pa.RecordBatch.from_pydict({"cod": pa.array([1], pa.int32()),
                                                      "lib_ext": ["a;~;b"]}), s)
    assert batch.schema.names == list(s.business_columns)
    assert transform.row_strings(batch, s.business_columns).to_pylist() == ["1:1|1:a|2:;b|~|~"]
    # without the option: one text column, whatever the element type (an integer extent is no integer)
    qty = ColumnSpec("qte-ext", "qte_ext", INTEGER, "integer", position=3, extent=3)
    kept = spec(False, ColumnSpec("cod", "cod", INTEGER, position=1), qty)
    assert [(c.sql_name, c.logical_type) for c in kept.stored_columns] == [("cod", INTEGER), ("qte_ext", STRING)]


def test_a_derived_name_already_taken_is_refused_with_the_fix() -> None:
    taken = spec(True, ColumnSpec("cod", "cod", INTEGER, position=1), LIB,
                 ColumnSpec("lib_ext_2", "lib_ext_2", STRING, position=3))
    with pytest.raises(MetadataError, match=r"table article: extent element lib_ext_2 of lib-ext would clash with "
                                            r"lib_ext_2 .*SqlName .*without --split-extents"):
        _ = taken.stored_columns
    # the same table without the option has no derived name: loaded as before
    assert spec(False, *taken.columns).business_columns == ("cod", "lib_ext", "lib_ext_2")
    # two extents whose elements would share a name (a_1 of "a" and of "a-"): refused too
    twins = spec(True, ColumnSpec("a", "a", STRING, extent=2), ColumnSpec("a-", "a_", STRING, extent=1),
                 ColumnSpec("a_1x", "a_1", STRING))
    with pytest.raises(MetadataError, match="extent element a_1 of a would clash with a_1x"):
        _ = twins.stored_columns


# -- through the product -------------------------------------------------------------------------------------


def register(monkeypatch: pytest.MonkeyPatch, tmp_path, target_url: str, *extra: str) -> str:
    source = sqlite_source(tmp_path / "erp.sqlite", DDL, ROWS)
    configure(monkeypatch, source=source, flavor="sqlite", schema="PUB", target=target_url)
    assert main(["init-db"]) == 0
    assert main(["sync-columns", "article"]) == 0
    # the stand-in's catalog has no array extent (OpenEdge's SYSCOLUMNS_FULL.array_extent): set as synced there
    set_column("article", "lib-ext", Extent=4)
    set_column("article", "qte-ext", Extent=3)
    assert main(["add-table", "article", "--pk", "cod", "--date-modif-col", "dat_mod", *extra]) == 0
    return source


def test_split_extents_load_each_element_into_its_column(tmp_path, target_url, monkeypatch) -> None:
    source = register(monkeypatch, tmp_path, target_url, "--split-extents")
    done = cbm("run", "article", "--mode", "full", "--batch-id", "b1", cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    names = ods_column_names("article")
    assert [n for n in names if n.startswith(("lib_ext", "qte_ext"))] == [
        "lib_ext_1", "lib_ext_2", "lib_ext_3", "lib_ext_4", "qte_ext_1", "qte_ext_2", "qte_ext_3"]
    cols = ["cod", "lib_ext_1", "lib_ext_2", "lib_ext_3", "lib_ext_4", "qte_ext_1", "qte_ext_2", "qte_ext_3"]
    assert ods("article", cols, "cod") == [
        (1, "rouge", "a;b", None, "x~y", "1", "2", "3"),
        (2, "vert", "", None, None, "4", None, None),
        (3, None, None, None, None, None, None, None),
        (4, "?", "~;", "été", "50%", None, "5", None),  # a '?' value stays one, an unknown element is NULL
    ]
    hashes = dict(ods("article", ["cod", "hashdiff"], "cod"))
    # one element changes: the row's hashdiff changes, the merge updates it, validate finds source and ODS equal
    sqlite_exec(source, 'UPDATE "article" SET "lib-ext" = ?, "dat_mod" = ? WHERE "cod" = 2',
                (progress_extent(["vert", "", "bleu"]), "2026-03-02 10:00:00"))
    done = cbm("run", "article", "--mode", "full", "--batch-id", "b2", cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert ods("article", cols[:4], "cod")[1] == (2, "vert", "", "bleu")
    after = dict(ods("article", ["cod", "hashdiff"], "cod"))
    assert [k for k in hashes if hashes[k] != after[k]] == [2]
    checked = cbm("validate", "--tables", "article", "--no-report", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr[-3000:]
    assert re.search(r"^article\s+match\s+4\s+4\s+0\s+0\s+0\s", checked.stdout, re.M), checked.stdout
    # an element changed in the ODS behind the load's back: validate sees it
    target = open_target(settings().target)
    d = target.dialect
    with target.begin() as conn:
        conn.execute(f"UPDATE {d.qualified('ods', 'article')} SET {d.quote('lib_ext_3')} = 'x' "
                     f"WHERE {d.quote('cod')} = 1")
    checked = cbm("validate", "--tables", "article", "--no-report", cwd=tmp_path)
    assert checked.returncode == 1 and re.search(r"^article\s+MISMATCH\s+4\s+4\s+0\s+0\s+1\s", checked.stdout,
                                                 re.M), checked.stdout + checked.stderr


def test_without_the_option_an_extent_stays_one_text_column(tmp_path, target_url, monkeypatch) -> None:
    register(monkeypatch, tmp_path, target_url)
    assert main(["run", "article", "--mode", "full", "--batch-id", "b1"]) == 0
    assert ods("article", ["cod", "lib_ext", "qte_ext"], "cod")[0] == (
        1, "rouge;a~;b;?;x~~y", "1;2;3")  # the integer extent, too, is its text


def test_a_value_with_more_elements_than_the_extent_fails_the_table_naming_the_column(tmp_path, monkeypatch
                                                                                      ) -> None:
    source = register(monkeypatch, tmp_path, f"duckdb:///{tmp_path / 'ods.duckdb'}", "--split-extents")
    sqlite_exec(source, 'UPDATE "article" SET "qte-ext" = ? WHERE "cod" = 3', ("1;2;3;4",))
    done = cbm("run", "article", "--mode", "full", "--batch-id", "b1", cwd=tmp_path)
    assert done.returncode == 1
    out = done.stdout + done.stderr
    assert "column qte-ext: a value holds 4 elements, more than its extent 3" in out
    assert "cbm-etl sync-columns article" in out


def test_add_table_refuses_a_split_whose_names_are_taken(tmp_path, monkeypatch, capsys) -> None:
    source = sqlite_source(tmp_path / "erp.sqlite", '"cod" INTEGER PRIMARY KEY, "qty" VARCHAR(20), "qty_2" INTEGER',
                           [(1, "1;2", 7)])
    configure(monkeypatch, source=source, flavor="sqlite", schema="PUB", target=f"duckdb:///{tmp_path / 'o.duckdb'}")
    assert main(["init-db"]) == 0 and main(["sync-columns", "article"]) == 0
    set_column("article", "qty", Extent=2)
    assert main(["add-table", "article", "--pk", "cod", "--split-extents"]) == 2
    err = capsys.readouterr().err
    assert "table article: extent element qty_2 of qty would clash with qty_2" in err
    assert "set another SqlName for that column in config.ETL_Columns" in err
    assert main(["tables"]) == 0 and "article" not in capsys.readouterr().out  # nothing registered
    assert main(["add-table", "article", "--pk", "cod"]) == 0  # as one text: no clash
