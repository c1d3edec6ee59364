"""Config models of the device kinds, one per transport; ``kind`` picks the model."""

from __future__ import annotations

import codecs
import re
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from drivers.profile import DataType, Order
from gateway.core.config_types import NAME_PATTERN, Frozen, Profile, Seconds, load_profile_field

Name = Annotated[str, Field(pattern=NAME_PATTERN, max_length=64)]

#: A serial port: an absolute device path (prefer the stable ``/dev/serial/by-id/...`` names; a
#: udev or socat symlink elsewhere, e.g. ``/run/rs485``, works too) or a USB identity
#: ``usb:VID:PID[:SERIAL]`` (hex ids, as ``lsusb`` prints them) resolved at start.
#: ``socket://host:port`` and ``rfc2217://host:port`` (pyserial URLs) reach remote ports.
SERIAL_PORT_PATTERN = (
    r"^(/\S+|usb:[0-9A-Fa-f]{4}:[0-9A-Fa-f]{4}(:\S+)?|(socket|rfc2217)://\S+:\d+|COM\d+)$"
)
SerialPortName = Annotated[str, Field(pattern=SERIAL_PORT_PATTERN)]

#: A BLE MAC address, upper or lower case, colon separated.
MAC_PATTERN = r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$"
Mac = Annotated[str, Field(pattern=MAC_PATTERN)]

BAUD_RATES = (1200, 2400, 4800, 9600, 14400, 19200, 38400, 57600, 115200)


class SerialLine(Frozen):
    """Settings shared by everything on a serial line."""

    port: SerialPortName
    baudrate: int = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1

    @field_validator("baudrate")
    @classmethod
    def _standard_baud(cls, value: int) -> int:
        if value not in BAUD_RATES:
            raise ValueError(f"expected one of the standard baud rates {list(BAUD_RATES)}")
        return value


class ModbusTcpDevice(Frozen):
    """A Modbus TCP device (or a Modbus TCP gateway in front of an RS-485 bus)."""

    kind: Literal["modbus_tcp"]
    name: Name
    host: str = Field(min_length=1)
    port: int = Field(default=502, ge=1, le=65535)
    unit_id: int = Field(default=1, ge=0, le=255)
    profile: Profile
    interval: Seconds = 10.0
    timeout: Seconds = 1.0

    _profile = field_validator("profile", mode="before")(load_profile_field)


class RtuUnit(Frozen):
    """One device on an RS-485 bus."""

    name: Name
    unit_id: int = Field(ge=1, le=247)  # 0 is broadcast, 248..255 reserved
    profile: Profile
    interval: Seconds = 10.0

    _profile = field_validator("profile", mode="before")(load_profile_field)


class ModbusRtuBus(SerialLine):
    """An RS-485 bus: one serial port, several Modbus RTU devices, one request at a time."""

    kind: Literal["modbus_rtu"]
    name: Name
    timeout: Seconds = 0.5  # per request: what a dead device costs the bus per cycle
    units: tuple[RtuUnit, ...] = Field(min_length=1)

    @field_validator("units")
    @classmethod
    def _unique_unit_ids(cls, units: tuple[RtuUnit, ...]) -> tuple[RtuUnit, ...]:
        ids = [u.unit_id for u in units]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"unit ids must be unique on a bus; used more than once: {duplicates}")
        return units


class Sds011Device(SerialLine):
    """Nova Fitness SDS011 particulate sensor on a UART (9600 8N1)."""

    kind: Literal["sds011"]
    name: Name
    mode: Literal["active", "query"] = "active"  # active: the sensor reports once a second
    interval: Seconds = 10.0
    timeout: Seconds = 3.0  # no valid frame within this: the device is failing


class Pms5003Device(SerialLine):
    """Plantower PMS5003 (and PMS7003, PMS1003) particulate sensor on a UART (9600 8N1)."""

    kind: Literal["pms5003"]
    name: Name
    interval: Seconds = 10.0
    timeout: Seconds = 5.0


