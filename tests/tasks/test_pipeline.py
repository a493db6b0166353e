"""End to end through Luigi, on real databases: a Progress-like PostgreSQL schema read over ODBC (with the
``progress`` flavour against the SYSPROGRESS emulation, and the ``postgresql`` flavour), into every target."""

from __future__ import annotations

from datetime import datetime

import pytest
from conftest import build, configure
from helpers import log_rows, ods_rows, pg_source_rows, register_demo_tables

from cbm_luigi.demo import data as demo_data
from cbm_luigi.destinations import open_target
from cbm_luigi.store.config_tables import MetadataStore
from cbm_luigi.tasks.context import settings
from cbm_luigi.tasks.wrappers import LoadAll, LoadTable

pytestmark = [pytest.mark.postgres, pytest.mark.odbc]
TABLES = [t.name for t in demo_data.DEMO_TABLES]


@pytest.mark.parametrize("flavor", ["progress", "postgresql"])
def test_full_then_incremental_ods_equals_source(flavor, pg_source, target_url, monkeypatch):
    configure(monkeypatch, source=pg_source.odbc, flavor=flavor, schema=pg_source.schema, target=target_url)
    register_demo_tables()

    first = build(LoadAll(mode="full", batch_id="b1"))
    assert first.scheduling_succeeded, first.summary_text
    for t in TABLES:
        assert ods_rows(t) == pg_source_rows(pg_source, t), f"{t} differs after the full load"

    changes = demo_data.apply_postgres_changes(pg_source.conninfo, schema=pg_source.schema,
                                               change_ts=datetime.now().replace(microsecond=0))
    second = build(LoadAll(mode="incremental", batch_id="b2"))
    assert second.scheduling_succeeded, second.summary_text
    merged = {r["TableName"]: r for r in log_rows() if r["Batch"] == "b2" and r["StepName"] == "merge_ods"}
    for t in TABLES:
        assert ods_rows(t) == pg_source_rows(pg_source, t), f"{t} differs after the incremental load"
        c = changes.tables[t]
        assert merged[t]["RowsInserted"] == len(c.inserted_keys), t
        assert merged[t]["RowsUpdated"] == len(c.updated_keys), t
        # the incremental window read only the changed rows, not the table
        assert merged[t]["RowsProcessed"] == len(c.inserted_keys) + len(c.updated_keys), t


def test_second_run_of_a_batch_runs_nothing(pg_source, tmp_path, monkeypatch):
    configure(monkeypatch, source=pg_source.odbc, flavor="progress", schema=pg_source.schema,
              target=f"duckdb:///{tmp_path / 'ods.duckdb'}")
    register_demo_tables(["produit"])
    assert build(LoadTable(table="produit", mode="full", batch_id="b1")).scheduling_succeeded
    logged = len(log_rows())
    ran: list[str] = []
    handler = LoadTable.event_handler  # register on the base Task to see every task that runs
    import luigi

    @luigi.Task.event_handler(luigi.Event.START)
    def record(task):
        ran.append(task.task_id)

    try:
        result = build(LoadTable(table="produit", mode="full", batch_id="b1"))
    finally:
        luigi.Task._event_callbacks[luigi.Task][luigi.Event.START].discard(record)
    assert handler is not None
    assert result.scheduling_succeeded
    assert ran == []  # nothing ran, not even the wrapper
    assert len(log_rows()) == logged
    # a new batch in full mode reloads
    assert build(LoadTable(table="produit", mode="full", batch_id="b2")).scheduling_succeeded
    assert any(r["Batch"] == "b2" and r["StepName"] == "flow_complete" for r in log_rows())


def test_watermark_is_source_clock_at_extract_start_and_full_runs_set_it(pg_source, tmp_path, monkeypatch):
    configure(monkeypatch, source=pg_source.odbc, flavor="progress", schema=pg_source.schema,
              target=f"duckdb:///{tmp_path / 'ods.duckdb'}")
    store = register_demo_tables(["fournis"])
    before = pg_source.execute("SELECT LOCALTIMESTAMP")[0][0]
    assert build(LoadTable(table="fournis", mode="full", batch_id="b1")).scheduling_succeeded
    after = pg_source.execute("SELECT LOCALTIMESTAMP")[0][0]
    wm = store.watermark("fournis")
    assert wm is not None and before <= wm <= after
    extract_done = next(r for r in log_rows() if r["StepName"] == "extract")["LogTs"]
    assert wm <= extract_done


def test_table_names_match_case_insensitively_in_either_form(pg_source, tmp_path, monkeypatch):
    configure(monkeypatch, source=pg_source.odbc, flavor="postgresql", schema=pg_source.schema,
              target=f"duckdb:///{tmp_path / 'ods.duckdb'}")
    register_demo_tables(["client"])
    assert build(LoadTable(table="CLIENT", mode="full", batch_id="b1")).scheduling_succeeded
    assert len(ods_rows("client")) == 1500
    # the same batch under another spelling is the same work: already done
    assert build(LoadTable(table="Client", mode="full", batch_id="b1")).scheduling_succeeded
    assert sum(1 for r in log_rows() if r["StepName"] == "flow_complete") == 1


def test_duplicate_keys_stop_the_table_before_the_merge(pg_source, target_url, monkeypatch):
    configure(monkeypatch, source=pg_source.odbc, flavor="progress", schema=pg_source.schema, target=target_url)
    store = register_demo_tables(["lignecli"])
    assert build(LoadTable(table="lignecli", mode="full", batch_id="b1")).scheduling_succeeded
    before = ods_rows("lignecli")
    # a wrong key: num_cde alone repeats across order lines
    store.register_table("lignecli", primary_key=["num_cde"], date_modif_col="dat_mod", lookback="12h")
    from cbm_luigi.tasks.context import clear_caches

    clear_caches()
    result = build(LoadTable(table="lignecli", mode="full", batch_id="b2"))
    assert not result.scheduling_succeeded or result.status.name != "SUCCESS"
    failed = [r for r in log_rows() if r["Status"] == "failed"]
    assert failed and failed[-1]["StepName"] == "load_staging"
    assert "duplicate primary key" in failed[-1]["ErrorMessage"] and "num_cde=" in failed[-1]["ErrorMessage"]
    store.register_table("lignecli", primary_key=["num_cde", "num_lig"], date_modif_col="dat_mod", lookback="12h")
    clear_caches()
    assert ods_rows("lignecli") == before


def test_merge_after_staging_was_overwritten_reloads_its_own_batch(pg_source, tmp_path, monkeypatch):
    """Crash between steps: staging of b1 replaced by b2; merging b1 must not merge b2's rows."""
    from cbm_luigi.tasks.table import LoadStaging

    configure(monkeypatch, source=pg_source.odbc, flavor="postgresql", schema=pg_source.schema,
              target=f"duckdb:///{tmp_path / 'ods.duckdb'}")
    register_demo_tables(["fournis"])
    assert build(LoadStaging(table="fournis", mode="full", batch_id="b1")).scheduling_succeeded
    pg_source.execute(f'DELETE FROM "{pg_source.schema}"."fournis" WHERE "cod_fou" IN '
                      f'(SELECT "cod_fou" FROM "{pg_source.schema}"."fournis" ORDER BY 1 LIMIT 10)')
    assert build(LoadStaging(table="fournis", mode="full", batch_id="b2")).scheduling_succeeded
    assert build(LoadTable(table="fournis", mode="full", batch_id="b1")).scheduling_succeeded
    assert len(ods_rows("fournis")) == 300  # b1's extract (before the delete), reloaded into staging
    target = open_target(settings().target)
    assert MetadataStore(target).watermark("fournis") is not None
