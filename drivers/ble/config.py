"""Config models of the BLE transport: passive BTHome and Ruuvi sensors, active GATT devices."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from drivers.ble.ruuvi import TAG_METRICS
from drivers.deadband import Reporting, check_deadbands
from drivers.profile import DataType, Order
from gateway.core.config_types import NAME_PATTERN, Frozen, Name, Seconds

__all__ = [
    "MAC_PATTERN",
    "RUUVI_METRICS",
    "BthomeDevice",
    "GattCharacteristic",
    "GattDevice",
    "Mac",
    "RuuviDevice",
]

#: A BLE MAC address, upper or lower case, colon separated.
MAC_PATTERN = r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$"
Mac = Annotated[str, Field(pattern=MAC_PATTERN)]


class BthomeDevice(Reporting):
    """A BTHome v2 BLE sensor, heard passively; ``key`` (32 hex digits) if it encrypts."""

    kind: Literal["bthome"]
    name: Name = Field(description="The device's name in readings.")
    mac: Mac = Field(description="Its BLE MAC address, AA:BB:CC:DD:EE:FF.")
    key: SecretStr | None = Field(
        default=None,
        description="Its BTHome bindkey (32 hex digits), if it encrypts; masked by config show.",
    )
    # no advertisement for this long: the device is down
    stale_after: Seconds = Field(
        default=300.0, description="No advertisement for this long: the device is down."
    )

    @field_validator("key")
    @classmethod
    def _key_is_128_bit_hex(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None and re.fullmatch(r"[0-9A-Fa-f]{32}", key.get_secret_value()) is None:
            raise ValueError("expected the bindkey as 32 hexadecimal digits (128 bits)")
        return key

    @model_validator(mode="after")
    def _deadbands_fit(self) -> BthomeDevice:
        check_deadbands(self.deadbands, metrics=None)  # heard, not polled: no interval
        return self


#: Every metric a Ruuvi sensor may send, in any data format (drivers/ble/ruuvi*.py).
RUUVI_METRICS = (
    *TAG_METRICS,
    "pm1",
    "pm25",
    "pm4",
    "pm10",
    "co2",
    "voc_index",
    "nox_index",
    "illuminance",
    "calibration_state",
)


class RuuviDevice(Reporting):
    """A Ruuvi sensor (RuuviTag data format 3 or 5, Ruuvi Air 6 or E1), heard passively."""

    kind: Literal["ruuvi"]
    name: Name = Field(description="The device's name in readings.")
    mac: Mac = Field(description="Its BLE MAC address, AA:BB:CC:DD:EE:FF.")
    stale_after: Seconds = Field(
        default=300.0, description="No advertisement for this long: the device is down."
    )

    @model_validator(mode="after")
    def _deadbands_fit(self) -> RuuviDevice:
        check_deadbands(self.deadbands, metrics=RUUVI_METRICS)
        return self


class GattCharacteristic(Frozen):
    """One GATT characteristic read as a metric (little-endian, as GATT defines)."""

    uuid: str = Field(
        pattern=r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$",
        description="The characteristic's 128-bit UUID.",
    )
    metric: Annotated[str, Field(pattern=NAME_PATTERN)] = Field(
        description="The metric name its value is published under."
    )
    type: DataType = Field(default=DataType.INT16, description="How its bytes encode the value.")
    byte_order: Order = Field(default=Order.LITTLE, description="Byte order of the value.")
    scale: float = Field(
        default=1.0, allow_inf_nan=False, description="value = raw × scale + offset."
    )
    offset: float = Field(default=0.0, allow_inf_nan=False, description="Added after scale.")
    unit: str = Field(default="", description='The unit readings carry, e.g. "°C".')


class GattDevice(Reporting):
    """A BLE device read actively: connect, read characteristics, disconnect."""

    kind: Literal["ble_gatt"]
    name: Name = Field(description="The device's name in readings.")
    mac: Mac = Field(description="Its BLE MAC address, AA:BB:CC:DD:EE:FF.")
    interval: Seconds = Field(default=60.0, description="How often it is read.")
    # per connection attempt
    timeout: Seconds = Field(default=10.0, description="Per connection attempt.")
    connect_attempts: int = Field(
        default=3, ge=1, le=10, description="Connection attempts per read before it fails."
    )
    characteristics: tuple[GattCharacteristic, ...] = Field(
        min_length=1, description="The characteristics read, one metric each."
    )

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

    @model_validator(mode="after")
    def _deadbands_fit(self) -> GattDevice:
        metrics = [c.metric for c in self.characteristics]
        check_deadbands(self.deadbands, metrics=metrics, interval=self.interval)
        return self
