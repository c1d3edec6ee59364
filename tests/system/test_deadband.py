"""Deadbands end to end: simulator -> gateway process -> mosquitto -> platform subscriber.

A steady value is published once per ``max_silence``; a step is published at the next poll;
the sequence numbers the platform sees have no gaps (suppressed readings never get one).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from drivers.profile import load_profile
from simulator.modbus_server import DeviceSpec, ModbusSimulator
from tests.support.gateway_rig import running_gateway
from tests.support.mosquitto import Mosquitto
from tests.support.waiting import until
from tests.system.test_end_to_end import platform, stop

INTERVAL_MS = 200
SILENCE_MS = 2000


def write_config(path: Path, broker: Mosquitto, port: int) -> Path:
    path.write_text(
        f"""\
gateway_id = "e2e-gw"
[mqtt]
host = "127.0.0.1"
port = {broker.port}
keepalive = "5s"
reconnect_min = "200ms"
reconnect_max = "1s"
[outbox]
path = "outbox.db"
commit_interval = "50ms"
[[devices]]
kind = "modbus_tcp"
name = "climate-1"
host = "127.0.0.1"
port = {port}
profile = "xy-md02"
interval = "{INTERVAL_MS}ms"
timeout = "500ms"
[devices.deadbands]
temperature = {{ deadband = 0.5, max_silence = "{SILENCE_MS}ms" }}
"""
    )
    return path


def of(readings: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    return [r for r in readings if r["metric"] == metric]


def ts_ms(reading: dict[str, Any]) -> int:
    return round(datetime.fromisoformat(reading["ts"]).timestamp() * 1000)


def test_steady_values_once_per_max_silence_and_a_step_at_the_next_poll(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async def scenario() -> None:
        spec = DeviceSpec("climate-1", load_profile("xy-md02"))
        async with ModbusSimulator([spec]) as sim, platform(mosquitto) as sub:
            device = sim["climate-1"]
            device.values.hold("temperature", 20.0)
            config = write_config(tmp_path / "gw.toml", mosquitto, device.port)
            async with running_gateway(config) as proc:
                await sub.wait_for(1, 20)
                await asyncio.sleep(7.0)  # steady: 1 + 3 readings of temperature
                stepped_at = time.time() * 1000
                device.values.hold("temperature", 21.0)
                await until(
                    lambda: any(
                        r["value"] == 21.0 for r in of(sub.delivery.readings, "temperature")
                    ),
                    timeout=10,
                )
                await asyncio.sleep(1.0)
                assert await stop(proc) == 0
            readings = sub.delivery.readings
            temperature = of(readings, "temperature")
            steady = [r for r in temperature if r["value"] == 20.0]
            # One on start, then one per max_silence (each at the first poll past it).
            assert 3 <= len(steady) <= 5, steady
            for before, after in itertools.pairwise(steady):
                gap = ts_ms(after) - ts_ms(before)
                assert SILENCE_MS <= gap <= SILENCE_MS + INTERVAL_MS + 300, (before, after)
            step = next(r for r in temperature if r["value"] == 21.0)
            # the step is published at the next poll after it (a poll is made every 200 ms)
            assert ts_ms(step) - stepped_at <= INTERVAL_MS + 300
            # humidity has no deadband: every poll of it is stored
            assert len(of(readings, "humidity")) >= 40
            # the platform sees no gap in seq: suppressed readings were never numbered
            assert sub.delivery.report()["missing"] == 0
            seqs = sorted(sub.delivery.distinct())
            assert seqs == list(range(1, len(seqs) + 1))

    asyncio.run(scenario())
