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
    │   ├── ChecksumError          pure decoders, which know no device
    │   ├── NoMatchError           a serial line that does not match the device's pattern
    │   └── UnknownObjectError     a BTHome object id outside the table (.object_id, .offset)
    ├── StoreError             the SQLite outbox failed
    │   ├── OutboxFull             the disk is full and no room could be made
    │   ├── OutboxLocked           another process holds the outbox's lock (.path, .pid)
    │   ├── OutboxForeign          the file is not the gateway's outbox (.path, .reason)
    │   ├── OutboxNotOurs          its files belong to another user and cannot be written (.path)
    │   ├── OutboxMissing          there is no outbox at the path (.path)
    │   └── OutboxDamaged          the file is not a readable SQLite database (.path, .reason)
    ├── ForwardError           the MQTT uplink failed
    │   ├── UnsafeKeyFile          the TLS private key is readable by others (carries .path)
    │   └── BrokerUnavailable      the broker could not be reached or the session broke
    ├── PayloadError           (also a ValueError) a readings message that breaks its format
    │   └── UnknownMetadata        compact readings name metadata the consumer does not hold
    ├── CommandRejected        a management command that cannot be run (.code: ErrorCode)
    ├── BadAnswer              (also a ValueError) ``streetgate init``: an answer the config rejects
    ├── ProvisioningError      ``streetgate creds``/``fleet``: a step of setting up a gateway failed
    │   ├── CredsError             a credentials step failed
    │   │   ├── CredsFileMissing       a key, certificate or config file does not exist
    │   │   ├── CredsPermissionDenied  a file may not be read/written, or is readable by others
    │   │   ├── CredsNotConfigured     the config does not say where the TLS files are
    │   │   └── CredsWouldOverwrite    a private key is already there (no --force)
    │   ├── FleetError             a balena fleet command failed
    │   │   ├── FleetUnreachable       the balena API could not be reached, or did not answer
    │   │   ├── FleetNotFound          the device, fleet, release or token file does not exist
    │   │   ├── FleetPermissionDenied  the token file may not be read, or is readable by others
    │   │   └── FleetBadRequest        a bad name or argument (the API or our own checks say so)
    │   └── NoAnswer               (also a TimeoutError) an SDK call did not return in time
    ├── NodeToolError          ``streetgate node``: a firmware bundle, release key or board problem
    │   ├── BundleError            a bundle is unreadable or malformed (carries .path)
    │   │   └── SignatureInvalid       its manifest signature does not verify
    │   ├── ManifestError          (also a ValueError) a manifest is not what the format allows
    │   ├── ReleaseKeyError        a release key file is missing, unsafe or not Ed25519 (.path)
    │   │   └── UnsafeReleaseKey       the private key is readable by others
    │   └── BoardError             a board could not be deployed to (carries .port)
    │       ├── BoardNotFound          the port does not exist or cannot be opened
    │       ├── NotMicroPython         the port answers, but not as a MicroPython raw REPL
    │       ├── CopyMismatch           a copied file's SHA-256 on the board is not the bundle's
    │       ├── KeyReuseRefused        a BLE key would go to a board without its counter state
    │       └── BoardDidNotReturn      the board said nothing (or failed) after its reset
    └── SimulatorError         ``streetgate sim`` and the demo could not do what was asked
        ├── WriteConfigError       the generated config file could not be written (.path)
        └── BrokerNotInstalled     (also a RuntimeError) mosquitto is not on this machine

Third-party exceptions are translated into these at one boundary per library, and
code elsewhere never catches the library's exceptions:

    pymodbus    drivers/modbus/errors.py      ``PymodbusErrors``
    pyserial    drivers/serial/link.py        ``_SerialErrors`` (and firmware/deploy.py for boards)
    bleak       drivers/ble/common.py         ``BleakErrors``
    aiomqtt     gateway/uplink/boundary.py    ``mqtt_errors``
    sqlite3     gateway/store/outbox.py, gateway/store/reader.py (the writer and the reader)
    balena-sdk  provisioning/fleet.py         ``FleetClient._translated``
    mpremote    firmware/deploy.py            (``TransportError``)

Exit codes are not decided here: ``gateway.cli.exit_codes.exit_code_for`` maps these types.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum
from pathlib import Path
from typing import Any


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


