"""Profiling on a small source table with known contents (SQLite, Progress-like names), into DuckDB and PostgreSQL.

Every figure is checked exactly; ``--apply`` must exclude exactly the suggested columns (never the key or the
modification column, even when constant) and record LastProfilingTs; a profile of the loaded extract must give
the same figures as the source.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime

import pytest
from conftest import build, configure

from cbm_luigi.cli import main
from cbm_luigi.commands.setup import sync_tables
from cbm_luigi.destinations import open_target
from cbm_luigi.ops import profiling
from cbm_luigi.store.config_tables import MetadataStore
from cbm_luigi.store.schema import init_db
from cbm_luigi.tasks.context import clear_caches, settings
from cbm_luigi.tasks.wrappers import LoadTable

# 10 rows.  "lib": 2 NULL, 2 empty ('' and blanks), 7 distinct, longest 10 of width 10 (near the width);
# "vide": all NULL; "blanc": only '' / NULL; "devise": constant; "code-4": one value of 6 > width 4 (overflow);
# "qte": 2 NULL, 5 distinct; "prix": decimals; "dat_mod": constant, but the modification column.
DDL = """CREATE TABLE "article" (
    "cod-art" INTEGER NOT NULL PRIMARY KEY, "lib" VARCHAR(10), "vide" VARCHAR(20), "blanc" VARCHAR(5),
    "devise" VARCHAR(3), "code-4" VARCHAR(4), "qte" INTEGER, "prix" DECIMAL(9,2), "dat_mod" DATE)"""
ROWS = [
    (1, "abc", None, "", "EUR", "AB", 5, "10.50", "2026-01-10"),
    (2, "abcdefghij", None, None, "EUR", "ABCD", 5, "3.00", "2026-01-10"),
    (3, None, None, "", "EUR", "ABCDEF", 7, "3.00", "2026-01-10"),
    (4, "", None, "", "EUR", "A", None, "99.99", "2026-01-10"),
    (5, "   ", None, None, "EUR", None, 1, "0.01", "2026-01-10"),
    (6, "x", None, "", "EUR", "B", 2, "7.25", "2026-01-10"),
    (7, "xy", None, "", "EUR", "C", 3, None, "2026-01-10"),
    (8, None, None, "", "EUR", "D", None, "7.25", "2026-01-10"),
    (9, "été", None, "", "EUR", "E", 1, "1.00", "2026-01-10"),
    (10, "xy", None, "", "EUR", "F", 2, "2.00", "2026-01-10"),
]


@pytest.fixture
def article(tmp_path, monkeypatch, target_url):
    db = tmp_path / "erp.sqlite"
    with sqlite3.connect(db) as con:
        con.execute(DDL)
        con.executemany("INSERT INTO article VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", ROWS)
    configure(monkeypatch, source=f"sqlite:///{db}", flavor="sqlite", schema="PUB", target=target_url)
    monkeypatch.setenv("CBM_REPORTS_DIR", str(tmp_path / "reports"))
    target = open_target(settings().target)
    init_db(target)
    sync_tables(["article"])
    store = MetadataStore(target)
    store.register_table("article", primary_key=["cod-art"], date_modif_col="dat_mod", precision="date",
                         is_dimension=True)
    clear_caches()
    return store


def figures(p: profiling.TableProfile) -> dict[str, tuple]:
    return {c.column_name: (c.nulls, c.empties, c.distinct, c.min, c.max, c.max_length, c.max_bytes,
                            c.declared_width, tuple(c.flags), c.suggestion) for c in p.columns}


EXPECTED = {
    "cod-art": (0, None, 10, 1, 10, None, None, None, (), None),
    "lib": (2, 2, 7, "", "été", 10, 10, 10, ("near_width",), None),
    "vide": (10, 0, 0, None, None, None, None, 20, ("all_null",), "all NULL in 10 rows"),
    "blanc": (2, 8, 1, "", "", 0, 0, 5, ("always_empty",), "always empty or NULL in 10 rows"),
    "devise": (0, 0, 1, "EUR", "EUR", 3, 3, 3, ("constant", "near_width"), "constant value 'EUR' in 10 rows"),
    "code-4": (1, 0, 9, "A", "F", 6, 6, 4, ("overflow",), None),
    "qte": (2, None, 5, 1, 7, None, None, None, (), None),
    "dat_mod": (0, None, 1, None, None, None, None, None, ("constant",), None),
}


def test_profile_figures_are_exact_and_apply_changes_only_what_it_said(article, tmp_path):
    store = article
    before = {c.column_name: (c.is_excluded, c.notes) for c in store.column_specs("article")}
    started = datetime.now().replace(microsecond=0)

    p = profiling.profile_table("article")
    assert p.origin == "source" and p.rows == 10
    got = figures(p)
    for col, want in EXPECTED.items():
        if col == "dat_mod":
            assert got[col][:3] == want[:3] and got[col][8:] == want[8:], col
            assert str(got[col][3]) == str(got[col][4]) == "2026-01-10"
        else:
            assert got[col] == want, col
    prix = next(c for c in p.columns if c.column_name == "prix")
    assert (prix.nulls, prix.distinct, str(prix.min), str(prix.max)) == (1, 7, "0.01", "99.99")
    assert (p.columns[1].null_pct, p.columns[1].empty_pct) == (20.0, 20.0)
    assert [c.column_name for c in p.suggestions] == ["vide", "blanc", "devise"]
    assert {c.column_name for c in p.width_risks} == {"lib", "devise", "code-4"}
    dat_mod = next(c for c in p.columns if c.column_name == "dat_mod")
    assert dat_mod.protected == "modification column" and dat_mod.suggestion is None

    # --apply through the command: exactly the three suggested columns, each with its note; nothing else moves
    assert main(["profile", "article", "--apply"]) == 0
    after = {c.column_name: (c.is_excluded, c.notes) for c in store.column_specs("article")}
    changed = {n for n in after if after[n] != before[n]}
    assert changed == {"vide", "blanc", "devise"}
    assert all(after[n][0] is True and "excluded by cbm-etl profile" in (after[n][1] or "") for n in changed)
    assert "constant value 'EUR'" in (after["devise"][1] or "")
    last = store.last_profiling("article")
    assert last is not None and last >= started

    report = sorted((tmp_path / "reports" / "profiling").glob("article_*.json"))[-1]
    data = json.loads(report.read_text(encoding="utf-8"))
    assert data["applied"] == ["vide", "blanc", "devise"] == data["suggested_exclusions"]
    assert report.with_suffix(".html").read_text(encoding="utf-8").count("<svg") >= 10

    # a second profile has nothing more to suggest (the three are excluded now)
    again = profiling.profile_table("article")
    assert again.suggestions == []
    assert {c.column_name for c in again.columns if c.excluded} == {"vide", "blanc", "devise"}


def test_profile_of_the_extract_matches_the_source(article):
    # the load refuses code-4's 6-character value against its SQL width of 4 (WidthPolicy=refuse, as Progress
    # itself would): widen the registered width, as an operator does after the DBA's dbtool fix
    t = article.target
    d = t.dialect
    with t.begin() as conn:
        conn.execute(f"UPDATE {d.qualified('config', 'ETL_Columns')} SET {d.quote('CharMaxLength')} = 8 "
                     f"WHERE {d.quote('TableName')} = 'article' AND {d.quote('ColumnName')} = 'code-4'")
    clear_caches()
    assert build(LoadTable(table="article", mode="full", batch_id="b1")).scheduling_succeeded
    from_extract = profiling.profile_table("article")
    from_source = profiling.profile_table("article", from_source=True)
    assert from_extract.origin == "extract" and from_source.origin == "source"
    assert "b1" in from_extract.origin_detail
    ext, src = figures(from_extract), figures(from_source)
    assert ext == src
