"""Per-batch transformation of extracted rows: cleaning, canonical text, hashdiff and technical columns.

Every function here works on whole Arrow arrays with ``pyarrow.compute`` (no per-row Python loops),
except the SHA-256 step itself: ``hashlib`` over the row strings' bytes measured 4x faster than
DuckDB's ``sha256()`` (see docs/HASHDIFF.md for the figures and the command).

The hashdiff is defined in docs/HASHDIFF.md precisely enough to be re-implemented in T-SQL:

* every hashed value becomes a canonical text that depends on its value, not on its Arrow type's
  width or unit (``1`` int64, ``1.0`` float64 and ``Decimal('1.000')`` all give ``1``);
* a non-null value is encoded as ``<length in characters>:<text>``, NULL as ``~``;
* the fields are joined with ``|`` in the order given and the row string's UTF-8 bytes are hashed
  with SHA-256, written as 64 lowercase hex digits.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from cbm_luigi.model.binary import hex_text

__all__ = [
    "HASHDIFF_LENGTH",
    "TECHNICAL_COLUMNS",
    "CleaningStats",
    "DateOutOfRange",
    "ValueTooWide",
    "add_technical_columns",
    "canonical_text",
    "clean_batch",
    "compute_hashdiff",
    "row_strings",
    "transform_batch",
]

TECHNICAL_COLUMNS: tuple[str, ...] = ("hashdiff", "ts_source", "load_ts")
HASHDIFF_LENGTH = 64

NULL_FIELD = "~"
FIELD_SEPARATOR = "|"
LENGTH_SEPARATOR = ":"

_TS_US = pa.timestamp("us")
_EPOCH = datetime.date(1970, 1, 1)
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_TICKS_PER_DAY = {
    "s": 86_400,
    "ms": 86_400_000,
    "us": 86_400_000_000,
    "ns": 86_400_000_000_000,
}

# Scientific notation as printed by Arrow for floats ("1e+20", "-1.25e-7") and decimals ("1.000E-7").
_SCIENTIFIC = r"^(?P<sign>-?)(?P<int>\d+)(?:\.(?P<frac>\d*))?[eE](?P<exp>[+-]?\d+)$"


# --------------------------------------------------------------------------------------------------
# Canonical text
# --------------------------------------------------------------------------------------------------


def canonical_text(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Return the canonical text of every value of ``array``; nulls stay null.

    The result is ``pa.string()`` (``pa.large_string()`` for large string / large binary input).
    Raises ``TypeError`` naming the type for types without a canonical text (lists, structs, ...).
    """
    if isinstance(array, pa.ChunkedArray):
        if array.num_chunks == 1:
            return canonical_text(array.chunk(0))
        pieces = [canonical_text(chunk) for chunk in array.chunks]
        if not pieces:
            return pa.array([], type=_text_type_for(array.type))
        if len({piece.type for piece in pieces}) > 1:
            pieces = [piece.cast(pa.large_string()) for piece in pieces]
        return pa.concat_arrays(pieces)
    return _canonical_text(array)


def _text_type_for(type_: pa.DataType) -> pa.DataType:
    if pa.types.is_large_string(type_) or pa.types.is_large_binary(type_):
        return pa.large_string()
    return pa.string()


def _canonical_text(array: pa.Array) -> pa.Array:
    type_ = array.type
    if pa.types.is_dictionary(type_):
        dictionary_text = _canonical_text(array.dictionary)
        return pc.take(dictionary_text, array.indices)
    if pa.types.is_null(type_):
        return pa.nulls(len(array), type=pa.string())
    if pa.types.is_boolean(type_):
        return pc.if_else(array, "1", "0")
    if pa.types.is_integer(type_):
        return pc.cast(array, pa.string())
    if pa.types.is_floating(type_):
        return _float_text(array)
    if pa.types.is_decimal(type_):
        return _decimal_text(array)
    if pa.types.is_string(type_) or pa.types.is_large_string(type_):
        return array
    if pa.types.is_string_view(type_):
        return pc.cast(array, pa.string())
    if (
        pa.types.is_binary(type_)
        or pa.types.is_large_binary(type_)
        or pa.types.is_fixed_size_binary(type_)
        or pa.types.is_binary_view(type_)
    ):
        return hex_text(array)
    if pa.types.is_date32(type_):
        return pc.cast(array, pa.string())
    if pa.types.is_date64(type_):
        return pc.cast(pc.cast(array, pa.date32(), safe=False), pa.string())
    if pa.types.is_timestamp(type_):
        text = pc.cast(_timestamp_us_naive(array), pa.string())
        return pc.replace_substring(text, " ", "T", max_replacements=1)
    if pa.types.is_time(type_):
        # Times are never negative, so the unsafe ns -> us cast truncates exactly like a floor.
        return pc.cast(pc.cast(array, pa.time64("us"), safe=False), pa.string())
    raise TypeError(f"canonical_text: unsupported Arrow type {type_}")


