"""The catalogue of bad inputs: each one, on a copy of a loaded demo, through the real ``cbm-etl`` command.

For every case: the exit code of the README's table (2 configuration, 1 a table failed), a message that names the
object (setting, table, column, file) and says the fix, no Python traceback, and the ODS, the watermarks and the
markers exactly as they were.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from harness import Case, Site, copy_site, make_base

T = 'config."ETL_Tables"'
RUN = ("run", "produit", "--mode", "incremental", "--batch-id", "bad-1")
FULL = ("run", "produit", "--mode", "full", "--batch-id", "bad-1")
ALL = ("run", "--all", "--mode", "incremental", "--batch-id", "bad-1")
RECREATE = ('DROP TABLE IF EXISTS p2', 'CREATE TABLE p2 AS SELECT * FROM produit', 'DROP TABLE produit')
LATER = "dat_mod = '2099-01-01 00:00:00'"  # after every watermark: the incremental reads the row


def env(**values: str):  # type: ignore[no-untyped-def]
    return lambda s: s.env.update(values)


def unset(*names: str):  # type: ignore[no-untyped-def]
    def apply(s: Site) -> None:
        for n in names:
            s.env.pop(n, None)
    return apply


def cfg(text: str):  # type: ignore[no-untyped-def]
    def apply(s: Site) -> None:
        path = s.root / "bad.cfg"
        path.write_text(text, encoding="utf-8")
        s.env["LUIGI_CONFIG_PATH"] = str(path)
    return apply


def ods(*sql: str):  # type: ignore[no-untyped-def]
    return lambda s: s.ods_sql(*sql)


def src(*sql: str):  # type: ignore[no-untyped-def]
    return lambda s: s.source_sql(*sql)


def nothing(_s: Site) -> None:
    pass


def cache_is_a_file(s: Site) -> None:
    shutil.rmtree(s.cache)
    s.cache.write_text("not a folder", encoding="utf-8")


def rules(text: str):  # type: ignore[no-untyped-def]
    def apply(s: Site) -> None:
        folder = s.root / "config" / "data_quality"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "produit.yaml").write_text(text, encoding="utf-8")
    return apply


def guard(s: Site) -> None:
    s.ods_sql(f"UPDATE {T} SET \"DeleteDetection\" = true, \"DeleteGuardPct\" = 10 WHERE \"TableName\" = 'produit'")
    s.source_sql("DELETE FROM produit WHERE cod_pro > 5")


def set_row(column: str, value: str) -> str:
    return f"UPDATE {T} SET \"{column}\" = '{value}' WHERE \"TableName\" = 'produit'"


CASES = [
    # -- settings: exit 2 before anything runs ----------------------------------------------------------------
    Case("source not set", unset("CBM_SOURCE"), RUN, 2, ("CBM_SOURCE is not set", ".env")),
    Case("unknown source flavour", env(CBM_SOURCE_FLAVOR="oracle"), RUN, 2, ("CBM_SOURCE_FLAVOR", "progress")),
    Case("unknown batch granularity", env(CBM_BATCH_GRANULARITY="week"), ("run", "produit"), 2,
         ("CBM_BATCH_GRANULARITY", "day, hour")),
    Case("batch rows not a number", env(CBM_EXTRACT_BATCH_ROWS="abc"), RUN, 2, ("CBM_EXTRACT_BATCH_ROWS", "whole")),
    Case("batch rows zero", env(CBM_EXTRACT_BATCH_ROWS="0"), RUN, 2, ("CBM_EXTRACT_BATCH_ROWS", "at least 1")),
    Case("negative transform workers", env(CBM_TRANSFORM_WORKERS="-1"), RUN, 2, ("CBM_TRANSFORM_WORKERS", "at least")),
    Case("stage flag not a boolean", env(CBM_STAGE_WHILE_EXTRACTING="maybe"), RUN, 2,
         ("CBM_STAGE_WHILE_EXTRACTING", "true or false")),
    Case("source timeout not a number", env(CBM_SOURCE_TIMEOUT="soon"), RUN, 2, ("CBM_SOURCE_TIMEOUT", "whole")),
    Case("target not a URL", env(CBM_TARGET="notaurl"), RUN, 2, ("CBM_TARGET", "not a valid URL")),
    Case("unsupported target", env(CBM_TARGET="oracle://u@h/db"), RUN, 2, ("CBM_TARGET", "duckdb, mssql, postgresql")),
    Case("undefined ${VAR} in a setting", env(CBM_TARGET="duckdb:///${CBM_NOPE_DIR}/x.duckdb"), RUN, 2,
         ("CBM_NOPE_DIR", "not set", ".env")),
    Case("target is a folder", lambda s: s.env.update(CBM_TARGET=f"duckdb:///{s.root}"), RUN, 2,
         ("CBM_TARGET", "database file")),
    Case("target without init-db", lambda s: s.env.update(CBM_TARGET=f"duckdb:///{s.root / 'fresh.duckdb'}"), RUN,
         2, ("no metadata tables", "cbm-etl init-db")),
    Case("cache folder is a file", cache_is_a_file, RUN, 2, ("CBM_CACHE_DIR", "directory")),
    Case("garbled luigi.cfg", cfg("[cbm]\nthis is garbage\n"), RUN, 2, ("bad.cfg", "line 2", "this is garbage")),
    Case("luigi.cfg option not a number", cfg("[cbm]\nextract_batch_rows = abc\n"), RUN, 2,
         ("extract_batch_rows", "whole number")),
    Case("luigi.cfg refers to an unset variable", cfg("[cbm]\nsource=${CBM_NOPE_SRC}\n"), RUN, 2,
         ("CBM_NOPE_SRC", "not set")),
    Case("operations option not a boolean", cfg("[cbm_ops]\nprogress_count = perhaps\n"), RUN, 2,
         ("progress_count", "perhaps")),
    Case("bad webhook URL", env(CBM_TEAMS_WEBHOOK="http://[::1"), ("test-alert",), 2,
         ("CBM_TEAMS_WEBHOOK", "not a valid")),
    # -- the command line -------------------------------------------------------------------------------------
    Case("batch key with a path", nothing, ("run", "produit", "--batch-id", "../../etc"), 2,
         ("batch '../../etc' is not valid", "letters, digits")),
    Case("batch key too long", nothing, ("run", "produit", "--batch-id", "x" * 65), 2, ("is not valid",)),
    Case("unknown mode", nothing, ("run", "produit", "--mode", "sideways"), 2, ("--mode", "full", "incremental")),
    Case("unknown table", nothing, ("run", "nosuchtable", "--batch-id", "bad-1"), 2,
         ("'nosuchtable' is not registered", "cbm-etl sync-columns nosuchtable")),
    Case("add-table with an unknown key column", nothing, ("add-table", "produit", "--pk", "nosuch"), 2,
         ("--pk column 'nosuch'", "columns:")),
    Case("add-table with a bad precision", nothing, ("add-table", "produit", "--pk", "cod_pro", "--precision", "week"),
         2, ("--precision",)),
    Case("add-table with a bad lookback", nothing, ("add-table", "produit", "--pk", "cod_pro", "--lookback", "1w"), 2,
         ("LookbackInterval '1w'", "1d, 12h, 30m")),
    Case("sync-columns of a table the source lacks", nothing, ("sync-columns", "nosuchtable"), 2,
         ("nosuchtable", "CBM_SOURCE_SCHEMA")),
    Case("dependency on an unknown table", nothing, ("depends", "produit", "--on", "nosuch"), 2, ("nosuch",)),
    Case("dq with a missing rules file", nothing, ("dq", "produit", "--rules", "/nonexistent/rules.yaml"), 2,
         ("rules.yaml",)),
    # -- metadata rows: the table fails (exit 1), the others are not touched ------------------------------------
    Case("empty PrimaryKeyCols", ods(set_row("PrimaryKeyCols", "")), RUN, 1, ("PrimaryKeyCols is empty",)),
    Case("PrimaryKeyCols names no column", ods(set_row("PrimaryKeyCols", "nosuch")), RUN, 1,
         ("primary-key column 'nosuch'", "fix config.ETL_Tables")),
    Case("DateModifCol names no column", ods(set_row("DateModifCol", "nosuch")), RUN, 1,
         ("DateModifCol 'nosuch'", "fix config.ETL_Tables")),
    Case("unknown DateModifPrecision", ods(set_row("DateModifPrecision", "week")), RUN, 1,
         ("DateModifPrecision 'week'", "'date' or 'datetime'")),
    Case("unknown PriorityTier", ods(set_row("PriorityTier", "urgent")), RUN, 1,
         ("PriorityTier 'urgent'", "critical, high, normal")),
    Case("LookbackInterval in words", ods(set_row("LookbackInterval", "1 week")), RUN, 1,
         ("LookbackInterval '1 week'", "1d, 12h, 30m")),
    Case("LookbackInterval of 27,000 years", ods(set_row("LookbackInterval", "9999999d")), RUN, 1,
         ("LookbackInterval '9999999d'", "too long")),
    Case("FilterClause that does not parse", ods(set_row("FilterClause", "cod_pro >>> 3")), RUN, 1,
         ("FilterClause", "cod_pro >>> 3", "produit")),
    Case("dependency cycle", ods('INSERT INTO config."ETL_Dependencies" VALUES '
                                 "('produit', 'client', true), ('client', 'produit', true)"), ALL, 2,
         ("dependency cycle", "cbm-etl depends")),
    Case("primary-key column excluded", ods('UPDATE config."ETL_Columns" SET "IsExcluded" = true '
                                            "WHERE \"TableName\" = 'produit' AND \"ColumnName\" = 'cod_pro'"), RUN, 1,
         ("primary-key column 'cod_pro' is excluded",)),
    # -- source data and shape: the table fails before the ODS is touched --------------------------------------
    Case("duplicate keys in the source", src(*RECREATE, "CREATE TABLE produit AS SELECT * FROM p2 UNION ALL "
                                             "SELECT * FROM p2 WHERE cod_pro < 3"), FULL, 1,
         ("duplicate primary key", "cod_pro=1", "ODS was left untouched")),
    Case("NULL key in the source", src(*RECREATE, "CREATE TABLE produit AS SELECT * FROM p2",
                                       "UPDATE produit SET cod_pro = NULL WHERE cod_pro = 1"), FULL, 1,
         ("NULL in the primary key", "cod_pro")),
    Case("table gone from the source", src("DROP TABLE produit"), RUN, 1, ("PUB.produit is not in the source",)),
    Case("column dropped in the source", src('ALTER TABLE produit DROP COLUMN "lib-ext"'), RUN, 1,
         ("lib-ext", "cbm-etl sync-columns produit")),
    Case("column whose type changed", src(*RECREATE, 'CREATE TABLE produit ("cod_pro" INTEGER NOT NULL PRIMARY KEY, '
                                          '"designation" VARCHAR(120), "gencod-v" VARCHAR(20), "cod_fou" VARCHAR(10), '
                                          '"prix-achat" DECIMAL(18,6), "prix-vente" DECIMAL(18,4), "poids" DOUBLE, '
                                          '"qte-stock" VARCHAR(20), "select" VARCHAR(10), "dat_mod" TIMESTAMP, '
                                          '"lib-ext" VARCHAR(200))', "INSERT INTO produit SELECT * FROM p2",
                                          f"UPDATE produit SET \"qte-stock\" = 'many', {LATER} WHERE cod_pro = 2"),
         RUN, 1, ("qte-stock", "cbm-etl sync-columns produit")),
    Case("decimal wider than declared", src(f"UPDATE produit SET \"prix-vente\" = 123456789012345.123456, {LATER} "
                                            "WHERE cod_pro = 1"), RUN, 1, ("prix-vente", "produit")),
    Case("text that is not UTF-8", src(f"UPDATE produit SET designation = CAST(X'C328' AS TEXT), {LATER} "
                                       "WHERE cod_pro = 1"), RUN, 1, ("designation", "not valid UTF-8")),
    Case("full load that looks like a mass delete", guard, FULL, 1, ("DeleteGuardPct", "nothing was merged")),
    Case("critical data-quality rule failing", rules("rules:\n  - {type: range, column: prix-vente, min: 0, max: 1, "
                                                     "severity: critical}\n"), FULL, 1,
         ("prix-vente", "critical")),
]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return make_base(tmp_path_factory.mktemp("bad-inputs") / "base")


def test_the_catalogue_is_large_enough() -> None:
    assert len(CASES) >= 40 and len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_bad_input_is_refused_with_its_fix_and_changes_nothing(base: Site, tmp_path: Path, case: Case) -> None:
    site = copy_site(base, tmp_path / "site")
    case.setup(site)
    before = site.state()
    done = site.cbm(*case.argv)
    said = done.stdout + done.stderr
    assert done.returncode == case.exit_code, f"{case.name}: exit {done.returncode}\n{said[-3000:]}"
    assert "Traceback" not in said, f"{case.name}: a traceback was printed\n{said[-3000:]}"
    for words in case.says:
        assert words.lower() in said.lower(), f"{case.name}: {words!r} not said\n{said[-3000:]}"
    if case.changes_nothing:
        assert site.state() == before, f"{case.name}: the ODS, a watermark or a marker changed"
