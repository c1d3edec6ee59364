"""The deadbands sit in front of the outbox for every kind of source: a polled Modbus device
and the BLE scanner (a self-scheduling source) alike; held-back readings are counted per device
in the health report and in /metrics."""

from __future__ import annotations

import asyncio
from pathlib import Path

from drivers.ble.common import BleBackends
from drivers.ble.scan import BleScanSource
from drivers.profile import load_profile
from gateway.config.model import parse_config
from gateway.runtime.app import Gateway, run_gateway
from gateway.runtime.metrics import render
from simulator.ble import BleSimulator, SimRuuvi
from simulator.modbus_server import DeviceSpec, ModbusSimulator
from tests.support.waiting import until

WIDE = {"*": {"deadband": 1e9, "max_silence": "1h"}}  # nothing moves this much


def test_polled_and_ble_readings_pass_the_deadbands_before_the_outbox(tmp_path: Path) -> None:
    ble = BleSimulator()
    banded_tag = SimRuuvi("tag-banded", "CB:B8:33:4C:88:01")
    free_tag = SimRuuvi("tag-free", "CB:B8:33:4C:88:02")
    ble.add(banded_tag)
    ble.add(free_tag)
    profile = load_profile("xy-md02")

    async def scenario() -> None:
        async with ModbusSimulator([DeviceSpec("climate-1", profile)]) as sim:
            modbus = sim["climate-1"].gateway_config(timeout=0.5, interval=0.1).model_dump()
            config = parse_config(
                {
                    "gateway_id": "deadband-gw",
                    # no broker: the readings stay in the outbox, where this test counts them
                    "mqtt": {"host": "127.0.0.1", "port": 9, "reconnect_max": "5s"},
                    "outbox": {"path": str(tmp_path / "outbox.db")},
                    "devices": [
                        modbus | {"profile": "xy-md02", "deadbands": WIDE},
                        banded_tag.gateway_config().model_dump() | {"deadbands": WIDE},
                        free_tag.gateway_config().model_dump(),
                    ],
                },
                "test",
            )
            stop = asyncio.Event()
            started: asyncio.Future[Gateway] = asyncio.get_running_loop().create_future()
            backends = BleBackends(scanner=ble.scanner_backend)
            async with asyncio.TaskGroup() as tg:
                tg.create_task(run_gateway(config, stop, started, ble=backends), name="test:gw")
                gateway = await started
                poller = gateway.pollers["climate-1"]
                scanner = gateway.sources[0]
                assert isinstance(scanner, BleScanSource)
                await until(lambda: poller.status.polls_ok >= 5, timeout=15)
                async with asyncio.timeout(5):
                    await scanner.wait_scanning()
                packets = ble.broadcast(rounds=5)
                await until(lambda: scanner.statuses["tag-free"].polls_ok == 5)
                await asyncio.sleep(0.2)
                rows = await gateway.outbox.read_batch(0, gateway.outbox.last_seq, 100_000)
                assert gateway.health is not None
                snapshot = await gateway.health.snapshot()
                stop.set()

            by_device: dict[str, list[str]] = {}
            for row in rows:
                by_device.setdefault(row[1], []).append(row[2])
            per_advert = len(packets[0].values)
            # the first poll / advert of each metric, nothing after
            assert sorted(by_device["climate-1"]) == ["humidity", "temperature"]
            assert len(by_device["tag-banded"]) == per_advert
            assert len(by_device["tag-free"]) == 5 * per_advert
            devices = snapshot["devices"]
            assert devices["tag-banded"]["suppressed"] == 4 * per_advert
            assert devices["tag-free"]["suppressed"] == 0
            assert devices["climate-1"]["suppressed"] == 2 * (devices["climate-1"]["polls_ok"] - 1)
            assert (
                f'streetgate_device_suppressed_total{{device="tag-banded"}} {4 * per_advert}'
                in (render(snapshot))
            )

    asyncio.run(scenario())
