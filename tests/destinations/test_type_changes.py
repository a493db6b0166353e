"""A column whose type family changes in the source (issue 14): refused naming the column, both types and the
fix (TypeChangePolicy refuse, the default), or its ODS column widened to a type that holds both, logged and
recorded (widen).  Source: the demo tables in PostgreSQL over psqlODBC, altered between runs; targets: DuckDB
and PostgreSQL (``target_url``).  SQL Server's statement is pinned and parsed (test_mssql_golden.py)."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import PgSource, configure
from helpers import log_rows

from cbm_luigi.cli import main
from cbm_luigi.destinations import open_target
from cbm_luigi.destinations.duckdb import DuckDBDialect
from cbm_luigi.destinations.mssql import MssqlDialect
from cbm_luigi.destinations.postgresql import PostgresDialect
from cbm_luigi.destinations.type_changes import (
    DATE_FAMILY,
    DECIMAL_FAMILY,
    FLOAT_FAMILY,
    INTEGER_FAMILY,
    TEXT_FAMILY,
    TIMESTAMP_FAMILY,
    TIMESTAMP_TZ_FAMILY,
    TypeChange,
    holds,
    type_family,
    widened_type,
)
from cbm_luigi.destinations.types import ColumnDef
from cbm_luigi.errors import DataError
from cbm_luigi.model.types import INTEGER, TIMESTAMP, TIMESTAMP_TZ
from cbm_luigi.store import markers
from cbm_luigi.tasks.context import clear_caches, settings

pytestmark = [pytest.mark.postgres, pytest.mark.odbc]

NEW_KEY = 100001  # a row inserted after the type change


@dataclass(frozen=True)
class Case:
    column: str  # source name
    sql_name: str
    alter: str  # the source's ALTER ... TYPE clause
    new_value: str  # SQL literal of the new type, for an updated and an inserted row
    old_family: str
    new_family: str
    widened_family: str  # the ODS column's family under widen

    def converted(self, old: Any) -> Any:
        """What an old ODS value is once the column is widened (converted by the database, or kept)."""
        if old is None:
            return None
        if self.widened_family == TEXT_FAMILY:
            return old if isinstance(old, str) else str(old)
        if self.widened_family == TIMESTAMP_FAMILY:
            return dt.datetime.combine(old, dt.time())
        raise AssertionError(self)


CASES = {
    "int_to_text": Case("qte-stock", "qte_stock", "TYPE text", "'12 boxes'", INTEGER_FAMILY, TEXT_FAMILY,
                        TEXT_FAMILY),
    "date_to_timestamp": Case("dat-crea", "dat_crea", "TYPE timestamp", "TIMESTAMP '2026-01-02 10:30:00'",
                              DATE_FAMILY, TIMESTAMP_FAMILY, TIMESTAMP_FAMILY),
    # every value holds digits only: the source column becomes a number; the ODS text column holds both
    "text_to_number": Case("gencod-v", "gencod_v", 'TYPE bigint USING "gencod-v"::bigint', "1234567890123",
                           TEXT_FAMILY, INTEGER_FAMILY, TEXT_FAMILY),
}
NEW_VALUE = {"int_to_text": "12 boxes", "date_to_timestamp": dt.datetime(2026, 1, 2, 10, 30),
             "text_to_number": "1234567890123"}


def ods_column(sql_name: str) -> tuple[str, dict[int, Any]]:
    """(type name as the database reports it, value by cod_pro) of an ODS column of produit."""
    target = open_target(settings().target)
    d = target.dialect
    with target.begin() as conn:
        info = {str(r[0]): r for r in target.existing_column_types(conn, "ods", "produit")}
    rows = target.fetchall(f"SELECT {d.quote('cod_pro')}, {d.quote(sql_name)} FROM {d.qualified('ods', 'produit')}")
    return str(info[sql_name][1]), {int(k): v for k, v in rows}


def ods_state() -> Any:
    target = open_target(settings().target)
    rows = target.fetchall(f'SELECT * FROM {target.dialect.qualified("ods", "produit")} ORDER BY "cod_pro"')
    return rows, markers.marker_exists(target, "produit", "b2")


def load_then_change_the_type(pg: PgSource, target_url: str, monkeypatch: pytest.MonkeyPatch, case: Case,
                              *add_table: str) -> tuple[str, dict[int, Any]]:
    """Load produit (batch b1, with a date column dat-crea), then change the case's column type in the source,
    update row 7 and insert row NEW_KEY with values of the new type, and sync-columns.  Returns the ODS column
    before the change."""
    configure(monkeypatch, source=pg.odbc, flavor="postgresql", schema=pg.schema, target=target_url)
    monkeypatch.setenv("CBM_RETRY_DELAY", "0")
    t = f'"{pg.schema}"."produit"'
    pg.execute(f'ALTER TABLE {t} ADD COLUMN "dat-crea" date')
    pg.execute(f'UPDATE {t} SET "dat-crea" = CAST("dat_mod" AS date)')
    assert main(["sync-columns", "produit"]) == 0
    assert main(["add-table", "produit", "--pk", "cod_pro", "--date-modif-col", "dat_mod", *add_table]) == 0
    clear_caches()
    assert main(["run", "produit", "--mode", "full", "--batch", "b1"]) == 0
    before = ods_column(case.sql_name)
    assert type_family(before[0]) == case.old_family

    pg.execute(f'ALTER TABLE {t} ALTER COLUMN "{case.column}" {case.alter}')
    pg.execute(f'UPDATE {t} SET "{case.column}" = {case.new_value}, "dat_mod" = LOCALTIMESTAMP WHERE "cod_pro" = 7')
    pg.execute(f'INSERT INTO {t} ("cod_pro", "{case.column}", "dat_mod") '
               f"VALUES ({NEW_KEY}, {case.new_value}, LOCALTIMESTAMP)")
    assert main(["sync-columns", "produit"]) == 0
    clear_caches()
    return before


def cbm_etl(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real command in a subprocess, with this test's environment (CBM_SOURCE, CBM_TARGET...)."""
    return subprocess.run(["cbm-etl", *args], cwd=cwd, env=dict(os.environ), capture_output=True, text=True,
                          timeout=300, check=False)