def _float_text(array: pa.Array) -> pa.Array:
    """Shortest round-trip digits in plain notation; integral values as integers; NaN / Infinity.

    Arrow prints the shortest round-trip digits (``0.1``, ``1``, ``1e+20``, ``-0``, ``nan``, ``inf``);
    only exponent notation, ``-0`` and the special values need rewriting.
    """
    if pa.types.is_float16(array.type):
        array = pc.cast(array, pa.float32())
    text = _expand_scientific(pc.cast(array, pa.string()), "e")
    text = _fix_negative_zero(text)
    if array.null_count == len(array):
        return text
    is_nan = pc.is_nan(array)
    is_inf = pc.is_inf(array)
    if pc.any(is_nan).as_py():
        text = pc.if_else(is_nan, "NaN", text)
    if pc.any(is_inf).as_py():
        infinity = pc.if_else(pc.greater(array, 0), "Infinity", "-Infinity")
        text = pc.if_else(is_inf, infinity, text)
    return text


def _decimal_text(array: pa.Array) -> pa.Array:
    """Plain notation without trailing fraction zeros or trailing dot (``1.500`` -> ``1.5``).

    Arrow prints a decimal of scale s > 0 with exactly s fraction digits, or in exponent notation
    (``1.000E-7``) when it is small, and a decimal of negative scale in exponent notation.
    """
    printed = pc.cast(array, pa.string())
    text = _expand_scientific(printed, "E")
    if array.type.scale > 0:
        trimmed = pc.ascii_rtrim(pc.ascii_rtrim(text, "0"), ".")
        # No exponent: every value has its s fraction digits, so a point.  Expanded values may be integers
        # without a point, whose trailing zeros are not fraction zeros.
        text = trimmed if text is printed else pc.if_else(pc.match_substring(text, "."), trimmed, text)
    return _fix_negative_zero(text)


def _fix_negative_zero(text: pa.Array) -> pa.Array:
    negative_zero = pc.equal(text, "-0")
    if pc.any(negative_zero).as_py():
        text = pc.if_else(negative_zero, "0", text)
    return text


def _expand_scientific(text: pa.Array, marker: str) -> pa.Array:
    """Rewrite the values holding ``marker`` (exponent notation) in plain normalised notation."""
    scientific = pc.fill_null(pc.match_substring(text, marker), False)
    if not pc.any(scientific).as_py():
        return text
    expanded = _normalise_plain(_expand_exponent(pc.filter(text, scientific)))
    return pc.replace_with_mask(text, scientific, expanded)


def _normalise_plain(text: pa.Array) -> pa.Array:
    """No trailing fraction zeros or dot, no leading zeros, ``-0`` -> ``0``."""
    # 1.500 -> 1.5, 10.000 -> 10.
    text = pc.replace_substring_regex(text, r"^(-?\d+\.\d*?)0+$", r"\1")
    # 10. -> 10
    text = pc.replace_substring_regex(text, r"^(-?\d+)\.$", r"\1")
    # 000 -> 0, 007 -> 7
    text = pc.replace_substring_regex(text, r"^(-?)0+(\d)", r"\1\2")
    return pc.replace_substring_regex(text, r"^-0$", "0")


