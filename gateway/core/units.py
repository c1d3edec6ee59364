"""Parsing of human-written durations ("250ms", "5s", "2m") and sizes ("64MB", "1GiB")."""

from __future__ import annotations

import re
from decimal import Decimal

#: A duration as text: a number and a unit (ms, s, m, h, d). Also the config's JSON Schema.
DURATION_PATTERN = r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$"
#: A size as text: a number and an optional unit (B, kB, KB, MB, GB, KiB, MiB, GiB).
SIZE_PATTERN = r"^\s*(\d+(?:\.\d+)?)\s*(B|kB|KB|MB|GB|KiB|MiB|GiB)?\s*$"
_DURATION = re.compile(DURATION_PATTERN)
_DURATION_FACTOR = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE = re.compile(SIZE_PATTERN)
_SIZE_FACTOR = {
    None: 1,
    "B": 1,
    "kB": 1000,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
}


def parse_duration(text: str) -> float:
    """Return seconds for a duration such as ``"250ms"``, ``"5s"``, ``"2m"``, ``"1h"``."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"expected a duration such as '250ms', '5s', '2m' or '1h', got {text!r}")
    return float(match.group(1)) * _DURATION_FACTOR[match.group(2)]


def parse_size(text: str) -> int:
    """Return bytes for a size such as ``"64MB"``, ``"512KiB"`` or ``"1000000"``."""
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"expected a size such as '64MB', '512KiB' or '1GiB', got {text!r}")
    # Decimal, not float: "2.01kB" is 2010 bytes, where float arithmetic truncates to 2009.
    size = Decimal(match.group(1)) * _SIZE_FACTOR[match.group(2)]
    if size != size.to_integral_value():
        raise ValueError(f"expected a whole number of bytes, got {text!r} ({size} bytes)")
    return int(size)


def format_duration(seconds: float) -> str:
    """Inverse of :func:`parse_duration` for display (``0.25`` -> ``"250ms"``)."""
    if seconds < 1 and seconds * 1000 == int(seconds * 1000):
        return f"{int(seconds * 1000)}ms"
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{seconds}s"
