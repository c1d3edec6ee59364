"""Report-on-change: which readings are worth storing, per (device, metric), before the store.

A metric with a :class:`DeadbandRule` keeps a reading only when it tells the platform something
new (:func:`passes`), compared with the last reading *stored* for that metric (not the last one
polled: slow drift then still gets reported once it adds up to the deadband):

- it is the first reading of the metric since the gateway started;
- its value moved by at least the rule's threshold (and by more than nothing): the absolute
  ``deadband`` in the metric's unit and ``deadband_percent`` of the last stored value, the larger
  of the two when both are given; ``deadband = 0`` stores every change;
- ``max_silence`` has passed since the last stored reading (so the platform knows the device is
  alive), or the wall clock went back (the gap cannot be measured: store);
- its quality differs from the last stored one's (``clock_unsynced`` -> ``good``), or its value or
  the last stored one is not finite (NaN, ±inf).

Suppressed readings never reach the outbox, so they never get a sequence number: the platform
sees no gap in ``seq``, only in time. The state lives in memory only: after a restart the first
reading of every metric passes again.

:class:`DeadbandFilter` applies the rules to batches of readings (the sink wrapper the runtime
puts in front of the outbox) and counts what it suppressed per device.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from gateway.core.health import DeviceStatus
from gateway.core.model import Reading

__all__ = [
    "STATE_SUFFIX",
    "DeadbandFilter",
    "DeadbandRule",
    "DeviceDeadbands",
    "Stored",
    "is_state",
    "passes",
]

#: Metrics named ``<what>_state`` are states (0/1: door open, calibrating), not measurements: a
#: deadband on them means nothing, only report-on-change (``deadband = 0``) does.
STATE_SUFFIX = "_state"

# Floating-point slack of the threshold comparison, relative to the values compared: a step of
# exactly the deadband (0.2 -> 0.7 with 0.5) must pass although 0.7 - 0.2 < 0.5 in binary.
_SLACK = 1e-9


def is_state(metric: str) -> bool:
    """Whether ``metric`` is a state rather than a measurement (see :data:`STATE_SUFFIX`)."""
    return metric.endswith(STATE_SUFFIX)


@dataclass(frozen=True, slots=True)
class DeadbandRule:
    """When a metric's reading is stored: moved by the threshold, or ``max_silence_ms`` passed."""

    max_silence_ms: int
    absolute: float = 0.0  # in the metric's unit
    percent: float = 0.0  # of the magnitude of the last stored value

    def __post_init__(self) -> None:
        if not (
            self.max_silence_ms > 0
            and math.isfinite(self.absolute)
            and self.absolute >= 0
            and math.isfinite(self.percent)
            and self.percent >= 0
        ):
            raise ValueError(f"a deadband rule needs values >= 0 and max_silence > 0: {self}")

    def threshold(self, last: float) -> float:
        """How far a value must move from ``last`` (the last stored value) to be stored."""
        return max(self.absolute, self.percent / 100 * abs(last))


class Stored(NamedTuple):
    """What :func:`passes` remembers of a metric's last stored reading."""

    value: float
    quality: str
    ts_ms: int


def passes(rule: DeadbandRule, last: Stored | None, reading: Reading) -> bool:
    """Whether ``reading`` is stored, given the last stored reading of its metric (module doc)."""
    if last is None or reading.quality != last.quality:
        return True
    value, before = reading.value, last.value
    if not (math.isfinite(value) and math.isfinite(before)):
        return True
    elapsed = reading.ts_ms - last.ts_ms
    if elapsed >= rule.max_silence_ms or elapsed < 0:
        return True
    delta = abs(value - before)
    slack = _SLACK * max(1.0, abs(value), abs(before))
    return delta > 0 and delta + slack >= rule.threshold(before)


@dataclass(frozen=True, slots=True)
class DeviceDeadbands:
    """One device's rules: per metric (None: that metric stores every reading), and ``default``
    for every other measurement (never for states, see :func:`is_state`)."""

    metrics: Mapping[str, DeadbandRule | None] = field(default_factory=dict)
    default: DeadbandRule | None = None

    def rule_for(self, metric: str) -> DeadbandRule | None:
        """The rule of ``metric``, or None when every reading of it is stored."""
        if metric in self.metrics:
            return self.metrics[metric]
        return None if is_state(metric) else self.default

    def __bool__(self) -> bool:
        return self.default is not None or any(r is not None for r in self.metrics.values())


Sink = Callable[[Sequence[Reading]], Awaitable[None]]


class DeadbandFilter:
    """The rules of every device, with the last stored reading of each filtered metric.

    Memory: one entry per (device, metric) that has a rule. ``suppressed`` counts per device;
    :meth:`bind` also adds them to the devices' :class:`DeviceStatus` (the health report).
    """

    def __init__(self, rules: Mapping[str, DeviceDeadbands]) -> None:
        self._rules = {device: r for device, r in rules.items() if r}
        # (device, metric) -> [its rule (None: unfiltered), its last stored reading]
        self._state: dict[tuple[str, str], list[Any]] = {}
        self._statuses: Mapping[str, DeviceStatus] = {}
        self.suppressed: dict[str, int] = dict.fromkeys(self._rules, 0)

    def __bool__(self) -> bool:
        return bool(self._rules)

    def bind(self, statuses: Mapping[str, DeviceStatus]) -> None:
        """Count suppressed readings into these devices' statuses too."""
        self._statuses = statuses

    def admit(self, readings: Sequence[Reading]) -> Sequence[Reading]:
        """The readings of a batch worth storing, in their order; remembers them as stored."""
        rules = self._rules
        if not any(r.device in rules for r in readings):
            return readings
        kept: list[Reading] = []
        for reading in readings:
            device = reading.device
            if device not in rules:
                kept.append(reading)
                continue
            key = (device, reading.metric)
            state = self._state.get(key)
            if state is None:
                state = self._state[key] = [rules[device].rule_for(reading.metric), None]
            rule = state[0]
            if rule is None:
                kept.append(reading)
            elif passes(rule, state[1], reading):
                state[1] = Stored(reading.value, reading.quality, reading.ts_ms)
                kept.append(reading)
            else:
                self._count(device)
        return kept

    def _count(self, device: str) -> None:
        self.suppressed[device] = self.suppressed.get(device, 0) + 1
        status = self._statuses.get(device)
        if status is not None:
            status.suppressed += 1

    def sink(self, sink: Sink) -> Sink:
        """``sink`` behind this filter: it gets only the readings worth storing."""
        admit = self.admit

        async def filtered(readings: Sequence[Reading]) -> None:
            kept = admit(readings)
            if kept:
                await sink(kept)

        return filtered