def _expand_exponent(text: pa.Array) -> pa.Array:
    """Rewrite ``[-]I[.F]e[+-]X`` strings (no nulls) in plain positional notation."""
    parts = pc.extract_regex(text, _SCIENTIFIC)
    if parts.null_count:
        bad = pc.filter(text, pc.is_null(parts))[0].as_py()
        raise ValueError(f"cannot parse number text {bad!r}")
    sign = pc.struct_field(parts, "sign")
    integer = pc.struct_field(parts, "int")
    fraction = pc.struct_field(parts, "frac")
    exponent = pc.cast(
        pc.replace_substring(pc.struct_field(parts, "exp"), "+", ""), pa.int64()
    )
    digits = pc.binary_join_element_wise(integer, fraction, "")
    n_digits = pc.cast(pc.utf8_length(digits), pa.int64())
    # position of the decimal point inside ``digits`` once the exponent is applied
    point = pc.add(pc.cast(pc.utf8_length(integer), pa.int64()), exponent)

    before = pc.less_equal(point, 0)  # 0.000ddd
    after = pc.greater_equal(point, n_digits)  # ddd000
    small = pc.binary_join_element_wise(
        "0.",
        pc.binary_repeat("0", pc.max_element_wise(pc.negate(point), 0)),
        digits,
        "",
    )
    large = pc.binary_join_element_wise(
        digits,
        pc.binary_repeat("0", pc.max_element_wise(pc.subtract(point, n_digits), 0)),
        "",
    )
    plain = pc.if_else(before, small, large)
    # dd.ddd: the point falls between two digits (never produced by Arrow, handled anyway)
    inside = pc.invert(pc.or_(before, after))
    if pc.any(inside).as_py():
        for position in pc.unique(pc.filter(point, inside)).to_pylist():
            here = pc.and_(inside, pc.equal(point, position))
            moved = pc.replace_substring_regex(digits, rf"^(\d{{{position}}})", r"\1.")
            plain = pc.if_else(here, moved, plain)
    return pc.binary_join_element_wise(sign, plain, "")


def _timestamp_us_naive(array: pa.Array) -> pa.Array:
    """Timestamp of any unit / time zone -> naive ``timestamp[us]`` holding the UTC wall time.

    Nanoseconds are floored to the microsecond.
    """
    type_ = array.type
    if type_.tz is not None:
        array = pc.cast(array, pa.timestamp(type_.unit))  # keeps the stored UTC instant
    if type_.unit == "ns":
        array = pc.floor_temporal(array, unit="microsecond")
    return pc.cast(array, _TS_US)


# --------------------------------------------------------------------------------------------------
# Hashdiff
# --------------------------------------------------------------------------------------------------


def compute_hashdiff(
    batch: pa.RecordBatch | pa.Table, columns: Sequence[str]
) -> pa.Array:
    """Hashdiff of every row of ``batch`` over ``columns`` (in that order).

    Returns a non-null ``pa.string()`` array of 64-character lowercase hex SHA-256 digests.
    Raises ``ValueError`` naming a column that is missing from (or duplicated in) the batch.
    """
    indices = [_column_index(batch.schema, name) for name in columns]
    n_rows = batch.num_rows
    if n_rows == 0:
        return pa.array([], type=pa.string())
    rows = _row_strings([batch.column(i) for i in indices], n_rows)
    return _sha256_hex(rows)


def row_strings(batch: pa.RecordBatch | pa.Table, columns: Sequence[str]) -> pa.Array:
    """The UTF-8 strings that :func:`compute_hashdiff` hashes (for debugging and tests)."""
    indices = [_column_index(batch.schema, name) for name in columns]
    return _row_strings([batch.column(i) for i in indices], batch.num_rows)


def _column_index(schema: pa.Schema, name: str) -> int:
    index = schema.get_field_index(name)
    if index < 0:
        if name in schema.names:
            raise ValueError(f"column {name!r} appears more than once in the batch")
        raise ValueError(
            f"column {name!r} is not in the batch (columns: {', '.join(schema.names)})"
        )
    return index


