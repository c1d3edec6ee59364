"""``streetgate demo``: mosquitto, simulated devices and the gateway, printing what arrives."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from drivers.profile import load_profile
from gateway.cli.exit_codes import ExitCode
from gateway.config.model import GatewayConfig, parse_config
from gateway.core.errors import BrokerNotInstalled
from simulator.broker import LocalMosquitto
from simulator.modbus_server import DeviceSpec, ModbusSimulator

# aiomqtt and the gateway runtime (which imports it) are imported in the functions that run the
# demo, so that every other ``streetgate`` command starts without them.

DEMO_FLEET = ("sdm120", "sdm630", "xy-md02")


def demo_specs(count: int) -> list[DeviceSpec]:
    """A mixed fleet: energy meters and a climate sensor, cycling through DEMO_FLEET."""
    profiles = [load_profile(name) for name in DEMO_FLEET]
    return [
        DeviceSpec(f"demo-{profiles[i % len(profiles)].name}-{i + 1}", profiles[i % len(profiles)])
        for i in range(count)
    ]


def demo_config(workdir: Path, broker: LocalMosquitto, sim: ModbusSimulator) -> GatewayConfig:
    """A gateway config polling every simulated device once a second."""
    return parse_config(
        {
            "gateway_id": "demo-gateway",
            "mqtt": {"host": broker.host, "port": broker.port},
            "outbox": {"path": str(workdir / "outbox.db"), "max_bytes": "64MB"},
            "devices": [
                {
                    "kind": "modbus_tcp",
                    "name": device.name,
                    "host": sim.host,
                    "port": device.port,
                    "unit_id": device.unit_id,
                    "profile": device.profile.name,
                    "interval": "1s",
                }
                for device in sim
            ],
        },
        "demo",
    )


def format_reading(reading: dict[str, Any], historical: bool) -> str:
    """One printed line per reading."""
    value = reading["value"]
    shown = "null" if value is None else f"{value:.6g}"
    flag = "  (historical)" if historical else ""
    return (
        f"#{reading['seq']:<7} {reading['ts']}  {reading['device']:<18} "
        f"{reading['metric']:<22} {shown:>12} {reading['unit']:<4} {reading['quality']}{flag}"
    )


#: Said once, where ``clock_unsynced`` first shows (gateway/core/clock.py says how it is known).
CLOCK_UNSYNCED_NOTE = (
    "demo: clock_unsynced: the gateway could not confirm that this machine's clock is"
    " synchronised by NTP (the kernel says it is not, or cannot say: a container, no NTP"
    " client); the readings are stored and sent all the same, marked so, and the platform"
    " trusts their order (seq) rather than their time (docs/mqtt.md)"
)


def quality_notes(readings: list[dict[str, Any]], said: set[str]) -> list[str]:
    """What to say before these readings: the meaning of a quality flag seen for the first
    time (``said`` remembers which were explained)."""
    notes = []
    if "clock_unsynced" not in said and any(r.get("quality") == "clock_unsynced" for r in readings):
        said.add("clock_unsynced")
        notes.append(CLOCK_UNSYNCED_NOTE)
    return notes


def watch_hint(port: int) -> str:
    """How to watch the demo's broker with mosquitto_sub, and where that comes from."""
    command = f"mosquitto_sub -p {port} -t '#' -v"
    if shutil.which("mosquitto_sub") is None:
        return (
            f"demo: watch it yourself: {command} (mosquitto_sub is in mosquitto-clients:"
            " sudo apt-get install mosquitto-clients)"
        )
    return f"demo: watch it yourself: {command}"


async def print_readings(host: str, port: int, topic: str) -> None:
    """Subscribe like the platform would and print every reading that arrives."""
    import aiomqtt  # noqa: PLC0415 - see the imports

    said: set[str] = set()
    async with aiomqtt.Client(host, port, identifier="demo-platform") as client:
        await client.subscribe(topic, qos=1)
        async for message in client.messages:
            assert isinstance(message.payload, bytes)
            payload = json.loads(message.payload)
            for note in quality_notes(payload["readings"], said):
                say(note)
            for reading in payload["readings"]:
                print(format_reading(reading, payload["historical"]), flush=True)


async def run_demo(devices: list[DeviceSpec], duration: float | None, workdir: Path) -> None:
    """Run everything until Ctrl-C, SIGTERM or ``duration`` seconds."""
    from gateway.runtime.app import run_gateway  # noqa: PLC0415 - see the imports
    from gateway.uplink.forwarder import readings_topic  # noqa: PLC0415

    broker = LocalMosquitto(workdir)
    broker.start()
    try:
        async with ModbusSimulator(devices) as sim:
            config = demo_config(workdir, broker, sim)
            say(f"demo: mosquitto on {broker.host}:{broker.port}, outbox {config.outbox.path}")
            for device in sim:
                say(
                    f"demo: simulated {device.profile.name} '{device.name}' "
                    f"on {sim.host}:{device.port}"
                )
            say(watch_hint(broker.port))
            say("demo: readings as the broker receives them (Ctrl-C stops):")
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            async with asyncio.TaskGroup() as tg:
                printer = tg.create_task(
                    print_readings(broker.host, broker.port, readings_topic(config)),
                    name="demo:print",
                )
                tg.create_task(run_gateway(config, stop), name="demo:gateway")
                if duration is not None:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), duration)
                    stop.set()
                else:
                    await stop.wait()
                await asyncio.sleep(0.5)  # let the last messages arrive
                printer.cancel()
    finally:
        broker.stop()


def say(message: str) -> None:
    """Messages go to stderr; readings to stdout."""
    print(message, file=sys.stderr, flush=True)


def demo(
    devices: Annotated[int, typer.Option(min=1, max=500, help="Simulated devices.")] = 3,
    duration: Annotated[
        float | None, typer.Option(min=0.1, help="Stop after this many seconds.")
    ] = None,
    workdir: Annotated[
        Path | None, typer.Option(help="Keep broker and outbox files here (default: temp).")
    ] = None,
) -> None:
    """Run mosquitto, simulated devices and the gateway; print readings as they arrive."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    specs = demo_specs(devices)  # reads profile files: before the event loop starts
    try:
        if workdir is not None:
            workdir.mkdir(parents=True, exist_ok=True)
            asyncio.run(run_demo(specs, duration, workdir.resolve()))
        else:
            with tempfile.TemporaryDirectory(prefix="streetgate-demo-") as tmp:
                asyncio.run(run_demo(specs, duration, Path(tmp)))
    except BrokerNotInstalled as exc:
        say(f"demo: {exc}")
        raise typer.Exit(ExitCode.FAILURE) from exc
