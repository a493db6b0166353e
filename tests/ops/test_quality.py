"""Data-quality rules: the file is checked with errors naming file, rule and field; each rule type counts
exactly on a known extract; in the pipeline a failed critical rule blocks the merge (ODS untouched) and a
warning does not, on DuckDB and PostgreSQL targets."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import build, configure
from helpers import log_rows, ods_rows, register_demo_tables

from cbm_luigi.cli import main
from cbm_luigi.demo import data as demo_data
from cbm_luigi.destinations import open_target
from cbm_luigi.errors import ConfigError
from cbm_luigi.model.specs import ColumnSpec, TableSpec
from cbm_luigi.ops import dq_rules, quality
from cbm_luigi.pipeline.extract import Manifest
from cbm_luigi.store.config_tables import MetadataStore
from cbm_luigi.tasks.context import clear_caches, settings
from cbm_luigi.tasks.wrappers import LoadTable

SPEC = TableSpec(
    table_name="produit", sql_name="produit", destination_table="ods.produit", primary_key=("cod_pro",),
    has_timestamps=True, date_modif_col="dat_mod", date_modif_precision="datetime",
    columns=(
        ColumnSpec("cod_pro", "cod_pro", "integer", nullable=False, position=1),
        ColumnSpec("gencod-v", "gencod_v", "string", width=20, position=2),
        ColumnSpec("prix-vente", "prix_vente", "decimal", precision=18, scale=4, position=3),
        ColumnSpec("select", "select", "string", width=10, position=4),
        ColumnSpec("dat_mod", "dat_mod", "timestamp", position=5),
        ColumnSpec("old-col", "old_col", "string", is_excluded=True, position=6),
    ),
)


def write_rules(folder: Path, text: str, name: str = "produit.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(("text", "where", "problem"), [
    ("rules:\n  - {type: not_null, column: cod_pro}\n  - {type: range, column: prix-vente, min: 0, severity: high}\n",
     "rule 2 (range_prix-vente), field 'severity'", "critical or warning"),
    ("rules:\n  - {type: unique_values, column: cod_pro}\n", "rule 1, field 'type'", "must be one of"),
    ("rules:\n  - {type: not_null, colum: cod_pro}\n", "rule 1 (not_null), field 'colum'", "not a field"),
    ("rules:\n  - {type: range, column: prix-vente}\n", "field 'min'", "needs 'min', 'max'"),
    ("rules:\n  - {type: regex, column: gencod-v, pattern: '(\\d'}\n", "field 'pattern'", "RE2"),
    ("rules:\n  - {type: freshness, max_age: soon}\n", "rule 1 (freshness), field 'max_age'", "26h"),
    ("rules:\n  - {type: volume, max_change_pct: -5}\n", "field 'max_change_pct'", "above 0"),
    ("rules:\n  - {type: not_null, column: a, name: x}\n  - {type: not_null, column: b, name: x}\n",
     "rule 2 (x), field 'name'", "already used by rule 1"),
    ("rules: []\n", "produit.yaml", "non-empty list"),
    ("rules:\n  - type: not_null\n   column: x\n", "produit.yaml", "not valid YAML"),
    ("tables: produit\nrules:\n  - {type: not_null, column: x}\n", "produit.yaml", "unknown top-level field"),
])
def test_rules_file_errors_name_the_file_the_rule_and_the_field(tmp_path, text, where, problem):
    path = write_rules(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        dq_rules.load_rules(path)
    assert str(path) in str(err.value) and where in str(err.value) and problem in str(err.value), str(err.value)


@pytest.mark.parametrize(("rule", "where", "problem"), [
    ("{type: not_null, column: nope}", "field 'column'", "'nope' is not a column of produit"),
    ("{type: not_null, column: old-col}", "field 'column'", "is excluded"),
    ("{type: range, column: prix-vente, min: cheap}", "field 'min'", "does not fit column prix-vente (decimal)"),
    ("{type: range, column: cod_pro, min: 10, max: 1}", "field 'max'", "below min"),
    ("{type: allowed_values, column: select, values: [A, yes]}", "field 'values'", "quote it"),
    ("{type: regex, column: prix-vente, pattern: '\\d+'}", "field 'column'", "text columns"),
    ("{type: freshness, column: select, max_age: 1d}", "field 'column'", "date or timestamp"),
])
def test_rules_are_checked_against_the_table(tmp_path, rule, where, problem):
    path = write_rules(tmp_path, f"rules:\n  - {rule}\n")
    with pytest.raises(ConfigError) as err:
        dq_rules.bind(dq_rules.load_rules(path), SPEC)
    assert f"{path}: rule 1" in str(err.value) and where in str(err.value) and problem in str(err.value), str(err.value)


def test_json_rules_file_and_defaults(tmp_path):
    path = write_rules(tmp_path, json.dumps({"table": "PRODUIT", "rules": [
        {"type": "unique", "columns": ["gencod-v", "select"]},
        {"type": "not_null", "column": "select", "enabled": False}]}), "produit.json")
    assert dq_rules.rules_file(SPEC, tmp_path) == path
    [bound] = dq_rules.bind(dq_rules.load_rules(path), SPEC)
    assert (bound.rule.name, bound.rule.severity, bound.column_label) == ("unique_gencod-v_select", "warning",
                                                                          "gencod-v,select")
    write_rules(tmp_path, "rules: [{type: not_null, column: select}]\n")
    with pytest.raises(ConfigError, match="several data-quality files"):
        dq_rules.rules_file(SPEC, tmp_path)


def test_each_rule_type_counts_exactly_on_an_extract(tmp_path):
    ts = datetime(2026, 1, 15, 12, 0)
    table = pa.table({
        "cod_pro": pa.array([1, 2, 3, 4, 5, 6], pa.int32()),
        "gencod_v": ["1234567890123", "12345", None, "1234567890123", "", "9999999999999"],
        "prix_vente": pa.array([Decimal("1.5"), Decimal("-2"), None, Decimal("1000"), Decimal("0"), Decimal("7")],
                               pa.decimal128(18, 4)),
        "select": ["A", "B", "Z", None, "A", " "],
        "dat_mod": pa.array([ts - timedelta(days=d) for d in (5, 4, 3, 2, 30, 10)], pa.timestamp("us")),
    })
    pq.write_table(table, tmp_path / "part-00000.parquet")
    manifest = Manifest(table="produit", batch="b9", mode="full", source_clock=ts.isoformat(), window="full",
                        window_since=None, rows=6, files=["part-00000.parquet"], columns=table.column_names,
                        hash_columns=table.column_names, run_id="r", extract_seconds=0, transform_seconds=0,
                        created=ts.isoformat())
    path = write_rules(tmp_path / "dq", """
