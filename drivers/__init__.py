"""Device drivers: each one an ``async with`` object that turns a device into samples.

Two shapes: a :class:`drivers.base.Driver` is polled by the scheduler, one device each; a
:class:`drivers.base.Source` schedules itself (an RS-485 bus shared by several devices, a BLE
scanner that hears many sensors) and hands readings to the outbox as they come.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from drivers.ble.config import BthomeDevice, GattDevice, RuuviDevice
from drivers.modbus.config import ModbusRtuBus, ModbusTcpDevice
from drivers.serial.config import LineSensor, Pms5003Device, Sds011Device

if TYPE_CHECKING:
    from pathlib import Path

    from drivers.base import Driver, Sink, Source
    from drivers.ble.common import BleBackends
    from gateway.core.clock import SystemClock

__all__ = ["AnyDevice", "PolledDevice", "build_driver", "build_sources"]

#: What build_driver takes: the kinds polled one device at a time by the scheduler.
PolledDevice = ModbusTcpDevice | Sds011Device | Pms5003Device | LineSensor | GattDevice
#: What build_sources looks through (gateway.config.devices.DeviceConfig is this union).
AnyDevice = PolledDevice | ModbusRtuBus | BthomeDevice | RuuviDevice

# Driver modules are imported when a device needs them, not for their config models: validating
# a config, or a gateway without BLE or serial devices, should not import pymodbus, bleak or
# pyserial (slow to import on a Pi, and bleak wants D-Bus).


def build_driver(config: PolledDevice, *, ble: BleBackends | None = None) -> Driver:
    """The driver for one polled device, chosen by its ``kind``.

    ``ble``: bleak backends for BLE devices (the simulator's in tests; default: the platform's).
    """
    if config.kind == "modbus_tcp":
        from drivers.modbus.tcp import ModbusTcpDriver  # noqa: PLC0415

        return ModbusTcpDriver(config)
    if config.kind == "ble_gatt":
        from drivers.ble.gatt import GattDriver  # noqa: PLC0415

        return GattDriver(config, ble.client if ble else None, ble.adapter if ble else None)
    if config.kind in ("sds011", "pms5003", "line"):
        from drivers.serial import sensors as serial_sensors  # noqa: PLC0415

        if config.kind == "sds011":
            return serial_sensors.Sds011Driver(config)
        if config.kind == "pms5003":
            return serial_sensors.Pms5003Driver(config)
        return serial_sensors.LineSensorDriver(config)
    raise ValueError(f"no driver for device kind {config.kind!r}")


def build_sources(
    devices: Sequence[AnyDevice],
    sink: Sink,
    clock: SystemClock,
    *,
    ble: BleBackends | None = None,
    ble_counters: Path | None = None,
) -> list[Source]:
    """The self-scheduling sources among ``devices`` (buses, BLE scanners).

    ``ble_counters``: the file that keeps the last accepted BTHome encryption counters across
    restarts (:func:`drivers.ble_counters.counters_path`); None: in memory only.
    """
    sources: list[Source] = []
    # The kinds of gateway.config.devices.PASSIVE_BLE_KINDS, narrowed for the type checker.
    passive_ble = [d for d in devices if isinstance(d, BthomeDevice | RuuviDevice)]
    if passive_ble:  # one scanner hears every passive BLE device
        from drivers.ble.counters import CounterFile  # noqa: PLC0415
        from drivers.ble.scan import BleScanSource  # noqa: PLC0415

        sources.append(
            BleScanSource(
                passive_ble,
                sink,
                clock,
                ble.scanner if ble else None,
                ble.adapter if ble else None,
                counters=CounterFile(ble_counters) if ble_counters is not None else None,
            )
        )
    for device in devices:
        if device.kind == "modbus_rtu":
            from drivers.modbus.rtu import RtuBusPoller  # noqa: PLC0415

            sources.append(RtuBusPoller(device, sink, clock))
    return sources