def _row_strings(arrays: Sequence[pa.Array | pa.ChunkedArray], n_rows: int) -> pa.Array:
    """``F1|F2|...`` with ``Fi`` = ``<length>:<text>`` or ``~``.

    The canonical texts of all columns are concatenated (column after column) so that the per-value work runs
    once over the whole batch instead of once per column: the prefixes (``|`` unless first, the length and
    ``:``, or ``~`` for NULL), then each field as prefix + text (a NULL text is skipped).  The row strings are
    then one ``binary_join_element_wise`` over the fields, sliced back per column (zero-copy).  Measured 15 %
    less CPU than one join of the prefixes and texts of every column (docs/PERFORMANCE.md).
    """
    if not arrays:
        return pa.repeat(pa.scalar("", type=pa.string()), n_rows)
    texts = [canonical_text(array) for array in arrays]
    # int32 offsets are enough unless the rows of this batch add up to 2 GiB (a prefix is at most 22 bytes).
    size = sum(text.nbytes for text in texts) + 22 * n_rows * len(texts)
    text_type = pa.string() if size < _MAX_INT32 else pa.large_string()
    texts = [text if text.type == text_type else pc.cast(text, text_type) for text in texts]
    every_text = pa.concat_arrays(texts)
    prefixes = _field_prefixes(every_text, n_rows, text_type)
    fields = pc.binary_join_element_wise(
        prefixes, every_text, pa.scalar("", type=text_type), null_handling="skip"
    )
    columns = [fields.slice(i * n_rows, n_rows) for i in range(len(texts))]
    return pc.binary_join_element_wise(*columns, pa.scalar("", type=text_type))


_MAX_INT32 = 2**31 - 1
_PREFIX_TABLE_SIZE = 8192


@functools.lru_cache(maxsize=4)
def _prefix_table(separator: str) -> pa.Array:
    """``[sep + "0:", sep + "1:", ...]`` so that a length's prefix is a ``take``."""
    return pa.array(
        [
            f"{separator}{length}{LENGTH_SEPARATOR}"
            for length in range(_PREFIX_TABLE_SIZE)
        ],
        type=pa.string(),
    )


def _field_prefixes(text: pa.Array, n_rows: int, text_type: pa.DataType) -> pa.Array:
    """Per value of ``text`` (the columns' texts one after the other, ``n_rows`` each): ``<length>:`` or ``~``
    for the first column, ``|<length>:`` or ``|~`` for the others (length in characters)."""
    lengths = pc.utf8_length(text)
    longest = pc.max(lengths).as_py()
    pieces = []
    for separator, part in (("", lengths.slice(0, n_rows)), (FIELD_SEPARATOR, lengths.slice(n_rows))):
        if longest is not None and longest < _PREFIX_TABLE_SIZE:
            prefix = pc.take(_prefix_table(separator), part)
        else:
            prefix = pc.binary_join_element_wise(
                separator, pc.cast(part, pa.string()), LENGTH_SEPARATOR, pa.scalar("", type=pa.string())
            )
        pieces.append(pc.fill_null(prefix, pa.scalar(separator + NULL_FIELD, type=pa.string())))
    prefixes = pa.concat_arrays(pieces)
    return prefixes if prefixes.type == text_type else pc.cast(prefixes, text_type)


_local = threading.local()


def _duckdb_connection() -> Any:
    """One in-memory DuckDB connection per thread (and per process, in case of a fork)."""
    import duckdb  # deferred: start-up time (duckdb takes ~0.2 s to import)

    pid = os.getpid()
    cached = getattr(_local, "connection", None)
    if cached is None or cached[0] != pid:
        cached = (pid, duckdb.connect(":memory:"))
        _local.connection = cached
    return cached[1]


def _sha256_hex_duckdb(rows: pa.Array) -> pa.Array:
    """Lowercase hex SHA-256 of each string's UTF-8 bytes, computed by DuckDB's ``sha256()``.

    Not used by the pipeline (the hashlib loop is faster, docs/HASHDIFF.md); kept to reproduce the
    measurement and as a cross-check in the tests.
    """
    if len(rows) == 0:
        return pa.array([], type=pa.string())
    table = pa.table({"s": pc.cast(rows, pa.large_binary())})
    result = (
        _duckdb_connection().from_arrow(table).select("sha256(s) AS h").to_arrow_table()
    )
    hashes = result.column(0).combine_chunks()
    if len(hashes) != len(rows):  # pragma: no cover - defensive
        raise RuntimeError(f"DuckDB returned {len(hashes)} hashes for {len(rows)} rows")
    return pc.cast(hashes, pa.string())


