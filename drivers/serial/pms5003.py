"""Plantower PMS5003 (PMS7003, PMS1003) serial protocol: frames, commands and a stream parser.

Pure code: bytes in, values out, no I/O. The sensor sends, at 9600 8N1, all words big-endian::

    42 4D  length=28  13 data words  checksum      32 bytes: a measurement
    42 4D  length=4   command data   checksum       8 bytes: the reply to a command

``checksum`` is the sum of every byte before it (uint16). The 13 data words: PM1.0, PM2.5 and
PM10 in µg/m³ "CF=1, standard particle", the same three "atmospheric environment" (the ones to
use outdoors), particle counts per 0.1 L above 0.3, 0.5, 1.0, 2.5, 5.0 and 10 µm, then a
reserved word (version and error code bytes). The host sends 7-byte commands
``42 4D command data_hi data_lo checksum`` (Plantower data manual, 2016).

Decoders raise :class:`gateway.errors.FrameError` (:class:`~gateway.errors.ChecksumError` for a
checksum mismatch) and nothing else. :class:`Pms5003Stream` finds frames in a byte stream.
"""

from __future__ import annotations

import struct
from dataclasses import astuple, dataclass, fields
from enum import IntEnum

from drivers.serial.frame_stream import BAD_HEADER, BinaryFrameStream
from gateway.core.errors import ChecksumError, FrameError

__all__ = [
    "COMMAND_SIZE",
    "FRAME_SIZE",
    "Command",
    "CommandFrame",
    "Measurement",
    "Pms5003Stream",
    "Reply",
    "decode_command",
    "decode_frame",
    "decode_measurement",
    "encode_command",
    "encode_measurement",
    "encode_reply",
    "read_passive",
    "set_active",
    "set_passive",
    "set_working",
]

MAGIC = b"BM"  # 0x42 0x4D
DATA_LENGTH = 28  # 13 data words + checksum
REPLY_LENGTH = 4  # command, data, checksum
FRAME_SIZE = DATA_LENGTH + 4
REPLY_SIZE = REPLY_LENGTH + 4
COMMAND_SIZE = 7
_SIZES = {DATA_LENGTH: FRAME_SIZE, REPLY_LENGTH: REPLY_SIZE}

_DATA = struct.Struct(">12HBBH")  # from byte 4: 12 words, version, error code, checksum
_U16 = struct.Struct(">H")


class Command(IntEnum):
    """Host command codes (byte 2 of a command)."""

    READ = 0xE2  # passive mode: send one measurement
    MODE = 0xE1  # data 0: passive, 1: active
    SLEEP = 0xE4  # data 0: sleep, 1: wake up


@dataclass(frozen=True, slots=True)
class Measurement:
    """A 32-byte measurement frame: µg/m³ (CF=1 and atmospheric) and counts per 0.1 L."""

    pm1_0_cf1: int
    pm2_5_cf1: int
    pm10_cf1: int
    pm1_0: int  # atmospheric environment
    pm2_5: int
    pm10: int
    n0_3: int  # particles > 0.3 µm per 0.1 L of air
    n0_5: int
    n1_0: int
    n2_5: int
    n5_0: int
    n10: int
    version: int = 0x97
    error_code: int = 0


@dataclass(frozen=True, slots=True)
class Reply:
    """The sensor's 8-byte answer to a mode or sleep command: the command and its data byte."""

    command: int
    data: int


@dataclass(frozen=True, slots=True)
class CommandFrame:
    """A host command as decoded (what a simulated sensor receives)."""

    command: int
    data: int  # 16 bits


Frame = Measurement | Reply


def _check_frame(frame: bytes | bytearray) -> None:
    """Raise FrameError unless ``frame`` is one well-formed sensor frame."""
    if len(frame) < 4 or frame[:2] != MAGIC:
        raise FrameError(f"PMS5003 frame: expected to start with 42 4D, got {frame[:2].hex(' ')!r}")
    length = frame[2] << 8 | frame[3]
    size = _SIZES.get(length)
    if size is None:
        raise FrameError(
            f"PMS5003 frame: length field {length}, expected {DATA_LENGTH} (measurement) or "
            f"{REPLY_LENGTH} (command reply)"
        )
    if len(frame) != size:
        raise FrameError(
            f"PMS5003 frame: length field {length} means {size} bytes, got {len(frame)}"
        )
    expected = sum(frame[:-2]) & 0xFFFF
    (got,) = _U16.unpack_from(frame, size - 2)
    if got != expected:
        raise ChecksumError(
            f"PMS5003 frame: checksum 0x{got:04X}, expected 0x{expected:04X} "
            f"(sum of bytes 0..{size - 3})"
        )


