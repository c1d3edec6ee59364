"""The report-on-change policy: what is stored, what is held back, and the guarantees left."""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.deadband import (
    DeadbandFilter,
    DeadbandRule,
    DeviceDeadbands,
    Stored,
    is_state,
    passes,
)
from gateway.core.health import DeviceStatus
from gateway.core.model import Quality, Reading

RULE = DeadbandRule(max_silence_ms=60_000, absolute=0.5)


def reading(
    value: float, ts_ms: int, quality: Quality = Quality.GOOD, metric: str = "t"
) -> Reading:
    return Reading("dev", metric, value, "Cel", ts_ms, quality)


def test_the_first_reading_always_passes():
    assert passes(RULE, None, reading(20.0, 0))


@pytest.mark.parametrize(
    ("value", "stored"),
    [(20.4, False), (20.5, True), (19.5, True), (19.6, False), (20.0, False), (25.0, True)],
)
def test_a_value_is_stored_when_it_moved_by_the_deadband(value: float, stored: bool):
    assert passes(RULE, Stored(20.0, Quality.GOOD, 0), reading(value, 1000)) is stored


def test_a_step_of_exactly_the_deadband_passes_despite_binary_rounding():
    assert 0.7 - 0.2 < 0.5  # in binary floating point
    assert passes(RULE, Stored(0.2, Quality.GOOD, 0), reading(0.7, 1000))


def test_max_silence_stores_a_steady_value():
    last = Stored(20.0, Quality.GOOD, 0)
    assert not passes(RULE, last, reading(20.0, 59_999))
    assert passes(RULE, last, reading(20.0, 60_000))


def test_a_clock_that_went_back_stores():
    assert passes(RULE, Stored(20.0, Quality.GOOD, 10_000), reading(20.0, 9_000))


def test_a_quality_change_passes_both_ways():
    good = Stored(20.0, Quality.GOOD, 0)
    unsynced = Stored(20.0, Quality.CLOCK_UNSYNCED, 0)
    assert passes(RULE, good, reading(20.0, 1000, Quality.CLOCK_UNSYNCED))
    assert passes(RULE, unsynced, reading(20.0, 1000, Quality.GOOD))


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_values_pass_and_the_next_finite_one_too(value: float):
    assert passes(RULE, Stored(20.0, Quality.GOOD, 0), reading(value, 1000))
    assert passes(RULE, Stored(value, Quality.GOOD, 0), reading(20.0, 1000))


def test_deadband_zero_stores_every_change_and_nothing_else():
    rule = DeadbandRule(max_silence_ms=60_000)
    last = Stored(1.0, Quality.GOOD, 0)
    assert not passes(rule, last, reading(1.0, 1000))
    assert passes(rule, last, reading(1.0000001, 1000))


def test_percent_is_of_the_last_stored_value_and_both_must_be_met():
    percent = DeadbandRule(max_silence_ms=60_000, percent=1.0)
    assert not passes(percent, Stored(230.0, Quality.GOOD, 0), reading(232.0, 1))
    assert passes(percent, Stored(230.0, Quality.GOOD, 0), reading(232.3, 1))
    # near zero a percentage is tiny; the absolute deadband keeps noise out
    both = DeadbandRule(max_silence_ms=60_000, absolute=0.1, percent=1.0)
    assert not passes(both, Stored(0.0, Quality.GOOD, 0), reading(0.05, 1))
    assert passes(both, Stored(0.0, Quality.GOOD, 0), reading(0.1, 1))
    assert not passes(both, Stored(230.0, Quality.GOOD, 0), reading(231.0, 1))


@pytest.mark.parametrize(
    "bad",
    [
        {"max_silence_ms": 0},
        {"max_silence_ms": 1, "absolute": -1.0},
        {"max_silence_ms": 1, "percent": math.nan},
    ],
)
def test_a_rule_refuses_nonsense(bad: dict[str, float]):
    with pytest.raises(ValueError, match="deadband rule"):
        DeadbandRule(**bad)  # type: ignore[arg-type]


def test_slow_drift_is_reported_once_it_adds_up():
    """Compared with the last *stored* value, 0.1 per poll is reported every 5 polls."""
    dead = DeadbandFilter({"dev": DeviceDeadbands(default=RULE)})
    kept = [
        r.value for i in range(21) for r in dead.admit([reading(round(20 + 0.1 * i, 6), i * 1000)])
    ]
    assert kept == [20.0, 20.5, 21.0, 21.5, 22.0]
    assert dead.suppressed == {"dev": 16}


