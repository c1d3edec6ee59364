"""The retained health report: per-device health, forwarder and outbox figures, on change."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiomqtt

from drivers.profile import load_profile
from gateway.config.model import parse_config
from gateway.runtime.app import Gateway, run_gateway
from simulator.modbus_server import DeviceSpec, ModbusSimulator
from tests.support.mosquitto import Mosquitto


def test_health_follows_a_failing_device(tmp_path: Path, mosquitto: Mosquitto) -> None:
    profile = load_profile("xy-md02")

    async def scenario() -> None:
        specs = [DeviceSpec("climate-1", profile), DeviceSpec("climate-2", profile)]
        async with ModbusSimulator(specs) as sim:
            config = parse_config(
                {
                    "gateway_id": "health-gw",
                    "mqtt": {"host": "127.0.0.1", "port": mosquitto.port, "health_interval": "30s"},
                    "outbox": {"path": str(tmp_path / "outbox.db")},
                    "devices": [
                        d.gateway_config(timeout=0.2, interval=0.2).model_dump()
                        | {"profile": "xy-md02"}
                        for d in sim
                    ],
                },
                "test",
            )
            reports: list[dict[str, Any]] = []
            changed = asyncio.Event()

            async def listen() -> None:
                async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
                    await client.subscribe("streetgate/health-gw/health", qos=1)
                    async for message in client.messages:
                        assert isinstance(message.payload, bytes)
                        reports.append(json.loads(message.payload))
                        changed.set()

            async def wait_until(predicate: Any) -> dict[str, Any]:
                async with asyncio.timeout(15):
                    while not (reports and predicate(reports[-1])):
                        changed.clear()
                        await changed.wait()
                return reports[-1]

            stop = asyncio.Event()
            started: asyncio.Future[Gateway] = asyncio.get_running_loop().create_future()
            async with asyncio.TaskGroup() as tg:
                listener = tg.create_task(listen(), name="test:listen")
                tg.create_task(run_gateway(config, stop, started), name="test:gateway")
                await started
                ok = await wait_until(
                    lambda r: all(d["health"] == "ok" for d in r["devices"].values())
                )
                assert set(ok["devices"]) == {"climate-1", "climate-2"}
                assert ok["forwarder"]["state"] == "connected"
                assert ok["outbox"]["max_bytes"] == config.outbox.max_bytes
                assert ok["version"]

                await sim["climate-2"].stop()  # the device goes away
                down = await wait_until(lambda r: r["devices"]["climate-2"]["health"] == "down")
                assert down["devices"]["climate-1"]["health"] == "ok"
                failing = down["devices"]["climate-2"]
                assert failing["polls_failed"] >= 3
                assert set(failing["errors"]) <= {"DeviceUnreachable", "DeviceTimeout"}
                assert failing["last_error"]

                await sim["climate-2"].start()
                await wait_until(lambda r: r["devices"]["climate-2"]["health"] == "ok")
                stop.set()
                listener.cancel()

    asyncio.run(scenario())


def test_with_mqtt_5_the_report_names_its_broker_and_expires_after_three_intervals(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    config = parse_config(
        {
            "gateway_id": "health-v5",
            "mqtt": {
                "brokers": [f"127.0.0.1:{mosquitto.port}"],
                "protocol": "5",
                "health_interval": "2s",
            },
            "outbox": {"path": str(tmp_path / "outbox.db")},
        },
        "test",
    )

    async def scenario() -> tuple[dict[str, Any], Any]:
        async with aiomqtt.Client(
            mosquitto.host, mosquitto.port, protocol=aiomqtt.ProtocolVersion.V5
        ) as client:
            await client.subscribe("streetgate/health-v5/health", qos=1)
            stop = asyncio.Event()
            started: asyncio.Future[Gateway] = asyncio.get_running_loop().create_future()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(run_gateway(config, stop, started), name="test:gateway")
                await started
                async with asyncio.timeout(15):
                    async for message in client.messages:
                        assert isinstance(message.payload, bytes)
                        report = json.loads(message.payload)
                        if report["forwarder"]["state"] == "connected":
                            break
                stop.set()
        return report, message.properties

    report, properties = asyncio.run(scenario())
    assert report["forwarder"]["broker"] == f"127.0.0.1:{mosquitto.port}"
    assert report["forwarder"]["failovers"] == 0
    assert report["forwarder"]["connected_since"]
    assert properties is not None
    assert 1 <= properties.MessageExpiryInterval <= 6  # 3 x 2 s, as the broker passes it on
