"""Tests for cbm_luigi.pipeline.transform: canonical text, hashdiff, cleaning rules and technical columns."""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import random
import struct
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from cbm_luigi.pipeline import transform
from cbm_luigi.pipeline.transform import (
    HASHDIFF_LENGTH,
    TECHNICAL_COLUMNS,
    CleaningStats,
    add_technical_columns,
    canonical_text,
    clean_batch,
    compute_hashdiff,
    row_strings,
    transform_batch,
)

MIN_DATE = dt.date(1753, 1, 1)
MAX_DATE = dt.date(9999, 12, 31)
LOAD_TS = dt.datetime(2024, 5, 6, 7, 8, 9, 123456)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def one_row_hash(columns: dict[str, pa.Array]) -> str:
    batch = pa.RecordBatch.from_pydict(columns)
    result = compute_hashdiff(batch, list(columns))
    assert len(result) == 1
    value = result[0].as_py()
    assert isinstance(value, str)
    return value


def texts(array: pa.Array | pa.ChunkedArray) -> list[Any]:
    return canonical_text(array).to_pylist()


def mixed_table(n_rows: int, seed: int = 7) -> pa.Table:
    """A table with every supported family of types and ~15% NULLs."""
    rng = random.Random(seed)

    def maybe(value: Any) -> Any:
        return None if rng.random() < 0.15 else value

    words = ["", "a", "a|b", "1:", "~", "pièce n°3", "x" * 40, " padded ", "UPPER"]
    base = dt.datetime(2000, 1, 1)
    return pa.table(
        {
            "i": pa.array(
                [maybe(rng.randint(-(10**12), 10**12)) for _ in range(n_rows)],
                pa.int64(),
            ),
            "i8": pa.array(
                [maybe(rng.randint(-128, 127)) for _ in range(n_rows)], pa.int8()
            ),
            "dec": pa.array(
                [
                    maybe(Decimal(rng.randint(-(10**9), 10**9)).scaleb(-4))
                    for _ in range(n_rows)
                ],
                pa.decimal128(18, 4),
            ),
            "f": pa.array(
                [maybe(rng.uniform(-1e6, 1e6)) for _ in range(n_rows)], pa.float64()
            ),
            "s": pa.array(
                [maybe(rng.choice(words)) for _ in range(n_rows)], pa.string()
            ),
            "d": pa.array(
                [
                    maybe(dt.date(2000, 1, 1) + dt.timedelta(days=rng.randint(0, 9000)))
                    for _ in range(n_rows)
                ],
                pa.date32(),
            ),
            "ts": pa.array(
                [
                    maybe(base + dt.timedelta(milliseconds=rng.randint(0, 10**12)))
                    for _ in range(n_rows)
                ],
                pa.timestamp("ms"),
            ),
            "b": pa.array(
                [maybe(rng.random() < 0.5) for _ in range(n_rows)], pa.bool_()
            ),
            "bin": pa.array(
                [maybe(rng.randbytes(rng.randint(0, 6))) for _ in range(n_rows)],
                pa.binary(),
            ),
            "t": pa.array(
                [
                    maybe(
                        dt.time(
                            rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59)
                        )
                    )
                    for _ in range(n_rows)
                ],
                pa.time64("us"),
            ),
            "cat": pa.array(
                [maybe(rng.choice(words)) for _ in range(n_rows)], pa.string()
            ).dictionary_encode(),
        }
    )


# --------------------------------------------------------------------------------------------------
# The definition, end to end
# --------------------------------------------------------------------------------------------------


