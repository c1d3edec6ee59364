"""Config models of the Modbus transport: a TCP device, an RS-485 bus and its units."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from drivers.deadband import Reporting, check_deadbands
from drivers.profile import Profile, load_profile_field
from drivers.serial.config import SerialLine
from gateway.core.config_types import Name, Seconds

__all__ = ["ModbusRtuBus", "ModbusTcpDevice", "RtuUnit"]


class ModbusTcpDevice(Reporting):
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

    @model_validator(mode="after")
    def _deadbands_fit(self) -> ModbusTcpDevice:
        _check_profiled(self)
        return self


class RtuUnit(Reporting):
    """One device on an RS-485 bus."""

    name: Name
    unit_id: int = Field(ge=1, le=247)  # 0 is broadcast, 248..255 reserved
    profile: Profile
    interval: Seconds = 10.0

    _profile = field_validator("profile", mode="before")(load_profile_field)

    @model_validator(mode="after")
    def _deadbands_fit(self) -> RtuUnit:
        _check_profiled(self)
        return self


def _check_profiled(device: ModbusTcpDevice | RtuUnit) -> None:
    profile = device.profile
    check_deadbands(
        device.deadbands,
        metrics=[m.name for m in profile.metrics],
        profile_rules=profile.deadbands,
        interval=device.interval,
    )


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
