"""Millisecond ticks that wrap, with MicroPython's time.ticks_* where they exist."""

import time

try:
    diff = time.ticks_diff  # type: ignore[attr-defined]
    add = time.ticks_add  # type: ignore[attr-defined]
except AttributeError:  # CPython: plain integers never wrap

    def diff(a, b):
        """``a - b`` in ticks."""
        return a - b

    def add(a, delta):
        """``a + delta`` in ticks."""
        return a + delta
