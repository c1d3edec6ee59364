"""One read of one configured device through the gateway's own drivers (``streetgate read``,
``streetgate doctor``).

Polled kinds go through :func:`drivers.build_driver`; a unit on a Modbus RTU bus is read through
the bus's :class:`drivers.modbus.rtu.ModbusRtuBusDriver`; a passive BLE sensor (BTHome, Ruuvi) is
listened for until one of its advertisements is decoded. Every failure is a
:class:`gateway.core.errors.DeviceError`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

from gateway.config.devices import (
    POLLED_TYPES,
    BthomeDevice,
    DeviceConfig,
    ModbusRtuBus,
    RtuUnit,
    RuuviDevice,
)
from gateway.config.model import GatewayConfig
from gateway.core.clock import SystemClock
from gateway.core.errors import DeviceError, DeviceTimeout, DeviceUnreachable
from gateway.core.model import Reading, Sample

if TYPE_CHECKING:
    from drivers.ble.common import BleBackends

__all__ = ["find_device", "listen_ble", "read_device"]


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


async def listen_ble(
    device: BthomeDevice | RuuviDevice, listen_s: float, ble: BleBackends | None = None
) -> list[Sample]:
    """Scan until one advertisement of ``device`` is decoded; adapter trouble ends it at once.

    ``ble``: bleak backends (the simulator's in tests); None: the platform's.
    """
    from drivers.ble.scan import BleScanSource  # noqa: PLC0415 - imports bleak

    heard: asyncio.Future[Sequence[Reading]] = asyncio.get_running_loop().create_future()

    async def sink(readings: Sequence[Reading]) -> None:
        if not heard.done():
            heard.set_result(readings)

    source = BleScanSource(
        [device],
        sink,
        SystemClock(),
        ble.scanner if ble else None,
        ble.adapter if ble else None,
        retry_base=listen_s,
        retry_cap=listen_s,
    )
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
        return await listen_ble(device, listen_s)
    if isinstance(device, POLLED_TYPES):
        from drivers import build_driver  # noqa: PLC0415

        async with build_driver(device) as driver:
            return await driver.poll()
    raise ValueError(f"no way to read a {device.kind} device")
