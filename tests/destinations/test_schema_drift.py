"""Schema drift: a column widened in the source widens the staging and ODS columns; nothing is narrowed."""

from __future__ import annotations

from decimal import Decimal

import pytest
from conftest import build, configure

from cbm_luigi.cli import main
from cbm_luigi.destinations import open_target
from cbm_luigi.destinations.types import needs_widening
from cbm_luigi.tasks.context import clear_caches, settings
from cbm_luigi.tasks.wrappers import LoadTable

pytestmark = [pytest.mark.postgres, pytest.mark.odbc]


def test_widening_rules() -> None:
    assert needs_widening("DECIMAL(24,4)", "DECIMAL(18,4)", None, 18, 4)
    assert needs_widening("NUMERIC(24,4)", "numeric", None, 18, 4)
    assert not needs_widening("NUMERIC(12,4)", "numeric", None, 18, 4)  # never narrows
    assert needs_widening("NUMERIC(24,6)", "numeric", None, 18, 4)  # more digits on both sides of the point
    assert not needs_widening("NUMERIC(18,6)", "numeric", None, 18, 4)  # scale up, fewer before the point
    assert not needs_widening("NUMERIC(18,2)", "numeric", None, 18, 4)  # scale down: would round
    assert needs_widening("nvarchar(80)", "nvarchar", 60, 0, 0)
    assert needs_widening("nvarchar(max)", "nvarchar", 4000, 0, 0)
    assert not needs_widening("nvarchar(40)", "nvarchar", 60, 0, 0)
    assert not needs_widening("nvarchar(80)", "nvarchar", -1, 0, 0)  # already (max)
    assert needs_widening("BIGINT", "integer", None, 32, 0)
    assert not needs_widening("TEXT", "text", None, None, None)
    assert not needs_widening("DECIMAL(24,4)", "INTEGER", None, 32, 0)  # other family: left alone


def test_a_widened_source_decimal_widens_the_ods(pg_source, target_url, monkeypatch):
    configure(monkeypatch, source=pg_source.odbc, flavor="progress", schema=pg_source.schema, target=target_url)
    assert main(["sync-columns", "produit"]) == 0
    assert main(["add-table", "produit", "--pk", "cod_pro", "--date-modif-col", "dat_mod"]) == 0
    assert build(LoadTable(table="produit", mode="full", batch_id="b1")).scheduling_succeeded

    big = Decimal("12345678901234567890.1234")  # 24 digits: too wide for the old numeric(18,4)
    t = f'"{pg_source.schema}"."produit"'
    pg_source.execute(f'ALTER TABLE {t} ALTER COLUMN "prix-vente" TYPE numeric(24,4)')
    pg_source.execute(f'UPDATE {t} SET "prix-vente" = %s, "dat_mod" = LOCALTIMESTAMP WHERE "cod_pro" = 7', (big,))
    assert main(["sync-columns", "produit"]) == 0
    clear_caches()
    assert build(LoadTable(table="produit", mode="incremental", batch_id="b2")).scheduling_succeeded

    target = open_target(settings().target)
    d = target.dialect
    value = target.fetchone(f"SELECT {d.quote('prix_vente')} FROM {d.qualified('ods', 'produit')} "
                            f"WHERE {d.quote('cod_pro')} = 7")
    assert value is not None and Decimal(value[0]) == big
    with target.begin() as conn:
        info = {r[0]: r for r in target.existing_column_types(conn, "ods", "produit")}
    assert int(info["prix_vente"][3]) == 24
