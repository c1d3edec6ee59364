"""Device drivers: each one an ``async with`` object that turns a device into samples."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from drivers.base import Driver
    from gateway.config import DeviceConfig

__all__ = ["build_driver"]


def build_driver(config: DeviceConfig) -> Driver:
    """The driver for one configured device, chosen by its ``kind``."""
    # Imported here: gateway.config imports drivers.profile, which runs this package's
    # __init__ first, and validating a config should not have to import pymodbus.
    if config.kind == "modbus_tcp":
        from drivers.modbus_tcp import ModbusTcpDriver  # noqa: PLC0415

        return ModbusTcpDriver(config)
    raise ValueError(f"no driver for device kind {config.kind!r}")  # pragma: no cover