def test_known_row_matches_hand_written_canonical_string() -> None:
    columns = {
        "i": pa.array([-5], pa.int64()),
        "dec": pa.array([Decimal("1.500000")], pa.decimal128(12, 6)),
        "f": pa.array([1.0], pa.float64()),
        "s": pa.array(["é|x"], pa.string()),
        "n": pa.array([None], pa.string()),
        "e": pa.array([""], pa.string()),
        "d": pa.array([dt.date(2024, 2, 29)], pa.date32()),
        "ts": pa.array(
            [dt.datetime(2024, 2, 29, 13, 45, 30, 123000)], pa.timestamp("ms")
        ),
        "b": pa.array([True], pa.bool_()),
        "bin": pa.array([b"\x00\xff"], pa.binary()),
        "t": pa.array([dt.time(1, 2, 3)], pa.time64("us")),
    }
    expected_row = "2:-5|3:1.5|1:1|3:é|x|~|0:|10:2024-02-29|26:2024-02-29T13:45:30.123000|1:1|4:00ff|15:01:02:03.000000"
    batch = pa.RecordBatch.from_pydict(columns)
    assert row_strings(batch, list(columns)).to_pylist() == [expected_row]
    assert (
        one_row_hash(columns)
        == hashlib.sha256(expected_row.encode("utf-8")).hexdigest()
    )
    # pinned, as docs/HASHDIFF.md quotes it: any change of definition shows here
    assert (
        one_row_hash(columns)
        == "7ca29a1af2cf572e50ca4c462d68a400b22a00b2c0594ac0e96acf5d94d19dd8"
    )


def test_hashdiff_is_lowercase_hex_never_null_and_string_typed() -> None:
    table = mixed_table(300)
    result = compute_hashdiff(table, table.column_names)
    assert result.type == pa.string()
    assert len(result) == 300
    assert result.null_count == 0
    assert all(
        len(h) == HASHDIFF_LENGTH and set(h) <= set("0123456789abcdef")
        for h in result.to_pylist()
    )
    # an all-NULL row still gets a hash
    nulls = pa.table({"a": pa.nulls(2, pa.int64()), "b": pa.nulls(2, pa.string())})
    assert compute_hashdiff(nulls, ["a", "b"]).to_pylist() == [sha("~|~")] * 2


def test_hashdiff_equals_hashlib_of_row_strings() -> None:
    table = mixed_table(500)
    rows = row_strings(table, table.column_names).to_pylist()
    assert compute_hashdiff(table, table.column_names).to_pylist() == [
        sha(row) for row in rows
    ]


@pytest.mark.parametrize(
    "backend", [transform._sha256_hex_hashlib, transform._sha256_hex_duckdb]
)
def test_both_sha256_backends_equal_hashlib(backend: Any) -> None:
    strings = ["", "a", "é", "a\x00b", "€" * 3000, "x|y:z", "~"] + [
        f"row {i}" for i in range(5000)
    ]
    for array in (
        pa.array(strings, pa.string()),
        pa.array(strings, pa.large_string()).slice(3),
    ):
        expected = [sha(s) for s in array.to_pylist()]
        assert backend(array).to_pylist() == expected
    assert backend(pa.array([], pa.string())).to_pylist() == []


def test_empty_batch_and_no_columns() -> None:
    table = mixed_table(5)
    assert compute_hashdiff(table.slice(0, 0), table.column_names).to_pylist() == []
    assert compute_hashdiff(table, []).to_pylist() == [sha("")] * 5


# --------------------------------------------------------------------------------------------------
# Representation independence
# --------------------------------------------------------------------------------------------------


def test_one_as_int_float_and_decimal_hash_equal() -> None:
    as_int = one_row_hash({"x": pa.array([1], pa.int64())})
    as_int32 = one_row_hash({"x": pa.array([1], pa.int32())})
    as_float = one_row_hash({"x": pa.array([1.0], pa.float64())})
    as_float32 = one_row_hash({"x": pa.array([1.0], pa.float32())})
    as_decimal = one_row_hash({"x": pa.array([Decimal("1.000")], pa.decimal128(10, 3))})
    assert as_int == as_int32 == as_float == as_float32 == as_decimal == sha("1:1")


def test_one_and_a_half_as_float_and_decimal_hash_equal() -> None:
    as_float = one_row_hash({"x": pa.array([1.5], pa.float64())})
    as_decimal = one_row_hash({"x": pa.array([Decimal("1.50")], pa.decimal128(10, 2))})
    assert as_float == as_decimal == sha("3:1.5")
    assert as_float != one_row_hash({"x": pa.array([1.0], pa.float64())})


def test_large_and_small_floats_match_equivalent_decimals() -> None:
    assert texts(pa.array([1e23, 1e-7])) == texts(
        pa.array([Decimal(10**23), Decimal("0.0000001")], pa.decimal128(38, 10))
    )


