"""What the BLE drivers share: the bleak backends they use, and the one place bleak's errors
become streetgate's.

bleak picks the platform's backend (BlueZ over D-Bus on a Raspberry Pi) unless it is given
``backend=``; :class:`BleBackends` carries that choice from whoever builds the drivers (tests,
the simulator) to :class:`drivers.ble_scan.BleScanSource` and :class:`drivers.ble_gatt.GattDriver`.
The config cannot name a Python class, so production leaves it at the defaults.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bleak.exc import (
    BleakBluetoothNotAvailableError,
    BleakCharacteristicNotFoundError,
    BleakDBusError,
    BleakDeviceNotFoundError,
    BleakError,
    BleakGATTProtocolError,
)

from drivers.boundary import ErrorBoundary
from gateway.core.errors import (
    AdapterUnavailable,
    DeviceError,
    DeviceTimeout,
    DeviceUnreachable,
    ProtocolError,
)

if TYPE_CHECKING:
    from bleak.backends.client import BaseBleakClient
    from bleak.backends.scanner import BaseBleakScanner

__all__ = ["BleBackends", "BleakErrors", "adapter_label"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BleBackends:
    """bleak backends and adapter for the BLE drivers; None means the platform's default."""

    scanner: type[BaseBleakScanner] | None = None
    client: type[BaseBleakClient] | None = None
    adapter: str | None = None  # e.g. "hci1"; None: BlueZ's first powered adapter


def adapter_label(adapter: str | None) -> str:
    """The name an AdapterUnavailable error carries for ``adapter``."""
    return adapter if adapter is not None else "default adapter"


# D-Bus errors that mean the adapter (or bluetoothd) is missing, not the remote device.
_ADAPTER_DBUS_ERRORS = frozenset(
    {
        "org.bluez.Error.NotReady",  # adapter powered off
        "org.freedesktop.DBus.Error.ServiceUnknown",  # bluetoothd is not running
        "org.freedesktop.DBus.Error.UnknownObject",  # the adapter's object went away
        "org.freedesktop.DBus.Error.Disconnected",  # the system bus went away
    }
)
_TIMEOUT_DBUS_ERRORS = frozenset({"org.freedesktop.DBus.Error.NoReply"})


class BleakErrors(ErrorBoundary):
    """Context manager: bleak's exceptions (and the OSErrors of its D-Bus transport) become
    :class:`gateway.errors.DeviceError` subclasses.

    ``device`` is the device an operation is for, or None for adapter-wide operations (the
    scanner), whose every failure is the adapter's. Set ``doing`` before each operation; it
    goes into the message. Reusable.
    """

    def __init__(self, device: str | None, adapter: str | None) -> None:
        self._device = device
        self._adapter = adapter_label(adapter)
        self.doing = "using the BLE adapter"

    def translate(self, exc: Exception) -> DeviceError | None:  # noqa: PLR0911 - one per kind
        """The streetgate error for ``exc``; None for what bleak does not raise (a bug here)."""
        device, doing = self._device, self.doing
        if self._is_adapter_error(exc):
            suffix = f" (needed by {device})" if device is not None else ""
            return AdapterUnavailable(self._adapter, f"{_describe(exc)} while {doing}{suffix}")
        if device is None:
            if isinstance(exc, BleakError | OSError | TimeoutError):
                return AdapterUnavailable(self._adapter, f"{_describe(exc)} while {doing}")
            return None
        if isinstance(exc, TimeoutError) or (
            isinstance(exc, BleakDBusError) and exc.dbus_error in _TIMEOUT_DBUS_ERRORS
        ):
            return DeviceTimeout(device, f"no answer while {doing}")
        if isinstance(exc, BleakDeviceNotFoundError):
            return DeviceUnreachable(device, f"not found while {doing}")
        if isinstance(exc, BleakCharacteristicNotFoundError):
            return ProtocolError(device, f"the device has no characteristic {exc.char_specifier}")
        if isinstance(exc, BleakGATTProtocolError):
            return ProtocolError(device, f"ATT error {exc.code.name} while {doing}")
        if isinstance(exc, BleakError | OSError | EOFError):
            return DeviceUnreachable(device, f"{_describe(exc)} while {doing}")
        return None

    @staticmethod
    def _is_adapter_error(exc: Exception) -> bool:
        if isinstance(exc, BleakBluetoothNotAvailableError | FileNotFoundError):
            # FileNotFoundError: no system D-Bus socket (no bluetoothd, or not on Linux)
            return True
        return isinstance(exc, BleakDBusError) and exc.dbus_error in _ADAPTER_DBUS_ERRORS


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