def _sha256_hex_hashlib(rows: pa.Array) -> pa.Array:
    """Lowercase hex SHA-256 of each string's UTF-8 bytes with ``hashlib`` (OpenSSL).

    The loop hashes memoryview slices of the Arrow data buffer: no Python string is decoded or
    encoded, and each value costs one C call.
    """
    binary = pc.cast(rows, pa.large_binary())
    if len(binary) == 0:
        return pa.array([], type=pa.string())
    offsets = pa.Array.from_buffers(
        pa.int64(), len(binary) + 1, [None, binary.buffers()[1]], offset=binary.offset
    ).to_pylist()
    data_buffer = binary.buffers()[2]
    data = memoryview(data_buffer) if data_buffer is not None else memoryview(b"")
    sha256 = hashlib.sha256
    digests = [
        sha256(data[offsets[i] : offsets[i + 1]]).hexdigest()
        for i in range(len(binary))
    ]
    return pa.array(digests, type=pa.string())


# hashlib measured ~4x faster than DuckDB's sha256() on 40,000 x 300 columns (docs/HASHDIFF.md).
_sha256_hex = _sha256_hex_hashlib


# --------------------------------------------------------------------------------------------------
# Cleaning
# --------------------------------------------------------------------------------------------------


@dataclass
class CleaningStats:
    """How many values of each column each cleaning rule changed (columns with 0 are absent)."""

    nulled_out_of_range: dict[str, int] = field(default_factory=dict)
    removed_nul_chars: dict[str, int] = field(default_factory=dict)
    #: values longer than their column's SQL width cut to it (WidthPolicy=truncate)
    truncated_too_wide: dict[str, int] = field(default_factory=dict)
    #: the first nulled out-of-range value of each column, as text (``12000-01-01``: Python cannot hold it)
    first_out_of_range: dict[str, str] = field(default_factory=dict)

    def merge(self, other: CleaningStats) -> None:
        """Add ``other``'s counts to this one's (the first out-of-range value seen is kept)."""
        for mine, theirs in (
            (self.nulled_out_of_range, other.nulled_out_of_range),
            (self.removed_nul_chars, other.removed_nul_chars),
            (self.truncated_too_wide, other.truncated_too_wide),
        ):
            for column, count in theirs.items():
                mine[column] = mine.get(column, 0) + count
        for column, value in other.first_out_of_range.items():
            self.first_out_of_range.setdefault(column, value)

    def total(self) -> int:
        """Number of values changed by all rules together."""
        return sum(self.nulled_out_of_range.values()) + sum(
            self.removed_nul_chars.values()
        ) + sum(self.truncated_too_wide.values())

    def as_dict(self) -> dict[str, dict[str, Any]]:
        """JSON-friendly copy: ``{"nulled_out_of_range": {...}, "removed_nul_chars": {...}}``, plus
        ``truncated_too_wide`` and ``first_out_of_range`` when they hold anything."""
        out: dict[str, dict[str, Any]] = {
            "nulled_out_of_range": dict(sorted(self.nulled_out_of_range.items())),
            "removed_nul_chars": dict(sorted(self.removed_nul_chars.items())),
        }
        if self.truncated_too_wide:
            out["truncated_too_wide"] = dict(sorted(self.truncated_too_wide.items()))
        if self.first_out_of_range:
            out["first_out_of_range"] = dict(sorted(self.first_out_of_range.items()))
        return out


