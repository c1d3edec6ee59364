"""``streetgate read DEVICE``: one poll of one configured device through its real driver.

Polled kinds go through :func:`drivers.build_driver`; a unit on a Modbus RTU bus is read through
the bus's :class:`drivers.modbus_rtu.ModbusRtuBusDriver`; a passive BLE sensor (BTHome, Ruuvi) is
listened for until one of its advertisements is decoded, or ``--timeout``.

Exit status: 0 read; 1 (``FAILURE``) the device answered with something wrong (a protocol error);
3 (``CONFIG``) invalid config; 4 (``UNREACHABLE``) no answer, no connection, no port or adapter;
6 (``NOT_FOUND``) no device of that name in the config (the configured names are listed).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from typing import Annotated

import typer

from gateway.cli.common import ConfigOption, fail, load_or_exit
from gateway.cli.exit_codes import ExitCode
from gateway.config.devices import (
    POLLED_TYPES,
    BthomeDevice,
    DeviceConfig,
    ModbusRtuBus,
    RtuUnit,
    RuuviDevice,
    device_names,
)
from gateway.config.model import GatewayConfig
from gateway.core.clock import SystemClock
from gateway.core.errors import DeviceError, DeviceTimeout, DeviceUnreachable
from gateway.core.model import Reading, Sample

__all__ = ["find_device", "read", "read_device"]

#: How long ``read`` listens for a passive BLE sensor by default (they advertise every few s).
BLE_LISTEN = 30.0


def find_device(config: GatewayConfig, name: str) -> tuple[DeviceConfig, RtuUnit | None] | None:
    """The config entry readings of ``name`` come from (and the RTU unit, for a bus unit)."""
    for device in config.devices:
        if isinstance(device, ModbusRtuBus):
            for unit in device.units:
                if unit.name == name:
                    return device, unit
        elif device.name == name:
            return device, None
    return None


async def _listen(device: BthomeDevice | RuuviDevice, listen_s: float) -> list[Sample]:
    """Scan until one advertisement of ``device`` is decoded; adapter trouble ends it at once."""
    from drivers.ble.scan import BleScanSource  # noqa: PLC0415 - imports bleak

    heard: asyncio.Future[Sequence[Reading]] = asyncio.get_running_loop().create_future()

    async def sink(readings: Sequence[Reading]) -> None:
        if not heard.done():
            heard.set_result(readings)

    source = BleScanSource([device], sink, SystemClock(), retry_base=listen_s, retry_cap=listen_s)
    status = source.statuses[device.name]
    failure: DeviceError | None = None
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(source.run(), name=source.task_name)
        try:
            async with asyncio.timeout(listen_s):
                while not heard.done() and not source.stats().adapter_failures:
                    await asyncio.wait({heard}, timeout=0.05)
        except TimeoutError:
            failure = DeviceTimeout(
                device.name, f"no advertisement of {device.mac} decoded within {listen_s:g}s"
            )
        task.cancel()
    if not heard.done():
        raise failure or DeviceUnreachable(device.name, status.last_error or "no BLE adapter")
    return [Sample(r.metric, r.value, r.unit) for r in heard.result()]


async def read_device(device: DeviceConfig, unit: RtuUnit | None, listen_s: float) -> list[Sample]:
    """One poll of ``device`` (``unit`` of it, for a bus). Raises :class:`DeviceError`."""
    if isinstance(device, ModbusRtuBus):
        from drivers.modbus.rtu import ModbusRtuBusDriver  # noqa: PLC0415

        if unit is None:
            raise ValueError("a bus is read one unit at a time")
        async with ModbusRtuBusDriver(device) as port:
            return await port.read_unit(unit)
    if isinstance(device, BthomeDevice | RuuviDevice):
        return await _listen(device, listen_s)
    if isinstance(device, POLLED_TYPES):
        from drivers import build_driver  # noqa: PLC0415

        async with build_driver(device) as driver:
            return await driver.poll()
    raise ValueError(f"no way to read a {device.kind} device")


def _value(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else str(value)


def _table(samples: Sequence[Sample]) -> str:
    rows = [("metric", "value", "unit")] + [(s.metric, _value(s.value), s.unit) for s in samples]
    widths = [max(len(r[i]) for r in rows) for i in range(2)]
    return "\n".join(f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]}".rstrip() for r in rows)


def read(
    device: Annotated[str, typer.Argument(help="Device name from the config (a bus unit's name).")],
    config: ConfigOption,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds to listen for a passive BLE sensor.")
    ] = BLE_LISTEN,
) -> None:
    """Read one device once through its real driver and print its values."""
    cfg = load_or_exit(config, "read")
    found = find_device(cfg, device)
    if found is None:
        names = [n for d in cfg.devices for n in device_names(d)]
        listed = ", ".join(names) if names else "none"
        fail("read", f"no device {device!r} in {config}; configured: {listed}", ExitCode.NOT_FOUND)
    entry, unit = found
    ts_ms = time.time_ns() // 1_000_000
    try:
        samples = asyncio.run(read_device(entry, unit, timeout))
    except (DeviceTimeout, DeviceUnreachable) as exc:
        fail("read", exc, ExitCode.UNREACHABLE)
    except DeviceError as exc:
        fail("read", exc, ExitCode.FAILURE)
    if as_json:
        iso = (
            time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts_ms / 1000)) + f".{ts_ms % 1000:03d}Z"
        )
        readings = [{"metric": s.metric, "value": s.value, "unit": s.unit} for s in samples]
        typer.echo(json.dumps({"device": device, "ts": iso, "readings": readings}))
    else:
        typer.echo(_table(samples))