def test_timestamp_units_and_time_zones_give_the_same_hash() -> None:
    instant = dt.datetime(2023, 7, 1, 12, 30, 45, 250000)
    hashes = {
        one_row_hash({"t": pa.array([instant], pa.timestamp(unit))})
        for unit in ("ms", "us", "ns")
    }
    assert len(hashes) == 1
    expected = sha("26:2023-07-01T12:30:45.250000")
    assert hashes == {expected}
    utc = instant.replace(tzinfo=dt.UTC)
    assert one_row_hash({"t": pa.array([utc], pa.timestamp("us", "UTC"))}) == expected
    assert one_row_hash({"t": pa.array([utc], pa.timestamp("ms", "UTC"))}) == expected
    # the same instant stored with another zone hashes as its UTC wall time
    paris = utc.astimezone(dt.timezone(dt.timedelta(hours=2)))
    assert (
        one_row_hash({"t": pa.array([paris], pa.timestamp("us", "Europe/Paris"))})
        == expected
    )
    assert (
        one_row_hash(
            {
                "t": pa.array(
                    [instant + dt.timedelta(microseconds=1)], pa.timestamp("us")
                )
            }
        )
        != expected
    )


def test_dictionary_and_plain_strings_hash_equal() -> None:
    values = ["a", None, "b", "a", ""]
    plain = pa.table({"s": pa.array(values)})
    encoded = pa.table({"s": pa.array(values).dictionary_encode()})
    assert compute_hashdiff(plain, ["s"]).equals(compute_hashdiff(encoded, ["s"]))


def test_column_names_are_not_hashed_but_order_is() -> None:
    a = pa.array([1, 2])
    b = pa.array(["x", "y"])
    first = compute_hashdiff(pa.table({"a": a, "b": b}), ["a", "b"])
    renamed = compute_hashdiff(pa.table({"other": a, "names": b}), ["other", "names"])
    swapped = compute_hashdiff(pa.table({"a": a, "b": b}), ["b", "a"])
    assert first.equals(renamed)
    assert not pc.any(pc.equal(first, swapped)).as_py()


# --------------------------------------------------------------------------------------------------
# Separator and NULL safety
# --------------------------------------------------------------------------------------------------


def test_null_and_empty_string_differ() -> None:
    assert one_row_hash({"s": pa.array([None], pa.string())}) != one_row_hash(
        {"s": pa.array([""])}
    )
    assert one_row_hash({"s": pa.array([None], pa.string())}) != one_row_hash(
        {"s": pa.array(["None"])}
    )
    assert one_row_hash({"s": pa.array([None], pa.string())}) != one_row_hash(
        {"s": pa.array(["~"])}
    )


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (("a|b", "c"), ("a", "b|c")),
        (("1:a|1:b", None), ("a", "b")),
        (("a|1:", "b"), ("a", "1:b")),
        (("", "~"), ("~", "")),
        (("x|~", None), ("x", None)),
        (("2:ab", "c"), ("ab", "c")),
    ],
)
def test_values_cannot_imitate_field_boundaries(
    left: tuple[str | None, str | None], right: tuple[str | None, str | None]
) -> None:
    def two(values: Sequence[str | None]) -> str:
        return one_row_hash(
            {
                "a": pa.array([values[0]], pa.string()),
                "b": pa.array([values[1]], pa.string()),
            }
        )

    assert two(left) != two(right)


def test_single_column_cannot_imitate_two_columns() -> None:
    two = one_row_hash({"a": pa.array(["a"]), "b": pa.array(["b"])})
    one = one_row_hash({"a": pa.array(["1:a|1:b"])})
    assert row_strings(pa.table({"a": ["1:a|1:b"]}), ["a"]).to_pylist() == ["7:1:a|1:b"]
    assert one != two


def test_long_values_get_their_character_length() -> None:
    long = "é" * 9000  # 9000 characters, 18000 UTF-8 bytes
    table = pa.table({"a": pa.array([long, None, "x"]), "b": pa.array([1, 2, None])})
    assert row_strings(table, ["a", "b"]).to_pylist() == [
        f"9000:{long}|1:1",
        "~|1:2",
        "1:x|~",
    ]
    assert compute_hashdiff(table, ["a", "b"])[0].as_py() == sha(f"9000:{long}|1:1")