rules:
  - {name: nn, type: not_null, column: gencod-v, severity: critical}
  - {name: nn_empty, type: not_null, column: gencod_v, empty_is_null: true}
  - {name: uniq, type: unique, column: gencod-v}
  - {name: price, type: range, column: prix-vente, min: 0, max: 999}
  - {name: price_tolerant, type: range, column: prix-vente, min: 0, max_failed_pct: 20}
  - {name: sel, type: allowed_values, column: select, values: [A, B]}
  - {name: ean, type: regex, column: gencod-v, pattern: '\\d{13}'}
  - {name: fresh, type: freshness, max_age: 2d}
  - {name: stale_ok, type: freshness, column: dat_mod, max_age: 50h}
  - {name: vol, type: volume, max_change_pct: 10}
""")
    bound = dq_rules.bind(dq_rules.load_rules(path), SPEC)
    results = {r.rule.name: r for r in quality.evaluate(SPEC, bound, [tmp_path / "part-00000.parquet"],
                                                         manifest=manifest, now=ts)}
    got = {n: (r.passed, r.failed_rows) for n, r in results.items()}
    assert got == {
        "nn": (False, 1), "nn_empty": (False, 2), "uniq": (False, 2), "price": (False, 2),
        "price_tolerant": (True, 1), "sel": (False, 2), "ean": (False, 2), "fresh": (True, None),
        "stale_ok": (True, None), "vol": (True, None),
    }
    assert results["nn"].samples == [{"cod_pro": 3, "gencod-v": None}]
    assert results["uniq"].samples == [{"gencod-v": "1234567890123", "rows": 2}]
    assert [s["cod_pro"] for s in results["price"].samples] == [2, 4]
    assert [s["select"] for s in results["sel"].samples] == ["Z", " "]
    assert "1 of 6 rows (16.67%)" in results["price_tolerant"].observed
    assert "48.0 h old" in results["fresh"].observed
    assert "not judged" in results["vol"].observed
    late = quality.evaluate(SPEC, [b for b in bound if b.rule.name == "fresh"], [tmp_path / "part-00000.parquet"],
                            manifest=manifest, now=ts + timedelta(hours=1))
    assert not late[0].passed and "49.0 h old" in late[0].observed


# -- in the pipeline -----------------------------------------------------------------------------------------------


def dq_log() -> list[dict]:
    target = open_target(settings().target)
    d = target.dialect
    names = ["TableName", "Batch", "RuleName", "RuleType", "ColumnName", "Severity", "Passed", "FailedRows", "Details"]
    return [dict(zip(names, r, strict=True)) for r in target.fetchall(
        f"SELECT {', '.join(d.quote(n) for n in names)} FROM {d.qualified('etl', 'DataQuality_Log')}")]


@pytest.fixture
def sqlite_produit(tmp_path, monkeypatch, target_url):
    db = tmp_path / "erp.sqlite"
    demo_data.create_sqlite_source(db, scale=0.1)
    configure(monkeypatch, source=f"sqlite:///{db}", flavor="sqlite", schema="PUB", target=target_url)
    monkeypatch.setenv("CBM_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("CBM_DQ_DIR", str(tmp_path / "dq"))
    register_demo_tables(["produit"])
    return db


def test_critical_failure_blocks_the_merge_and_a_warning_does_not(sqlite_produit, tmp_path):
    assert build(LoadTable(table="produit", mode="full", batch_id="b1")).scheduling_succeeded
    loaded = ods_rows("produit")
    store = MetadataStore(open_target(settings().target))
    watermark = store.watermark("produit")

    # two products get a negative price, modified now: the next incremental run reads them
    with sqlite3.connect(sqlite_produit) as con:
        con.execute("""UPDATE produit SET "prix-vente" = -1, dat_mod = ? WHERE cod_pro IN (3, 5)""",
                    (datetime.now().strftime("%Y-%m-%d %H:%M:%S"),))
    rules = ("rules:\n  - {name: price_positive, type: range, column: prix-vente, min: 0, severity: %s}\n"
             "  - {name: designation_set, type: not_null, column: designation, severity: critical}\n")
    write_rules(tmp_path / "dq", rules % "critical")

    assert not build(LoadTable(table="produit", mode="incremental", batch_id="b2")).scheduling_succeeded or \
        not any(r["Batch"] == "b2" and r["StepName"] == "flow_complete" for r in log_rows())
    assert ods_rows("produit") == loaded  # the ODS is as it was
    assert store.watermark("produit") == watermark
    failed = [r for r in log_rows() if r["Batch"] == "b2" and r["Status"] == "failed"]
    assert failed and failed[-1]["StepName"] == "merge_ods"
    message = failed[-1]["ErrorMessage"]
    assert "price_positive" in message and "cod_pro=3" in message and "cod_pro=5" in message
    assert "ODS is unchanged" in message
    checks = {r["RuleName"]: r for r in dq_log() if r["Batch"] == "b2"}
    assert (checks["price_positive"]["Passed"], checks["price_positive"]["FailedRows"]) == (False, 2)
    assert checks["price_positive"]["Severity"] == "critical"
    assert json.loads(checks["price_positive"]["Details"])["samples"][0]["cod_pro"] == 3
    assert checks["designation_set"]["Passed"] is True
    assert list((tmp_path / "reports" / "dq").glob("produit_b2_*.html"))

    # the same rule as a warning: the merge goes through, the result is logged
    write_rules(tmp_path / "dq", rules % "warning")
    clear_caches()
    assert build(LoadTable(table="produit", mode="incremental", batch_id="b3")).scheduling_succeeded
    after = ods_rows("produit")
    assert after != loaded
    assert sum(1 for r in after if r[5] == "-1") == 2  # prix-vente (column 6) as loaded
    checks = {r["RuleName"]: r for r in dq_log() if r["Batch"] == "b3"}
    assert (checks["price_positive"]["Passed"], checks["price_positive"]["Severity"]) == (False, "warning")
    assert any(r["Batch"] == "b3" and r["StepName"] == "flow_complete" for r in log_rows())


def test_volume_drop_against_the_previous_run_and_the_dq_command(sqlite_produit, tmp_path):
    assert build(LoadTable(table="produit", mode="full", batch_id="b1")).scheduling_succeeded
    write_rules(tmp_path / "dq", "rules:\n  - {name: no_mass_drop, type: volume, max_change_pct: 20, "
                                 "direction: drop, severity: critical}\n")
    with sqlite3.connect(sqlite_produit) as con:
        con.execute("DELETE FROM produit WHERE cod_pro % 2 = 0")
    assert not build(LoadTable(table="produit", mode="full", batch_id="b2")).scheduling_succeeded or \
        not any(r["Batch"] == "b2" and r["StepName"] == "flow_complete" for r in log_rows())
    [check] = [r for r in dq_log() if r["Batch"] == "b2"]
    assert check["Passed"] is False and "-50.0%" in json.loads(check["Details"])["observed"]
    # the command on the last extract (b2): exit 1, and a report
    assert main(["dq", "produit"]) == 1
    assert main(["dq", "produit", "--batch", "b1"]) == 0  # b1 vs the previous full run (none other): not judged
    assert len(list((tmp_path / "reports" / "dq").glob("produit_b1_*.csv"))) == 1
