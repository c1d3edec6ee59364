"""The CBOR subset of the compact body (RFC 8949): written and read here, nothing else.

The body is valid CBOR that any decoder reads; only arrays of definite length (two levels),
integers (major types 0 and 1, up to 64 bits), ``null`` and floats are used. What a generic
decoder cannot know is the one rule of the format about widths:

- a half-precision float (0xF9) is its exact value;
- a **single**-precision float (0xFA) stands for the shortest decimal that rounds to it
  (:func:`gateway.core.floats.shortest_float32`: 0x4366199A is 230.1), which is what a
  Modbus float32 register is reported as; the writer uses it only when that gives the value
  back exactly;
- a double (0xFB) is its exact value.

So a float32 meter reading costs 5 bytes instead of 9, and every value comes back bit for bit.
The reader is strict (no tags, maps, strings, indefinite lengths or deeper nesting) and never
allocates more than the bytes it was given.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence

from gateway.core.errors import PayloadError
from gateway.core.floats import shortest_float32

__all__ = ["body_value", "read_body", "write_body"]

#: Integral values below this magnitude are sent as integers (exact in a float64).
_INT_LIMIT = 2**53
_HALF = struct.Struct(">e")
#: Every half-precision float is a multiple of 2**-24 (its smallest subnormal).
_HALF_GRID = float(2**24)
_SINGLE = struct.Struct(">f")
_DOUBLE = struct.Struct(">d")
_NULL = b"\xf6"


def _head(major: int, n: int) -> bytes:
    if n < 24:
        return bytes((major << 5 | n,))
    if n < 0x100:
        return bytes((major << 5 | 24, n))
    if n < 0x10000:
        return bytes((major << 5 | 25,)) + n.to_bytes(2, "big")
    if n < 0x1_0000_0000:
        return bytes((major << 5 | 26,)) + n.to_bytes(4, "big")
    if n < 0x1_0000_0000_0000_0000:
        return bytes((major << 5 | 27,)) + n.to_bytes(8, "big")
    raise ValueError(f"{n} does not fit a CBOR integer (64 bits)")


def _integer(n: int) -> bytes:
    return _head(0, n) if n >= 0 else _head(1, -1 - n)


def body_value(value: float | None) -> bytes:
    """One reading's value as the body carries it: null when not finite, an integer when
    integral (-0.0 stays a float), else the shortest float that gives it back exactly."""
    if value is None or not math.isfinite(value):
        return _NULL
    if value.is_integer() and abs(value) < _INT_LIMIT and (value or math.copysign(1, value) > 0):
        return _integer(int(value))
    if (value * _HALF_GRID).is_integer():  # else no half holds it: skip the packing
        try:
            half = _HALF.pack(value)
            if _HALF.unpack(half)[0] == value:
                return b"\xf9" + half
        except OverflowError:
            pass
    try:
        single = _SINGLE.pack(value)
        if shortest_float32(_SINGLE.unpack(single)[0]) == value:
            return b"\xfa" + single
    except OverflowError:
        pass
    return b"\xfb" + _DOUBLE.pack(value)


#: A group is (dt_ms, key, encoded values); a bare int sets the next seq.
Item = tuple[int, int, list[bytes]] | int


def write_body(head: Sequence[int], items: Sequence[Item]) -> bytes:
    """``[*head, *items]`` as CBOR; a group becomes ``[dt_ms, key, value, ...]``."""
    out = [_head(4, len(head) + len(items)), *(_integer(n) for n in head)]
    for item in items:
        if isinstance(item, int):
            out.append(_integer(item))
        else:
            dt, key, values = item
            out += (_head(4, 2 + len(values)), _integer(dt), _integer(key), *values)
    return b"".join(out)


#: Float initial bytes: (size, bytes -> value).
_FLOATS: dict[int, tuple[int, Callable[[bytes], float]]] = {
    0xF9: (2, lambda raw: float(_HALF.unpack(raw)[0])),
    0xFA: (4, lambda raw: shortest_float32(_SINGLE.unpack(raw)[0])),
    0xFB: (8, lambda raw: float(_DOUBLE.unpack(raw)[0])),
}


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise PayloadError(f"compact message: body truncated at byte {self.pos}")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def _argument(self, info: int) -> int:
        if info < 24:
            return info
        if info > 27:
            raise PayloadError(
                f"compact message: unsupported CBOR length code {info} at byte {self.pos - 1}"
            )
        return int.from_bytes(self._take(1 << (info - 24)), "big")

    def item(self, depth: int) -> object:
        at = self.pos
        initial = self._take(1)[0]
        major, info = initial >> 5, initial & 0x1F
        if major == 0:
            return self._argument(info)
        if major == 1:
            return -1 - self._argument(info)
        if major == 4 and depth < 2:
            count = self._argument(info)
            if count > len(self.data) - self.pos:  # each item takes a byte at least
                raise PayloadError(f"compact message: array of {count} at byte {at} is truncated")
            return [self.item(depth + 1) for _ in range(count)]
        if initial == 0xF6:
            return None
        if initial in _FLOATS:
            size, unpack = _FLOATS[initial]
            return unpack(self._take(size))
        raise PayloadError(
            f"compact message: unexpected CBOR item 0x{initial:02x} at byte {at} (expected "
            "an integer, null, a float, or an array at the body's two levels)"
        )


def read_body(data: bytes) -> list[object]:
    """The body as lists, ints, floats (singles as their shortest decimal) and None."""
    reader = _Reader(data)
    body = reader.item(0)
    if not isinstance(body, list):
        raise PayloadError("compact message: the body is not a CBOR array")
    if reader.pos != len(data):
        raise PayloadError(f"compact message: {len(data) - reader.pos} bytes after the body")
    return body
