"""Is the wall clock synchronised? A Raspberry Pi has no RTC, so until NTP syncs it is not."""

from __future__ import annotations

import ctypes
import time
from collections.abc import Callable
from typing import Any

_TIME_ERROR = 5  # adjtimex(2) return value while the kernel considers the clock unsynchronised


class SystemClock:
    """Wall time plus the kernel's own view of synchronisation, cached for a few seconds.

    ``adjtimex()`` with ``modes = 0`` only reads; it needs no privileges, works in containers
    and sees the result of any NTP client (systemd-timesyncd, chrony, ntpd).
    """

    def __init__(self, recheck_after: float = 10.0) -> None:
        self._recheck_after = recheck_after
        self._checked_at = -float("inf")
        self._synced = False
        self._adjtimex = _load_adjtimex()

    def now_ms(self) -> int:
        """Wall-clock UTC in milliseconds since the epoch."""
        return time.time_ns() // 1_000_000

    def synchronised(self) -> bool:
        """Whether the kernel reports the clock as synchronised (cached)."""
        now = time.monotonic()
        if now - self._checked_at >= self._recheck_after:
            self._checked_at = now
            self._synced = self._query()
        return self._synced

    def _query(self) -> bool:
        if self._adjtimex is None:
            return False
        buf = ctypes.create_string_buffer(512)  # struct timex, zeroed: modes = 0, read only
        return bool(self._adjtimex(buf) not in (-1, _TIME_ERROR))


def _load_adjtimex() -> Callable[[Any], int] | None:
    # CDLL(None) is the running process, which links the C library: no ldconfig subprocess
    # (ctypes.util.find_library would run one, blocking whoever constructs a clock).
    try:
        func = ctypes.CDLL(None, use_errno=True).adjtimex
    except (OSError, AttributeError):
        return None  # not Linux: no adjtimex, the clock counts as unsynchronised
    func.argtypes = [ctypes.c_void_p]
    func.restype = ctypes.c_int
    adjtimex: Callable[[Any], int] = func
    return adjtimex
