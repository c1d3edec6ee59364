"""Plausible, changing values for simulated devices: seeded, and driven by the time you pass in.

:class:`DeviceValues` gives every metric of a profile a value at time ``t`` (seconds since the
device started), chosen from the metric's name and unit: mains voltage near 230 V, currents and
powers that follow a smooth load curve, a power factor of 0.85-1.0, 50 Hz +- 0.05, energy
counters that integrate power (and so never decrease), slowly drifting temperature and humidity,
and a bounded random walk for anything else. The same seed and the same sequence of ``t`` give
the same values, so tests inject a clock instead of sleeping.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable
from enum import StrEnum

from drivers.modbus.codec import decode_value, encode_value, raw_for, scaled
from drivers.profile import DataType, MetricSpec, Profile

__all__ = ["Clock", "DeviceValues", "Kind", "classify", "encode_metric", "value_range"]

Clock = Callable[[], float]
"""Monotonic seconds (``time.monotonic`` in production, a fake in tests)."""

_MAX_CATCH_UP = 10_000  # ticks; a longer gap is bridged in one step so a read never stalls


class Kind(StrEnum):
    """What a metric measures, as far as choosing plausible values goes."""

    VOLTAGE = "voltage"
    CURRENT = "current"
    NEUTRAL_CURRENT = "neutral_current"
    ACTIVE_POWER = "active_power"
    APPARENT_POWER = "apparent_power"
    REACTIVE_POWER = "reactive_power"
    POWER_FACTOR = "power_factor"
    PHASE_ANGLE = "phase_angle"
    FREQUENCY = "frequency"
    ENERGY_IMPORT = "energy_import"
    ENERGY_EXPORT = "energy_export"
    ENERGY_TOTAL = "energy_total"
    TEMPERATURE = "temperature"
    HUMIDITY = "humidity"
    PARTICULATE = "particulate"  # µg/m³ (the sensor node's PM2.5 / PM10)
    UPTIME = "uptime"  # seconds since the device started
    STATUS_BITS = "status_bits"  # the sensor node's status: every sensor valid
    ERROR_CODE = "error_code"  # 0: no error
    SAMPLE_AGE = "sample_age"  # seconds since the last sample, sampling every 10 s
    UNKNOWN = "unknown"


# Unit -> (kind, factor from the model's base unit: V, A, W, VA, var, kWh, degC, %RH, Hz).
_UNITS: dict[str, tuple[Kind, float]] = {
    "V": (Kind.VOLTAGE, 1.0),
    "A": (Kind.CURRENT, 1.0),
    "W": (Kind.ACTIVE_POWER, 1.0),
    "kW": (Kind.ACTIVE_POWER, 1e-3),
    "VA": (Kind.APPARENT_POWER, 1.0),
    "kVA": (Kind.APPARENT_POWER, 1e-3),
    "var": (Kind.REACTIVE_POWER, 1.0),
    "VAr": (Kind.REACTIVE_POWER, 1.0),
    "kvar": (Kind.REACTIVE_POWER, 1e-3),
    "Hz": (Kind.FREQUENCY, 1.0),
    "kWh": (Kind.ENERGY_IMPORT, 1.0),
    "Wh": (Kind.ENERGY_IMPORT, 1e3),
    "MWh": (Kind.ENERGY_IMPORT, 1e-3),
    "deg": (Kind.PHASE_ANGLE, 1.0),
    "Cel": (Kind.TEMPERATURE, 1.0),
    "degC": (Kind.TEMPERATURE, 1.0),
    "°C": (Kind.TEMPERATURE, 1.0),
    "%RH": (Kind.HUMIDITY, 1.0),
    "ug/m3": (Kind.PARTICULATE, 1.0),
}
_NAMES = (  # fallbacks when the unit says nothing
    ("power_factor", Kind.POWER_FACTOR),
    ("voltage", Kind.VOLTAGE),
    ("current", Kind.CURRENT),
    ("frequency", Kind.FREQUENCY),
    ("temp", Kind.TEMPERATURE),
    ("humid", Kind.HUMIDITY),
    ("uptime", Kind.UPTIME),
    ("sample_age", Kind.SAMPLE_AGE),
    ("status", Kind.STATUS_BITS),
    ("error", Kind.ERROR_CODE),
)
_PHASE = re.compile(r"^l([123])_")


def _kind_and_factor(metric: MetricSpec) -> tuple[Kind, float]:
    name = metric.name.lower()
    kind, factor = _UNITS.get(metric.unit, (Kind.UNKNOWN, 1.0))
    if kind is Kind.UNKNOWN:
        kind = next((k for key, k in _NAMES if key in name), Kind.UNKNOWN)
    if kind is Kind.CURRENT and "neutral" in name:
        kind = Kind.NEUTRAL_CURRENT
    if kind is Kind.ENERGY_IMPORT and "export" in name:
        kind = Kind.ENERGY_EXPORT
    elif kind is Kind.ENERGY_IMPORT and "total" in name:
        kind = Kind.ENERGY_TOTAL
    if kind is Kind.PHASE_ANGLE and "angle" not in name:
        kind = Kind.UNKNOWN
    return kind, factor


def classify(metric: MetricSpec) -> Kind:
    """What kind of quantity a metric is, from its unit and then its name."""
    return _kind_and_factor(metric)[0]


def value_range(metric: MetricSpec) -> tuple[float, float]:
    """Lowest and highest engineering value the metric's registers can carry."""
    int_range = metric.type.int_range
    if int_range is None:
        limit = 3.4e38 if metric.type is DataType.FLOAT32 else 1.7e308
        return -limit, limit
    lo, hi = (scaled(metric, raw) for raw in int_range)
    return min(lo, hi), max(lo, hi)


