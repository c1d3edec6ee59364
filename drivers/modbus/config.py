"""Config models of the Modbus transport: a TCP device, an RS-485 bus and its units."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from drivers.deadband import Reporting, check_deadbands
from drivers.profile import Profile, builtin_profiles, load_profile_field
from drivers.serial.config import SerialLine
from gateway.core.config_types import Name, Seconds

__all__ = ["ModbusRtuBus", "ModbusTcpDevice", "RtuUnit"]

_PROFILE = (
    f"Its register map: a shipped profile's name ({', '.join(builtin_profiles())}), "
    "a .toml profile file (relative to the config's folder), or an inline table."
)


class ModbusTcpDevice(Reporting):
    """A Modbus TCP device (or a Modbus TCP gateway in front of an RS-485 bus)."""

    kind: Literal["modbus_tcp"]
    name: Name = Field(description="The device's name in readings.")
    host: str = Field(min_length=1, description="Its IP address or host name.")
    port: int = Field(default=502, ge=1, le=65535, description="Its Modbus TCP port.")
    unit_id: int = Field(
        default=1, ge=0, le=255, description="Modbus unit id (behind a TCP gateway: the slave id)."
    )
    profile: Profile = Field(description=_PROFILE)
    interval: Seconds = Field(default=10.0, description="How often it is polled.")
    timeout: Seconds = Field(default=1.0, description="Per request.")

    _profile = field_validator("profile", mode="before", json_schema_input_type=str | Profile)(
        load_profile_field
    )

    @model_validator(mode="after")
    def _deadbands_fit(self) -> ModbusTcpDevice:
        _check_profiled(self)
        return self


class RtuUnit(Reporting):
    """One device on an RS-485 bus."""

    name: Name = Field(description="The device's name in readings.")
    # 0 is broadcast, 248..255 reserved
    unit_id: int = Field(ge=1, le=247, description="Its Modbus address on the bus.")
    profile: Profile = Field(description=_PROFILE)
    interval: Seconds = Field(default=10.0, description="How often it is polled.")

    _profile = field_validator("profile", mode="before", json_schema_input_type=str | Profile)(
        load_profile_field
    )

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
    name: Name = Field(description="The bus's name (in its health; readings carry the units').")
    # per request: what a dead device costs the bus per cycle
    timeout: Seconds = Field(
        default=0.5, description="Per request: what a dead device costs the bus per cycle."
    )
    units: tuple[RtuUnit, ...] = Field(
        min_length=1, description="The devices on the bus, polled one request at a time."
    )

    @field_validator("units")
    @classmethod
    def _unique_unit_ids(cls, units: tuple[RtuUnit, ...]) -> tuple[RtuUnit, ...]:
        ids = [u.unit_id for u in units]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"unit ids must be unique on a bus; used more than once: {duplicates}")
        return units
