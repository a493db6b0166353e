"""Decimals declared without precision or scale, read over ODBC from the PostgreSQL stand-in for Progress.

psqlODBC describes an unconstrained ``numeric`` as numeric(28,6): read as that, 1.23456789 became 1.234567 and
1E-7 became 0, with exit 0, and a 32-digit value failed inside arrow-odbc naming no column.  Such a column is
read as the source's own text and loaded exactly as DECIMAL(38,10), or the table stops naming the column, the
value and the fix, leaving the ODS, the watermark and the markers as they were.  Validation compares with the
source's own text, so an ODS holding a cut value is a mismatch.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from conftest import configure
from helpers import log_rows

from cbm_luigi.cli import main
from cbm_luigi.destinations import open_target
from cbm_luigi.store.config_tables import MetadataStore
from cbm_luigi.tasks.context import clear_caches, settings

pytestmark = [pytest.mark.postgres, pytest.mark.odbc]

EXACT = [Decimal("1.23456789"), Decimal("1E-7"), Decimal("12.5"), Decimal("-0.0000000001"), None]
BIG = Decimal("12345678901234567890123456789012")  # 32 digits


@pytest.fixture(params=["postgresql", "progress"])
def mesure(request, pg_source, target_url, monkeypatch):
    """``mesure (id, val numeric, dat_mod)`` in the source, registered by the real commands."""
    s = pg_source.schema
    pg_source.execute(f'CREATE TABLE "{s}".mesure (id integer PRIMARY KEY, val numeric, '
                      'dat_mod timestamp DEFAULT LOCALTIMESTAMP)')
    configure(monkeypatch, source=pg_source.odbc, flavor=request.param, schema=s, target=target_url)
    assert main(["init-db"]) == 0
    assert main(["sync-columns", "mesure"]) == 0
    assert main(["add-table", "mesure", "--pk", "id", "--date-modif-col", "dat_mod"]) == 0
    return pg_source


def insert(src: Any, rows: list[tuple[int, Decimal | None]]) -> None:
    for k, v in rows:
        src.execute(f'INSERT INTO "{src.schema}".mesure (id, val) VALUES (%s, %s)', (k, v))


def ods_values() -> dict[int, Decimal | None]:
    target = open_target(settings().target)
    d = target.dialect
    return {int(k): v for k, v in target.fetchall(
        f"SELECT {d.quote('id')}, {d.quote('val')} FROM {d.qualified('ods', 'mesure')}")}


def ods_exec(sql: str, params: dict | None = None) -> None:
    with open_target(settings().target).begin() as conn:
        conn.execute(sql, params)


def state() -> tuple[Any, ...]:
    target = open_target(settings().target)
    d = target.dialect
    wm = target.fetchall(f"SELECT {d.quote('LastSuccessTs')} FROM {d.qualified('config', 'ETL_Tables')}")
    markers = target.fetchall(f"SELECT * FROM {d.qualified('etl', 'ETL_Markers')}")
    return ods_values(), wm, sorted(map(str, markers))


def test_an_unconstrained_numeric_is_loaded_exactly_and_validated_against_the_source_text(mesure) -> None:
    insert(mesure, list(enumerate(EXACT, 1)))
    col = MetadataStore(open_target(settings().target)).table_spec("mesure").column("val")
    assert (col.precision, col.scale) == (None, None)  # not psqlODBC's made-up (28,6)

    assert main(["run", "mesure", "--mode", "full", "--batch-id", "b1"]) == 0
    assert ods_values() == dict(enumerate(EXACT, 1))
    assert main(["validate", "--tables", "mesure"]) == 0

    # the ODS holds a cut value (what the load did before), its hashdiff left alone: a mismatch, exit 1
    d = open_target(settings().target).dialect
    ods_exec(f"UPDATE {d.qualified('ods', 'mesure')} SET {d.quote('val')} = :v WHERE {d.quote('id')} = 1",
             {"v": Decimal("1.234567")})
    assert main(["validate", "--tables", "mesure"]) == 1


def test_a_value_that_does_not_fit_stops_the_table_naming_column_value_and_fix(mesure, capsys) -> None:
    insert(mesure, [(1, Decimal("1.5"))])
    assert main(["run", "mesure", "--mode", "full", "--batch-id", "b1"]) == 0
    before = state()

    insert(mesure, [(2, Decimal("1.23456789012"))])  # 11 decimals: more than DECIMAL(38,10) holds
    assert main(["run", "mesure", "--mode", "full", "--batch-id", "b2"]) == 1
    error = [r["ErrorMessage"] for r in log_rows() if r["Status"] == "failed"][-1]
    assert "column val: the source value 1.23456789012 does not fit DECIMAL(38,10)" in error
    assert "Fix: set NumericScale to 11 for this column in config.ETL_Columns" in error
    assert "mesure" in capsys.readouterr().out  # the run summary names the table beside the message
    assert state() == before  # ODS, watermark and markers untouched


def test_32_digits_are_refused_by_name_then_loaded_exactly_once_the_scale_is_set(mesure) -> None:
    insert(mesure, [(1, BIG), (2, Decimal("12.5"))])
    assert main(["run", "mesure", "--mode", "full", "--batch-id", "b1"]) == 1
    error = [r["ErrorMessage"] for r in log_rows() if r["Status"] == "failed"][-1]
    assert f"column val: the source value {BIG} does not fit DECIMAL(38,10)" in error
    assert "32 digit(s) before the point" in error and "set NumericScale to 1" in error
    assert "too large" not in error

    # the operator's fix; a later sync keeps it (the catalog declares no scale)
    d = open_target(settings().target).dialect
    ods_exec(f"UPDATE {d.qualified('config', 'ETL_Columns')} SET {d.quote('NumericScale')} = 1 "
             f"WHERE {d.quote('ColumnName')} = 'val'")
    assert main(["sync-columns", "mesure"]) == 0
    clear_caches()
    assert MetadataStore(open_target(settings().target)).table_spec("mesure").column("val").scale == 1
    assert main(["run", "mesure", "--mode", "full", "--batch-id", "b2"]) == 0
    assert ods_values() == {1: BIG, 2: Decimal("12.5")}
    assert main(["validate", "--tables", "mesure"]) == 0


def test_values_beyond_38_digits_say_to_exclude_the_column(mesure) -> None:
    insert(mesure, [(1, BIG), (2, Decimal("1.23456789"))])  # 32 + 8 digits: no decimal128 holds both
    assert main(["run", "mesure", "--mode", "full", "--batch-id", "b1"]) == 1
    error = [r["ErrorMessage"] for r in log_rows() if r["Status"] == "failed"][-1]
    assert "column val" in error
    assert "need 32 digits before the point and 8 after, more than the 38" in error
    assert "exclude the column (IsExcluded = 1 in config.ETL_Columns)" in error


def set_declared(precision: int | None, scale: int | None) -> None:
    """What config.ETL_Columns held for such a column before (the driver's (28,6)), or an operator's figures."""
    d = open_target(settings().target).dialect
    ods_exec(f"UPDATE {d.qualified('config', 'ETL_Columns')} SET {d.quote('NumericPrecision')} = :p, "
             f"{d.quote('NumericScale')} = :s WHERE {d.quote('ColumnName')} = 'val'", {"p": precision, "s": scale})
    clear_caches()


def test_a_column_registered_with_the_drivers_figures_is_caught_by_validate(mesure) -> None:
    # registered before this fix: (28,6), read as the driver describes it, so cut; validate now says so
    set_declared(28, 6)
    insert(mesure, [(1, Decimal("1.23456789")), (2, Decimal("12.5"))])
    assert main(["run", "mesure", "--mode", "full", "--batch-id", "b1"]) == 0
    assert ods_values()[1] == Decimal("1.234567")
    assert main(["validate", "--tables", "mesure"]) == 1  # the source's text is 1.23456789

    # the upgrade path of README "When a load fails": sync (the made-up figures dropped), reload in full
    assert main(["sync-columns", "mesure"]) == 0
    clear_caches()
    col = MetadataStore(open_target(settings().target)).table_spec("mesure").column("val")
    assert (col.precision, col.scale) == (None, None)
    assert main(["run", "mesure", "--mode", "full", "--batch-id", "b2"]) == 0
    assert ods_values() == {1: Decimal("1.23456789"), 2: Decimal("12.5")}
    assert main(["validate", "--tables", "mesure"]) == 0


def test_the_driver_describing_fewer_decimals_than_declared_is_refused(mesure) -> None:
    set_declared(38, 10)  # an operator's figures, read natively: psqlODBC would hand over 6 decimals
    insert(mesure, [(1, Decimal("1.23456789"))])
    assert main(["run", "mesure", "--mode", "full", "--batch-id", "b1"]) == 1
    error = [r["ErrorMessage"] for r in log_rows() if r["Status"] == "failed"][-1]
    assert "column val: the ODBC driver describes it as decimal(28,6)" in error
    assert "set its NumericPrecision to NULL in config.ETL_Columns" in error


def test_too_large_for_the_drivers_buffer_names_the_column(mesure) -> None:
    set_declared(28, 6)
    insert(mesure, [(1, BIG)])
    assert main(["run", "mesure", "--mode", "full", "--batch-id", "b1"]) == 1
    error = [r["ErrorMessage"] for r in log_rows() if r["Status"] == "failed"][-1]
    assert "a value is longer than the ODBC driver describes its column, one of: val (decimal128(28, 6))" in error
    assert "set its NumericPrecision and NumericScale to NULL in config.ETL_Columns" in error


def test_a_raised_scale_the_ods_column_cannot_take_is_refused_at_the_merge(mesure) -> None:
    insert(mesure, [(1, Decimal("1.5"))])
    assert main(["run", "mesure", "--mode", "full", "--batch-id", "b1"]) == 0
    insert(mesure, [(2, Decimal("1.23456789012"))])
    before = state()
    set_declared(None, 11)  # the fix the refusal names; ods.mesure.val is DECIMAL(38,10) (NUMERIC(1000,10))
    assert main(["run", "mesure", "--mode", "full", "--batch-id", "b2"]) == 1
    error = [r["ErrorMessage"] for r in log_rows() if r["Status"] == "failed"][-1]
    assert "ods.mesure.val is DECIMAL(" in error and "values would be rounded to 10 decimals" in error
    assert "nothing is merged" in error
    assert state() == before