def encode_metric(metric: MetricSpec, value: float) -> tuple[list[int], float]:
    """Registers for ``value`` and the engineering value a gateway will decode from them.

    Integer types are rounded and clamped to what they can hold; float32 loses precision. The
    second element is what to compare a forwarded reading against.
    """
    raw = raw_for(metric, value)
    int_range = metric.type.int_range
    if int_range is not None:
        lo, hi = int_range
        raw = min(max(int(raw), lo), hi)
    registers = encode_value(raw, metric.type, metric.word_order, metric.byte_order)
    decoded = decode_value(registers, metric.type, metric.word_order, metric.byte_order)
    return registers, scaled(metric, decoded)


def _noise(key: int, t: float) -> float:
    """Deterministic noise in [-1, 1], constant over each 100 ms (splitmix64 of key and slot)."""
    x = (key * 0x9E3779B97F4A7C15 + int(t * 10)) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return ((x ^ (x >> 31)) / 0xFFFFFFFFFFFFFFFF) * 2.0 - 1.0


class _Smooth:
    """A smooth curve in [-1, 1]: three sines with seeded periods around ``period`` seconds."""

    def __init__(self, rng: random.Random, period: float) -> None:
        self._waves = tuple(
            (weight, 2 * math.pi / (period * rng.uniform(0.5, 1.5) * scale), rng.uniform(0, 6.3))
            for weight, scale in ((0.6, 1.0), (0.3, 0.31), (0.1, 0.097))
        )

    def __call__(self, t: float) -> float:
        return sum(w * math.sin(omega * t + phase) for w, omega, phase in self._waves)


def _node_source(kind: Kind, rng: random.Random) -> Callable[[float], float] | None:
    """Values for the sensor node's metrics (drivers/profiles/streetgate-node.toml)."""
    if kind is Kind.PARTICULATE:
        return _Walk(rng, 2.0, 80.0, 0.2, 1.0)
    if kind is Kind.UPTIME:
        return lambda t: float(int(t))
    if kind is Kind.SAMPLE_AGE:
        return lambda t: float(int(t) % 10)
    if kind is Kind.STATUS_BITS:
        return lambda t: 3.0  # PM and T/RH valid (docs/node.md)
    if kind is Kind.ERROR_CODE:
        return lambda t: 0.0
    return None


