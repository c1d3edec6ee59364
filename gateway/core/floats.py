"""Float32 values as people write them: the shortest decimal that is the same float32.

A Modbus float32 register holding 230.1 is 0x4366199A, which is 230.10000610351562 as a
Python float; drivers report 230.1 instead (drivers/modbus/codec.py), and the compact payload
(gateway/uplink/compact.py) sends such a value as the 4-byte float32 it came from, which its
decoder turns back into the same decimal. One definition for both, so they always agree.
"""

from __future__ import annotations

import math
import struct

__all__ = ["shortest_float32"]


def shortest_float32(value: float) -> float:
    """The shortest decimal that rounds to the same float32 as ``value``."""
    if not math.isfinite(value):
        return value
    packed = struct.pack(">f", value)
    for digits in (7, 8, 9):  # %g drops trailing zeros: 7 digits also finds '230.1'
        candidate = float(f"{value:.{digits}g}")
        if struct.pack(">f", candidate) == packed:
            # Large magnitudes print all their digits (1e15 as 1000000000000000.0): keep
            # whichever is written shorter.
            return candidate if len(repr(candidate)) <= len(repr(value)) else value
    return value
