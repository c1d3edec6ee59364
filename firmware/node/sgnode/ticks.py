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


class Clock:
    """A board's real clock: wrapping millisecond ticks and a blocking sleep."""

    def ticks_ms(self):
        """Milliseconds, wrapping."""
        return time.ticks_ms()  # type: ignore[attr-defined]

    def sleep_ms(self, ms):
        """Block for ``ms`` (the UARTs keep receiving meanwhile)."""
        if ms > 0:
            time.sleep_ms(ms)  # type: ignore[attr-defined]
