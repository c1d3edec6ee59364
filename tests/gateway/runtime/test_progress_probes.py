"""What progress means per loop: probes read from a real forwarder, outbox, pollers and sources."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from drivers import build_driver, build_sources
from gateway.config.devices import ModbusTcpDevice
from gateway.config.model import GatewayConfig, parse_config
from gateway.core.clock import SystemClock
from gateway.core.model import Reading
from gateway.runtime.app import pipeline
from gateway.runtime.progress_probes import (
    forwarder_probe,
    gateway_probes,
    longest_interval,
    poll_allowance,
    poller_probe,
    source_probe,
)
from gateway.runtime.scheduler import DevicePoller
from gateway.store.outbox import Outbox
from gateway.uplink.forwarder import Forwarder, ForwarderState
from tests.support.mosquitto import Mosquitto
from tests.support.waiting import until


def config(tmp_path: Path, port: int = 1883, **outbox: Any) -> GatewayConfig:
    return parse_config(
        {
            "gateway_id": "probe-gw",
            "mqtt": {
                "host": "127.0.0.1", "port": port, "reconnect_min": 0.05, "reconnect_max": 0.2,
                "publish_timeout": 1,
            },
            "outbox": {"path": str(tmp_path / "outbox.db"), "commit_interval": 0.01, **outbox},
            "devices": [
                {"kind": "modbus_tcp", "name": "meter-1", "host": "127.0.0.1", "port": 1,
                 "profile": "sdm120", "interval": "15m"},
                {"kind": "modbus_rtu", "name": "bus-1", "port": "/dev/ttyUSB9",
                 "units": [{"name": "meter-2", "unit_id": 2, "profile": "sdm120",
                            "interval": "20m"}]},
                {"kind": "bthome", "name": "door-1", "mac": "A4:C1:38:00:00:01"},
            ],
        },
        "test",
    )  # fmt: skip


def reading(i: int) -> Reading:
    return Reading("meter-1", "voltage", 230.0, "V", 1_764_000_000_000 + i)


def test_the_forwarder_owes_while_readings_wait_or_the_link_is_down(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async def scenario() -> None:
        cfg = config(tmp_path, port=mosquitto.port)
        async with pipeline(cfg) as (outbox, forwarder):
            probe = forwarder_probe(forwarder, outbox, cfg.mqtt)
            await asyncio.wait_for(forwarder.connected.wait(), 10)
            assert probe.progress() is None  # connected, nothing to deliver: idle
            await outbox.put_many([reading(i) for i in range(20)])
            await until(lambda: outbox.last_seq == 20)
            await until(lambda: outbox.acked_seq == 20)
            assert probe.progress() is None  # delivered
            mosquitto.stop()
            await outbox.put_many([reading(i) for i in range(20, 25)])  # owed now
            await until(lambda: outbox.last_seq == 25)
            assert probe.progress() is not None
            await until(lambda: forwarder.stats.state is not ForwarderState.CONNECTED)
            first = probe.progress()
            assert first is not None  # the link is down: every attempt must end
            failures = forwarder.stats.connection_failures
            await until(lambda: forwarder.stats.connection_failures > failures)  # another ends
            assert probe.progress() != first  # ... and that is progress

    asyncio.run(scenario())


def test_the_forwarder_allowance_covers_a_publish_timeout_and_a_backoff(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    outbox = Outbox(cfg.outbox)
    forwarder = Forwarder(cfg, outbox)
    assert forwarder_probe(forwarder, outbox, cfg.mqtt).allowance == 60.0  # the floor
    slow = cfg.mqtt.model_copy(update={"publish_timeout": 30.0, "reconnect_max": 10.0})
    assert forwarder_probe(forwarder, outbox, slow).allowance == 120.0


def test_a_poller_held_back_by_a_full_outbox_owes_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        cfg = config(tmp_path, queue_size=3)
        device = cfg.devices[0]
        assert isinstance(device, ModbusTcpDevice)
        # No commit loop runs: what is put stays queued, as on a full disk.
        async with Outbox(cfg.outbox) as outbox:
            poller = DevicePoller(
                build_driver(device), device.interval, outbox.put_many, SystemClock()
            )
            probe = poller_probe("poll:modbus_tcp:meter-1", poller, device.interval, outbox)
            assert probe.progress() == 0
            assert probe.allowance == poll_allowance(900.0) == 1860.0
            poller.status.polls_failed += 1  # what a failed poll records
            assert probe.progress() == 1
            await outbox.put_many([reading(i) for i in range(3)])
            assert outbox.backpressure
            assert probe.progress() is None  # the outbox owes, not the poller

    asyncio.run(scenario())


def test_polling_sources_are_probed_and_listening_ones_are_not(tmp_path: Path) -> None:
    async def scenario() -> None:
        cfg = config(tmp_path)
        assert longest_interval(cfg) == 1200.0  # the RTU unit's 20 minutes
        async with Outbox(cfg.outbox) as outbox:
            sources = build_sources(cfg.devices, outbox.put_many, SystemClock())
            by_name = {s.task_name: s for s in sources}
            assert set(by_name) == {"poll:modbus_rtu:bus-1", "scan:ble"}
            bus = source_probe(by_name["poll:modbus_rtu:bus-1"], 1200.0, outbox)
            assert bus is not None
            assert bus.progress() == 0
            assert source_probe(by_name["scan:ble"], 1200.0, outbox) is None
            device = cfg.devices[0]
            assert isinstance(device, ModbusTcpDevice)
            poller = DevicePoller(build_driver(device), 900.0, outbox.put_many, SystemClock())
            probes = gateway_probes(
                cfg,
                outbox,
                Forwarder(cfg, outbox),
                [("poll:modbus_tcp:meter-1", poller, 900.0)],
                sources,
            )
            assert [p.name for p in probes] == [
                "outbox:commit",
                "forward:mqtt",
                "poll:modbus_tcp:meter-1",
                "poll:modbus_rtu:bus-1",
            ]

    asyncio.run(scenario())
