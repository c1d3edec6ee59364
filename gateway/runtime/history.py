"""The last hour of every metric, in memory, for the status page's charts (bounded, cheap to feed).

One :class:`Series` per (device, metric): a ring of ``POINTS`` slots of ``STEP_S`` seconds each
(120 × 30 s = one hour) holding the last value read in each slot, as 8-byte floats in one
``array('d')``; a slot nothing was read in holds NaN (a gap in the chart). Slots are placed by
the reading's own timestamp, so polls of any interval share one time axis.

Memory: the ring is 120 × 8 = 960 bytes of data; with the array's header, the series object and
its key, about 1.3 KB per metric (``Series.nbytes()`` measures it; tests/gateway/runtime/
test_history.py pins the bound). A cabinet of 10 energy meters of ~20 metrics and a few sensors
(~220 metrics) costs about 290 KB. At most ``MAX_SERIES`` series are kept (then new ones are
counted, not recorded), so a source that invents metric names cannot grow it without bound.

:meth:`History.tap` wraps the outbox's ``put_many`` (the sink every poller and source hands its
readings to), recording each batch before passing it on: one dict lookup and one array store per
reading.
"""

from __future__ import annotations

import math
import sys
from array import array
from collections.abc import Iterable, Sequence

from drivers.base import Sink
from gateway.core.model import Reading

__all__ = ["MAX_SERIES", "POINTS", "STEP_S", "History", "Series"]

#: Seconds per chart point and points per series: one hour.
STEP_S = 30
POINTS = 120
#: Series kept at most (devices × metrics); 4096 × 1.3 KB ≈ 5.5 MB at worst.
MAX_SERIES = 4096

_NAN = math.nan


class Series:
    """One metric's last value and its last hour, one slot per ``step_ms``."""

    __slots__ = ("_head", "_slots", "_step_ms", "last_ts_ms", "last_value", "unit")

    def __init__(self, unit: str, points: int = POINTS, step_s: int = STEP_S) -> None:
        self.unit = unit
        self.last_value = _NAN
        self.last_ts_ms = 0
        self._step_ms = step_s * 1000
        self._slots = array("d", [_NAN]) * points
        self._head: int | None = None  # the slot number (ts // step) of the newest value

    def add(self, ts_ms: int, value: float) -> None:
        """Record a value read at ``ts_ms`` (the last one in its slot wins)."""
        self.last_value = value
        self.last_ts_ms = ts_ms
        slot = ts_ms // self._step_ms
        if slot != self._head:  # most values land in the newest slot: skip this then
            self._advance(slot)
        slots = self._slots
        slots[slot % len(slots)] = value

    def _advance(self, slot: int) -> None:
        head = self._head
        slots = self._slots
        size = len(slots)
        if head is None or slot < head or slot - head >= size:
            # First value, the wall clock went back, or over an hour of silence: start afresh.
            if head is not None:
                slots[:] = array("d", [_NAN]) * size
        else:
            for gap in range(head + 1, slot):  # slots nothing was read in
                slots[gap % size] = _NAN
        self._head = slot

    def points(self) -> tuple[int | None, list[float | None]]:
        """(Unix seconds of the newest slot's start, the values oldest first; None for gaps)."""
        head = self._head
        if head is None:
            return None, []
        slots = self._slots
        size = len(slots)
        values = [slots[(head - size + 1 + i) % size] for i in range(size)]
        return head * self._step_ms // 1000, [None if math.isnan(v) else v for v in values]

    def nbytes(self) -> int:
        """Memory this series holds (object, ring and unit string), in bytes."""
        return sys.getsizeof(self) + sys.getsizeof(self._slots) + sys.getsizeof(self.unit)


class History:
    """Every metric's :class:`Series`, keyed by (device, metric)."""

    def __init__(
        self, points: int = POINTS, step_s: int = STEP_S, max_series: int = MAX_SERIES
    ) -> None:
        self.points = points
        self.step_s = step_s
        self.max_series = max_series
        self.series: dict[tuple[str, str], Series] = {}
        self.refused = 0  # readings not recorded: MAX_SERIES series exist already

    def record(self, readings: Iterable[Reading]) -> None:
        """Record a batch of readings (called for every batch the outbox is handed)."""
        series = self.series
        for reading in readings:
            one = series.get((reading.device, reading.metric))
            if one is None:
                if len(series) >= self.max_series:
                    self.refused += 1
                    continue
                one = series[reading.device, reading.metric] = Series(
                    reading.unit, self.points, self.step_s
                )
            one.add(reading.ts_ms, reading.value)

    def tap(self, sink: Sink) -> Sink:
        """``sink`` with every batch recorded here first."""
        record = self.record

        async def recording_sink(readings: Sequence[Reading]) -> None:
            record(readings)
            await sink(readings)

        return recording_sink

    def nbytes(self) -> int:
        """Memory the recorded series hold (without the dict), in bytes."""
        return sum(
            s.nbytes() + sys.getsizeof(key) + sum(sys.getsizeof(k) for k in key)
            for key, s in self.series.items()
        )