# --------------------------------------------------------------------------------------------------
# Batch composition
# --------------------------------------------------------------------------------------------------


def test_hash_does_not_depend_on_batch_composition() -> None:
    table = mixed_table(400)
    columns = table.column_names
    whole = compute_hashdiff(table.combine_chunks(), columns).to_pylist()

    batches = table.to_batches(max_chunksize=37)
    assert len(batches) > 5
    per_batch = [
        h for batch in batches for h in compute_hashdiff(batch, columns).to_pylist()
    ]
    assert per_batch == whole

    chunked = pa.Table.from_batches(batches)
    assert chunked.column("i").num_chunks > 1
    assert compute_hashdiff(chunked, columns).to_pylist() == whole

    single = table.combine_chunks().to_batches()[0]
    sliced = [
        h
        for start, length in ((0, 1), (1, 150), (151, 3), (154, 246))
        for h in compute_hashdiff(single.slice(start, length), columns).to_pylist()
    ]
    assert sliced == whole


def test_chunked_arrays_with_different_dictionaries() -> None:
    chunks = [
        pa.array(["a", "b"]).dictionary_encode(),
        pa.array(["b", None, "c"]).dictionary_encode(),
    ]
    chunked = pa.chunked_array(chunks)
    assert texts(chunked) == ["a", "b", "b", None, "c"]
    assert compute_hashdiff(pa.table({"x": chunked}), ["x"]).equals(
        compute_hashdiff(pa.table({"x": ["a", "b", "b", None, "c"]}), ["x"])
    )


def test_sliced_binary_and_boolean_arrays() -> None:
    binary = pa.array([b"\x01", None, b"\xab\xcd", b"", b"\x00"])
    assert texts(binary.slice(1)) == [None, "abcd", "", "00"]
    assert texts(binary.slice(2, 2)) == ["abcd", ""]
    booleans = pa.array(
        [True, None, False, True, False, False, True, False, True, None]
    )
    assert texts(booleans.slice(3)) == ["1", "0", "0", "1", "0", "1", None]


# --------------------------------------------------------------------------------------------------
# Canonical text per type
# --------------------------------------------------------------------------------------------------


def test_integer_text() -> None:
    assert texts(pa.array([-5, 0, None, 2**63 - 1], pa.int64())) == [
        "-5",
        "0",
        None,
        str(2**63 - 1),
    ]
    assert texts(pa.array([2**64 - 1], pa.uint64())) == [str(2**64 - 1)]


@pytest.mark.parametrize(
    ("value", "type_", "expected"),
    [
        ("1.500000", pa.decimal128(12, 6), "1.5"),
        ("10.000", pa.decimal128(10, 3), "10"),
        ("-0.000", pa.decimal128(10, 3), "0"),
        ("0.000", pa.decimal128(10, 3), "0"),
        ("100", pa.decimal128(10, 0), "100"),
        ("-123.450", pa.decimal128(10, 3), "-123.45"),
        ("0.0000001000", pa.decimal128(20, 10), "0.0000001"),
        ("-0.0000000120", pa.decimal128(20, 10), "-0.000000012"),
        ("0E-10", pa.decimal128(20, 10), "0"),
        ("12300", pa.decimal128(5, -2), "12300"),
        ("1.50", pa.decimal32(5, 2), "1.5"),
        ("1.50", pa.decimal64(12, 2), "1.5"),
        (
            "123456789012345678901234567890.1234567890",
            pa.decimal256(50, 10),
            "123456789012345678901234567890.123456789",
        ),
    ],
)
def test_decimal_text(value: str, type_: pa.DataType, expected: str) -> None:
    assert texts(pa.array([Decimal(value)], type_)) == [expected]


