"""Validation on real databases: a Progress-like PostgreSQL source over ODBC into DuckDB and PostgreSQL targets.

The ODS is edited behind the pipeline's back (a row deleted, a row added, a value changed without touching the
stored hashdiff) and the validation must report all three, with the keys and the column; a clean table
validates; a source change after the watermark is "behind", not a mismatch.
"""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from conftest import build, configure
from helpers import register_demo_tables

from cbm_luigi.cli import main
from cbm_luigi.demo import data as demo_data
from cbm_luigi.destinations import open_target
from cbm_luigi.ops import validation
from cbm_luigi.store.config_tables import MetadataStore
from cbm_luigi.tasks.context import clear_caches, settings
from cbm_luigi.tasks.wrappers import LoadTable


def validation_log() -> list[dict]:
    target = open_target(settings().target)
    d = target.dialect
    names = ["TableName", "Status", "SourceRows", "TargetRows", "MissingInTarget", "ExtraInTarget",
             "ContentMismatches", "Details", "ValidatedTs"]
    rows = target.fetchall(f"SELECT {', '.join(d.quote(n) for n in names)} FROM {d.qualified('etl', 'Validation_Log')}")
    return sorted((dict(zip(names, r, strict=True)) for r in rows), key=lambda r: r["ValidatedTs"])


def ods_exec(sql: str, params: dict | None = None) -> None:
    target = open_target(settings().target)
    with target.begin() as conn:
        conn.execute(sql, params)


@pytest.mark.postgres
@pytest.mark.odbc
def test_validation_finds_deleted_extra_and_changed_rows(pg_source, target_url, tmp_path, monkeypatch):
    configure(monkeypatch, source=pg_source.odbc, flavor="progress", schema=pg_source.schema, target=target_url)
    monkeypatch.setenv("CBM_REPORTS_DIR", str(tmp_path / "reports"))
    register_demo_tables(["fournis"])
    assert build(LoadTable(table="fournis", mode="full", batch_id="b1")).scheduling_succeeded

    # a clean table validates, through the command, exit code 0
    assert main(["validate", "--tables", "fournis"]) == 0
    first = validation_log()[-1]
    assert (first["Status"], first["SourceRows"], first["TargetRows"]) == ("match", 300, 300)
    assert (first["MissingInTarget"], first["ExtraInTarget"], first["ContentMismatches"]) == (0, 0, 0)

    keys = [r[0] for r in pg_source.execute(f'SELECT "cod_fou" FROM "{pg_source.schema}"."fournis" ORDER BY 1')]
    deleted, changed, pending = keys[3], keys[7], keys[11]
    # a source change after the load: not loaded yet, so "behind" (exit 0), not a mismatch
    pg_source.execute(f'UPDATE "{pg_source.schema}"."fournis" SET "remise%%" = 1.25, "dat_mod" = LOCALTIMESTAMP '
                      f'WHERE "cod_fou" = %s', (pending,))
    assert main(["validate", "--tables", "fournis"]) == 0
    assert validation_log()[-1]["Status"] == "behind"

    # behind the pipeline's back: delete a row, add one, change a value (the stored hashdiff left alone)
    target = open_target(settings().target)
    d = target.dialect
    ods = d.qualified("ods", "fournis")
    ods_exec(f"DELETE FROM {ods} WHERE {d.quote('cod_fou')} = :k", {"k": deleted})
    cols = [c.sql_name for c in MetadataStore(target).table_spec("fournis").loaded_columns]
    others = [c for c in [*cols, "hashdiff", "ts_source", "load_ts", "etl_batch"] if c != "cod_fou"]
    ods_exec(f"INSERT INTO {ods} ({d.quote('cod_fou')}, {', '.join(d.quote(c) for c in others)}) "
             f"SELECT :new, {', '.join(d.quote(c) for c in others)} FROM {ods} WHERE {d.quote('cod_fou')} = :k",
             {"new": "ZZ-EXTRA", "k": changed})
    ods_exec(f"UPDATE {ods} SET {d.quote('raison_soc')} = :v WHERE {d.quote('cod_fou')} = :k",
             {"v": "edited in the ODS", "k": changed})

    assert main(["validate", "--tables", "fournis"]) == 1
    row = validation_log()[-1]
    assert row["Status"] == "mismatch"
    assert (row["SourceRows"], row["TargetRows"]) == (300, 300)
    assert (row["MissingInTarget"], row["ExtraInTarget"], row["ContentMismatches"]) == (1, 1, 2)
    details = json.loads(row["Details"])
    assert details["samples_missing"] == [{"key": {"cod_fou": deleted}, "pending": False}]
    assert details["samples_extra"] == [{"key": {"cod_fou": "ZZ-EXTRA"}}]
    by_key = {s["key"]["cod_fou"]: s for s in details["samples_mismatched"]}
    assert set(by_key) == {changed, pending}
    assert by_key[changed]["pending"] is False
    assert [(x["column"], x["ods"]) for x in by_key[changed]["differences"]] == [("raison-soc", "edited in the ODS")]
    assert by_key[pending]["pending"] is True
    assert {x["column"] for x in by_key[pending]["differences"]} == {"remise%", "dat_mod"}

    # the report: one HTML page, a CSV row per table, the JSON with the samples
    html_files = sorted((tmp_path / "reports" / "validation").glob("*.html"))
    assert html_files
    page = html_files[-1].read_text(encoding="utf-8")
    assert "mismatch" in page and "ZZ-EXTRA" in page and "edited in the ODS" in page and "<svg" in page
    assert "http" not in page.split("<body>")[0]  # no external asset
    data = json.loads(html_files[-1].with_suffix(".json").read_text(encoding="utf-8"))
    assert data["tables"][0]["missing"] == 1 and data["tables"][0]["extra"] == 1
    assert "fournis,mismatch,300,300,1" in html_files[-1].with_suffix(".csv").read_text(encoding="utf-8")


