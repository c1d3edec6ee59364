"""The fault suite's stage: simulated devices, a gateway process, a proxy, mosquitto, a checker.

Everything is real: the gateway runs as its own process (``python -m gateway run``), the devices
speak Modbus TCP (simulator in this process), the uplink goes through :class:`FaultProxy` to a
real mosquitto, and the platform side is :class:`tests.subscriber.Subscriber`.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from drivers.profile import load_profile
from simulator.broker import LocalMosquitto
from simulator.modbus_server import DeviceSpec, ModbusSimulator
from tests.support.faults.proxy import FaultProxy
from tests.support.gateway_rig import device_lines
from tests.support.subscriber import Subscriber

TOPIC = "streetgate/fault-gw/readings"


def outbox_counts(path: Path) -> dict[str, int]:
    """Read the outbox from outside (WAL allows it while the gateway writes)."""
    uri = f"file:{path}?mode=ro"
    with sqlite3.connect(uri, uri=True, timeout=5) as conn:
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        stored = conn.execute("SELECT count(*) FROM readings").fetchone()[0]
    return {
        "last_seq": int(meta["next_seq"]) - 1,
        "dropped": int(meta["dropped"]),
        "stored": stored,
    }


@dataclass
class Stage:
    """One scenario's moving parts."""

    workdir: Path
    broker: LocalMosquitto
    proxy: FaultProxy
    sim: ModbusSimulator
    platform: Subscriber
    config: Path
    outbox: Path
    env: Mapping[str, str] = field(default_factory=dict)
    gateway: asyncio.subprocess.Process | None = None
    starts: int = 0

    async def start_gateway(self) -> None:
        log = (self.workdir / "gateway.log").open("ab")
        self.gateway = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway",
            "run",
            "-c",
            str(self.config),
            stdout=log,
            stderr=log,
            env={**os.environ, **self.env},
        )
        log.close()
        self.starts += 1

    async def stop_gateway(self, sig: int = signal.SIGTERM) -> int:
        assert self.gateway is not None
        if self.gateway.returncode is None:
            self.gateway.send_signal(sig)
        code = await asyncio.wait_for(self.gateway.wait(), 20)
        self.gateway = None
        return code

    async def kill_repeatedly(
        self, kills: int, pause: float, jitter: float = 0.0, seed: int = 0
    ) -> list[int]:
        """SIGKILL the gateway ``kills`` times, ``pause`` s (plus up to ``jitter`` s, seeded)
        after each (re)start, restarting it each time; returns the readings each kill lost:
        served by the devices, never committed. The jitter lands kills at every phase of the
        poll cycle: a fixed pause hits the same phase each time."""
        rng = random.Random(seed)
        losses: list[int] = []
        lost_so_far = 0
        for _ in range(kills):
            await self.wait_polling()
            await asyncio.sleep(pause + rng.uniform(0, jitter))
            await self.stop_gateway(signal.SIGKILL)
            counts = await asyncio.to_thread(outbox_counts, self.outbox)
            lost = self.served_readings() - counts["last_seq"]
            losses.append(lost - lost_so_far)
            lost_so_far = lost
            await self.start_gateway()
        return losses

    async def wait_polling(self, timeout: float = 30) -> None:
        """Wait until the (re)started gateway polls again, so a pause is counted from a running
        gateway, not from a process still importing on a loaded machine."""
        before = sum(device.requests for device in self.sim)
        deadline = asyncio.get_running_loop().time() + timeout
        while sum(device.requests for device in self.sim) == before:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"the gateway did not poll within {timeout} s of its start")
            await asyncio.sleep(0.05)

    def served_readings(self) -> int:
        """Readings the devices have answered requests for (complete polls only)."""
        total = 0
        for device in self.sim:
            polls = device.requests // len(device.plan)
            total += polls * len(device.profile.metrics)
        return total

    async def settle(self, timeout: float = 60) -> dict[str, int]:
        """Stop the load, wait until the platform has every committed reading, stop the gateway.

        Returns the outbox's counters (last sequence number committed, drops).
        """
        if self.gateway is not None:
            await self.wait_polling()
        for device in self.sim:
            await device.stop()  # no new readings from here on
        # The last polls fail and pending readings get committed: wait until the outbox stops
        # growing (a fixed pause was too short for a loaded machine: readings committed after
        # it reached the platform and looked like extras).
        counts = await asyncio.to_thread(outbox_counts, self.outbox)
        stable_since = asyncio.get_running_loop().time()
        while asyncio.get_running_loop().time() - stable_since < 1.5:
            await asyncio.sleep(0.25)
            again = await asyncio.to_thread(outbox_counts, self.outbox)
            if again != counts:
                counts, stable_since = again, asyncio.get_running_loop().time()
        delivered = counts["last_seq"] - counts["dropped"]
        await self.platform.wait_for(delivered, timeout)
        if self.gateway is not None:
            assert await self.stop_gateway() == 0
        return counts


def gateway_config(
    path: Path,
    proxy_port: int,
    sim: ModbusSimulator,
    interval: str,
    outbox_path: Path,
    **outbox: str,
) -> Path:
    lines = [
        'gateway_id = "fault-gw"',
        "[mqtt]",
        'host = "127.0.0.1"',
        f"port = {proxy_port}",
        'keepalive = "2s"',
        'publish_timeout = "3s"',
        'reconnect_min = "200ms"',
        'reconnect_max = "1s"',
        "readings_per_message = 200",
        "[outbox]",
        f'path = "{outbox_path}"',
        'commit_interval = "100ms"',
        *(f'{key} = "{value}"' for key, value in outbox.items()),
    ]
    for device in sim:
        lines += device_lines(device, interval, timeout="300ms")
    path.write_text("\n".join(lines) + "\n")
    return path


@asynccontextmanager
async def stage(
    workdir: Path,
    broker: LocalMosquitto,
    *,
    devices: int = 10,
    interval: str = "100ms",
    env: Mapping[str, str] | None = None,
    start: bool = True,
    outbox_dir: Path | None = None,
    **outbox: str,
) -> AsyncIterator[Stage]:
    """Devices polled every ``interval`` (10 SDM120 at 100 ms: about 1,100 readings/s)."""
    profile = load_profile("sdm120")
    specs = [DeviceSpec(f"meter-{i}", profile) for i in range(devices)]
    async with ModbusSimulator(specs) as sim, FaultProxy(broker.port) as proxy:
        platform = Subscriber(broker.host, broker.port, TOPIC, client_id="fault-platform")
        listener = asyncio.create_task(platform.run(), name="test:platform")
        await asyncio.wait_for(platform.subscribed.wait(), 10)
        outbox_path = (outbox_dir or workdir) / "outbox.db"
        config = gateway_config(
            workdir / "gw.toml", proxy.port, sim, interval, outbox_path, **outbox
        )
        the_stage = Stage(
            workdir, broker, proxy, sim, platform, config, outbox_path, dict(env or {})
        )
        if start:
            await the_stage.start_gateway()
        try:
            yield the_stage
        finally:
            if the_stage.gateway is not None:
                the_stage.gateway.kill()
                await the_stage.gateway.wait()
            listener.cancel()