class PayloadError(StreetgateError, ValueError):
    """A readings or metadata message that is not what its format allows (docs/mqtt.md).

    Raised by the pure platform-side decoders (gateway/uplink/decode.py); the message says
    what was expected, and where.
    """


class UnknownMetadata(PayloadError):
    """Compact readings that name a metadata message (``.meta_id``) the consumer does not hold:
    read the retained ``<prefix>/<gateway>/meta`` message first."""

    def __init__(self, meta_id: str, known: tuple[str, ...] = ()) -> None:
        self.meta_id = meta_id
        held = ", ".join(known) if known else "none"
        super().__init__(
            f"the readings use metadata {meta_id}, which was not given (held: {held}); "
            "read the retained <prefix>/<gateway>/meta message"
        )


class FrameError(StreetgateError, ValueError):
    """Bytes that are not a valid frame or advertisement.

    Raised by the pure protocol decoders (no I/O, no device); drivers wrap it in
    :class:`BadFrame` with the device's name.
    """


class ChecksumError(FrameError):
    """A frame whose checksum or CRC does not match its contents."""


class NoMatchError(FrameError):
    """A line that does not match the pattern (or is not text in the device's encoding)."""


class UnknownObjectError(FrameError):
    """An object id outside the BTHome v2 table: its length, so the rest, cannot be read."""

    def __init__(self, object_id: int, offset: int) -> None:
        self.object_id = object_id
        self.offset = offset  # byte offset of the id in the (decrypted) object payload
        super().__init__(
            f"unknown BTHome object id 0x{object_id:02x} at byte {offset} of the payload: "
            "not in the BTHome v2 object table (bthome.io/format), and the format gives no "
            "length, so nothing after it can be read; the advertisement is refused (a newer "
            "object id than this gateway knows, or a damaged advertisement)"
        )


class BadFrame(ProtocolError):
    """A device sent a frame that does not decode; ``reason`` is the decoder's FrameError."""

    def __init__(self, device: str, reason: FrameError) -> None:
        self.reason = reason
        super().__init__(device, f"bad frame: {reason}")


class StoreError(StreetgateError):
    """The SQLite outbox could not be opened, read or written."""


class OutboxFull(StoreError):
    """The disk is full and no room could be made; the batch was not committed."""


class OutboxLocked(StoreError):
    """Another process (a running gateway) holds the outbox's lock."""

    def __init__(self, path: Path, pid: int | None) -> None:
        self.path = path
        self.pid = pid
        holder = f"the gateway with pid {pid}" if pid is not None else "another process"
        lock = path.with_name(path.name + ".lock")  # gateway.store.outbox_files.lock_path
        super().__init__(
            f"outbox {path} is in use by {holder} (lock {lock}):"
            " one gateway per outbox; stop that one first"
        )


class OutboxForeign(StoreError):
    """The file at outbox.path (or at a companion's place) is not the gateway's: left alone."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"outbox {path}: {reason}; refusing to use, rename or overwrite it")


class OutboxNotOurs(StoreError):
    """The outbox's files belong to another user (a ``streetgate run`` as root left them) and
    this one may not write them: a restart cannot fix it, a ``chown`` can."""

    def __init__(self, path: Path, message: str) -> None:
        self.path = path
        super().__init__(message)


class OutboxMissing(StoreError):
    """There is no outbox at the path (or the gateway never set it up)."""

    def __init__(self, path: Path, detail: str) -> None:
        self.path = path
        self.detail = detail
        super().__init__(f"no outbox at {path}: {detail}")


class OutboxDamaged(StoreError):
    """The file is not a readable SQLite database (the gateway would quarantine it)."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"outbox {path} is damaged ({reason})")


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


class BrokerUnavailable(ForwardError):
    """The MQTT broker could not be reached, refused the session, or the session broke.

    Raised only by :func:`gateway.uplink.boundary.mqtt_errors`; the aiomqtt error is the cause,
    and the message is its text (what ``streetgate status`` shows as the last error).
    """

    def __init__(self, host: str, port: int, reason: str) -> None:
        self.host = host
        self.port = port
        self.reason = reason
        super().__init__(reason)