def clean_batch(
    batch: pa.RecordBatch, *, min_date: datetime.date, max_date: datetime.date,
    widths: Mapping[str, int] | None = None, truncate_too_wide: bool = False,
    refuse_out_of_range: bool = False,
) -> tuple[pa.RecordBatch, CleaningStats]:
    """Apply the cleaning rules of docs/HASHDIFF.md to every column of ``batch``.

    * date / timestamp values outside ``[min_date, max_date]`` (a timestamp is in range when its
      UTC day is) become NULL (the first one of each column kept as text in the stats), or, with
      ``refuse_out_of_range``, raise :class:`DateOutOfRange`;
    * NUL characters are removed from strings;
    * a string column named in ``widths`` (its SQL width, in characters) holding a longer value raises
      :class:`ValueTooWide`, or, with ``truncate_too_wide``, has such values cut to the width (counted).

    Everything else is returned untouched (columns without a change keep their original array).
    Date and timestamp fields declared non-nullable are declared nullable in the result.
    """
    if isinstance(min_date, datetime.datetime) or isinstance(
        max_date, datetime.datetime
    ):
        raise TypeError(
            "min_date and max_date must be datetime.date, not datetime.datetime"
        )
    if min_date > max_date:
        raise ValueError(f"min_date {min_date} is after max_date {max_date}")
    low_day = (min_date - _EPOCH).days
    high_day = (max_date - _EPOCH).days + 1  # exclusive
    stats = CleaningStats()
    schema = _cleaned_schema(batch.schema)
    arrays = list(batch.columns)
    for i, name in enumerate(schema.names):
        cleaned, nulled = _null_out_of_range(arrays[i], low_day, high_day)
        if nulled:
            first = _first_out_of_range(arrays[i], low_day, high_day)
            if refuse_out_of_range:
                raise DateOutOfRange(name, first, nulled, min_date, max_date)
            stats.merge(CleaningStats(nulled_out_of_range={name: nulled}, first_out_of_range={name: first}))
        cleaned, unnuled = _remove_nul_chars(cleaned)
        if unnuled:
            stats.merge(CleaningStats(removed_nul_chars={name: unnuled}))
        if widths and name in widths:
            cleaned, cut = _fit_width(cleaned, name, widths[name], truncate_too_wide)
            if cut:
                stats.merge(CleaningStats(truncated_too_wide={name: cut}))
        arrays[i] = cleaned
    if stats.total() == 0 and schema.equals(batch.schema, check_metadata=True):
        return batch, stats
    return pa.RecordBatch.from_arrays(arrays, schema=schema), stats


def _cleaned_schema(schema: pa.Schema) -> pa.Schema:
    """Date and timestamp fields become nullable (they may be nulled), whatever this batch holds.

    The output schema depends only on the input schema, so every batch of a table gets the same
    one (a ParquetWriter opened on the first batch accepts the next ones).
    """
    for i, field_ in enumerate(schema):
        type_ = field_.type
        value_type = type_.value_type if pa.types.is_dictionary(type_) else type_
        temporal = pa.types.is_date(value_type) or pa.types.is_timestamp(value_type)
        if temporal and not field_.nullable:
            schema = schema.set(i, field_.with_nullable(True))
    return schema


def _null_out_of_range(
    array: pa.Array, low_day: int, high_day: int
) -> tuple[pa.Array, int]:
    type_ = array.type
    if pa.types.is_dictionary(type_):
        bad_values = _out_of_range_mask(array.dictionary, low_day, high_day)
        if bad_values is None:
            return array, 0
        bad = pc.fill_null(pc.take(bad_values, array.indices), False)
        count = _count_true(bad)
        if not count:
            return array, 0
        indices = pc.if_else(
            bad, pa.scalar(None, type=array.indices.type), array.indices
        )
        return pa.DictionaryArray.from_arrays(
            indices, array.dictionary, ordered=type_.ordered
        ), count
    bad = _out_of_range_mask(array, low_day, high_day)
    if bad is None:
        return array, 0
    count = _count_true(bad)
    if not count:
        return array, 0
    return pc.if_else(bad, pa.scalar(None, type=type_), array), count


def _out_of_range_mask(array: pa.Array, low_day: int, high_day: int) -> pa.Array | None:
    """Mask of the non-null values outside ``[low_day, high_day)``; None for non-temporal types."""
    type_ = array.type
    if pa.types.is_date32(type_):
        ticks, per_day = array.view(pa.int32()), 1
    elif pa.types.is_date64(type_):
        ticks, per_day = array.view(pa.int64()), _TICKS_PER_DAY["ms"]
    elif pa.types.is_timestamp(type_):
        ticks, per_day = array.view(pa.int64()), _TICKS_PER_DAY[type_.unit]
    else:
        return None
    low = low_day * per_day
    high = high_day * per_day
    conditions = []
    if low > _INT64_MIN:
        conditions.append(pc.less(ticks, pa.scalar(low, type=pa.int64())))
    if high <= _INT64_MAX:
        conditions.append(pc.greater_equal(ticks, pa.scalar(high, type=pa.int64())))
    if not conditions:
        return None
    mask = (
        conditions[0] if len(conditions) == 1 else pc.or_(conditions[0], conditions[1])
    )
    return pc.fill_null(mask, False)


