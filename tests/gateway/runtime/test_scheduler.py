"""Scheduling: drift-free slots, failure isolation, health, backoff (in-repo fake driver)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Self

import pytest

from gateway.core.backoff import next_delay
from gateway.core.clock import SystemClock
from gateway.core.errors import DeviceTimeout, DeviceUnreachable
from gateway.core.health import Health, health_after
from gateway.core.model import Reading, Sample
from gateway.core.polling import next_slot
from gateway.runtime.scheduler import DevicePoller


class FakeDriver:
    """A driver whose poll takes ``duration`` seconds and fails while ``failing`` is set."""

    def __init__(self, name: str, duration: float = 0.0) -> None:
        self._name = name
        self.duration = duration
        self.failing = False
        self.refuse_connect = False
        self.poll_times: list[float] = []
        self.enters = 0

    @property
    def name(self) -> str:
        return self._name

    async def __aenter__(self) -> Self:
        self.enters += 1
        if self.refuse_connect:
            raise DeviceUnreachable(self._name, "connection refused")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    async def poll(self) -> list[Sample]:
        self.poll_times.append(time.monotonic())
        await asyncio.sleep(self.duration)
        if self.failing:
            raise DeviceTimeout(self._name, "no answer within 0.1s")
        return [Sample("temperature", 21.5, "Cel")]


class Sink:
    def __init__(self) -> None:
        self.readings: list[Reading] = []

    async def __call__(self, readings: Sequence[Reading]) -> None:
        self.readings.extend(readings)


async def run_for(seconds: float, *pollers: DevicePoller) -> None:
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(p.run(), name=f"poll:fake:{p.status.name}") for p in pollers]
        await asyncio.sleep(seconds)
        for task in tasks:
            task.cancel()


def test_slots_do_not_drift_with_poll_duration() -> None:
    driver = FakeDriver("slow-ish", duration=0.06)
    poller = DevicePoller(driver, 0.2, Sink(), SystemClock())
    asyncio.run(run_for(1.55, poller))
    times = driver.poll_times
    start = times[0]
    assert len(times) == 8  # slots at 0, 0.2, ..., 1.4
    for k, t in enumerate(times):
        assert abs((t - start) - k * 0.2) < 0.05, (k, t - start)


def test_overrun_skips_missed_slots_instead_of_bunching() -> None:
    driver = FakeDriver("slow", duration=0.25)
    poller = DevicePoller(driver, 0.1, Sink(), SystemClock())
    asyncio.run(run_for(1.0, poller))
    gaps = [b - a for a, b in zip(driver.poll_times, driver.poll_times[1:], strict=False)]
    assert all(g >= 0.25 for g in gaps), gaps
    assert poller.status.overruns >= 4


def test_a_failing_device_does_not_delay_the_others() -> None:
    bad = FakeDriver("bad", duration=0.5)
    bad.failing = True
    good = FakeDriver("good")
    sink = Sink()
    pollers = (
        DevicePoller(bad, 0.1, sink, SystemClock(), rng=random.Random(1)),
        DevicePoller(good, 0.1, sink, SystemClock()),
    )
    asyncio.run(run_for(1.05, *pollers))
    assert len(good.poll_times) == 11
    assert {r.device for r in sink.readings} == {"good"}
    assert pollers[0].status.health in (Health.DEGRADED, Health.DOWN)
    assert pollers[0].status.errors_by_kind["DeviceTimeout"] >= 1
    assert pollers[1].status.health is Health.OK


def test_backoff_grows_while_failing_and_recovery_restores_ok() -> None:
    driver = FakeDriver("flaky")
    driver.refuse_connect = True
    poller = DevicePoller(driver, 0.05, Sink(), SystemClock(), rng=random.Random(3))

    async def scenario() -> None:
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(poller.run(), name="poll:fake:flaky")
            await asyncio.sleep(1.6)
            attempts = driver.enters
            assert poller.status.health is Health.DOWN
            driver.refuse_connect = False
            await asyncio.sleep(1.6)  # backoff is capped by then at a few seconds at most
            task.cancel()
        assert poller.status.errors_by_kind["DeviceUnreachable"] == attempts
        assert attempts < 1.6 / 0.05 / 2  # far fewer attempts than one per interval
        recovered = poller.status.health
        assert recovered.value == "ok"
        assert poller.status.polls_ok >= 1

    asyncio.run(scenario())


def test_next_slot() -> None:
    assert next_slot(10.0, 1.0, 10.0) == 11.0
    assert next_slot(10.0, 1.0, 10.5) == 11.0
    assert next_slot(10.0, 1.0, 13.2) == 14.0


def test_health_after_failures() -> None:
    assert [health_after(n) for n in range(5)] == [
        Health.OK,
        Health.DEGRADED,
        Health.DEGRADED,
        Health.DOWN,
        Health.DOWN,
    ]


def test_backoff_bounds_and_growth() -> None:
    rng = random.Random(7)
    for attempt in range(80):
        ceiling = min(30.0, 0.5 * 2**attempt)
        delay = next_delay(attempt, rng, 0.5, 30.0)
        assert ceiling / 2 <= delay <= ceiling
    means = [sum(next_delay(a, rng, 1.0, 1000.0) for _ in range(200)) / 200 for a in range(5)]
    assert means == sorted(means)


def test_backoff_jitter_spreads_a_fleet() -> None:
    delays = {round(next_delay(5, random.Random(seed), 1.0, 60.0), 3) for seed in range(50)}
    assert len(delays) > 40


@pytest.mark.parametrize(("attempt", "base", "cap"), [(-1, 1.0, 2.0), (0, 0.0, 1.0), (0, 2.0, 1.0)])
def test_backoff_rejects_nonsense(attempt: int, base: float, cap: float) -> None:
    with pytest.raises(ValueError, match=r"must be|need"):
        next_delay(attempt, random.Random(), base, cap)
