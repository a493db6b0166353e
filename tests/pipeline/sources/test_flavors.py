"""Golden SQL of the ``progress`` flavour: no Progress server runs here, so its SQL is pinned.

Regenerate after a deliberate change with ``CBM_UPDATE_GOLDEN=1 python -m pytest tests/pipeline/sources/test_flavors.py``
and review the diff.  (The same flavour also runs for real against PostgreSQL's SYSPROGRESS emulation in
tests/tasks/test_pipeline.py.)
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import pytest

from cbm_luigi.model.specs import ColumnSpec, TableSpec
from cbm_luigi.model.types import DATE, DECIMAL, INTEGER, STRING, TIMESTAMP, TIMESTAMP_TZ
from cbm_luigi.pipeline.partitions import PartitionPlan, split_range
from cbm_luigi.pipeline.sources.flavors import ProgressFlavor, Window, incremental_window

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "progress"
FLAVOR = ProgressFlavor()


def order_line(**changes: object) -> TableSpec:
    cols = (
        ColumnSpec("order-num", "order_num", INTEGER, "integer", position=1, nullable=False),
        ColumnSpec("line-num", "line_num", INTEGER, "integer", position=2, nullable=False),
        ColumnSpec("item#", "item_", STRING, "varchar", width=20, position=3),
        ColumnSpec("desc", "desc", STRING, "varchar", width=60, position=4),
        ColumnSpec("price$", "price_", DECIMAL, "decimal", precision=17, scale=6, position=5),
        ColumnSpec("select", "select", STRING, "varchar", width=8, position=6, extent=3),
        ColumnSpec("obsolete", "obsolete", STRING, "varchar", width=8, position=7, is_excluded=True),
        ColumnSpec("dat-mod", "dat_mod", TIMESTAMP, "timestamp", position=8),
        ColumnSpec("ship-date", "ship_date", DATE, "date", position=9),
    )
    base = dict(table_name="order-line", sql_name="order_line", destination_table="ods.order_line",
                primary_key=("order_num", "line_num"), has_timestamps=True, date_modif_col="dat_mod",
                date_modif_precision="datetime", lookback="1d", columns=cols)
    base.update(changes)
    return TableSpec(**base)  # type: ignore[arg-type]


WM = datetime(2026, 11, 25, 14, 30, 15)


def statements() -> dict[str, tuple[str, list[str]]]:
    spec = order_line()
    date_spec = order_line(date_modif_precision="date", date_modif_col="ship_date", lookback="2d")
    filtered = order_line(filter_clause="\"order-num\" > 1000")
    no_ts = order_line(has_timestamps=False)
    openedge_types = order_line(split_extents=True, columns=(
        *spec.columns, ColumnSpec("dat-tz", "dat_tz", TIMESTAMP_TZ, "timestamp_timezone", position=10),
        ColumnSpec("qte-mois", "qte_mois", DECIMAL, "decimal", precision=None, scale=None, position=11, extent=12)))
    full = incremental_window(spec, "full", WM)
    part = PartitionPlan(table="order-line", parts=3, key_column="order-num", key_min=1, key_max=3000,
                         bounds=split_range(1, 3000, 3), source_clock=WM.isoformat(), started=WM.isoformat(),
                         window_since=None, window_precision=full.precision, window_reason=full.reason)
    return {
        "select_full": FLAVOR.select_sql(spec, "PUB", incremental_window(spec, "full", WM)),
        # WidthPolicy=truncate: character columns with a SQL width read as SUBSTR(col, 1, width); not extents
        "select_truncate_widths": FLAVOR.select_sql(order_line(width_policy="truncate"), "PUB",
                                                    incremental_window(spec, "full", WM)),
        "select_incremental_datetime": FLAVOR.select_sql(spec, "PUB", incremental_window(spec, "incremental", WM)),
        "select_incremental_date": FLAVOR.select_sql(date_spec, "PUB", incremental_window(date_spec, "incremental", WM)),
        "select_filter_incremental": FLAVOR.select_sql(filtered, "PUB", incremental_window(filtered, "incremental", WM)),
        "select_no_timestamps": FLAVOR.select_sql(no_ts, "PUB", incremental_window(no_ts, "incremental", WM)),
        "count_incremental": FLAVOR.count_sql(spec, "PUB", incremental_window(spec, "incremental", WM)),
        "select_keys": FLAVOR.select_keys_sql(spec, "PUB"),
        # split extents are split after the read (pipeline/openedge.py): the whole ';'-joined text is selected,
        # never CAST (a decimal extent is no decimal); a DATETIME-TZ as its text, offset included
        "select_openedge_types": FLAVOR.select_sql(openedge_types, "PUB", incremental_window(spec, "full", WM)),
        "select_keys_filter": FLAVOR.select_keys_sql(filtered, "PUB"),
        # partitioned extraction (pipeline/partitions.py): MIN / MAX of the first key over the FilterClause, then
        # each part's key range bound as BIGINT; the first part also reads NULL keys (refused by the key check)
        "partition_min": (FLAVOR.key_bounds_sql(filtered, "PUB", full, "order-num")[0], []),
        "partition_max": (FLAVOR.key_bounds_sql(filtered, "PUB", full, "order-num")[1], []),
        "select_partition_first": FLAVOR.select_sql(filtered, "PUB", part.part_window(0)),
        "select_partition_middle": FLAVOR.select_sql(filtered, "PUB", part.part_window(1)),
        "select_partition_last": FLAVOR.select_sql(filtered, "PUB", part.part_window(2)),
        "catalog": (FLAVOR.catalog_sql() or "", ["PUB", "order-line"]),
        "clock": (FLAVOR.clock_sql(), []),
        "session_setup": (";\n".join(FLAVOR.session_setup_sql()), []),
    }


def render(sql: str, params: list[str]) -> str:
    return sql.rstrip() + "\n" + "".join(f"-- param {i + 1}: {p}\n" for i, p in enumerate(params))


@pytest.mark.parametrize("name", sorted(statements()))
def test_progress_sql_matches_golden(name: str) -> None:
    sql, params = statements()[name]
    text = render(sql, params)
    path = GOLDEN / f"{name}.sql"
    if os.environ.get("CBM_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"missing golden file {path}: run with CBM_UPDATE_GOLDEN=1 and review it"
    assert text == path.read_text(encoding="utf-8")


def test_every_identifier_is_double_quoted_and_aliased_sql_safe() -> None:
    sql, _ = statements()["select_full"]
    assert '"order-num" AS "order_num"' in sql
    assert '"item#" AS "item_"' in sql and '"price$" AS "price_"' in sql
    assert '"select" AS "select"' in sql  # reserved word, quoted
    assert '"obsolete"' not in sql  # excluded column not read
    assert 'FROM "PUB"."order-line"' in sql


def test_window_boundaries_are_bound_parameters_not_text() -> None:
    sql, params = statements()["select_incremental_datetime"]
    assert '"dat-mod" >= CAST(? AS TIMESTAMP)' in sql
    assert params == ["2026-11-24 14:30:15"]  # watermark minus the 1d lookback
    sql, params = statements()["select_incremental_date"]
    assert '"ship-date" >= CAST(? AS DATE)' in sql
    assert params == ["2026-11-23"]  # date precision: whole days


def test_tables_without_timestamps_are_always_read_in_full() -> None:
    sql, params = statements()["select_no_timestamps"]
    assert "WHERE" not in sql and params == []
    w = incremental_window(order_line(), "incremental", None)
    assert w.since is None and "never loaded" in w.reason


def test_the_key_scan_reads_the_key_columns_of_every_filtered_row_without_window() -> None:
    sql, params = FLAVOR.select_keys_sql(order_line(filter_clause="\"order-num\" > 1000"), "PUB")
    assert sql.startswith('SELECT "order-num" AS "order_num",\n       "line-num" AS "line_num"\nFROM "PUB"."order-line"')
    assert sql.endswith('\nWHERE ("order-num" > 1000)') and params == []
    assert '"dat-mod"' not in sql and '"desc"' not in sql  # keys only, no watermark window
    assert "WHERE" not in FLAVOR.select_keys_sql(order_line(), "PUB")[0]


def test_quotes_inside_names_are_doubled() -> None:
    assert FLAVOR.quote('we"ird') == '"we""ird"'
    assert Window(None).boundary_text() is None