def _remove_nul_chars(array: pa.Array) -> tuple[pa.Array, int]:
    type_ = array.type
    if pa.types.is_dictionary(type_):
        new_dictionary, changed = _remove_nul_chars_plain(array.dictionary)
        if changed is None:
            return array, 0
        count = _count_true(pc.fill_null(pc.take(changed, array.indices), False))
        if not count:
            return array, 0
        return pa.DictionaryArray.from_arrays(
            array.indices, new_dictionary, ordered=type_.ordered
        ), count
    cleaned, changed = _remove_nul_chars_plain(array)
    if changed is None:
        return array, 0
    return cleaned, _count_true(changed)


def _remove_nul_chars_plain(array: pa.Array) -> tuple[pa.Array, pa.Array | None]:
    """(cleaned array, mask of values that held a NUL) or (array, None) when nothing changes."""
    type_ = array.type
    view = pa.types.is_string_view(type_)
    if not (pa.types.is_string(type_) or pa.types.is_large_string(type_) or view):
        return array, None
    plain = pc.cast(array, pa.string()) if view else array
    changed = pc.fill_null(pc.match_substring(plain, "\x00"), False)
    if not pc.any(changed).as_py():
        return array, None
    cleaned = pc.replace_substring(plain, "\x00", "")
    return (pc.cast(cleaned, type_) if view else cleaned), changed


def _count_true(mask: pa.Array) -> int:
    value = pc.sum(pc.cast(mask, pa.int64())).as_py()
    return int(value or 0)


class DateOutOfRange(ValueError):
    """A date / timestamp column holds values outside the target's range (OutOfRangeDates=refuse).

    ``first`` is the first such value as text (Arrow prints years 0 and 10000+; Python's datetime cannot hold
    them)."""

    def __init__(self, column: str, first: str, count: int, min_date: datetime.date,
                 max_date: datetime.date) -> None:
        self.column, self.first, self.count, self.min_date, self.max_date = column, first, count, min_date, max_date
        super().__init__(f"column {column}: {count} value(s) outside {min_date}..{max_date}, the first {first}")

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.column, self.first, self.count, self.min_date, self.max_date)


class ValueTooWide(ValueError):
    """A string column holds values longer than its SQL width (WidthPolicy=refuse)."""

    def __init__(self, column: str, longest: int, width: int, count: int) -> None:
        self.column, self.longest, self.width, self.count = column, longest, width, count
        super().__init__(f"column {column}: {count} value(s) longer than its width {width} (longest {longest})")

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.column, self.longest, self.width, self.count)


def _first_out_of_range(array: pa.Array, low_day: int, high_day: int) -> str:
    """The first non-null value outside ``[low_day, high_day)`` as text ('' if there is none)."""
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    mask = _out_of_range_mask(array, low_day, high_day)
    if mask is None:
        return ""
    first = pc.filter(array, mask).slice(0, 1)
    if not len(first):
        return ""
    if pa.types.is_date64(first.type):
        first = pc.cast(first, pa.date32(), safe=False)
    text = str(pc.cast(first, pa.string())[0].as_py())
    return text[:-7] if text.endswith(".000000") else text


def _fit_width(array: pa.Array, name: str, width: int, truncate: bool) -> tuple[pa.Array, int]:
    """(array, 0) when every string of ``array`` fits ``width`` characters; else the values cut to it and their
    count (``truncate``) or :class:`ValueTooWide`.  Byte lengths first (offsets only: a value of at most ``width``
    bytes has at most ``width`` characters), characters only when some value may not fit."""
    type_ = array.type
    view = pa.types.is_string_view(type_)
    if not (pa.types.is_string(type_) or pa.types.is_large_string(type_) or view):
        return array, 0
    plain = pc.cast(array, pa.string()) if view else array
    most_bytes = pc.max(pc.binary_length(plain)).as_py()
    if most_bytes is None or most_bytes <= width:
        return array, 0
    lengths = pc.utf8_length(plain)
    longest = pc.max(lengths).as_py()
    if longest is None or longest <= width:
        return array, 0
    count = _count_true(pc.fill_null(pc.greater(lengths, width), False))
    if not truncate:
        raise ValueTooWide(name, int(longest), width, count)
    cut = pc.utf8_slice_codeunits(plain, 0, width)  # code points, as utf8_length counts them
    return (pc.cast(cut, type_) if view else cut), count


