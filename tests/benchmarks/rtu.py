"""Modbus RTU bus benchmark: prints one JSON object with how fully the gateway uses the bus.

    python -m tests.benchmarks.rtu [--quick]

Setup: ``streetgate sim --rtu`` in its own process serves 16 units (ids 1..16) on one virtual
serial port at 19,200 baud 8N1 with no turnaround delay; the simulator holds every frame for
its wire time (see simulator/modbus_rtu_server.py), on a select() loop so that its timers are
exact to the microsecond. The gateway's RtuBusPoller, on the default event loop as in
production, polls all 16 units with a 1 ms interval, i.e. as fast as the bus allows, into a
real SQLite outbox.

How the limit is computed. On RS-485 one exchange occupies the bus for at least::

    (request bytes + answer bytes) x 10 bits / 19,200   (8N1: start, 8 data, stop)
    + 2 x t3.5                                          (after the request, after the answer)

where t3.5 is the silence that ends a frame: 3.5 characters of 11 bits (the Modbus serial
line spec's character) = 3.5 x 11 / 19,200 s = 2.005 ms at 19,200 baud (fixed at 1.75 ms only
above 19,200). A read of n registers is an 8-byte request and a (5 + 2n)-byte answer.
``rtu_bus_utilisation`` = the sum of that time over every exchange the gateway completed
between its first and its last completed poll of the window / the time between those two
polls. 1.0 is a bus that never idles; the rest is processing in the gateway and the
simulator, pty wake-ups, and the gateway's wait for t3.5 before each request (asyncio's epoll
loop rounds it up to whole milliseconds). Target >= 0.85.

Figures: ``rtu_bus_utilisation`` (16 x SDM120, 3 reads per poll of 38, 6 and 2 registers),
``rtu_requests_per_s`` (Modbus requests completed per second), ``rtu_overhead_ms_per_request``
(measured minus theoretical time per exchange), and the same for 16 x XY-MD02 (one 2-register
read per poll: the smallest frames, so the worst case for fixed per-exchange costs) with the
``_small_frames`` suffix. ``failed_polls`` must be 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from drivers.modbus.rtu import RtuBusPoller
from drivers.modbus.rtu_frame import exchange_wire_time, read_reply_size
from gateway.config.devices import ModbusRtuBus
from gateway.config.model import OutboxConfig, load_config
from gateway.core.clock import SystemClock
from gateway.core.model import Reading
from gateway.store.outbox import Outbox
from tests.support.simcli import SimProcess

BAUD = 19200
UNITS = 16
READ_REQUEST_BYTES = 8


class PollLog:
    """The outbox's sink, noting when each poll completed and for which unit."""

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox
        self.record = False
        self.polls: list[tuple[float, str]] = []

    async def __call__(self, readings: Sequence[Reading]) -> None:
        if self.record:
            self.polls.append((time.monotonic(), readings[0].device))
        await self._outbox.put_many(readings)


async def bench_bus(workdir: Path, profile: str, seconds: float) -> dict[str, Any]:
    sim = SimProcess(  # the devices of a real bus are not the gateway's process either
        workdir / f"{profile}.toml",
        *("--rtu", "--profile", profile, "--count", str(UNITS), "--baud", str(BAUD)),
        *("--interval", "1ms", "--link", str(workdir / f"tty-{profile}"), "--force"),
    )
    try:
        (bus,) = (await asyncio.to_thread(load_config, sim.config)).devices
        assert isinstance(bus, ModbusRtuBus)
        async with Outbox(OutboxConfig(path=workdir / f"{profile}.db")) as outbox:
            log = PollLog(outbox)
            poller = RtuBusPoller(bus, log, SystemClock())
            plans = poller.driver.plans
            per_poll = {
                name: sum(
                    exchange_wire_time(READ_REQUEST_BYTES, read_reply_size(b.count), BAUD)
                    for b in plan
                )
                for name, plan in plans.items()
            }
            requests_per_poll = {name: len(plan) for name, plan in plans.items()}
            async with asyncio.TaskGroup() as tg:
                tasks = [
                    tg.create_task(outbox.run(), name="outbox:commit"),
                    tg.create_task(poller.run(), name=poller.task_name),
                ]
                await asyncio.sleep(1.0)  # port open, first polls, caches warm
                log.record = True
                await asyncio.sleep(seconds)
                for task in tasks:
                    task.cancel()
    finally:
        sim.stop()
    (start, _), *completed = log.polls  # the window opens when the first poll completes
    elapsed = completed[-1][0] - start
    wire = sum(per_poll[name] for _, name in completed)
    requests = sum(requests_per_poll[name] for _, name in completed)
    return {
        "rtu_bus_utilisation": round(wire / elapsed, 3),
        "rtu_requests_per_s": round(requests / elapsed, 1),
        "rtu_polls_per_s": round(len(completed) / elapsed, 2),
        "rtu_overhead_ms_per_request": round((elapsed - wire) / requests * 1e3, 2),
        "failed_polls": sum(s.polls_failed for s in poller.statuses.values()),
    }


async def main(quick: bool) -> dict[str, Any]:
    seconds = 3.0 if quick else 10.0
    results: dict[str, Any] = {
        "rtu_bus": f"{UNITS} units, {BAUD} baud 8N1, t3.5 = {3.5 * 11 / BAUD * 1e3:.3f} ms",
        "window_s": seconds,
    }
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        big = await bench_bus(workdir, "sdm120", seconds)
        small = await bench_bus(workdir, "xy-md02", seconds)
    results.update(big)
    results.update({f"{key}_small_frames": value for key, value in small.items()})
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a shorter window, for a smoke test")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.quick))))