class _Walk:
    """A random walk reflected into [lo, hi], one step per tick, linear between ticks."""

    def __init__(self, rng: random.Random, lo: float, hi: float, step: float, tick: float) -> None:
        self._rng, self._lo, self._hi, self._step, self._tick = rng, lo, hi, step, tick
        self._k = 0
        self._here = rng.uniform(lo + (hi - lo) * 0.2, hi - (hi - lo) * 0.2)
        self._next = self._draw(self._here)

    def _draw(self, value: float) -> float:
        value += self._rng.gauss(0.0, self._step)
        if value > self._hi:
            value = 2 * self._hi - value
        if value < self._lo:
            value = 2 * self._lo - value
        return min(max(value, self._lo), self._hi)

    def __call__(self, t: float) -> float:
        k = int(t // self._tick)
        if k - self._k > _MAX_CATCH_UP:
            self._k, self._here = k - 1, self._rng.uniform(self._lo, self._hi)
            self._next = self._draw(self._here)
        while self._k < k:
            self._k, self._here, self._next = self._k + 1, self._next, self._draw(self._next)
        frac = min(max(t / self._tick - self._k, 0.0), 1.0)
        return self._here + (self._next - self._here) * frac


class _Integral:
    """A counter that integrates a non-negative rate (units per second); it never decreases."""

    def __init__(self, start: float, rate: Callable[[float], float], tick: float = 1.0) -> None:
        self._rate, self._tick = rate, tick
        self._k = 0
        self._total = start
        self._last = start

    def __call__(self, t: float) -> float:
        k = int(t // self._tick)
        if k - self._k > _MAX_CATCH_UP:  # bridge a long unread gap at the current rate
            self._total += max(self._rate(t), 0.0) * (k - 1 - self._k) * self._tick
            self._k = k - 1
        while self._k < k:
            self._k += 1
            self._total += max(self._rate(self._k * self._tick), 0.0) * self._tick
        # Within a tick, run towards the next tick's total at that tick's rate.
        partial = t - self._k * self._tick
        rate_next = max(self._rate((self._k + 1) * self._tick), 0.0)
        self._last = max(self._last, self._total + rate_next * min(max(partial, 0.0), self._tick))
        return self._last


class _Phase:
    """One phase of a supply: voltage, load current and power factor over time."""

    def __init__(self, rng: random.Random, key: int, max_current: float) -> None:
        self._voltage = _Smooth(rng, 900.0)
        self._load = _Smooth(rng, 300.0)
        self._pf = _Smooth(rng, 600.0)
        self._key = key
        self._max_current = max_current
        self._t = math.nan
        self._state = (0.0, 0.0, 1.0)

    def at(self, t: float) -> tuple[float, float, float]:
        """Voltage (V), current (A) and power factor at ``t``; one read asks several times."""
        if t != self._t:
            key = self._key
            self._t = t
            self._state = (
                230.0 + 4.0 * self._voltage(t) + 0.3 * _noise(key, t),
                self._max_current * (0.5 + 0.45 * self._load(t) + 0.01 * _noise(key + 1, t)),
                0.925 + 0.07 * self._pf(t),
            )
        return self._state

    def power(self, t: float) -> float:
        """Active power in W."""
        volts, amps, pf = self.at(t)
        return volts * amps * pf

    def apparent(self, t: float) -> float:
        """Apparent power in VA."""
        volts, amps, _ = self.at(t)
        return volts * amps


class DeviceValues:
    """Values for every metric of one profile; ``value(name, t)`` with ``t`` in seconds."""

    def __init__(self, profile: Profile, seed: int | str = 0) -> None:
        self.profile = profile
        names = [m.name.lower() for m in profile.metrics]
        n_phases = 3 if any(n.startswith(("l2_", "l3_")) for n in names) else 1
        base = random.Random(f"{seed}/{profile.name}/supply")
        self._phases = tuple(
            _Phase(base, base.getrandbits(62), 16.0 if n_phases == 1 else 32.0)
            for _ in range(n_phases)
        )
        self._frequency = _Smooth(base, 120.0)
        self._frequency_key = base.getrandbits(62)
        self._import = _Integral(base.uniform(100.0, 5000.0), lambda t: self.total_power(t) / 3.6e6)
        self._export = _Integral(base.uniform(0.0, 20.0), lambda t: self.total_power(t) / 3.6e8)
        self._sources: dict[str, Callable[[float], float]] = {}
        self._held: dict[str, float] = {}  # metrics pinned by hold()
        for metric in profile.metrics:
            self._sources[metric.name] = self._source(
                metric, random.Random(f"{seed}/{metric.name}")
            )

    # The supply, shared by every electrical metric so that they agree with each other.
    def total_power(self, t: float) -> float:
        """Active power summed over the phases, in W."""
        return sum(p.power(t) for p in self._phases)

    def frequency(self, t: float) -> float:
        """Mains frequency, within 50 +- 0.05 Hz."""
        return 50.0 + 0.04 * self._frequency(t) + 0.009 * _noise(self._frequency_key, t)

    def value(self, name: str, t: float) -> float:
        """The engineering value of metric ``name`` at ``t`` (before register encoding)."""
        held = self._held.get(name)
        return self._sources[name](t) if held is None else held

    def hold(self, name: str, value: float | None) -> None:
        """Pin metric ``name`` at ``value`` (a steady reading, or a step when changed); None
        lets it move again. KeyError for a metric the profile lacks."""
        if name not in self._sources:
            raise KeyError(f"{self.profile.name} has no metric {name!r}")
        if value is None:
            self._held.pop(name, None)
        else:
            self._held[name] = value

    def encode(self, metric: MetricSpec, t: float) -> tuple[list[int], float]:
        """Registers for the metric at ``t`` and the value a gateway decodes from them."""
        return encode_metric(metric, self.value(metric.name, t))

    def _source(self, metric: MetricSpec, rng: random.Random) -> Callable[[float], float]:
        kind, factor = _kind_and_factor(metric)
        phases = self._phases
        match = _PHASE.match(metric.name.lower())
        if match is not None:
            phases = (phases[min(int(match[1]), len(phases)) - 1],)
        electrical = self._electrical(kind, phases)
        if electrical is not None:
            return electrical if factor == 1.0 else lambda t: electrical(t) * factor
        if kind is Kind.TEMPERATURE:
            return _Walk(rng, 5.0, 30.0, 0.02, 1.0)
        if kind is Kind.HUMIDITY:
            return _Walk(rng, 30.0, 95.0, 0.1, 1.0)
        node = _node_source(kind, rng)
        if node is not None:
            return node
        lo, hi = value_range(metric)
        lo, hi = max(lo, 0.0), min(hi, 100.0)
        if lo >= hi:  # a type that cannot hold 0..100: walk over what it can hold
            lo, hi = value_range(metric)
        return _Walk(rng, lo, hi, (hi - lo) / 500.0, 1.0)

    def _electrical(  # noqa: PLR0911 - one return per kind reads best here
        self, kind: Kind, phases: tuple[_Phase, ...]
    ) -> Callable[[float], float] | None:
        if kind is Kind.VOLTAGE:
            return lambda t: sum(p.at(t)[0] for p in phases) / len(phases)
        if kind is Kind.CURRENT:
            return lambda t: sum(p.at(t)[1] for p in phases)
        if kind is Kind.NEUTRAL_CURRENT:
            return self._neutral_current
        if kind is Kind.ACTIVE_POWER:
            return lambda t: sum(p.power(t) for p in phases)
        if kind is Kind.APPARENT_POWER:
            return lambda t: sum(p.apparent(t) for p in phases)
        if kind is Kind.REACTIVE_POWER:
            return lambda t: sum(
                math.sqrt(max(p.apparent(t) ** 2 - p.power(t) ** 2, 0.0)) for p in phases
            )
        if kind is Kind.POWER_FACTOR:
            return lambda t: sum(p.power(t) for p in phases) / sum(p.apparent(t) for p in phases)
        if kind is Kind.PHASE_ANGLE:
            return lambda t: math.degrees(math.acos(phases[0].at(t)[2]))
        if kind is Kind.FREQUENCY:
            return self.frequency
        if kind is Kind.ENERGY_IMPORT:
            return self._import
        if kind is Kind.ENERGY_EXPORT:
            return self._export
        if kind is Kind.ENERGY_TOTAL:
            return lambda t: self._import(t) + self._export(t)
        return None

    def _neutral_current(self, t: float) -> float:
        currents = [p.at(t)[1] for p in self._phases]
        if len(currents) == 1:
            return currents[0]
        a, b, c = currents
        return math.sqrt(max(a * a + b * b + c * c - a * b - b * c - c * a, 0.0))