class LineField(Frozen):
    """How one named group of a line-protocol pattern becomes a metric."""

    unit: str = ""
    scale: float = Field(default=1.0, allow_inf_nan=False)
    offset: float = Field(default=0.0, allow_inf_nan=False)


class LineSensor(SerialLine):
    """A simple ASCII device: one reading per line, fields picked out by a regular expression.

    Each named group of ``pattern`` is a metric; ``fields`` gives its unit, scale and offset.
    """

    kind: Literal["line"]
    name: Name
    pattern: str = Field(min_length=1)
    fields: dict[Annotated[str, Field(pattern=NAME_PATTERN)], LineField] = Field(min_length=1)
    encoding: str = "ascii"
    interval: Seconds = 10.0
    timeout: Seconds = 5.0

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(
                f"unknown text encoding {value!r}; expected e.g. 'ascii', 'utf-8', 'latin-1'"
            ) from None
        return value

    @model_validator(mode="after")
    def _groups_match_fields(self) -> LineSensor:
        try:
            groups = set(re.compile(self.pattern).groupindex)
        except re.error as exc:
            raise ValueError(f"pattern is not a valid regular expression: {exc}") from exc
        if groups != set(self.fields):
            raise ValueError(
                f"the pattern's named groups {sorted(groups)} must be exactly the fields "
                f"{sorted(self.fields)}"
            )
        return self


class BthomeDevice(Frozen):
    """A BTHome v2 BLE sensor, heard passively; ``key`` (32 hex digits) if it encrypts."""

    kind: Literal["bthome"]
    name: Name
    mac: Mac
    key: SecretStr | None = None
    stale_after: Seconds = 300.0  # no advertisement for this long: the device is down

    @field_validator("key")
    @classmethod
    def _key_is_128_bit_hex(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None and re.fullmatch(r"[0-9A-Fa-f]{32}", key.get_secret_value()) is None:
            raise ValueError("expected the bindkey as 32 hexadecimal digits (128 bits)")
        return key


class RuuviDevice(Frozen):
    """A Ruuvi sensor (RuuviTag data format 3 or 5, Ruuvi Air 6 or E1), heard passively."""

    kind: Literal["ruuvi"]
    name: Name
    mac: Mac
    stale_after: Seconds = 300.0


class GattCharacteristic(Frozen):
    """One GATT characteristic read as a metric (little-endian, as GATT defines)."""

    uuid: str = Field(
        pattern=r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$"
    )
    metric: Annotated[str, Field(pattern=NAME_PATTERN)]
    type: DataType = DataType.INT16
    byte_order: Order = Order.LITTLE
    scale: float = Field(default=1.0, allow_inf_nan=False)
    offset: float = Field(default=0.0, allow_inf_nan=False)
    unit: str = ""


class GattDevice(Frozen):
    """A BLE device read actively: connect, read characteristics, disconnect."""

    kind: Literal["ble_gatt"]
    name: Name
    mac: Mac
    interval: Seconds = 60.0
    timeout: Seconds = 10.0  # per connection attempt
    connect_attempts: int = Field(default=3, ge=1, le=10)
    characteristics: tuple[GattCharacteristic, ...] = Field(min_length=1)

    @field_validator("characteristics")
    @classmethod
    def _unique_metrics(
        cls, characteristics: tuple[GattCharacteristic, ...]
    ) -> tuple[GattCharacteristic, ...]:
        metrics = [c.metric for c in characteristics]
        duplicates = sorted({m for m in metrics if metrics.count(m) > 1})
        if duplicates:
            raise ValueError(f"each characteristic needs its own metric; repeated: {duplicates}")
        return characteristics


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


#: Kinds polled one device at a time by the scheduler (each gets a DevicePoller).
PolledDevice = ModbusTcpDevice | Sds011Device | Pms5003Device | LineSensor | GattDevice
POLLED_TYPES = (ModbusTcpDevice, Sds011Device, Pms5003Device, LineSensor, GattDevice)


def describe(device: DeviceConfig) -> list[str]:
    """Lines a technician can check against the cabinet (``validate``'s summary)."""
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
