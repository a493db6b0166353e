"""OpenEdge values that do not fit one column: extent (array) fields and DATETIME-TZ, reshaped per batch.

Both run on the batch as read from the source, before the cleaning and the hashdiff (``transform``), and both are
vectorised (``pyarrow.compute``).  What they produce is :attr:`TableSpec.stored_columns
<cbm_luigi.model.specs.TableSpec.stored_columns>`; docs/OPERATIONS.md ("OpenEdge: extent fields and DATETIME-TZ")
says why.

* **Extents.** OpenEdge SQL returns an array field as one string: each element's text, ``;`` between elements,
  ``~;`` for a ``;`` inside an element, ``~~`` for a ``~``, ``~?`` for a ``?``, and an unescaped ``?`` alone for
  an unknown (NULL) element; a ``~`` before any other character is itself (PRO_ARR_ESCAPE, OpenEdge SQL
  Reference).  With ``split_extents`` the string becomes ``<col>_1`` .. ``<col>_n``, unescaped text; fewer
  elements than the extent leave the rest NULL; more are refused naming the column.
* **DATETIME-TZ** is selected as its text (``2026-03-01 10:00:00.000+02:00``) and becomes two columns: the instant
  (``timestamp[us, UTC]``) and ``<col>_tz_offset``, the offset in minutes east of UTC (+02:00 -> 120).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from cbm_luigi.errors import SourceError
from cbm_luigi.model.specs import TZ_OFFSET_SUFFIX, ColumnSpec, TableSpec, extent_element_name
from cbm_luigi.model.types import TIMESTAMP_TZ

ESCAPE, SEPARATOR, UNKNOWN = "~", ";", "?"
# Escaped characters are parked on Unicode noncharacters while the string is split (a value holding one of them
# goes through the exact per-value decoder instead).
_PARKED = {"~": "\ufdd0", ";": "\ufdd1", "?": "\ufdd2"}
_TZ_TEXT = (r"^(?P<local>\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?)\s*"
            r"(?P<offset>Z|[+-]\d{2}(?::?\d{2})?)$")
_TS_US = pa.timestamp("us")
_TS_UTC = pa.timestamp("us", tz="UTC")
_MICROS_PER_MINUTE = 60_000_000


def needs_reshape(spec: TableSpec) -> bool:
    """True when the stored columns differ from the columns read (a split extent or a DATETIME-TZ column)."""
    return any((c.extent > 0 and spec.split_extents) or (c.extent == 0 and c.logical_type == TIMESTAMP_TZ)
               for c in spec.loaded_columns)


def reshape_batch(batch: pa.RecordBatch, spec: TableSpec) -> pa.RecordBatch:
    """The batch read from the source (one array per loaded column) -> one array per stored column."""
    if not needs_reshape(spec):
        return batch
    names: list[str] = []
    arrays: list[pa.Array] = []
    for c, array, field in zip(spec.loaded_columns, batch.columns, batch.schema, strict=True):
        if c.extent > 0 and spec.split_extents:
            for i, element in enumerate(split_extent(array, c, spec.table_name), start=1):
                names.append(extent_element_name(c.sql_name, i))
                arrays.append(element)
        elif c.extent == 0 and c.logical_type == TIMESTAMP_TZ:
            instant, offset = datetime_tz_parts(array, c, spec.table_name)
            names += [c.sql_name, c.sql_name + TZ_OFFSET_SUFFIX]
            arrays += [instant, offset]
        else:
            names.append(field.name)
            arrays.append(array)
    return pa.RecordBatch.from_arrays(arrays, names=names)


# -- extents ---------------------------------------------------------------------------------------------------


def split_extent(array: pa.Array, col: ColumnSpec, table: str) -> list[pa.Array]:
    """``'a;b~;c;?'`` -> ``['a', 'b;c', None, None...]``, ``col.extent`` string arrays (NULL value: all NULL)."""
    n = col.extent
    text = array if pa.types.is_string(array.type) else pc.cast(array, pa.string())
    if len(text) and pc.any(pc.fill_null(pc.match_substring_regex(text, "[\ufdd0-\ufdd2]"), False)).as_py():
        return _split_exactly(text, col, table)
    parked = text
    for escaped, char in (("~~", "~"), ("~;", ";"), ("~?", "?")):  # left to right: '~~;' is '~' then a separator
        parked = pc.replace_substring(parked, escaped, _PARKED[char])
    elements = pc.split_pattern(parked, SEPARATOR)
    counts = pc.list_value_length(elements)
    _refuse_too_many(counts, text, col, table)
    out = []
    for i in range(n):
        element = pc.list_element(pc.if_else(pc.greater(counts, i), elements, pa.scalar(None, elements.type)), i) \
            if len(text) else pa.array([], pa.string())
        element = pc.if_else(pc.equal(element, UNKNOWN), pa.scalar(None, pa.string()), element)
        for char, marker in _PARKED.items():
            element = pc.replace_substring(element, marker, char)
        out.append(element)
    return out


def _refuse_too_many(counts: pa.Array, text: pa.Array, col: ColumnSpec, table: str) -> None:
    too_many = pc.fill_null(pc.greater(counts, col.extent), False)
    if len(text) and pc.any(too_many).as_py():
        first = pc.filter(text, too_many)[0].as_py()
        most = pc.max(counts).as_py()
        raise SourceError(
            f"table {table}: column {col.column_name}: a value holds {most} elements, more than its extent "
            f"{col.extent} in config.ETL_Columns (e.g. {first[:200]!r}): the extent grew in the source; run "
            f"cbm-etl sync-columns {table} (its Extent is then read again) and run again")


def _split_exactly(text: pa.Array, col: ColumnSpec, table: str) -> list[pa.Array]:
    """The per-value decoder (a value holds one of the parking characters: rare, never guessed)."""
    rows: list[list[str | None]] = []
    for value in text.to_pylist():
        rows.append([] if value is None else decode_extent(value))
    counts = pa.array([len(r) if v is not None else None for r, v in zip(rows, text.to_pylist(), strict=True)],
                      pa.int32())
    _refuse_too_many(counts, text, col, table)
    return [pa.array([r[i] if i < len(r) else None for r in rows], pa.string()) for i in range(col.extent)]


def decode_extent(value: str) -> list[str | None]:
    """One OpenEdge array string -> its elements (``'?'`` alone is NULL; ``~;`` ``~~`` ``~?`` unescaped)."""
    elements: list[str | None] = []
    current: list[str] = []
    escaped_any = False
    i = 0
    while i < len(value):
        ch = value[i]
        if ch == ESCAPE and i + 1 < len(value) and value[i + 1] in (ESCAPE, SEPARATOR, UNKNOWN):
            current.append(value[i + 1])
            escaped_any = True
            i += 2
            continue
        if ch == SEPARATOR:
            text = "".join(current)
            elements.append(None if text == UNKNOWN and not escaped_any else text)
            current, escaped_any = [], False
        else:
            current.append(ch)
        i += 1
    text = "".join(current)
    elements.append(None if text == UNKNOWN and not escaped_any else text)
    return elements


# -- DATETIME-TZ -----------------------------------------------------------------------------------------------


def datetime_tz_parts(array: pa.Array, col: ColumnSpec, table: str) -> tuple[pa.Array, pa.Array]:
    """A DATETIME-TZ column as read -> (the instant, ``timestamp[us, UTC]``; the offset in minutes, int32).

    Text ``YYYY-MM-DD HH:MM[:SS[.ffffff]]`` followed by ``Z``, ``+HH``, ``+HHMM`` or ``+HH:MM`` (OpenEdge, and
    PostgreSQL's text of a timestamptz); a timestamp already typed by the driver carries no offset: its instant is
    kept with offset 0.  A text without offset, or not a timestamp, is refused naming the column and the value.
    """
    if pa.types.is_timestamp(array.type):
        instant = pc.cast(array, _TS_UTC) if array.type.tz is not None else pc.assume_timezone(
            pc.cast(array, _TS_US), "UTC")
        return instant, pc.if_else(pc.is_null(array), pa.scalar(None, pa.int32()), pa.scalar(0, pa.int32()))
    text = pc.utf8_trim_whitespace(array if pa.types.is_string(array.type) else pc.cast(array, pa.string()))
    if not len(text):
        return pa.array([], _TS_UTC), pa.array([], pa.int32())
    parts = pc.extract_regex(text, _TZ_TEXT)
    bad = pc.and_(pc.is_valid(text), pc.is_null(parts))
    if pc.any(bad).as_py():
        first = pc.filter(text, bad)[0].as_py()
        raise SourceError(
            f"table {table}: column {col.column_name}: {first!r} is not a DATETIME-TZ text (expected "
            "YYYY-MM-DD HH:MM:SS[.fff]+HH:MM, with its offset): check the column's type in the source; if it is no "
            "DATETIME-TZ, set its LogicalType in config.ETL_Columns to the right one")
    local_text = pc.struct_field(parts, "local")
    offset_text = pc.struct_field(parts, "offset")
    try:
        local = pc.cast(pc.replace_substring(local_text, "T", " "), _TS_US)
    except pa.ArrowInvalid as exc:
        raise SourceError(f"table {table}: column {col.column_name}: a value is not a valid date and time "
                          f"({exc})") from exc
    digits = pc.replace_substring(pc.replace_substring(offset_text, "Z", "+00"), ":", "")
    sign = pc.if_else(pc.starts_with(digits, "-"), -1, 1)
    hours = pc.cast(pc.utf8_slice_codeunits(digits, 1, 3), pa.int32())
    minutes_text = pc.utf8_slice_codeunits(digits, 3, 5)
    minutes = pc.cast(pc.if_else(pc.equal(minutes_text, ""), "0", minutes_text), pa.int32())
    offset = pc.cast(pc.multiply(sign, pc.add(pc.multiply(hours, 60), minutes)), pa.int32())
    micros = pc.subtract(pc.cast(local, pa.int64()), pc.multiply(pc.cast(offset, pa.int64()), _MICROS_PER_MINUTE))
    return pc.cast(micros, _TS_UTC), offset