def test_decimal_text_matches_python_decimal() -> None:
    rng = random.Random(3)
    for type_ in (pa.decimal128(20, 6), pa.decimal128(38, 30), pa.decimal128(9, -3)):
        values = []
        for _ in range(300):
            digits = "".join(
                rng.choice("0123456789") for _ in range(rng.randint(1, type_.precision))
            )
            values.append(Decimal(rng.choice(["", "-"]) + digits).scaleb(-type_.scale))
        expected = ["0" if v.is_zero() else format(v.normalize(), "f") for v in values]
        assert texts(pa.array(values, type_)) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1.0, "1"),
        (-0.0, "0"),
        (0.0, "0"),
        (1.5, "1.5"),
        (0.1, "0.1"),
        (0.30000000000000004, "0.30000000000000004"),
        (-2.5, "-2.5"),
        (1e20, "100000000000000000000"),
        (1e23, "100000000000000000000000"),
        (123456789012345678.0, "123456789012345680"),
        (2.0**53 + 2, "9007199254740994"),
        (1e-5, "0.00001"),
        (1e-7, "0.0000001"),
        (-1.25e-7, "-0.000000125"),
        (5e-324, "0." + "0" * 323 + "5"),
        (float("nan"), "NaN"),
        (float("inf"), "Infinity"),
        (float("-inf"), "-Infinity"),
    ],
)
def test_float_text(value: float, expected: str) -> None:
    assert texts(pa.array([value], pa.float64())) == [expected]


def _python_shortest_plain(value: float) -> str:
    """Reference: the digits of repr() (shortest round-trip) written without exponent."""
    text = format(Decimal(repr(value)).normalize(), "f")
    return "0" if text == "-0" else text


def test_float_text_matches_python_shortest_round_trip() -> None:
    rng = random.Random(11)
    values = [struct.unpack("<d", rng.randbytes(8))[0] for _ in range(3000)]
    values += [rng.uniform(-1e4, 1e4) for _ in range(1000)]
    values += [round(rng.uniform(-1e7, 1e7), 2) for _ in range(1000)]
    values = [v for v in values if math.isfinite(v)]
    got = texts(pa.array(values, pa.float64()))
    assert got == [_python_shortest_plain(v) for v in values]


def test_float32_uses_single_precision_shortest_digits() -> None:
    assert texts(pa.array([0.1, 1.0, 16777216.0, None, -0.0], pa.float32())) == [
        "0.1",
        "1",
        "16777216",
        None,
        "0",
    ]
    assert texts(pa.array([1.5], pa.float16())) == ["1.5"]


def test_scientific_expansion_handles_every_point_position() -> None:
    got = transform._expand_exponent(
        pa.array(["1.2345e+2", "12.5e-1", "-1.5e0", "1e+3", "-123e-5", "9.99e-1"])
    )
    assert got.to_pylist() == ["123.45", "1.25", "-1.5", "1000", "-0.00123", "0.999"]


def test_boolean_string_date_time_binary_text() -> None:
    assert texts(pa.array([True, False, None])) == ["1", "0", None]
    assert texts(pa.array(["  Mixed Case  ", "é", None])) == [
        "  Mixed Case  ",
        "é",
        None,
    ]
    assert texts(pa.array(["x"], pa.large_string())) == ["x"]
    assert texts(pa.array(["x", None], pa.string_view())) == ["x", None]
    assert texts(pa.array([dt.date(1, 1, 1), dt.date(2024, 12, 31), None])) == [
        "0001-01-01",
        "2024-12-31",
        None,
    ]
    assert texts(pa.array([dt.date(2024, 12, 31)], pa.date64())) == ["2024-12-31"]
    assert texts(pa.array([dt.time(23, 59, 59, 999999)], pa.time64("us"))) == [
        "23:59:59.999999"
    ]
    assert texts(pa.array([1500], pa.time32("ms"))) == ["00:00:01.500000"]
    assert texts(pa.array([1_999], pa.time64("ns"))) == ["00:00:00.000001"]
    assert texts(pa.array([b"\x00\x0f\xab", b"", None])) == ["000fab", "", None]
    assert texts(pa.array([b"\xffA"], pa.large_binary())) == ["ff41"]
    assert texts(pa.array([b"\xffA", None], pa.binary(2))) == ["ff41", None]
    assert texts(pa.nulls(2)) == [None, None]


