"""The charts' memory: one ring of 30 s slots per metric, fed by the outbox's sink."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from gateway.core.model import Reading
from gateway.runtime.history import MAX_SERIES, POINTS, STEP_S, History, Series

STEP_MS = STEP_S * 1000
T0 = 1_765_000_000_000 - 1_765_000_000_000 % STEP_MS  # a slot boundary


def test_one_value_per_slot_the_last_wins() -> None:
    series = Series("V")
    series.add(T0, 1.0)
    series.add(T0 + 10_000, 2.0)  # same slot
    series.add(T0 + STEP_MS, 3.0)
    end, values = series.points()
    assert end == (T0 + STEP_MS) // 1000
    assert len(values) == POINTS
    assert values[-2:] == [2.0, 3.0]
    assert values[:-2] == [None] * (POINTS - 2)
    assert series.last_value == 3.0


def test_slots_without_readings_are_gaps_and_the_ring_wraps() -> None:
    series = Series("V", points=4, step_s=STEP_S)
    for i in range(6):
        series.add(T0 + i * STEP_MS, float(i))
    assert series.points()[1] == [2.0, 3.0, 4.0, 5.0]
    series.add(T0 + 8 * STEP_MS, 8.0)  # slots 6 and 7 missed
    assert series.points()[1] == [5.0, None, None, 8.0]
    series.add(T0 + 100 * STEP_MS, 9.0)  # silent for longer than the ring
    assert series.points()[1] == [None, None, None, 9.0]


def test_a_clock_that_goes_back_starts_the_series_afresh() -> None:
    series = Series("V", points=4, step_s=STEP_S)
    series.add(T0 + 5 * STEP_MS, 1.0)
    series.add(T0, 2.0)
    end, values = series.points()
    assert end == T0 // 1000
    assert values == [None, None, None, 2.0]


def test_memory_per_metric_is_bounded() -> None:
    history = History()
    history.record(
        [Reading(f"meter-{d}", f"metric_{m}", 1.0, "kWh", T0) for d in range(10) for m in range(22)]
    )
    per_metric = history.nbytes() / len(history.series)
    assert 960 < per_metric < 1400, per_metric  # 120 doubles and the bookkeeping
    assert history.nbytes() < 300_000  # a cabinet of 10 meters × 22 metrics


def test_series_are_capped_and_the_refused_counted() -> None:
    history = History(max_series=2)
    history.record([Reading("d", m, 1.0, "", T0) for m in ("a", "b", "c")])
    assert set(history.series) == {("d", "a"), ("d", "b")}
    assert history.refused == 1
    assert MAX_SERIES >= 1000


def test_the_tap_records_and_passes_every_batch_on() -> None:
    history = History()
    passed: list[Sequence[Reading]] = []

    async def sink(readings: Sequence[Reading]) -> None:
        passed.append(readings)

    batch = [Reading("meter-1", "voltage", 230.1, "V", T0)]

    async def scenario() -> None:
        await history.tap(sink)(batch)

    asyncio.run(scenario())
    assert passed == [batch]
    assert history.series["meter-1", "voltage"].last_value == 230.1
