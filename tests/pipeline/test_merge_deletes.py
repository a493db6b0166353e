"""Delete detection: full loads mark ODS rows whose key left the source, behind a guard against mass deletes."""

from __future__ import annotations

import pytest
from conftest import build, configure
from helpers import log_rows

from cbm_luigi.cli import main
from cbm_luigi.destinations import open_target
from cbm_luigi.store.config_tables import MetadataStore
from cbm_luigi.tasks.context import clear_caches, settings
from cbm_luigi.tasks.wrappers import LoadTable

pytestmark = [pytest.mark.postgres, pytest.mark.odbc]


def deleted_keys() -> dict[str, bool]:
    target = open_target(settings().target)
    d = target.dialect
    rows = target.fetchall(f"SELECT {d.quote('cod_fou')}, {d.quote('etl_deleted_ts')} "
                           f"FROM {d.qualified('ods', 'fournis')}")
    return {str(k).strip(): ts is not None for k, ts in rows}


def test_full_loads_mark_deleted_keys_and_revive_returning_ones(pg_source, target_url, monkeypatch):
    configure(monkeypatch, source=pg_source.odbc, flavor="postgresql", schema=pg_source.schema, target=target_url)
    assert main(["sync-columns", "fournis"]) == 0
    assert main(["add-table", "fournis", "--pk", "cod_fou", "--date-modif-col", "dat_mod",
                 "--detect-deletes", "--delete-guard-pct", "5"]) == 0
    assert build(LoadTable(table="fournis", mode="full", batch_id="b1")).scheduling_succeeded
    assert not any(deleted_keys().values())

    t = f'"{pg_source.schema}"."fournis"'
    gone = [r[0].strip() for r in pg_source.execute(f'SELECT "cod_fou" FROM {t} ORDER BY 1 LIMIT 3')]
    kept = pg_source.execute(f'SELECT * FROM {t} WHERE "cod_fou" = %s', (gone[0],))
    pg_source.execute(f'DELETE FROM {t} WHERE "cod_fou" = ANY(%s)', (gone,))
    # an incremental run knows nothing of deletes
    assert build(LoadTable(table="fournis", mode="incremental", batch_id="b2")).scheduling_succeeded
    assert not any(deleted_keys().values())
    assert build(LoadTable(table="fournis", mode="full", batch_id="b3")).scheduling_succeeded
    state = deleted_keys()
    assert sorted(k for k, dead in state.items() if dead) == sorted(gone)
    assert len(state) == 300  # marked, never removed
    merged = next(r for r in log_rows() if r["Batch"] == "b3" and r["StepName"] == "merge_ods")
    assert merged["RowsDeleted"] == 3

    # the first key comes back unchanged: revived, although its hashdiff did not change
    placeholders = ", ".join(["%s"] * len(kept[0]))
    pg_source.execute(f"INSERT INTO {t} VALUES ({placeholders})", kept[0])
    assert build(LoadTable(table="fournis", mode="full", batch_id="b4")).scheduling_succeeded
    state = deleted_keys()
    assert sorted(k for k, dead in state.items() if dead) == sorted(gone[1:])


def test_a_partial_read_does_not_look_like_a_mass_delete(pg_source, tmp_path, monkeypatch):
    configure(monkeypatch, source=pg_source.odbc, flavor="postgresql", schema=pg_source.schema,
              target=f"duckdb:///{tmp_path / 'ods.duckdb'}")
    assert main(["sync-columns", "fournis"]) == 0
    assert main(["add-table", "fournis", "--pk", "cod_fou", "--date-modif-col", "dat_mod", "--detect-deletes"]) == 0
    assert build(LoadTable(table="fournis", mode="full", batch_id="b1")).scheduling_succeeded
    store = MetadataStore(open_target(settings().target))
    watermark = store.watermark("fournis")

    t = f'"{pg_source.schema}"."fournis"'
    pg_source.execute(f'DELETE FROM {t} WHERE "cod_fou" IN (SELECT "cod_fou" FROM {t} ORDER BY 1 LIMIT 150)')
    pg_source.execute(f'UPDATE {t} SET "raison-soc" = \'changed\'')
    result = build(LoadTable(table="fournis", mode="full", batch_id="b2"))
    assert result.status.name != "SUCCESS"
    failed = [r for r in log_rows() if r["Status"] == "failed"]
    assert failed and failed[-1]["StepName"] == "merge_ods"
    assert "lacks 150 of the 300 keys" in failed[-1]["ErrorMessage"]
    assert "DeleteGuardPct=10 %" in failed[-1]["ErrorMessage"]
    clear_caches()
    assert not any(deleted_keys().values())  # nothing marked
    target = open_target(settings().target)
    d = target.dialect
    changed = target.fetchone(f"SELECT COUNT(*) FROM {d.qualified('ods', 'fournis')} "
                              f"WHERE {d.quote('raison_soc')} = 'changed'")
    assert changed == (0,)  # nothing merged either
    assert store.watermark("fournis") == watermark