def test_timestamp_text() -> None:
    assert texts(pa.array([dt.datetime(1, 1, 1, 0, 0, 0, 5)], pa.timestamp("us"))) == [
        "0001-01-01T00:00:00.000005"
    ]
    assert texts(pa.array([0], pa.timestamp("s"))) == ["1970-01-01T00:00:00.000000"]
    # nanoseconds are floored to the microsecond, also before 1970
    assert texts(pa.array([1_999, -1], pa.timestamp("ns"))) == [
        "1970-01-01T00:00:00.000001",
        "1969-12-31T23:59:59.999999",
    ]


def test_unsupported_type_raises_type_error_naming_it() -> None:
    with pytest.raises(TypeError, match=r"list<item: int64>"):
        canonical_text(pa.array([[1, 2]]))
    with pytest.raises(TypeError, match="struct"):
        compute_hashdiff(pa.table({"s": pa.array([{"a": 1}])}), ["s"])


def test_missing_hash_column_raises_value_error() -> None:
    with pytest.raises(ValueError, match="'nope'"):
        compute_hashdiff(pa.table({"a": [1]}), ["a", "nope"])


# --------------------------------------------------------------------------------------------------
# Cleaning
# --------------------------------------------------------------------------------------------------


def test_out_of_range_dates_and_timestamps_become_null_and_are_counted() -> None:
    batch = pa.RecordBatch.from_pydict(
        {
            "d": pa.array(
                [
                    dt.date(1, 1, 1),
                    dt.date(2020, 5, 1),
                    None,
                    dt.date(9999, 12, 31),
                    dt.date(1753, 1, 1),
                ]
            ),
            "ts": pa.array(
                [
                    dt.datetime(1, 1, 1),
                    dt.datetime(2199, 12, 31, 23, 59, 59, 999999),
                    None,
                    dt.datetime(2200, 1, 1),
                    dt.datetime(1752, 12, 31, 23, 59, 59),
                ],
                pa.timestamp("ms"),
            ),
            "tz": pa.array([0, None, 1, 2, 3], pa.timestamp("ns", "UTC")),
            "n": pa.array([1, 2, 3, 4, 5]),
        }
    )
    cleaned, stats = clean_batch(
        batch, min_date=MIN_DATE, max_date=dt.date(2199, 12, 31)
    )
    assert cleaned.column("d").to_pylist() == [
        None,
        dt.date(2020, 5, 1),
        None,
        None,
        dt.date(1753, 1, 1),
    ]
    assert cleaned.column("ts").to_pylist() == [
        None,
        dt.datetime(2199, 12, 31, 23, 59, 59, 999000),
        None,
        None,
        None,
    ]
    assert cleaned.column("tz").equals(batch.column("tz"))
    assert cleaned.column("n").equals(batch.column("n"))
    assert cleaned.schema == batch.schema
    assert stats.nulled_out_of_range == {"d": 2, "ts": 3}
    assert stats.removed_nul_chars == {}
    assert stats.total() == 5


def test_out_of_range_date_in_dictionary_column() -> None:
    batch = pa.RecordBatch.from_pydict(
        {
            "d": pa.array(
                [dt.date(1, 1, 1), dt.date(2000, 1, 1), dt.date(1, 1, 1)]
            ).dictionary_encode()
        }
    )
    cleaned, stats = clean_batch(batch, min_date=MIN_DATE, max_date=MAX_DATE)
    assert cleaned.column("d").type == batch.column("d").type
    assert cleaned.column("d").to_pylist() == [None, dt.date(2000, 1, 1), None]
    assert stats.nulled_out_of_range == {"d": 2}


def test_non_nullable_temporal_fields_become_nullable_in_every_batch() -> None:
    schema = pa.schema(
        [
            pa.field("d", pa.date32(), nullable=False),
            pa.field("n", pa.int64(), nullable=False),
        ]
    )
    bad = pa.RecordBatch.from_pylist([{"d": dt.date(1, 1, 1), "n": 1}], schema=schema)
    good = pa.RecordBatch.from_pylist(
        [{"d": dt.date(2000, 1, 1), "n": 2}], schema=schema
    )
    cleaned_bad, _ = clean_batch(bad, min_date=MIN_DATE, max_date=MAX_DATE)
    cleaned_good, stats = clean_batch(good, min_date=MIN_DATE, max_date=MAX_DATE)
    assert cleaned_bad.column("d").to_pylist() == [None]
    assert stats.total() == 0
    # same schema whether or not a value was nulled, so a ParquetWriter accepts both batches
    assert cleaned_bad.schema == cleaned_good.schema
    assert cleaned_bad.schema.field("d").nullable
    assert not cleaned_bad.schema.field("n").nullable


