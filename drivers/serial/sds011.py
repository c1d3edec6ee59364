"""Nova Fitness SDS011 (SDS018, SDS021) serial protocol: frames, commands and a stream parser.

Pure code: bytes in, values out, no I/O. The sensor sends 10-byte frames at 9600 8N1::

    AA C0 pm25_lo pm25_hi pm10_lo pm10_hi id1 id2 checksum AB    measurement (µg/m³ × 10, LE)
    AA C5 command d1 d2 d3 id1 id2 checksum AB                   reply to a command

with ``checksum = sum(bytes 2..7) & 0xFF``. The host sends 19-byte commands::

    AA B4 command d1 .. d12 id1 id2 checksum AB                  (id FF FF: every sensor)

with ``checksum = sum(bytes 2..16) & 0xFF`` ("Laser Dust Sensor Control Protocol V1.3").
The device id is read little-endian in both directions (``bc f9`` is id 0xF9BC).

Decoders raise :class:`gateway.errors.FrameError` (:class:`~gateway.errors.ChecksumError` for a
checksum mismatch) and nothing else. :class:`Sds011Stream` finds frames in a byte stream.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from drivers.serial.frame_stream import NOT_A_FRAME, BinaryFrameStream
from gateway.core.errors import ChecksumError, FrameError

__all__ = [
    "ALL_DEVICES",
    "COMMAND_SIZE",
    "FRAME_SIZE",
    "Command",
    "CommandFrame",
    "Measurement",
    "Reply",
    "ReportingMode",
    "Sds011Stream",
    "decode_command",
    "decode_frame",
    "decode_measurement",
    "encode_command",
    "encode_measurement",
    "encode_reply",
    "query_data",
    "set_reporting_mode",
    "set_working",
    "set_working_period",
]

HEAD = 0xAA
TAIL = 0xAB
MEASUREMENT = 0xC0  # sensor -> host: a measurement
REPLY = 0xC5  # sensor -> host: the answer to a command
COMMAND = 0xB4  # host -> sensor
FRAME_SIZE = 10
COMMAND_SIZE = 19
ALL_DEVICES = 0xFFFF
MAX_RAW = 0xFFFF  # µg/m³ × 10 in a uint16 (the sensor itself stops at 999.9)

_HEAD_BYTE = bytes([HEAD])
_U16_3 = struct.Struct("<3H")


class Command(IntEnum):
    """Command codes (byte 2 of a command and of its reply)."""

    REPORTING_MODE = 0x02
    QUERY_DATA = 0x04
    SET_DEVICE_ID = 0x05
    SLEEP_WORK = 0x06
    FIRMWARE = 0x07
    WORKING_PERIOD = 0x08


class ReportingMode(IntEnum):
    """Active: a frame every second (or period); query: a frame per query command."""

    ACTIVE = 0
    QUERY = 1


@dataclass(frozen=True, slots=True)
class Measurement:
    """A measurement frame: PM2.5 and PM10 in µg/m³ (0.1 resolution) and the sensor's id."""

    pm2_5: float
    pm10: float
    device_id: int


@dataclass(frozen=True, slots=True)
class Reply:
    """The sensor's answer to a command: the command code, three data bytes and its id.

    For REPORTING_MODE, SLEEP_WORK and WORKING_PERIOD, ``data[0]`` is 1 for "set", 0 for
    "query", and ``data[1]`` the mode (0 active / 1 query), the state (0 sleep / 1 work) or the
    period in minutes (0: continuous). For FIRMWARE, the data bytes are year, month, day.
    """

    command: int
    data: bytes
    device_id: int

    @property
    def value(self) -> int:
        """``data[1]``: the mode, state or period the reply reports."""
        return self.data[1]


@dataclass(frozen=True, slots=True)
class CommandFrame:
    """A host-to-sensor command as decoded (what a simulated sensor receives)."""

    command: int
    data: bytes  # 12 bytes
    device_id: int


Frame = Measurement | Reply


def _checksum(data: bytes | bytearray | memoryview) -> int:
    return sum(data) & 0xFF


def _check_frame(frame: bytes | bytearray) -> None:
    """Raise FrameError unless ``frame`` is one well-formed sensor frame."""
    if len(frame) != FRAME_SIZE:
        raise FrameError(f"SDS011 frame: expected {FRAME_SIZE} bytes, got {len(frame)}")
    if frame[0] != HEAD:
        raise FrameError(f"SDS011 frame: expected header 0xAA, got 0x{frame[0]:02X}")
    if frame[1] not in (MEASUREMENT, REPLY):
        raise FrameError(
            f"SDS011 frame: expected command byte 0xC0 (data) or 0xC5 (reply), got 0x{frame[1]:02X}"
        )
    if frame[9] != TAIL:
        raise FrameError(
            f"SDS011 frame: expected tail 0xAB at byte 9, got 0x{frame[9]:02X} "
            "(not a 10-byte frame: truncated or misaligned)"
        )
    expected = _checksum(frame[2:8])
    if frame[8] != expected:
        raise ChecksumError(
            f"SDS011 frame: checksum 0x{frame[8]:02X}, expected 0x{expected:02X} "
            "(sum of bytes 2..7)"
        )


def _decode_valid(frame: bytes | bytearray, at: int = 0) -> Frame:
    if frame[at + 1] == MEASUREMENT:
        pm2_5, pm10, device_id = _U16_3.unpack_from(frame, at + 2)
        return Measurement(pm2_5 / 10, pm10 / 10, device_id)
    return Reply(frame[at + 2], bytes(frame[at + 3 : at + 6]), frame[at + 6] | frame[at + 7] << 8)


