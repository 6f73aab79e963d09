"""The few pieces of protobuf's wire format that netdsl writes itself.

The NetSpec builder and the caffemodel writer encode messages directly (to
avoid building huge messages field by field); both use these helpers, and the
caffemodel reader the wire types.
"""
from __future__ import annotations

# wire types
VARINT, I64, LEN, SGROUP, EGROUP, I32 = 0, 1, 2, 3, 4, 5


def varint(n: int) -> bytes:
    """Base-128 varint; negative numbers as 64-bit two's complement (int32/int64)."""
    if 0 <= n < 0x80:
        return bytes((n,))
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def key(number: int, wire_type: int) -> bytes:
    """A field's key: its number and wire type."""
    return varint(number << 3 | wire_type)
