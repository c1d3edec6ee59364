"""The ``[[devices]]`` union: every transport's config models, picked by ``kind``.

Each transport owns its models (drivers/modbus/config.py, drivers/serial/config.py,
drivers/ble/config.py); this module joins them and describes them for the CLI.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from pydantic import Field

from drivers import PolledDevice
from drivers.ble.config import (
    MAC_PATTERN,
    BthomeDevice,
    GattCharacteristic,
    GattDevice,
    Mac,
    RuuviDevice,
)
from drivers.deadband import device_deadbands
from drivers.modbus.config import ModbusRtuBus, ModbusTcpDevice, RtuUnit
from drivers.serial.config import (
    BAUD_RATES,
    SERIAL_PORT_PATTERN,
    LineField,
    LineSensor,
    Pms5003Device,
    Sds011Device,
    SerialLine,
    SerialPortName,
)
from gateway.core.config_types import Name
from gateway.core.deadband import DeviceDeadbands

__all__ = [
    "BAUD_RATES",
    "MAC_PATTERN",
    "PASSIVE_BLE_KINDS",
    "POLLED_TYPES",
    "SERIAL_PORT_PATTERN",
    "BthomeDevice",
    "DeviceConfig",
    "GattCharacteristic",
    "GattDevice",
    "LineField",
    "LineSensor",
    "Mac",
    "ModbusRtuBus",
    "ModbusTcpDevice",
    "Name",
    "Pms5003Device",
    "PolledDevice",
    "RtuUnit",
    "RuuviDevice",
    "Sds011Device",
    "SerialLine",
    "SerialPortName",
    "deadband_rules",
    "describe",
    "device_names",
]


DeviceConfig = Annotated[
    ModbusTcpDevice
    | ModbusRtuBus
    | Sds011Device
    | Pms5003Device
    | LineSensor
    | BthomeDevice
    | RuuviDevice
    | GattDevice,
    Field(discriminator="kind"),
]

#: Kinds whose readings are heard, not polled: one scanner serves them all.
PASSIVE_BLE_KINDS = ("bthome", "ruuvi")


def device_names(device: DeviceConfig) -> list[str]:
    """The names readings of this config entry carry (a bus's units have their own)."""
    if isinstance(device, ModbusRtuBus):
        return [unit.name for unit in device.units]
    return [device.name]


#: A device entry or bus unit: what has its own ``deadbands``.
_Entry = (
    ModbusTcpDevice
    | RtuUnit
    | Sds011Device
    | Pms5003Device
    | LineSensor
    | BthomeDevice
    | RuuviDevice
    | GattDevice
)


def deadband_rules(devices: Sequence[DeviceConfig]) -> dict[str, DeviceDeadbands]:
    """The report-on-change rules of every device (and bus unit) that has any, by name."""
    entries: list[_Entry] = []
    for device in devices:
        if isinstance(device, ModbusRtuBus):
            entries += device.units
        else:
            entries.append(device)
    rules = {}
    for entry in entries:
        profile = getattr(entry, "profile", None)
        found = device_deadbands(entry.deadbands, profile.deadbands if profile else None)
        if found:
            rules[entry.name] = found
    return rules


#: Kinds polled one device at a time by the scheduler (each gets a DevicePoller).
POLLED_TYPES = (ModbusTcpDevice, Sds011Device, Pms5003Device, LineSensor, GattDevice)


def describe(device: DeviceConfig) -> list[str]:
    """Lines a technician can check against the cabinet (``validate``'s summary)."""
    lines = _describe(device)
    if isinstance(device, ModbusRtuBus):
        return lines[:1] + [
            line + _deadbands_note(unit) for line, unit in zip(lines[1:], device.units, strict=True)
        ]
    return [lines[0] + _deadbands_note(device), *lines[1:]]


def _deadbands_note(entry: _Entry) -> str:
    """``", deadbands on temperature, every other measurement"``, or "" without any."""
    profile = getattr(entry, "profile", None)
    rules = device_deadbands(entry.deadbands, profile.deadbands if profile else None)
    if not rules:
        return ""
    named = sorted(metric for metric, rule in rules.metrics.items() if rule is not None)
    if rules.default is not None:
        named.append("every other measurement" if named else "every measurement")
    return f", deadbands on {', '.join(named)}"


def _describe(device: DeviceConfig) -> list[str]:
    if isinstance(device, ModbusTcpDevice):
        return [
            f"{device.name}: modbus_tcp {device.host}:{device.port} unit {device.unit_id}, "
            f"profile {device.profile.name} ({len(device.profile.metrics)} metrics), "
            f"every {device.interval:g}s"
        ]
    if isinstance(device, ModbusRtuBus):
        line = f"{device.port} {device.baudrate} 8{device.parity}{device.stopbits}"
        return [f"{device.name}: modbus_rtu bus on {line}, {len(device.units)} unit(s)"] + [
            f"  {u.name}: unit {u.unit_id}, profile {u.profile.name} "
            f"({len(u.profile.metrics)} metrics), every {u.interval:g}s"
            for u in device.units
        ]
    if isinstance(device, Sds011Device | Pms5003Device | LineSensor):
        mode = f" ({device.mode} mode)" if isinstance(device, Sds011Device) else ""
        metrics = f", metrics {sorted(device.fields)}" if isinstance(device, LineSensor) else ""
        return [
            f"{device.name}: {device.kind}{mode} on {device.port} {device.baudrate} baud"
            f"{metrics}, every {device.interval:g}s"
        ]
    if isinstance(device, GattDevice):
        return [
            f"{device.name}: ble_gatt {device.mac}, {len(device.characteristics)} "
            f"characteristic(s), every {device.interval:g}s"
        ]
    encrypted = " (encrypted)" if isinstance(device, BthomeDevice) and device.key else ""
    return [f"{device.name}: {device.kind} {device.mac}{encrypted}, heard passively"]
