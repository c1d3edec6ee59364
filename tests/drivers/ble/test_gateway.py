"""The whole gateway with BLE devices: simulated sensors and a peripheral -> MQTT (real broker).

run_gateway gets the simulator's bleak backends (the only thing a config cannot say); the rest
is the production wiring: build_sources groups the passive devices into one scanner task, the
GATT device gets a poller, the health report lists them all.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiomqtt

from drivers.ble.common import BleBackends
from drivers.ble.scan import BleScanSource
from gateway.config.devices import GattCharacteristic
from gateway.config.model import parse_config
from gateway.runtime.app import Gateway, run_gateway
from gateway.uplink.forwarder import health_topic, readings_topic
from simulator.ble import BleSimulator, SimBthome, SimGattPeripheral, SimRuuvi
from tests.support.mosquitto import Mosquitto

KEY = bytes.fromhex("231d39c1d7cc1ab1aee224cd096db932")


def test_ble_devices_reach_the_broker_and_the_health_report(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    sim = BleSimulator()
    plain = SimBthome("th-plain", "A4:C1:38:00:00:01")
    sealed = SimBthome("th-sealed", "A4:C1:38:00:00:02", key=KEY)
    tag = SimRuuvi("ruuvi-1", "CB:B8:33:4C:88:4F")
    cabinet = SimGattPeripheral(
        "cabinet-env",
        "C0:FF:EE:00:00:01",
        [GattCharacteristic(uuid="00002a6e-0000-1000-8000-00805f9b34fb", metric="temperature")],
    )
    for device in (plain, sealed, tag, cabinet):
        sim.add(device)
    config = parse_config(
        {
            "gateway_id": "ble-gw",
            "mqtt": {"host": "127.0.0.1", "port": mosquitto.port, "health_interval": "30s"},
            "outbox": {"path": str(tmp_path / "outbox.db")},
            "devices": [
                plain.gateway_config().model_dump(),
                sealed.gateway_config().model_dump() | {"key": KEY.hex()},
                tag.gateway_config().model_dump(),
                cabinet.gateway_config(interval=0.2, timeout=0.5).model_dump(mode="json"),
            ],
        },
        "test",
    )
    backends = BleBackends(scanner=sim.scanner_backend, client=sim.client_backend)

    async def scenario() -> None:
        readings: list[dict[str, Any]] = []
        reports: list[dict[str, Any]] = []
        arrived = asyncio.Event()

        async def listen() -> None:
            async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
                await client.subscribe(readings_topic(config), qos=1)
                await client.subscribe(health_topic(config), qos=1)
                async for message in client.messages:
                    assert isinstance(message.payload, bytes)
                    body = json.loads(message.payload)
                    if message.topic.matches(health_topic(config)):
                        reports.append(body)
                    else:
                        readings.extend(body["readings"])
                    arrived.set()

        async def until(predicate: Any) -> None:
            async with asyncio.timeout(15):
                while not predicate():
                    arrived.clear()
                    await arrived.wait()

        stop = asyncio.Event()
        started: asyncio.Future[Gateway] = asyncio.get_running_loop().create_future()
        async with asyncio.TaskGroup() as tg:
            listener = tg.create_task(listen(), name="test:listen")
            tg.create_task(run_gateway(config, stop, started, ble=backends), name="test:gateway")
            gateway = await started
            (scan,) = gateway.sources
            assert isinstance(scan, BleScanSource)
            assert scan.task_name == "scan:ble"
            async with asyncio.timeout(5):
                await scan.wait_scanning()
            packets = sim.broadcast(rounds=3)
            devices = {"th-plain", "th-sealed", "ruuvi-1"}
            want = sum(len(p.values) for p in packets)
            await until(lambda: sum(r["device"] in devices for r in readings) >= want)
            await until(lambda: any(r["device"] == "cabinet-env" for r in readings))
            await until(
                lambda: (
                    bool(reports)
                    and all(d["health"] == "ok" for d in reports[-1]["devices"].values())
                )
            )
            assert set(reports[-1]["devices"]) == devices | {"cabinet-env"}
            got = sorted(
                (r["device"], r["metric"], r["value"]) for r in readings if r["device"] in devices
            )
            assert got == sorted(
                (p.device, metric, value) for p in packets for metric, value in p.values.items()
            )
            stop.set()
            listener.cancel()

    asyncio.run(scenario())