def _decode_valid(frame: bytes | bytearray, at: int, size: int) -> Frame:
    if size == FRAME_SIZE:
        return Measurement(*_DATA.unpack_from(frame, at + 4)[:14])
    return Reply(frame[at + 4], frame[at + 5])


def decode_frame(frame: bytes | bytearray) -> Frame:
    """A measurement (32 bytes) or a command reply (8 bytes) from one sensor frame."""
    _check_frame(frame)
    return _decode_valid(frame, 0, len(frame))


def decode_measurement(frame: bytes | bytearray) -> Measurement:
    """A measurement from one 32-byte frame; a reply frame is a FrameError here."""
    decoded = decode_frame(frame)
    if not isinstance(decoded, Measurement):
        raise FrameError(
            f"PMS5003 frame: expected a measurement, got a reply to command 0x{decoded.command:02X}"
        )
    return decoded


def _with_checksum(body: bytes) -> bytes:
    return body + _U16.pack(sum(body) & 0xFFFF)


def encode_measurement(measurement: Measurement) -> bytes:
    """The sensor's 32-byte frame for ``measurement``, as a simulator sends it."""
    values = astuple(measurement)
    for spec, value in zip(fields(Measurement), values, strict=True):
        limit = 0xFF if spec.name in {"version", "error_code"} else 0xFFFF
        if not 0 <= value <= limit:
            raise ValueError(f"{spec.name} must be within 0..{limit}, got {value}")
    return _with_checksum(MAGIC + _U16.pack(DATA_LENGTH) + bytes(_DATA.pack(*values, 0)[:26]))


def encode_reply(command: int, data: int) -> bytes:
    """The sensor's 8-byte reply to ``command``."""
    return _with_checksum(MAGIC + _U16.pack(REPLY_LENGTH) + bytes([command, data]))


def encode_command(command: int, data: int = 0) -> bytes:
    """A 7-byte host command."""
    if not 0 <= command <= 0xFF or not 0 <= data <= 0xFFFF:
        raise ValueError(f"command must be one byte and data two, got {command}, {data}")
    return _with_checksum(MAGIC + bytes([command]) + _U16.pack(data))


def set_active(active: bool = True) -> bytes:
    """Active mode (frames unasked, the default after power-up) or passive (frames on READ)."""
    return encode_command(Command.MODE, int(active))


def set_passive() -> bytes:
    """Passive mode: a frame only in answer to :func:`read_passive`."""
    return set_active(False)


def read_passive() -> bytes:
    """In passive mode: ask for one measurement frame."""
    return encode_command(Command.READ)


def set_working(working: bool) -> bytes:
    """Wake the sensor up (fan on) or put it to sleep."""
    return encode_command(Command.SLEEP, int(working))


def decode_command(frame: bytes | bytearray) -> CommandFrame:
    """A host command from its 7 bytes (what a sensor, or its simulator, receives)."""
    if len(frame) != COMMAND_SIZE or frame[:2] != MAGIC:
        raise FrameError(
            f"PMS5003 command: expected {COMMAND_SIZE} bytes starting 42 4D, got {frame.hex(' ')}"
        )
    expected = sum(frame[:5]) & 0xFFFF
    (got,) = _U16.unpack_from(frame, 5)
    if got != expected:
        raise ChecksumError(f"PMS5003 command: checksum 0x{got:04X}, expected 0x{expected:04X}")
    return CommandFrame(frame[2], frame[3] << 8 | frame[4])


class Pms5003Stream(BinaryFrameStream[Frame]):
    """Finds sensor frames in a byte stream: ``feed(chunk)`` returns the frames it completes.

    A truncated frame glued to the next one (whose header then reads as a bogus length such as
    16973) costs only the truncated bytes; at most one incomplete frame (31 bytes) is kept
    between calls. See :class:`drivers.frame_stream.BinaryFrameStream` for ``stats``,
    ``last_error``, ``pending`` and ``clear``.
    """

    protocol = "PMS5003"
    header = MAGIC
    head_size = 4  # magic and length field

    def _size(self, buf: bytearray, at: int) -> int:
        return _SIZES.get(buf[at + 2] << 8 | buf[at + 3], BAD_HEADER)

    def _decode(self, buf: bytearray, at: int, end: int) -> Frame | None:
        if end - at == FRAME_SIZE:
            values = _DATA.unpack_from(buf, at + 4)
            if values[14] != sum(buf[at : end - 2]):
                return None
            return Measurement(*values[:14])
        if buf[end - 2] << 8 | buf[end - 1] != sum(buf[at : end - 2]):
            return None
        return Reply(buf[at + 4], buf[at + 5])

    _check = staticmethod(_check_frame)