def test_nul_characters_are_removed_and_counted() -> None:
    batch = pa.RecordBatch.from_pydict(
        {
            "s": pa.array(["a\x00b", "ok", None, "\x00\x00", " keep  Me "]),
            "l": pa.array(["x\x00", "y", "z", None, ""], pa.large_string()),
            "c": pa.array(["a\x00", "b", "a\x00", None, "b"]).dictionary_encode(),
            "bin": pa.array([b"\x00"] * 5),
        }
    )
    cleaned, stats = clean_batch(batch, min_date=MIN_DATE, max_date=MAX_DATE)
    assert cleaned.column("s").to_pylist() == ["ab", "ok", None, "", " keep  Me "]
    assert cleaned.column("l").to_pylist() == ["x", "y", "z", None, ""]
    assert cleaned.column("c").to_pylist() == ["a", "b", "a", None, "b"]
    assert cleaned.column("bin").equals(batch.column("bin"))
    assert cleaned.schema == batch.schema
    assert stats.removed_nul_chars == {"s": 2, "l": 1, "c": 2}
    assert stats.nulled_out_of_range == {}


def test_clean_batch_leaves_other_values_untouched() -> None:
    table = mixed_table(200)
    batch = table.combine_chunks().to_batches()[0]
    cleaned, stats = clean_batch(batch, min_date=MIN_DATE, max_date=MAX_DATE)
    assert stats.total() == 0
    assert cleaned.equals(batch)


def test_clean_batch_rejects_inverted_range() -> None:
    batch = pa.RecordBatch.from_pydict({"a": [1]})
    with pytest.raises(ValueError, match="after"):
        clean_batch(batch, min_date=dt.date(2000, 1, 2), max_date=dt.date(2000, 1, 1))


def test_cleaning_stats_merge_total_and_as_dict() -> None:
    stats = CleaningStats(nulled_out_of_range={"d": 2}, removed_nul_chars={"s": 1})
    stats.merge(
        CleaningStats(nulled_out_of_range={"d": 3, "e": 1}, removed_nul_chars={})
    )
    assert stats.nulled_out_of_range == {"d": 5, "e": 1}
    assert stats.total() == 7
    assert stats.as_dict() == {
        "nulled_out_of_range": {"d": 5, "e": 1},
        "removed_nul_chars": {"s": 1},
    }
    assert CleaningStats().total() == 0


# --------------------------------------------------------------------------------------------------
# Technical columns
# --------------------------------------------------------------------------------------------------


def test_add_technical_columns_types_and_values() -> None:
    batch = pa.RecordBatch.from_pydict(
        {
            "id": pa.array([1, 2, 3]),
            "name": pa.array(["a", None, "c"]),
            "date_modif": pa.array([dt.date(2024, 1, 31), None, dt.date(1999, 12, 31)]),
        }
    )
    result = add_technical_columns(
        batch, hash_columns=["id", "name"], date_modif_col="date_modif", load_ts=LOAD_TS
    )
    assert result.schema.names == ["id", "name", "date_modif", *TECHNICAL_COLUMNS]
    assert result.schema.field("hashdiff").type == pa.string()
    assert result.schema.field("ts_source").type == pa.timestamp("us")
    assert result.schema.field("load_ts").type == pa.timestamp("us")
    assert result.column("hashdiff").to_pylist() == [
        sha("1:1|1:a"),
        sha("1:2|~"),
        sha("1:3|1:c"),
    ]
    assert result.column("ts_source").to_pylist() == [
        dt.datetime(2024, 1, 31),
        None,
        dt.datetime(1999, 12, 31),
    ]
    assert result.column("load_ts").to_pylist() == [LOAD_TS] * 3
    for name in ("id", "name", "date_modif"):
        assert result.column(name).equals(batch.column(name))


