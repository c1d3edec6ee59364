"""Polls one device on a drift-free schedule and hands its readings to the outbox.

Each device has its own task (``poll:<kind>:<name>``), so a slow or dead device only ever
delays itself. Poll slots are fixed on the monotonic clock (start + k × interval); a poll that
overruns its slot skips the slots it missed instead of bunching up. While a device fails, the
driver is closed and re-entered after a capped exponential backoff with jitter.
"""

from __future__ import annotations

import asyncio
import random
import time

from drivers.base import Driver, Sink
from gateway.core.backoff import next_delay
from gateway.core.clock import SystemClock
from gateway.core.errors import DeviceError
from gateway.core.health import DeviceStatus
from gateway.core.model import Quality, Reading
from gateway.core.polling import BACKOFF_CAP, next_slot, record_failure, record_success, stamp


class DevicePoller:
    """Owns one device's schedule, health and counters."""

    def __init__(
        self,
        driver: Driver,
        interval: float,
        sink: Sink,
        clock: SystemClock,
        rng: random.Random | None = None,
        *,
        phase: float = 0.0,
    ) -> None:
        self._driver = driver
        self._interval = interval
        self._phase = phase  # delay of the first poll, so devices do not all poll at once
        self._sink = sink
        self._clock = clock
        self._rng = rng or random.Random()
        self.status = DeviceStatus(driver.name)
        # Callers of read_now() waiting for the next poll; the poll loop resolves them.
        self._wake = asyncio.Event()
        self._waiters: list[asyncio.Future[list[Reading]]] = []

    async def read_now(self) -> list[Reading]:
        """Poll at once (out of schedule, also during backoff) and return that poll's readings.

        The poll is made by the poll task itself, so the driver is never used by two tasks at
        once; its readings also go to the outbox like any other. Raises the poll's DeviceError.
        """
        waiter: asyncio.Future[list[Reading]] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._wake.set()
        try:
            return await waiter
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    async def _sleep(self, delay: float) -> None:
        """Sleep up to ``delay`` seconds; a read_now() request ends it early."""
        if not self._waiters:
            self._wake.clear()
            try:
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            except TimeoutError:
                pass
        self._wake.clear()

    def _settle(self, readings: list[Reading] | None, error: DeviceError | None) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if waiter.done():
                continue
            if error is not None:
                waiter.set_exception(error)
            else:
                waiter.set_result(list(readings or []))

    async def run(self) -> None:
        """Poll forever (until cancelled)."""
        while True:
            try:
                async with self._driver:
                    await self._poll_loop()
            except DeviceError as exc:
                self._failed(exc)
                self._settle(None, exc)
            delay = next_delay(
                self.status.consecutive_failures - 1,
                self._rng,
                self._interval,
                max(self._interval, BACKOFF_CAP),
            )
            await self._sleep(delay)

    async def poll_once(self) -> list[Reading]:
        """One poll, outside the schedule (for ``streetgate read`` and tests)."""
        samples = await self._driver.poll()
        return stamp(self._driver.name, samples, self._clock.now_ms(), self._quality())

    async def _poll_loop(self) -> None:
        start = time.monotonic() + self._phase
        self._phase = 0.0  # only the very first connection waits for its phase
        slot = start
        while True:
            delay = slot - time.monotonic()
            if delay > 0:
                await self._sleep(delay)
            readings = await self.poll_once()
            self._succeeded()
            self._settle(readings, None)
            await self._sink(readings)
            following = next_slot(start, self._interval, time.monotonic())
            skipped = round((following - slot) / self._interval) - 1
            if skipped > 0:
                self.status.overruns += skipped
            slot = following

    def _quality(self) -> Quality:
        return Quality.GOOD if self._clock.synchronised() else Quality.CLOCK_UNSYNCED

    def _succeeded(self) -> None:
        record_success(self.status)

    def _failed(self, exc: DeviceError) -> None:
        record_failure(self.status, exc)