# --------------------------------------------------------------------------------------------------
# Technical columns
# --------------------------------------------------------------------------------------------------


def add_technical_columns(
    batch: pa.RecordBatch,
    *,
    hash_columns: Sequence[str],
    date_modif_col: str | None,
    load_ts: datetime.datetime,
) -> pa.RecordBatch:
    """Append ``hashdiff`` (string), ``ts_source`` and ``load_ts`` (``timestamp[us]``) to ``batch``.

    ``ts_source`` is ``date_modif_col`` as a naive microsecond timestamp (a date becomes midnight,
    a tz-aware timestamp its UTC wall time), all NULL when ``date_modif_col`` is None.  ``load_ts``
    is the constant ``load_ts`` (converted to naive UTC if it is tz-aware).
    """
    schema = batch.schema
    for name in hash_columns:
        _column_index(schema, name)
    for name in TECHNICAL_COLUMNS:
        if name in schema.names:
            raise ValueError(f"technical column {name!r} is already in the batch")
    n_rows = batch.num_rows
    if date_modif_col is None:
        ts_source = pa.nulls(n_rows, type=_TS_US)
    else:
        ts_source = _as_ts_source(
            batch.column(_column_index(schema, date_modif_col)), date_modif_col
        )
    hashdiff = compute_hashdiff(batch, hash_columns)
    load_value = pa.scalar(_naive_utc(load_ts), type=_TS_US)
    load_array = pa.repeat(load_value, n_rows)
    new_schema = (
        schema.append(pa.field("hashdiff", pa.string()))
        .append(pa.field("ts_source", _TS_US))
        .append(pa.field("load_ts", _TS_US))
    )
    return pa.RecordBatch.from_arrays(
        [*batch.columns, hashdiff, ts_source, load_array], schema=new_schema
    )


def _as_ts_source(array: pa.Array, name: str) -> pa.Array:
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    type_ = array.type
    if pa.types.is_null(type_):
        return pa.nulls(len(array), type=_TS_US)
    if pa.types.is_date32(type_):
        return pc.cast(array, _TS_US)
    if pa.types.is_date64(type_):
        return pc.cast(pc.cast(array, pa.date32(), safe=False), _TS_US)
    if pa.types.is_timestamp(type_):
        return _timestamp_us_naive(array)
    raise TypeError(
        f"date_modif_col {name!r} has type {type_}; expected a date or a timestamp"
    )


def _naive_utc(value: datetime.datetime) -> datetime.datetime:
    if not isinstance(value, datetime.datetime):
        raise TypeError(
            f"load_ts must be a datetime.datetime, not {type(value).__name__}"
        )
    if value.tzinfo is not None and value.utcoffset() is not None:
        return value.astimezone(datetime.UTC).replace(tzinfo=None)
    return value.replace(tzinfo=None)


def transform_batch(
    batch: pa.RecordBatch,
    *,
    hash_columns: Sequence[str],
    date_modif_col: str | None,
    load_ts: datetime.datetime,
    min_date: datetime.date,
    max_date: datetime.date,
    widths: Mapping[str, int] | None = None,
    truncate_too_wide: bool = False,
    refuse_out_of_range: bool = False,
) -> tuple[pa.RecordBatch, CleaningStats]:
    """Clean ``batch`` (:func:`clean_batch`, which the width and out-of-range options are passed to), then add
    the technical columns to the cleaned rows."""
    for name in hash_columns:
        _column_index(batch.schema, name)
    if date_modif_col is not None:
        _column_index(batch.schema, date_modif_col)
    cleaned, stats = clean_batch(batch, min_date=min_date, max_date=max_date, widths=widths,
                                 truncate_too_wide=truncate_too_wide, refuse_out_of_range=refuse_out_of_range)
    result = add_technical_columns(
        cleaned,
        hash_columns=hash_columns,
        date_modif_col=date_modif_col,
        load_ts=load_ts,
    )
    return result, stats
