"""Binary values as text: lowercase hex, shared by the hashdiff's canonical text and PostgreSQL's COPY of bytea."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc


def hex_text(array: pa.Array) -> pa.Array:
    """Lowercase hex of binary values, built from the values buffer in one pass."""
    if not (pa.types.is_binary(array.type) or pa.types.is_large_binary(array.type)):
        array = pc.cast(array, pa.binary())
    large = pa.types.is_large_binary(array.type)
    offset_type = pa.int64() if large else pa.int32()
    n = len(array)
    offsets = pa.Array.from_buffers(
        offset_type, n + 1, [None, array.buffers()[1]], offset=array.offset
    )
    start = offsets[0].as_py()
    end = offsets[n].as_py()
    data = array.buffers()[2]
    hex_bytes = data[start:end].hex() if data is not None and end > start else b""
    new_offsets = pc.multiply(pc.subtract(pc.cast(offsets, pa.int64()), start), 2)
    validity = pc.is_valid(array).buffers()[1] if array.null_count else None
    text = pa.Array.from_buffers(
        pa.large_string(),
        n,
        [validity, new_offsets.buffers()[1], pa.py_buffer(hex_bytes)],
        null_count=array.null_count,
    )
    text = pc.ascii_lower(text)
    return text if large else pc.cast(text, pa.string())
