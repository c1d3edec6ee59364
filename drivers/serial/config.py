"""Config models of the serial transport: the line settings and the UART sensors on it.

The serial drivers own their schema (as an esphome component does); gateway.config.devices
joins every transport's models into the ``[[devices]]`` union.
"""

from __future__ import annotations

import codecs
import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from drivers.deadband import Reporting, check_deadbands
from gateway.core.config_types import NAME_PATTERN, Frozen, Name, Seconds

__all__ = [
    "BAUD_RATES",
    "PMS5003_METRICS",
    "SDS011_METRICS",
    "SERIAL_PORT_PATTERN",
    "LineField",
    "LineSensor",
    "Pms5003Device",
    "Sds011Device",
    "SerialLine",
    "SerialPortName",
]

#: A serial port: an absolute device path (prefer the stable ``/dev/serial/by-id/...`` names; a
#: udev or socat symlink elsewhere, e.g. ``/run/rs485``, works too) or a USB identity
#: ``usb:VID:PID[:SERIAL]`` (hex ids, as ``lsusb`` prints them) resolved at start.
#: ``socket://host:port`` and ``rfc2217://host:port`` (pyserial URLs) reach remote ports.
SERIAL_PORT_PATTERN = (
    r"^(/\S+|usb:[0-9A-Fa-f]{4}:[0-9A-Fa-f]{4}(:\S+)?|(socket|rfc2217)://\S+:\d+|COM\d+)$"
)
SerialPortName = Annotated[str, Field(pattern=SERIAL_PORT_PATTERN)]

BAUD_RATES = (1200, 2400, 4800, 9600, 14400, 19200, 38400, 57600, 115200)


class SerialLine(Frozen):
    """Settings shared by everything on a serial line."""

    port: SerialPortName = Field(
        description="The serial port: a device path (best /dev/serial/by-id/...), "
        "usb:VID:PID[:SERIAL], or socket://host:port / rfc2217://host:port."
    )
    baudrate: int = Field(
        default=9600, description=f"Line speed, one of {', '.join(map(str, BAUD_RATES))}."
    )
    parity: Literal["N", "E", "O"] = Field(default="N", description="None, even or odd.")
    stopbits: Literal[1, 2] = Field(default=1, description="Stop bits.")

    @field_validator("baudrate")
    @classmethod
    def _standard_baud(cls, value: int) -> int:
        if value not in BAUD_RATES:
            raise ValueError(f"expected one of the standard baud rates {list(BAUD_RATES)}")
        return value


#: The metrics each particulate sensor sends (drivers/serial/sensors.py).
SDS011_METRICS = ("pm2_5", "pm10")
PMS5003_METRICS = ("pm1_0", "pm2_5", "pm10", "n0_3", "n0_5", "n1_0", "n2_5", "n5_0", "n10")


class Sds011Device(SerialLine, Reporting):
    """Nova Fitness SDS011 particulate sensor on a UART (9600 8N1)."""

    kind: Literal["sds011"]
    name: Name = Field(description="The device's name in readings.")
    # active: the sensor reports once a second
    mode: Literal["active", "query"] = Field(
        default="active",
        description="active: the sensor reports once a second; query: it answers when asked.",
    )
    interval: Seconds = Field(default=10.0, description="How often a reading is taken.")
    # no valid frame within this: the device is failing
    timeout: Seconds = Field(
        default=3.0, description="No valid frame within this: the device is failing."
    )

    @model_validator(mode="after")
    def _deadbands_fit(self) -> Sds011Device:
        check_deadbands(self.deadbands, metrics=SDS011_METRICS, interval=self.interval)
        return self


class Pms5003Device(SerialLine, Reporting):
    """Plantower PMS5003 (and PMS7003, PMS1003) particulate sensor on a UART (9600 8N1)."""

    kind: Literal["pms5003"]
    name: Name = Field(description="The device's name in readings.")
    interval: Seconds = Field(default=10.0, description="How often a reading is taken.")
    timeout: Seconds = Field(
        default=5.0, description="No valid frame within this: the device is failing."
    )

    @model_validator(mode="after")
    def _deadbands_fit(self) -> Pms5003Device:
        check_deadbands(self.deadbands, metrics=PMS5003_METRICS, interval=self.interval)
        return self


class LineField(Frozen):
    """How one named group of a line-protocol pattern becomes a metric."""

    unit: str = Field(default="", description='The unit readings carry, e.g. "°C".')
    scale: float = Field(
        default=1.0, allow_inf_nan=False, description="value = number × scale + offset."
    )
    offset: float = Field(default=0.0, allow_inf_nan=False, description="Added after scale.")


class LineSensor(SerialLine, Reporting):
    """A simple ASCII device: one reading per line, fields picked out by a regular expression.

    Each named group of ``pattern`` is a metric; ``fields`` gives its unit, scale and offset.
    """

    kind: Literal["line"]
    name: Name = Field(description="The device's name in readings.")
    pattern: str = Field(
        min_length=1,
        description="A Python regular expression; each named group (?P<metric>...) is a metric.",
    )
    fields: dict[Annotated[str, Field(pattern=NAME_PATTERN)], LineField] = Field(
        min_length=1,
        description="One table per named group of pattern: [devices.fields.<metric>].",
    )
    encoding: str = Field(
        default="ascii", description="Text encoding of the lines, e.g. ascii, utf-8, latin-1."
    )
    interval: Seconds = Field(default=10.0, description="How often a reading is taken.")
    timeout: Seconds = Field(
        default=5.0, description="No valid line within this: the device is failing."
    )

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

    @model_validator(mode="after")
    def _deadbands_fit(self) -> LineSensor:
        check_deadbands(self.deadbands, metrics=self.fields, interval=self.interval)
        return self