def test_the_filter_keeps_order_other_devices_and_unfiltered_metrics():
    rules = {"dev": DeviceDeadbands({"t": RULE, "door_state": None}, default=None)}
    dead = DeadbandFilter(rules)
    status = DeviceStatus("dev")
    dead.bind({"dev": status})
    other = Reading("other", "t", 20.0, "Cel", 0, Quality.GOOD)
    first = [
        reading(20.0, 0),
        other,
        reading(1.0, 0, metric="door_state"),
        reading(5, 0, metric="h"),
    ]
    assert dead.admit(first) == first
    again = [
        reading(20.1, 1),
        other,
        reading(1.0, 1, metric="door_state"),
        reading(5, 1, metric="h"),
    ]
    assert dead.admit(again) == again[1:]
    assert status.suppressed == 1


def test_a_default_rule_leaves_states_alone():
    rules = DeviceDeadbands(default=RULE)
    assert is_state("door_state")
    assert rules.rule_for("door_state") is None
    assert rules.rule_for("temperature") is RULE
    assert not DeviceDeadbands({"t": None})
    assert not DeadbandFilter({"dev": DeviceDeadbands({"t": None})})


def test_the_sink_gets_only_what_is_kept_and_nothing_when_all_is_held_back():
    got: list[Sequence[Reading]] = []

    async def sink(readings: Sequence[Reading]) -> None:
        got.append(list(readings))

    async def main() -> None:
        filtered = DeadbandFilter({"dev": DeviceDeadbands(default=RULE)}).sink(sink)
        await filtered([reading(20.0, 0)])
        await filtered([reading(20.1, 1000)])
        await filtered([reading(21.0, 2000)])

    asyncio.run(main())
    assert got == [[reading(20.0, 0)], [reading(21.0, 2000)]]


# -- properties ------------------------------------------------------------------------------

values = st.one_of(
    st.floats(-1e6, 1e6, allow_nan=False),
    st.sampled_from([math.nan, math.inf, 0.0, 20.0]),
)
steps = st.lists(
    st.tuples(values, st.sampled_from([Quality.GOOD, Quality.GOOD, Quality.CLOCK_UNSYNCED])),
    max_size=200,
)


@settings(max_examples=300, deadline=None)
@given(
    steps=steps,
    absolute=st.floats(0, 100),
    percent=st.floats(0, 50),
    interval_ms=st.integers(1, 60_000),
    silence_polls=st.integers(1, 50),
)
def test_every_stored_reading_is_new_enough(
    steps: list[tuple[float, Quality]],
    absolute: float,
    percent: float,
    interval_ms: int,
    silence_polls: int,
):
    """For any sequence polled every interval: each stored value moved by the deadband from
    the one stored before, or max_silence passed, or quality changed, or a value is not finite;
    and no two consecutive stored readings are further apart than max_silence + one interval."""
    rule = DeadbandRule(
        max_silence_ms=interval_ms * silence_polls, absolute=absolute, percent=percent
    )
    dead = DeadbandFilter({"dev": DeviceDeadbands({"t": rule})})
    polled = [reading(v, i * interval_ms, q) for i, (v, q) in enumerate(steps)]
    stored = [r for p in polled for r in dead.admit([p])]
    assert len(stored) + dead.suppressed["dev"] == len(polled)
    if polled:
        assert stored[0] == polled[0]
    for before, after in itertools.pairwise(stored):
        gap = after.ts_ms - before.ts_ms
        assert gap <= rule.max_silence_ms + interval_ms
        moved = abs(after.value - before.value)
        assert (
            gap >= rule.max_silence_ms
            or after.quality != before.quality
            or not (math.isfinite(after.value) and math.isfinite(before.value))
            or (moved > 0 and moved >= rule.threshold(before.value) * (1 - 1e-6) - 1e-9)
        )
    # and nothing was held back that should have been stored: replaying the stored sequence's
    # decisions gives the same result (the policy is a pure function of the last stored reading)
    last: Stored | None = None
    for p in polled:
        if passes(rule, last, p):
            last = Stored(p.value, p.quality, p.ts_ms)
            assert p in stored