def test_ts_source_from_timestamps_and_none() -> None:
    batch = pa.RecordBatch.from_pydict(
        {
            "id": pa.array([1, 2]),
            "ms": pa.array(
                [dt.datetime(2024, 1, 2, 3, 4, 5, 678000), None], pa.timestamp("ms")
            ),
            "utc": pa.array(
                [dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC), None],
                pa.timestamp("us", "UTC"),
            ),
        }
    )
    from_ms = add_technical_columns(
        batch, hash_columns=["id"], date_modif_col="ms", load_ts=LOAD_TS
    )
    assert from_ms.column("ts_source").to_pylist() == [
        dt.datetime(2024, 1, 2, 3, 4, 5, 678000),
        None,
    ]
    from_utc = add_technical_columns(
        batch, hash_columns=["id"], date_modif_col="utc", load_ts=LOAD_TS
    )
    assert from_utc.column("ts_source").type == pa.timestamp("us")
    assert from_utc.column("ts_source").to_pylist() == [
        dt.datetime(2024, 1, 2, 3, 4, 5),
        None,
    ]
    without = add_technical_columns(
        batch, hash_columns=["id"], date_modif_col=None, load_ts=LOAD_TS
    )
    assert without.column("ts_source").type == pa.timestamp("us")
    assert without.column("ts_source").null_count == 2


def test_tz_aware_load_ts_is_stored_as_utc() -> None:
    batch = pa.RecordBatch.from_pydict({"id": [1]})
    load_ts = dt.datetime(2024, 5, 6, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    result = add_technical_columns(
        batch, hash_columns=["id"], date_modif_col=None, load_ts=load_ts
    )
    assert result.column("load_ts").to_pylist() == [dt.datetime(2024, 5, 6, 7, 0)]


def test_add_technical_columns_errors_name_the_column() -> None:
    batch = pa.RecordBatch.from_pydict({"id": [1], "txt": ["x"], "hashdiff": ["old"]})
    plain = batch.drop_columns(["hashdiff"])
    with pytest.raises(ValueError, match="'missing_col'"):
        add_technical_columns(
            plain,
            hash_columns=["id", "missing_col"],
            date_modif_col=None,
            load_ts=LOAD_TS,
        )
    with pytest.raises(ValueError, match="'date_modif'"):
        add_technical_columns(
            plain, hash_columns=["id"], date_modif_col="date_modif", load_ts=LOAD_TS
        )
    with pytest.raises(ValueError, match="'hashdiff'"):
        add_technical_columns(
            batch, hash_columns=["id"], date_modif_col=None, load_ts=LOAD_TS
        )
    with pytest.raises(TypeError, match="'txt'"):
        add_technical_columns(
            plain, hash_columns=["id"], date_modif_col="txt", load_ts=LOAD_TS
        )


def test_transform_batch_cleans_then_hashes_the_cleaned_values() -> None:
    batch = pa.RecordBatch.from_pydict(
        {
            "id": pa.array([1, 2]),
            "txt": pa.array(["a\x00", "b"]),
            "d": pa.array([dt.date(1, 1, 1), dt.date(2020, 2, 3)]),
        }
    )
    result, stats = transform_batch(
        batch,
        hash_columns=["id", "txt", "d"],
        date_modif_col="d",
        load_ts=LOAD_TS,
        min_date=MIN_DATE,
        max_date=MAX_DATE,
    )
    assert stats.as_dict() == {
        "nulled_out_of_range": {"d": 1},
        "removed_nul_chars": {"txt": 1},
        "first_out_of_range": {"d": "0001-01-01"},  # the first nulled value, as text
    }
    assert result.column("txt").to_pylist() == ["a", "b"]
    assert result.column("hashdiff").to_pylist() == [
        sha("1:1|1:a|~"),
        sha("1:2|1:b|10:2020-02-03"),
    ]
    assert result.column("ts_source").to_pylist() == [None, dt.datetime(2020, 2, 3)]
    with pytest.raises(ValueError, match="'zz'"):
        transform_batch(
            batch,
            hash_columns=["zz"],
            date_modif_col=None,
            load_ts=LOAD_TS,
            min_date=MIN_DATE,
            max_date=MAX_DATE,
        )