def decode_frame(frame: bytes | bytearray) -> Frame:
    """A measurement or a reply from one 10-byte sensor frame."""
    _check_frame(frame)
    return _decode_valid(frame)


def decode_measurement(frame: bytes | bytearray) -> Measurement:
    """A measurement from one 10-byte frame; a reply frame is a FrameError here."""
    decoded = decode_frame(frame)
    if not isinstance(decoded, Measurement):
        raise FrameError(
            f"SDS011 frame: expected a measurement (0xC0), got a reply to command "
            f"0x{decoded.command:02X}"
        )
    return decoded


def _raw(value: float, what: str) -> int:
    raw = round(value * 10)
    if not 0 <= raw <= MAX_RAW:
        raise ValueError(f"{what} must be within 0..{MAX_RAW / 10} µg/m³, got {value}")
    return raw


def _device_id(device_id: int) -> bytes:
    if not 0 <= device_id <= 0xFFFF:
        raise ValueError(f"device id must be within 0..0xFFFF, got {device_id}")
    return device_id.to_bytes(2, "little")


def encode_measurement(pm2_5: float, pm10: float, device_id: int = 0) -> bytes:
    """The sensor's measurement frame (values rounded to 0.1 µg/m³), as a simulator sends it."""
    body = (
        _raw(pm2_5, "pm2_5").to_bytes(2, "little")
        + _raw(pm10, "pm10").to_bytes(2, "little")
        + _device_id(device_id)
    )
    return bytes([HEAD, MEASUREMENT]) + body + bytes([_checksum(body), TAIL])


def encode_reply(command: int, data: bytes, device_id: int = 0) -> bytes:
    """The sensor's reply frame to ``command`` with three data bytes."""
    if len(data) != 3:
        raise ValueError(f"a reply carries 3 data bytes, got {len(data)}")
    body = bytes([command]) + data + _device_id(device_id)
    return bytes([HEAD, REPLY]) + body + bytes([_checksum(body), TAIL])


def encode_command(command: int, data: bytes = b"", device_id: int = ALL_DEVICES) -> bytes:
    """A 19-byte host command; ``data`` (up to 12 bytes) is padded with zeros."""
    if not 0 <= command <= 0xFF:
        raise ValueError(f"command must be one byte, got {command}")
    if len(data) > 12:
        raise ValueError(f"a command carries at most 12 data bytes, got {len(data)}")
    body = bytes([command]) + data.ljust(12, b"\x00") + _device_id(device_id)
    return bytes([HEAD, COMMAND]) + body + bytes([_checksum(body), TAIL])


def query_data(device_id: int = ALL_DEVICES) -> bytes:
    """Ask for one measurement (query reporting mode); the answer is a measurement frame."""
    return encode_command(Command.QUERY_DATA, device_id=device_id)


def set_reporting_mode(mode: ReportingMode, device_id: int = ALL_DEVICES) -> bytes:
    """Report actively (every period) or only when queried; the sensor keeps the setting."""
    return encode_command(Command.REPORTING_MODE, bytes([1, mode]), device_id)


def set_working(working: bool, device_id: int = ALL_DEVICES) -> bytes:
    """Wake the sensor (fan and laser on) or put it to sleep."""
    return encode_command(Command.SLEEP_WORK, bytes([1, int(working)]), device_id)


def set_working_period(minutes: int, device_id: int = ALL_DEVICES) -> bytes:
    """0: measure continuously (a frame per second); 1-30: work 30 s every ``minutes``."""
    if not 0 <= minutes <= 30:
        raise ValueError(f"working period must be 0..30 minutes, got {minutes}")
    return encode_command(Command.WORKING_PERIOD, bytes([1, minutes]), device_id)


def decode_command(frame: bytes | bytearray) -> CommandFrame:
    """A host command from its 19 bytes (what a sensor, or its simulator, receives)."""
    if len(frame) != COMMAND_SIZE:
        raise FrameError(f"SDS011 command: expected {COMMAND_SIZE} bytes, got {len(frame)}")
    if frame[0] != HEAD or frame[1] != COMMAND or frame[18] != TAIL:
        raise FrameError(
            f"SDS011 command: expected AA B4 ... AB, got {frame[:2].hex(' ')} ... {frame[18]:02x}"
        )
    expected = _checksum(frame[2:17])
    if frame[17] != expected:
        raise ChecksumError(
            f"SDS011 command: checksum 0x{frame[17]:02X}, expected 0x{expected:02X}"
        )
    return CommandFrame(frame[2], bytes(frame[3:15]), frame[15] | frame[16] << 8)


class Sds011Stream(BinaryFrameStream[Frame]):
    """Finds sensor frames in a byte stream: ``feed(chunk)`` returns the frames it completes.

    A 0xAA not followed by a sensor frame's command byte is noise (skipped, not a bad frame);
    a frame whose tail or checksum is wrong is a bad frame. At most one incomplete frame (9
    bytes) is kept between calls. See :class:`drivers.frame_stream.BinaryFrameStream` for
    ``stats``, ``last_error``, ``pending`` and ``clear``.
    """

    protocol = "SDS011"
    header = _HEAD_BYTE
    head_size = 2  # head and command byte

    def _size(self, buf: bytearray, at: int) -> int:
        kind = buf[at + 1]
        if kind != MEASUREMENT and kind != REPLY:  # noqa: PLR1714 - faster than `in`
            return NOT_A_FRAME  # a lone 0xAA: garbage
        return FRAME_SIZE

    def _decode(self, buf: bytearray, at: int, end: int) -> Frame | None:
        if buf[end - 1] != TAIL or (sum(buf[at + 2 : end - 2]) & 0xFF) != buf[end - 2]:
            return None
        return _decode_valid(buf, at)

    _check = staticmethod(_check_frame)