#: every change on PostgreSQL and SQL Server (opt-in); on DuckDB the int -> text one (the family detection of every
#: dialect is covered by test_the_lattice_in_every_dialect; each further DuckDB case costs ~5 s of suite time)
TARGET_CASES = [("duckdb", "int_to_text"), *((t, n) for t in ("postgresql", "mssql") for n in sorted(CASES))]


@pytest.mark.parametrize(("target_url", "name"), TARGET_CASES, indirect=["target_url"])
def test_refuse_names_the_column_both_types_and_the_fix(name: str, pg_source: PgSource, target_url: str,
                                                        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    case = CASES[name]
    old_type, _ = load_then_change_the_type(pg_source, target_url, monkeypatch, case)  # default policy: refuse
    before = ods_state()
    run = cbm_etl("run", "produit", "--mode", "incremental", "--batch", "b2", cwd=tmp_path)
    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    row = next((ln for ln in run.stdout.splitlines() if ln.startswith("produit ")), "")
    assert "FAILED at merge_ods" in row, out
    assert f"DataError: ods.produit.{case.sql_name} is {old_type} but config.ETL_Columns now gives it " \
           f"{case.new_family} (" in row, row
    assert f"({case.old_family} -> {case.new_family})" in row, row
    assert "TypeChangePolicy is refuse for table produit: nothing was merged" in row, row
    assert "cbm-etl add-table produit --pk cod_pro ... --type-change widen" in row, row
    assert f"alter ods.produit.{case.sql_name} to " in row and "IsExcluded = 1 in config.ETL_Columns" in row, row
    assert "Traceback" not in out
    clear_caches()
    assert ods_state() == before  # ODS untouched, no marker for b2
    failed = [r for r in log_rows() if r["Batch"] == "b2" and r["Status"] == "failed"]
    assert failed and f"ods.produit.{case.sql_name} is {old_type}" in str(failed[-1]["ErrorMessage"])
    if name == "int_to_text":  # the fix the message gives, then the same command again: batch b2 loads
        fix = cbm_etl("add-table", "produit", "--pk", "cod_pro", "--date-modif-col", "dat_mod", "--type-change",
                      "widen", cwd=tmp_path)
        assert fix.returncode == 0, fix.stdout + fix.stderr
        again = cbm_etl("run", "produit", "--mode", "incremental", "--batch", "b2", cwd=tmp_path)
        assert again.returncode == 0, again.stdout + again.stderr
        clear_caches()
        new_type, values = ods_column(case.sql_name)
        assert type_family(new_type) == TEXT_FAMILY and values[NEW_KEY] == "12 boxes", (new_type, values)


@pytest.mark.parametrize(("target_url", "name"), TARGET_CASES, indirect=["target_url"])
def test_widen_alters_the_ods_column_keeps_old_values_and_loads_new_ones(
        name: str, pg_source: PgSource, target_url: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    case = CASES[name]
    old_type, old_values = load_then_change_the_type(pg_source, target_url, monkeypatch, case,
                                                     "--type-change", "widen")
    capsys.readouterr()
    caplog.set_level("WARNING")
    assert main(["run", "produit", "--mode", "incremental", "--batch", "b2"]) == 0
    out = capsys.readouterr().out

    new_type, values = ods_column(case.sql_name)
    assert type_family(new_type) == case.widened_family, new_type
    for key, old in old_values.items():
        if key != 7:
            assert values[key] == case.converted(old), (key, old, values[key])
    assert values[7] == NEW_VALUE[name] and values[NEW_KEY] == NEW_VALUE[name]

    # the warning: in the log, in the merge_ods row of etl.ETL_Log, in the run summary
    said = f"ods.produit.{case.sql_name} changed type in the source ({old_type} ({case.old_family}) -> "
    assert any(said in r.getMessage() and "TypeChangePolicy widen" in r.getMessage() and r.levelname == "WARNING"
               for r in caplog.records), caplog.text
    merged = [r for r in log_rows() if r["Batch"] == "b2" and r["StepName"] == "merge_ods"]
    assert merged and str(merged[-1]["ErrorMessage"]).startswith("WARNING: " + said), merged
    assert said in next(ln for ln in out.splitlines() if ln.startswith("produit ")), out

    # later runs: nothing rewritten forever (the hashdiffs compare), the warning is not repeated
    for batch in ("b3", "b4"):
        clear_caches()
        assert main(["run", "produit", "--mode", "full", "--batch", batch]) == 0
    rows = {r["Batch"]: r for r in log_rows() if r["StepName"] == "merge_ods" and r["Status"] == "success"}
    assert rows["b4"]["RowsUpdated"] == 0 and rows["b4"]["RowsInserted"] == 0, rows["b4"]
    assert not rows["b3"]["ErrorMessage"] and not rows["b4"]["ErrorMessage"], (rows["b3"], rows["b4"])
    assert ods_column(case.sql_name)[1][NEW_KEY] == NEW_VALUE[name]


def test_the_lattice_in_every_dialect() -> None:
    pg, duck, ms = PostgresDialect(), DuckDBDialect(), MssqlDialect()
    # existing columns as information_schema / sys.columns report them: (name, type, length, precision, scale)
    assert widened_type(pg, INTEGER_FAMILY, ("c", "integer", None, 32, 0), DECIMAL_FAMILY, "NUMERIC(18,4)") == \
        ("NUMERIC(18,4)", "")
    assert widened_type(duck, INTEGER_FAMILY, ("c", "BIGINT", None, 64, 0), DECIMAL_FAMILY, "DECIMAL(18,4)") == \
        ("DECIMAL(23,4)", "")  # the 19 digits of a bigint and the 4 decimals
    assert widened_type(ms, DECIMAL_FAMILY, ("c", "decimal", None, 12, 2), INTEGER_FAMILY, "int") == \
        ("decimal(12,2)", "")
    assert holds(("c", "decimal", None, 12, 2), DECIMAL_FAMILY, "decimal(12,2)")
    assert widened_type(ms, DECIMAL_FAMILY, ("c", "decimal", None, 38, 30), INTEGER_FAMILY, "bigint") == \
        ("nvarchar(max)", "")  # no decimal holds both within 38 digits: text
    assert widened_type(pg, DECIMAL_FAMILY, ("c", "numeric", None, 18, 4), FLOAT_FAMILY, "DOUBLE PRECISION") == \
        ("DOUBLE PRECISION", "")
    assert widened_type(ms, DATE_FAMILY, ("c", "date", None, 10, 0), TIMESTAMP_FAMILY, "datetime2(3)") == \
        ("datetime2(3)", "")
    assert widened_type(duck, TIMESTAMP_FAMILY, ("c", "TIMESTAMP", None, None, None), DATE_FAMILY, "DATE") == \
        ("TIMESTAMP", "")
    assert holds(("c", "TIMESTAMP", None, None, None), TIMESTAMP_FAMILY, "TIMESTAMP")
    assert widened_type(ms, INTEGER_FAMILY, ("c", "int", None, 10, 0), TEXT_FAMILY, "nvarchar(60)") == \
        ("nvarchar(max)", "")
    assert not holds(("c", "nvarchar", 60, 0, 0), TEXT_FAMILY, "nvarchar(max)")  # bounded: altered
    assert holds(("c", "text", None, None, None), TEXT_FAMILY, "TEXT")
    assert widened_type(pg, "boolean", ("c", "boolean", None, None, None), INTEGER_FAMILY, "INTEGER")[0] == "TEXT"
    for old, new in ((TIMESTAMP_FAMILY, TIMESTAMP_TZ_FAMILY), (TIMESTAMP_TZ_FAMILY, DATE_FAMILY),
                     ("binary", TEXT_FAMILY)):
        widened, why = widened_type(pg, old, ("c", "x", None, None, None), new, "x")
        assert widened is None and why, (old, new)
    # the type names of every dialect, DDL and catalog spellings
    for name, family in (("int", INTEGER_FAMILY), ("int4", INTEGER_FAMILY), ("DECIMAL(18,4)", DECIMAL_FAMILY),
                         ("double precision", FLOAT_FAMILY), ("float", FLOAT_FAMILY), ("bit", "boolean"),
                         ("timestamp without time zone", TIMESTAMP_FAMILY), ("datetime2(3)", TIMESTAMP_FAMILY),
                         ("TIMESTAMP WITH TIME ZONE", TIMESTAMP_TZ_FAMILY), ("datetimeoffset", TIMESTAMP_TZ_FAMILY),
                         ("character varying", TEXT_FAMILY), ("nvarchar(max)", TEXT_FAMILY), ("CHAR(64)", TEXT_FAMILY),
                         ("BLOB", "binary"), ("varbinary(max)", "binary"), ("uuid", None)):
        assert type_family(name) == family, name


def columns(*pairs: tuple[str, str]) -> list[ColumnDef]:
    return [ColumnDef(name, type_name) for name, type_name in pairs]


def test_ensure_table_refuses_what_no_type_holds_and_empties_staging(target_url: str) -> None:
    target = open_target(target_url)
    d = target.dialect
    ts, tz, text, integer = (d.column_type(TIMESTAMP), d.column_type(TIMESTAMP_TZ), d.string_type(None),
                             d.column_type(INTEGER))
    with target.begin() as conn:
        for schema in ("ods", "stg"):
            conn.execute(d.create_schema_sql(schema))
            target.ensure_table(conn, schema, "t", columns(("k", integer), ("stamp", ts), ("n", integer)), ["k"])
            conn.execute(f"INSERT INTO {d.qualified(schema, 't')} VALUES (1, TIMESTAMP '2026-01-02 03:04:05', 5)")
    # a zone appears: no type holds both (the zone of the naive values is unknown), even under widen
    for policy in ("refuse", "widen"):
        with pytest.raises(DataError) as refused, target.begin() as conn:
            target.ensure_table(conn, "ods", "t", columns(("k", integer), ("stamp", tz), ("n", integer)), ["k"],
                                type_change_policy=policy)
        assert ("ods.t.stamp is" in str(refused.value) and "timestamp with time zone" in str(refused.value)
                and "no type holds both here: the time zone" in str(refused.value)
                and f"(TypeChangePolicy {policy})" in str(refused.value) and "IsExcluded = 1" in str(refused.value))
    # a key column is never altered in place
    with pytest.raises(DataError, match=r"ods\.t\.k is .*part of the primary key"), target.begin() as conn:
        target.ensure_table(conn, "ods", "t", columns(("k", text), ("stamp", ts), ("n", integer)), ["k"],
                            type_change_policy="widen")
    # two columns changed: both named, nothing altered before the refusal
    with pytest.raises(DataError, match=r"ods\.t\.stamp .*also changed: n "), target.begin() as conn:
        target.ensure_table(conn, "ods", "t", columns(("k", integer), ("stamp", text), ("n", text)), ["k"],
                            type_change_policy="refuse")
    with target.begin() as conn:
        kept = {str(r[0]): type_family(r[1]) for r in target.existing_column_types(conn, "ods", "t")}
    assert kept == {"k": INTEGER_FAMILY, "stamp": TIMESTAMP_FAMILY, "n": INTEGER_FAMILY}
    # staging: emptied and altered to the wanted type, whatever the policy (here text -> a timestamp with zone)
    with target.begin() as conn:
        target.ensure_table(conn, "stg", "t", columns(("k", integer), ("stamp", tz), ("n", text)))
        staged = {str(r[0]): type_family(r[1]) for r in target.existing_column_types(conn, "stg", "t")}
    assert staged == {"k": INTEGER_FAMILY, "stamp": TIMESTAMP_TZ_FAMILY, "n": TEXT_FAMILY}
    assert target.fetchall(f"SELECT COUNT(*) FROM {d.qualified('stg', 't')}")[0][0] == 0
    # widen with a list: the changes come back for the run log, values converted by the database
    changes: list[TypeChange] = []
    with target.begin() as conn:
        target.ensure_table(conn, "ods", "t", columns(("k", integer), ("stamp", ts), ("n", text)), ["k"],
                            type_change_policy="widen", type_changes=changes)
    assert [(c.column, c.alter, c.widened_to) for c in changes] == [("n", True, text)]
    assert target.fetchall(f"SELECT {d.quote('n')} FROM {d.qualified('ods', 't')}") == [("5",)]
    target.dispose()


def test_widen_also_converts_the_history_table(pg_source: PgSource, target_url: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    case = CASES["int_to_text"]
    _, old_values = load_then_change_the_type(pg_source, target_url, monkeypatch, case, "--dimension", "--history",
                                              "--type-change", "widen")
    assert main(["run", "produit", "--mode", "incremental", "--batch", "b2"]) == 0
    target = open_target(settings().target)
    d = target.dialect
    with target.begin() as conn:
        hist = {str(r[0]): r for r in target.existing_column_types(conn, "hist", "produit")}
    assert type_family(hist[case.sql_name][1]) == TEXT_FAMILY
    versions = target.fetchall(f"SELECT {d.quote('cod_pro')}, {d.quote(case.sql_name)}, {d.quote('is_current')} "
                               f"FROM {d.qualified('hist', 'produit')} WHERE {d.quote('cod_pro')} IN (7, 8)")
    by_key: dict[int, list[tuple[Any, bool]]] = {}
    for key, value, current in versions:
        by_key.setdefault(int(key), []).append((value, bool(current)))
    assert sorted(by_key[7], key=lambda v: v[1]) == [(str(old_values[7]), False), ("12 boxes", True)]
    assert by_key[8] == [(str(old_values[8]), True)]  # the old version, converted by the database


def test_widen_refused_by_the_database_names_the_column_and_the_fix(pg_database: str) -> None:
    """A view of the operator's own on the ODS column: PostgreSQL refuses the ALTER; a DataError names the column,
    both types and the fix, and the transaction leaves the column as it was (DuckDB and SQL Server views without
    SCHEMABINDING do not hold a column's type)."""
    target = open_target(pg_database)
    d = target.dialect
    integer, text = d.column_type(INTEGER), d.string_type(None)
    with target.begin() as conn:
        conn.execute(d.create_schema_sql("ods"))
        target.ensure_table(conn, "ods", "t", columns(("k", integer), ("n", integer)), ["k"])
        conn.execute(f"CREATE VIEW {d.qualified('ods', 't_report')} AS SELECT {d.quote('n')} "
                     f"FROM {d.qualified('ods', 't')}")
    with pytest.raises(DataError) as refused, target.begin() as conn:
        target.ensure_table(conn, "ods", "t", columns(("k", integer), ("n", text)), ["k"],
                            type_change_policy="widen")
    said = str(refused.value)
    assert said.startswith("ods.t.n changed type in the source (integer (integer) -> TEXT (text)) and "
                           "TypeChangePolicy widen could not alter it to TEXT: "), said
    assert "cannot alter type of a column used by a view" in said and "drop the views" in said, said
    assert "IsExcluded = 1" in said, said
    with target.begin() as conn:
        kept = {str(r[0]): str(r[1]) for r in target.existing_column_types(conn, "ods", "t")}
    assert kept == {"k": "integer", "n": "integer"}
    target.dispose()
