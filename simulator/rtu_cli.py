"""``streetgate sim --rtu``: simulated Modbus RTU units on one virtual serial port.

streetgate sim --rtu --profile sdm120 --count 4 --baud 19200 --write-config gw.toml
streetgate run -c gw.toml

The units answer as ids ``--unit-id``, ``--unit-id`` + 1, ...; the port is a symlink to a pty
(:attr:`simulator.modbus_rtu_server.ModbusRtuSimulator.path`), printed on every unit's line and
written into the config.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import typer

from simulator.modbus_rtu_server import ModbusRtuSimulator
from simulator.modbus_server import DeviceSpec

__all__ = ["ConfigBus", "bus_toml", "rtu_fleet", "serve_rtu"]

MAX_UNIT_ID = 247

Parity = Literal["N", "E", "O"]


@dataclass(frozen=True, slots=True)
class ConfigBus:
    """A served bus as the config describes it: ``units`` are (name, profile reference, id)."""

    name: str
    port: str
    baudrate: int
    parity: str
    units: tuple[tuple[str, str, int], ...]


def _toml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # JSON string escapes are valid TOML ones


def bus_toml(bus: ConfigBus, interval: str) -> list[str]:
    """The ``[[devices]]`` table of a ``modbus_rtu`` bus with one ``[[devices.units]]`` per unit."""
    lines = [
        "",
        "[[devices]]",
        'kind = "modbus_rtu"',
        f"name = {_toml_str(bus.name)}",
        f"port = {_toml_str(bus.port)}",
        f"baudrate = {bus.baudrate}",
        f"parity = {_toml_str(bus.parity)}",
    ]
    for name, profile, unit_id in bus.units:
        lines += [
            "",
            "[[devices.units]]",
            f"name = {_toml_str(name)}",
            f"unit_id = {unit_id}",
            f"profile = {_toml_str(profile)}",
            f"interval = {_toml_str(interval)}",
        ]
    return lines


def rtu_fleet(
    devices: Sequence[tuple[DeviceSpec, str]], first_unit_id: int
) -> list[tuple[DeviceSpec, str]]:
    """The same devices on one bus: unit ids counted up from ``first_unit_id``."""
    last = first_unit_id + len(devices) - 1
    if first_unit_id < 1 or last > MAX_UNIT_ID:
        raise ValueError(
            f"{len(devices)} units from unit id {first_unit_id} need ids up to {last}; "
            f"an RTU bus has ids 1..{MAX_UNIT_ID}"
        )
    return [
        (dataclasses.replace(spec, unit_id=first_unit_id + i), ref)
        for i, (spec, ref) in enumerate(devices)
    ]


async def serve_rtu(
    devices: Sequence[tuple[DeviceSpec, str]],
    *,
    baudrate: int,
    parity: Parity,
    turnaround: float,
    link: Path | None,
    stop: asyncio.Event,
    write_config: Callable[[ConfigBus], None] | None = None,
    started: asyncio.Future[ModbusRtuSimulator] | None = None,
) -> None:
    """Serve ``devices`` on one simulated bus until ``stop`` is set.

    ``write_config`` (run in a thread: it reads profiles and writes a file) gets the running
    bus's description before the path is printed; ``started`` gets the running simulator.
    """
    specs = [spec for spec, _ in devices]
    async with ModbusRtuSimulator(
        specs, baudrate=baudrate, parity=parity, turnaround=turnaround, link=link, history=8
    ) as sim:
        if write_config is not None:
            units = tuple((spec.name, ref, spec.unit_id) for spec, ref in devices)
            await asyncio.to_thread(
                write_config, ConfigBus("sim-bus", sim.path, baudrate, parity, units)
            )
        for spec in specs:
            typer.echo(f"{spec.name}  {spec.profile.name}  {sim.path}  unit {spec.unit_id}")
        typer.echo(
            f"serving {len(specs)} device(s) on {sim.path} ({baudrate} baud 8{parity}1); "
            "Ctrl-C to stop",
            err=True,
        )
        if started is not None:
            started.set_result(sim)
        await stop.wait()
