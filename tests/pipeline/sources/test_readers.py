"""Batches from the source are conformed to the catalog's schema, and never silently changed."""

from __future__ import annotations

from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cbm_luigi.errors import SourceError
from cbm_luigi.pipeline.sources import conform_batch


def _batch(arr: pa.Array, typ: pa.DataType) -> tuple[pa.RecordBatch, pa.Schema]:
    schema = pa.schema([pa.field("prix", typ)])
    return pa.RecordBatch.from_arrays([arr], names=["prix"]), schema


def test_decimal_wider_than_declared_precision_is_refused_not_mangled(tmp_path) -> None:
    # what a driver hands over when Progress holds -123456.78 in a column declared DECIMAL(6,2)
    raw = pa.array([Decimal("-123456.78"), Decimal("1.50"), None], pa.decimal128(10, 2)).view(pa.decimal128(6, 2))
    batch, schema = _batch(raw, pa.decimal128(6, 2))
    # the danger being guarded: parquet would store it as a different number
    pq.write_table(pa.Table.from_batches([batch]), tmp_path / "x.parquet")
    assert pq.read_table(tmp_path / "x.parquet")["prix"][0].as_py() != Decimal("-123456.78")
    with pytest.raises(SourceError, match=r"column prix: 1 value\(s\) need more than the 6 digits.*-123456.78"):
        conform_batch(batch, schema)


def test_decimals_that_fit_pass_and_floats_keep_their_shortest_text() -> None:
    ok, schema = _batch(pa.array([Decimal("9999.99"), Decimal("-9999.99"), None], pa.decimal128(6, 2)),
                        pa.decimal128(6, 2))
    assert conform_batch(ok, schema).column(0).to_pylist() == [Decimal("9999.99"), Decimal("-9999.99"), None]
    real, schema = _batch(pa.array([229.312, None], pa.float32()), pa.float64())
    assert conform_batch(real, schema).column(0).to_pylist() == [229.312, None]


def test_a_value_that_cannot_convert_names_its_column() -> None:
    bad, schema = _batch(pa.array(["12.5", "n/a"]), pa.decimal128(6, 2))
    with pytest.raises(SourceError, match="column prix: cannot convert string"):
        conform_batch(bad, schema)
