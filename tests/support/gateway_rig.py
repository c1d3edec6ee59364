"""A gateway process polling simulated Modbus devices, for tests and benchmarks that stay sync.

The simulator runs on its own event loop in a thread (:func:`simulator_thread`), so a test
driving a browser can block while devices answer; :func:`gateway_process` is ``streetgate run``
as its own process, stopped with SIGTERM like systemd does, and :func:`running_gateway` the
same for async tests.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from simulator.modbus_server import DeviceSpec, ModbusSimulator, SimulatedDevice
from tests.support.sim_thread import serving

__all__ = [
    "SimThread",
    "device_lines",
    "gateway_process",
    "running_gateway",
    "simulator_thread",
    "write_config",
]


class SimThread:
    """A running :class:`ModbusSimulator` and the loop it runs on."""

    def __init__(self, sim: ModbusSimulator, loop: asyncio.AbstractEventLoop) -> None:
        self.sim = sim
        self.loop = loop

    def call(self, coro: Coroutine[Any, Any, None], timeout: float = 10) -> None:
        """Run a coroutine (``sim["x"].stop()``) on the simulator's loop and wait for it."""
        asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


@contextmanager
def simulator_thread(specs: list[DeviceSpec]) -> Iterator[SimThread]:
    """The simulator, serving in a thread until the block ends."""
    with serving(lambda: ModbusSimulator(specs)) as (sim, loop):
        yield SimThread(sim, loop)


def device_lines(device: SimulatedDevice, interval: str, *, timeout: str = "500ms") -> list[str]:
    """The ``[[devices]]`` table polling one simulated Modbus TCP device, as config lines."""
    return [
        "[[devices]]",
        'kind = "modbus_tcp"',
        f'name = "{device.name}"',
        'host = "127.0.0.1"',
        f"port = {device.port}",
        f"unit_id = {device.unit_id}",
        f'profile = "{device.profile.name}"',
        f'interval = "{interval}"',
        f'timeout = "{timeout}"',
    ]


def write_config(
    path: Path, broker_port: int, sim: ModbusSimulator, metrics_port: int, interval: str = "1s"
) -> Path:
    """A config polling every simulated device, with the metrics listener (and page) on."""
    lines = [
        'gateway_id = "cabinet-12"',
        "[mqtt]",
        'host = "127.0.0.1"',
        f"port = {broker_port}",
        'keepalive = "2s"',
        'reconnect_min = "200ms"',
        'reconnect_max = "1s"',
        "[metrics]",
        f'listen = "127.0.0.1:{metrics_port}"',
        "[outbox]",
        'path = "outbox.db"',
    ]
    for device in sim:
        lines += device_lines(device, interval, timeout="300ms")
    path.write_text("\n".join(lines) + "\n")
    return path


@contextmanager
def gateway_process(config: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``streetgate run -c config``, logging to gateway.log beside it; SIGTERM on exit."""
    # STREETGATE_* variables are config overrides (docs/deploy.md): the test's own, such as
    # STREETGATE_SCREENSHOT, are not for the gateway.
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREETGATE_")}
    with (config.parent / "gateway.log").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "run", "-c", str(config)],
            stdout=log,
            stderr=log,
            env=env,
        )
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@asynccontextmanager
async def running_gateway(
    config: Path, env: dict[str, str] | None = None, *, nofile: int | None = None
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``streetgate run -c config`` from async code, logging to gateway.log beside it, with
    ``env`` over the test's environment (and at most ``nofile`` file descriptors); SIGTERM on
    exit, as systemd stops it."""
    argv = [sys.executable, "-m", "gateway", "run", "-c", str(config)]
    if nofile is not None:
        argv = ["prlimit", f"--nofile={nofile}", "--", *argv]
    with (config.parent / "gateway.log").open("ab") as log:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdout=log,
            stderr=log,
            env={**os.environ, **(env or {})},
        )
        try:
            yield proc
        finally:
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 15)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