def _sqlite_demo(tmp_path, monkeypatch, tables: list[str]) -> None:
    db = tmp_path / "erp.sqlite"
    demo_data.create_sqlite_source(db, scale=0.1)
    configure(monkeypatch, source=f"sqlite:///{db}", flavor="sqlite", schema="PUB",
              target=f"duckdb:///{tmp_path / 'ods.duckdb'}")
    monkeypatch.setenv("CBM_REPORTS_DIR", str(tmp_path / "reports"))
    register_demo_tables(tables)


def test_filter_clause_is_respected_and_a_never_loaded_table_is_an_error(tmp_path, monkeypatch):
    _sqlite_demo(tmp_path, monkeypatch, ["client", "produit"])
    store = MetadataStore(open_target(settings().target))
    store.register_table("client", primary_key=["cod_cli"], date_modif_col="dat_mod", precision="date",
                         filter_clause='"cod_cli" <= 100', is_dimension=True)
    clear_caches()
    assert build(LoadTable(table="client", mode="full", batch_id="b1")).scheduling_succeeded
    results = {r.table: r for r in validation.run_validation(["client", "produit"])}
    assert results["client"].status == "match"
    assert results["client"].source_rows == results["client"].target_rows == 100
    assert results["produit"].status == "error"
    assert "never loaded" in (results["produit"].error or "")
    assert [r["Status"] for r in validation_log()] == ["match", "error"]
    # the same through the command: a table in error makes the exit code 1
    assert main(["validate", "--tables", "client,produit", "--no-report"]) == 1


def test_filters_pick_tables_from_their_flags(tmp_path, monkeypatch):
    _sqlite_demo(tmp_path, monkeypatch, [t.name for t in demo_data.DEMO_TABLES])
    store = MetadataStore(open_target(settings().target))
    assert validation.select_tables(store, "all") == ["client", "fournis", "hisprixa", "lignecli", "produit"]
    assert validation.select_tables(store, "dimensions") == ["client", "fournis", "produit"]
    assert validation.select_tables(store, "facts") == ["hisprixa", "lignecli"]
    assert validation.select_tables(store, "critical") == ["client", "produit"]
    assert validation.select_tables(store, "all", ["PRODUIT", "Client"]) == ["produit", "client"]


def test_stale_stored_hashdiff_is_reported_with_equal_values(tmp_path, monkeypatch):
    _sqlite_demo(tmp_path, monkeypatch, ["fournis"])
    assert build(LoadTable(table="fournis", mode="full", batch_id="b1")).scheduling_succeeded
    target = open_target(settings().target)
    d = target.dialect
    key = target.fetchall(f"SELECT MIN({d.quote('cod_fou')}) FROM {d.qualified('ods', 'fournis')}")[0][0]
    ods_exec(f"UPDATE {d.qualified('ods', 'fournis')} SET {d.quote('hashdiff')} = :h WHERE {d.quote('cod_fou')} = :k",
             {"h": "0" * 64, "k": key})
    [r] = validation.run_validation(["fournis"])
    assert (r.status, r.mismatched, r.hashdiff_only) == ("mismatch", 1, 1)
    assert r.samples_mismatched[0]["differences"] == []
    assert "stale" in r.samples_mismatched[0]["note"]
    assert r.validated_at <= datetime.now()


def test_decimal_source_text_is_compared_in_its_canonical_form() -> None:
    # the source's own text of a decimal, as the hashdiff writes the same value held exactly (docs/HASHDIFF.md)
    import pyarrow as pa

    texts = pa.array(["12.50", "-0.000", "0.0000001", "1.23456789", "100", None, " 7.0 "])
    assert validation.decimal_text_canonical(texts, "t", "c").to_pylist() == \
        ["12.5", "0", "0.0000001", "1.23456789", "100", None, "7"]
    # another spelling (an exponent): through Python's Decimal, exactly
    assert validation.decimal_text_canonical(pa.array(["1E-7", "1.23E+4", "-0E-3"]), "t", "c").to_pylist() == \
        ["0.0000001", "12300", "0"]
