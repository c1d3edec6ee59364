"""End to end with real parts: simulator → gateway process → mosquitto → platform subscriber."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from drivers.profile import load_profile
from simulator.modbus_server import DeviceSpec, ModbusSimulator
from tests.support.gateway_rig import device_lines, running_gateway
from tests.support.mosquitto import Mosquitto
from tests.support.subscriber import Subscriber

TOPIC = "streetgate/e2e-gw/readings"


def write_config(path: Path, broker: Mosquitto, sim: ModbusSimulator, interval: str = "1s") -> Path:
    lines = [
        'gateway_id = "e2e-gw"',
        "[mqtt]",
        'host = "127.0.0.1"',
        f"port = {broker.port}",
        'keepalive = "5s"',
        'reconnect_min = "200ms"',
        'reconnect_max = "1s"',
        "[outbox]",
        'path = "outbox.db"',
        'commit_interval = "100ms"',
    ]
    for device in sim:
        lines += device_lines(device, interval)
    path.write_text("\n".join(lines) + "\n")
    return path


async def stop(proc: asyncio.subprocess.Process) -> int:
    proc.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(proc.wait(), 15)


@asynccontextmanager
async def platform(broker: Mosquitto) -> AsyncIterator[Subscriber]:
    sub = Subscriber(broker.host, broker.port, TOPIC)
    task = asyncio.create_task(sub.run(), name="test:platform")
    await asyncio.wait_for(sub.subscribed.wait(), 5)
    try:
        yield sub
    finally:
        task.cancel()


def outbox_state(path: Path) -> tuple[int, list[int]]:
    """(last sequence number committed, sequence numbers still stored) after the gateway exits."""
    with sqlite3.connect(path) as conn:
        next_seq = conn.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()[0]
        stored = [row[0] for row in conn.execute("SELECT seq FROM readings ORDER BY seq")]
    return next_seq - 1, stored


def fleet(count_each: int = 1) -> list[DeviceSpec]:
    profiles = [load_profile(n) for n in ("sdm120", "sdm630", "xy-md02")]
    return [
        DeviceSpec(f"{p.name}-{i}", p, unit_id=i + 1) for i in range(count_each) for p in profiles
    ]


def test_every_served_value_arrives_correctly_decoded(tmp_path: Path, mosquitto: Mosquitto) -> None:
    async def scenario() -> None:
        async with ModbusSimulator(fleet(), history=1000) as sim, platform(mosquitto) as sub:
            config = write_config(tmp_path / "gw.toml", mosquitto, sim, interval="300ms")
            async with running_gateway(config) as proc:
                expected_per_poll = sum(len(d.profile.metrics) for d in sim)
                await sub.wait_for(expected_per_poll * 5, 30)
                assert await stop(proc) == 0
            readings = sub.delivery.readings
            assert sub.delivery.report()["missing"] == 0
            for device in sim:
                mine = [r for r in readings if r["device"] == device.name]
                units = {m.name: m.unit for m in device.profile.metrics}
                assert {r["metric"] for r in mine} == set(units)
                for r in mine:
                    assert r["unit"] == units[r["metric"]]
                    assert device.was_served(r["metric"], r["value"]), r
                    assert r["quality"] in {"good", "clock_unsynced"}
            # the clean stop committed and delivered everything the gateway had taken
            last, stored = outbox_state(tmp_path / "outbox.db")
            assert last >= len(sub.delivery.distinct())
            assert sub.delivery.distinct() | set(stored) == set(range(1, last + 1))

    asyncio.run(scenario())


@pytest.mark.slow
def test_broker_outage_of_10s_under_load_loses_nothing(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async def scenario() -> None:
        async with ModbusSimulator(fleet(4)) as sim, platform(mosquitto) as sub:
            # 12 devices polled 5 times a second: about 800 readings/s
            config = write_config(tmp_path / "gw.toml", mosquitto, sim, interval="200ms")
            async with running_gateway(config) as proc:
                await sub.wait_for(2000, 20)
                mosquitto.stop()
                before = sub.delivery.report()["highest"]
                await asyncio.sleep(10)
                mosquitto.start()
                await sub.wait_for(before + 8000, 30)  # the outage's readings, and then some
                assert await stop(proc) == 0
            report = sub.delivery.report()
            assert report["missing"] == 0
            assert report["misordered"] == 0
            assert report["highest"] > before + 8000
            historical = [m for m in sub.delivery.messages if m["historical"]]
            assert historical, "the backlog after the outage is flagged historical"
            last, stored = outbox_state(tmp_path / "outbox.db")
            # Accounting: every committed reading was either delivered or is still in the outbox.
            assert sub.delivery.distinct() | set(stored) == set(range(1, last + 1))

    asyncio.run(scenario())


def test_readings_buffered_before_a_restart_are_delivered(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async def scenario() -> None:
        mosquitto.stop()  # the uplink is down while the gateway polls
        async with ModbusSimulator(fleet()) as sim:
            config = write_config(tmp_path / "gw.toml", mosquitto, sim, interval="200ms")
            async with running_gateway(config) as proc:
                await asyncio.sleep(3)
                assert await stop(proc) == 0
            buffered, stored = outbox_state(tmp_path / "outbox.db")
            assert buffered > 100
            assert stored == list(range(1, buffered + 1))
            mosquitto.start()
            async with platform(mosquitto) as sub, running_gateway(config) as proc:
                await sub.wait_for(buffered + 50, 20)
                assert await stop(proc) == 0
            report = sub.delivery.report()
            assert report["missing"] == 0
            assert report["misordered"] == 0
            first = sub.delivery.messages[0]
            assert first["historical"] is True
            assert first["first_seq"] == 1
            historical = sum(m["count"] for m in sub.delivery.messages if m["historical"])
            assert historical >= buffered

    asyncio.run(scenario())
