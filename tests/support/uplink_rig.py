"""Configs and readings for tests that run the pipeline (outbox and forwarder) against brokers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any

from gateway.config.model import GatewayConfig, parse_config
from gateway.core.model import Reading
from gateway.runtime.app import Gateway, run_gateway
from simulator.modbus_server import SimulatedDevice
from tests.support.mosquitto import Mosquitto

__all__ = ["meter_readings", "pipeline_config", "polling_config", "run_gateway_until"]


def pipeline_config(
    tmp_path: Path, gateway_id: str, broker: Mapping[str, object], **mqtt: object
) -> GatewayConfig:
    """A config without devices, reconnecting within a second, its outbox in ``tmp_path``.

    ``broker`` is the ``[mqtt]`` keys naming the broker(s) (``host``/``port`` or ``brokers``);
    ``mqtt`` adds or overrides any other ``[mqtt]`` key.
    """
    return parse_config(
        {
            "gateway_id": gateway_id,
            "mqtt": {
                **broker,
                "keepalive": "5s",
                "reconnect_min": "100ms",
                "reconnect_max": "1s",
                **mqtt,
            },
            "outbox": {"path": str(tmp_path / "outbox.db"), "commit_interval": "50ms"},
        },
        "test",
    )


def meter_readings(n: int, start: int) -> list[Reading]:
    """``n`` energy readings of meter-1, valued ``start``, ``start + 1``, ... (taken now)."""
    now = int(time.time() * 1000)
    return [Reading("meter-1", "energy", float(i), "kWh", now) for i in range(start, start + n)]


def polling_config(
    tmp_path: Path,
    gateway_id: str,
    broker: Mosquitto,
    device: SimulatedDevice,
    *,
    interval: float = 0.2,
    **mqtt: object,
) -> GatewayConfig:
    """A config polling one simulated device every ``interval`` s and publishing to ``broker``;
    ``mqtt`` adds ``[mqtt]`` keys (the payload format, for example)."""
    polled = device.gateway_config(timeout=0.5, interval=interval).model_dump()
    return parse_config(
        {
            "gateway_id": gateway_id,
            "mqtt": {"host": broker.host, "port": broker.port, **mqtt},
            "outbox": {"path": str(tmp_path / "outbox.db")},
            "devices": [polled | {"profile": device.profile.name}],
        },
        "test",
    )


async def run_gateway_until(
    config: GatewayConfig,
    listen: Callable[[asyncio.Event], Coroutine[Any, Any, None]],
    got: asyncio.Event,
    enough: Callable[[], bool],
    timeout: float = 20,
) -> None:
    """Run the platform's ``listen`` (it sets its event once subscribed, and ``got`` on each
    message), then the gateway, until ``enough()`` holds; stop both. TimeoutError after
    ``timeout`` s."""
    stop = asyncio.Event()
    started: asyncio.Future[Gateway] = asyncio.get_running_loop().create_future()
    ready = asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        listener = tg.create_task(listen(ready), name="test:listen")
        await ready.wait()
        tg.create_task(run_gateway(config, stop, started), name="test:gateway")
        async with asyncio.timeout(timeout):
            while not enough():
                got.clear()
                await got.wait()
        stop.set()
        listener.cancel()
