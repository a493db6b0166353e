"""``etl.Validation_Log`` and ``etl.DataQuality_Log``: the results of validation and of data-quality rules.

The checks (``ops/validation.py``, ``ops/quality.py``) build the rows; this module writes them, one transaction
per call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cbm_luigi.destinations.client import Target
from cbm_luigi.destinations.dialect import Dialect
from cbm_luigi.model.meta import MetaTable
from cbm_luigi.store.schema import DATA_QUALITY_LOG, VALIDATION_LOG


def insert_sql(d: Dialect, meta: MetaTable) -> str:
    """INSERT of every column of a metadata table, one ``:Column`` parameter each."""
    q = d.quote
    cols = [c.name for c in meta.columns]
    return (f"INSERT INTO {d.qualified(meta.schema, meta.name)} ({', '.join(q(c) for c in cols)}) "
            f"VALUES ({', '.join(':' + c for c in cols)})")


def record_validation(target: Target, row: Mapping[str, Any]) -> None:
    """One etl.Validation_Log row (a table's validation result)."""
    with target.begin(table=str(row.get("TableName") or "") or None, step="validate") as conn:
        conn.execute(insert_sql(target.dialect, VALIDATION_LOG), dict(row))


def record_quality(target: Target, rows: Sequence[Mapping[str, Any]]) -> None:
    """One etl.DataQuality_Log row per evaluated rule, in one transaction."""
    if not rows:
        return
    with target.begin(table=str(rows[0].get("TableName") or "") or None, step="data_quality") as conn:
        sql = insert_sql(target.dialect, DATA_QUALITY_LOG)
        for r in rows:
            conn.execute(sql, dict(r))