class ErrorCode(StrEnum):
    """``error.code`` in a management reply (docs/mqtt.md): the wire code of a rejected command."""

    BAD_PAYLOAD = "bad_payload"  # not UTF-8 JSON, or too large
    BAD_REQUEST = "bad_request"  # JSON, but not a command object (id, command, args)
    WRONG_GATEWAY = "wrong_gateway"  # addressed to another gateway
    RETAINED = "retained"  # a retained command would run again on every reconnect
    UNKNOWN_COMMAND = "unknown_command"
    BAD_ARGS = "bad_args"  # the command's args are missing or of the wrong type
    BUSY = "busy"  # the command queue is full, or a config change is still pending
    NOT_FOUND = "not_found"  # no such device
    UNSUPPORTED = "unsupported"  # the device or gateway cannot do this
    DEVICE_ERROR = "device_error"  # the device could not be read
    TIMEOUT = "timeout"
    INVALID_CONFIG = "invalid_config"  # config-set: the new config does not validate
    LOCAL_ONLY = "local_only"  # config-set: a key that may be changed on site only
    WRITE_FAILED = "write_failed"  # config-set: the config file could not be written
    ROLLED_BACK = "rolled_back"  # config-set: see ReplyStatus.ROLLED_BACK
    INTERNAL = "internal"  # a bug: the gateway logged it
    # [management] require_signed (docs/mqtt.md#signed-commands):
    UNSIGNED = "unsigned"  # no signature, and this gateway requires one
    BAD_SIGNATURE = "bad_signature"  # does not verify with the configured command key
    STALE = "stale"  # ts outside the accepted window (too old, or from the future)
    REPLAYED = "replayed"  # this nonce was already used


class CommandRejected(StreetgateError):
    """A payload that cannot be run; replied to with ``code`` and ``message``."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        command_id: str | None = None,
        command: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.command_id = command_id
        self.command = command
        self.details = details or {}


class BadAnswer(StreetgateError, ValueError):
    """``streetgate init``: an answer the config would reject; the message says why."""


class ProvisioningError(StreetgateError):
    """``streetgate creds`` or ``streetgate fleet``: a step of setting up a gateway failed."""


class CredsError(ProvisioningError):
    """A credentials step failed (a check, a bad key or certificate, an I/O error)."""


class CredsFileMissing(CredsError):
    """A key, certificate, CSR or config file the step needs does not exist."""


class CredsPermissionDenied(CredsError):
    """A file may not be read or written, or a private key is readable by others."""


class CredsNotConfigured(CredsError):
    """The config does not say where the TLS key and certificate are."""


class CredsWouldOverwrite(CredsError):
    """A private key is already there; it is not replaced without ``--force``."""


class FleetError(ProvisioningError):
    """A balena fleet command failed (the API refused it, or answered oddly)."""


class FleetUnreachable(FleetError):
    """The balena API could not be reached, or did not answer in time."""


class FleetNotFound(FleetError):
    """The device, fleet, release or token file does not exist."""


class FleetPermissionDenied(FleetError):
    """The token file may not be read, or is readable by others."""


class FleetBadRequest(FleetError):
    """A bad variable name or argument, or no token given: the request cannot be made."""


class NoAnswer(ProvisioningError, TimeoutError):
    """A balena SDK call did not return within the client's timeout."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        super().__init__(f"no answer within {seconds:g} s")


class NodeToolError(StreetgateError):
    """``streetgate node``: a firmware bundle, release key or board could not be used."""


class BundleError(NodeToolError):
    """A firmware bundle is unreadable or malformed."""

    def __init__(self, path: Path, message: str) -> None:
        self.path = path
        super().__init__(f"{path}: {message}")


class SignatureInvalid(BundleError):
    """The bundle's manifest signature does not verify against the release key."""


class ManifestError(NodeToolError, ValueError):
    """A manifest, a path in it, or the files beside it are not what the format allows."""


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


class SimulatorError(StreetgateError):
    """``streetgate sim`` or the demo could not do what was asked."""


class WriteConfigError(SimulatorError):
    """The config file could not be written (it exists, or the folder is not writable)."""

    def __init__(self, path: Path, message: str) -> None:
        self.path = path
        super().__init__(message)


class BrokerNotInstalled(SimulatorError, RuntimeError):
    """mosquitto is not on this machine."""
