"""The one place streetgate's exceptions live.

Exception tree::

    StreetgateError
    ├── ConfigError            a config or profile file is invalid (carries every issue found)
    ├── DeviceError            a device could not be read (carries .device)
    │   ├── DeviceTimeout      (also a TimeoutError) no answer within the timeout
    │   ├── DeviceUnreachable  (also a ConnectionError) no connection to the device
    │   │   ├── PortUnavailable       the serial port is missing, unplugged or busy
    │   │   └── AdapterUnavailable    the BLE adapter is missing or went away
    │   └── ProtocolError      the device answered, but not with what was asked for
    │       ├── ModbusExceptionResponse   a Modbus exception response (.code)
    │       └── BadFrame                  garbage, a bad CRC/checksum (.reason: a FrameError)
    ├── FrameError             (also a ValueError) bytes are not a valid frame; raised by the
    │   └── ChecksumError          pure decoders, which know no device
    ├── StoreError             the SQLite outbox failed
    ├── ForwardError           the MQTT uplink failed
    │   └── UnsafeKeyFile          the TLS private key is readable by others (carries .path)
    └── NodeToolError          ``streetgate node``: a firmware bundle, release key or board problem
        ├── BundleError            a bundle is unreadable or malformed (carries .path)
        │   └── SignatureInvalid       its manifest signature does not verify
        ├── ReleaseKeyError        a release key file is missing, unsafe or not Ed25519 (.path)
        │   └── UnsafeReleaseKey       the private key is readable by others
        └── BoardError             a board could not be deployed to (carries .port)
            ├── BoardNotFound          the port does not exist or cannot be opened
            ├── NotMicroPython         the port answers, but not as a MicroPython raw REPL
            ├── CopyMismatch           a copied file's SHA-256 on the board is not the bundle's
            ├── KeyReuseRefused        a BLE key would go to a board without its counter state
            └── BoardDidNotReturn      the board said nothing (or failed) after its reset

Third-party exceptions (pymodbus, aiomqtt, sqlite3) are translated into these at the
module that talks to the library; code elsewhere never catches library exceptions.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path


class StreetgateError(Exception):
    """Base class of every error streetgate raises on purpose."""


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in a config file: where it is and what was expected."""

    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message


class ConfigError(StreetgateError):
    """A config or profile file is invalid. ``issues`` lists every problem found."""

    def __init__(self, source: str, issues: list[ConfigIssue] | tuple[ConfigIssue, ...]) -> None:
        self.source = source
        self.issues = tuple(issues)
        lines = "\n".join(f"  {source}: {issue}" for issue in self.issues)
        super().__init__(f"invalid configuration in {source}:\n{lines}")


class DeviceError(StreetgateError):
    """A device could not be read."""

    def __init__(self, device: str, message: str) -> None:
        self.device = device
        super().__init__(f"{device}: {message}")


class DeviceTimeout(DeviceError, TimeoutError):
    """The device did not answer within its timeout."""


class DeviceUnreachable(DeviceError, ConnectionError):
    """No connection to the device could be made or kept."""


class ProtocolError(DeviceError):
    """The device answered, but the answer was not what the protocol allows."""


class ModbusExceptionCode(IntEnum):
    """Modbus exception codes (Modbus Application Protocol v1.1b3, section 7)."""

    ILLEGAL_FUNCTION = 1
    ILLEGAL_DATA_ADDRESS = 2
    ILLEGAL_DATA_VALUE = 3
    DEVICE_FAILURE = 4
    ACKNOWLEDGE = 5
    DEVICE_BUSY = 6
    NEGATIVE_ACKNOWLEDGE = 7
    MEMORY_PARITY_ERROR = 8
    GATEWAY_PATH_UNAVAILABLE = 10
    GATEWAY_TARGET_NO_RESPONSE = 11
    UNKNOWN = 0


class ModbusExceptionResponse(ProtocolError):
    """The device answered a request with a Modbus exception response."""

    def __init__(self, device: str, code: ModbusExceptionCode, address: int, count: int) -> None:
        self.code = code
        self.address = address
        self.count = count
        super().__init__(
            device,
            f"Modbus exception {code.value} ({code.name}) reading {count} registers at {address}",
        )


class PortUnavailable(DeviceUnreachable):
    """The serial port is missing, unplugged, or cannot be opened."""


class AdapterUnavailable(DeviceUnreachable):
    """The BLE adapter is missing or went away (``device`` is the adapter's name)."""


class FrameError(StreetgateError, ValueError):
    """Bytes that are not a valid frame or advertisement.

    Raised by the pure protocol decoders (no I/O, no device); drivers wrap it in
    :class:`BadFrame` with the device's name.
    """


class ChecksumError(FrameError):
    """A frame whose checksum or CRC does not match its contents."""


class BadFrame(ProtocolError):
    """A device sent a frame that does not decode; ``reason`` is the decoder's FrameError."""

    def __init__(self, device: str, reason: FrameError) -> None:
        self.reason = reason
        super().__init__(device, f"bad frame: {reason}")


class StoreError(StreetgateError):
    """The SQLite outbox could not be opened, read or written."""


class ForwardError(StreetgateError):
    """The MQTT uplink failed (connect, publish or acknowledgement)."""


class UnsafeKeyFile(ForwardError):
    """The TLS private key file can be read or written by others: the gateway will not use it."""

    def __init__(self, key: str, path: Path, mode: int) -> None:
        self.path = path
        self.mode = mode
        super().__init__(
            f"{key} = {path}: the private key is readable by others (mode {mode:04o});"
            f" fix it with: chmod 600 {path}"
        )


class NodeToolError(StreetgateError):
    """``streetgate node``: a firmware bundle, release key or board could not be used."""


class BundleError(NodeToolError):
    """A firmware bundle is unreadable or malformed."""

    def __init__(self, path: Path, message: str) -> None:
        self.path = path
        super().__init__(f"{path}: {message}")


class SignatureInvalid(BundleError):
    """The bundle's manifest signature does not verify against the release key."""


class ReleaseKeyError(NodeToolError):
    """A release key file is missing, readable by others, or not an Ed25519 key."""

    def __init__(self, path: Path, message: str) -> None:
        self.path = path
        super().__init__(f"release key {path}: {message}")


class UnsafeReleaseKey(ReleaseKeyError):
    """The release private key can be read by others: it is not used."""


class BoardError(NodeToolError):
    """A board could not be deployed to or read."""

    def __init__(self, port: str, message: str) -> None:
        self.port = port
        super().__init__(f"{port}: {message}")


class BoardNotFound(BoardError):
    """The port does not exist, or cannot be opened."""


class NotMicroPython(BoardError):
    """Something answers on the port, but not a MicroPython raw REPL."""


class CopyMismatch(BoardError):
    """A file's SHA-256 on the board differs from the bundle's after the copy."""

    def __init__(self, port: str, path: str, expected: str, actual: str) -> None:
        self.path = path
        self.expected = expected
        self.actual = actual
        super().__init__(
            port, f"{path} on the board has SHA-256 {actual}, expected {expected} (copy damaged)"
        )


class KeyReuseRefused(BoardError):
    """An existing BLE key would go to a board without that key's counter state (nonce reuse)."""


class BoardDidNotReturn(BoardError):
    """After the reset the board printed nothing in time, or answered instead of resetting."""
