"""``streetgate sim --serial KIND``: simulated serial sensors, each on its own virtual serial port.

streetgate sim --serial sds011 --serial pms5003 --serial line --write-config gw.toml
streetgate run -c gw.toml

Kinds: ``sds011`` (active reporting), ``sds011-query`` (an SDS011 in query mode),
``pms5003`` and ``line`` (a weather sensor printing ASCII lines). Each sensor is named
``sim-<kind>-<n>``; its port is a symlink to a pty (:attr:`SerialSensorSim.path`), printed on
its line and written into the config.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager

from drivers.serial.sds011 import ReportingMode
from simulator.serial_sensors import LineDeviceSim, Pms5003Sim, Sds011Sim, SerialSensorSim

__all__ = ["SERIAL_KINDS", "describe", "make_sensors", "serial_sensors", "serial_toml"]

#: What ``--serial`` accepts.
SERIAL_KINDS = ("sds011", "sds011-query", "pms5003", "line")


def make_sensors(kinds: Sequence[str]) -> list[SerialSensorSim]:
    """One simulated sensor per entry of ``kinds``, named ``sim-<kind>-<n>``."""
    numbers: dict[str, itertools.count[int]] = {}
    sensors: list[SerialSensorSim] = []
    for kind in kinds:
        if kind not in SERIAL_KINDS:
            raise ValueError(f"unknown serial sensor {kind!r}, expected one of {SERIAL_KINDS}")
        name = f"sim-{kind}-{next(numbers.setdefault(kind, itertools.count(1)))}"
        if kind == "sds011":
            sensors.append(Sds011Sim(name))
        elif kind == "sds011-query":
            sensors.append(Sds011Sim(name, mode=ReportingMode.QUERY))
        elif kind == "pms5003":
            sensors.append(Pms5003Sim(name))
        else:
            sensors.append(LineDeviceSim(name))
    return sensors


@asynccontextmanager
async def serial_sensors(kinds: Sequence[str]) -> AsyncIterator[list[SerialSensorSim]]:
    """The sensors of ``kinds``, plugged in and running until the block ends."""
    sensors = make_sensors(kinds)
    async with AsyncExitStack() as stack:
        for sensor in sensors:
            await stack.enter_async_context(sensor)
        yield sensors


def describe(sensor: SerialSensorSim) -> str:
    """The line ``streetgate sim`` prints for a sensor: name, kind, port, the pty behind it."""
    return f"{sensor.name}  {sensor.kind}  {sensor.path}  ({sensor.pty_path})"


def serial_toml(sensors: Sequence[SerialSensorSim], interval: float) -> list[str]:
    """The ``[[devices]]`` tables of ``sensors`` for a gateway config."""
    lines: list[str] = []
    for sensor in sensors:
        lines += ["", *sensor.config_toml(interval)]
    return lines
