"""Pure Modbus RTU framing: CRC-16/MODBUS, request and response ADUs, frame lengths (no I/O).

An RTU frame (ADU) is ``unit, function, data..., crc_lo, crc_hi``. The simulator encodes the
answers and decodes the requests with these functions; the RTU driver uses them to tell a bad
answer (wrong CRC, garbage, another unit's answer) from silence; the tests check both against
published frames. Every decoder raises :class:`gateway.errors.FrameError` (a bad CRC:
:class:`gateway.errors.ChecksumError`) and nothing else, whatever the bytes.

Timing (Modbus over Serial Line V1.02, §2.5.1.1): frames are separated by at least 3.5
character times of silence, where a character is 11 bits (start, 8 data, parity or a second
stop bit, stop); above 19,200 baud the gap is fixed at 1.75 ms.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.core.errors import ChecksumError, FrameError

__all__ = [
    "EXCEPTION_FLAG",
    "READ_FUNCTIONS",
    "ExceptionReply",
    "ReadReply",
    "ReadRequest",
    "RtuFrame",
    "check_reply",
    "crc16",
    "decode_frame",
    "decode_read_request",
    "decode_reply",
    "encode_exception_reply",
    "encode_read_reply",
    "encode_read_request",
    "exchange_wire_time",
    "frame_gap",
    "read_reply_size",
    "reply_length",
    "request_length",
    "with_crc",
]

READ_HOLDING = 3
READ_INPUT = 4
READ_FUNCTIONS = frozenset({READ_HOLDING, READ_INPUT})
EXCEPTION_FLAG = 0x80
MAX_READ_COUNT = 125  # registers per read request (Modbus Application Protocol §6.3/6.4)
MAX_FRAME = 256  # bytes, the longest RTU ADU
READ_REQUEST_SIZE = 8

# Functions whose requests and normal replies have a fixed size, and where the byte count of the
# variable-size ones sits. Function codes beyond these are not used by streetgate.
_FIXED_REQUEST = {1: 8, 2: 8, 3: 8, 4: 8, 5: 8, 6: 8}
_COUNTED_REQUEST = {15: 6, 16: 6}  # byte count at index 6; frame = 9 + count
_FIXED_REPLY = {5: 8, 6: 8, 15: 8, 16: 8}
_COUNTED_REPLY = {1: 2, 2: 2, 3: 2, 4: 2}  # byte count at index 2; frame = 5 + count


def _hex(data: bytes, limit: int = 16) -> str:
    """The first bytes of a frame for an error message."""
    more = f" ... ({len(data)} bytes)" if len(data) > limit else ""
    return data[:limit].hex(" ") + more


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc16(data: bytes) -> int:
    """CRC-16/MODBUS of ``data`` (init 0xFFFF, reflected polynomial 0xA001), as an integer.

    On the wire it follows the data low byte first: ``crc16(b) .to_bytes(2, "little")``.
    """
    crc = 0xFFFF
    table = _CRC_TABLE
    for byte in data:
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc


def with_crc(body: bytes) -> bytes:
    """``body`` (unit, function, data) followed by its CRC, low byte first."""
    return body + crc16(body).to_bytes(2, "little")


@dataclass(frozen=True, slots=True)
class RtuFrame:
    """A frame whose CRC checked out: unit id, function code and the data between them and CRC."""

    unit: int
    function: int
    data: bytes


def decode_frame(frame: bytes) -> RtuFrame:
    """Split a whole frame into unit, function and data after checking its length and CRC."""
    if len(frame) < 4:
        raise FrameError(f"an RTU frame has at least 4 bytes, got {len(frame)}: {_hex(frame)}")
    if len(frame) > MAX_FRAME:
        raise FrameError(f"an RTU frame has at most {MAX_FRAME} bytes, got {len(frame)}")
    expected = crc16(frame[:-2])
    got = int.from_bytes(frame[-2:], "little")
    if got != expected:
        raise ChecksumError(
            f"CRC {got:04x} does not match the frame's {expected:04x}: {_hex(frame)}"
        )
    return RtuFrame(frame[0], frame[1], bytes(frame[2:-2]))


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """Read ``count`` holding (function 3) or input (function 4) registers from ``address``."""

    unit: int
    function: int
    address: int
    count: int

    def __post_init__(self) -> None:
        if not 0 <= self.unit <= 255:
            raise ValueError(f"unit id must be 0..255, got {self.unit}")
        if self.function not in READ_FUNCTIONS:
            raise ValueError(f"a register read is function 3 or 4, got {self.function}")
        if not 0 <= self.address <= 0xFFFF:
            raise ValueError(f"register address must be 0..65535, got {self.address}")
        if not 1 <= self.count <= MAX_READ_COUNT or self.address + self.count > 0x10000:
            raise ValueError(
                f"register count must be 1..{MAX_READ_COUNT} within the address space, "
                f"got {self.count} from {self.address}"
            )


def encode_read_request(request: ReadRequest) -> bytes:
    """The 8-byte request frame."""
    body = bytes((request.unit, request.function)) + request.address.to_bytes(2, "big")
    return with_crc(body + request.count.to_bytes(2, "big"))


def decode_read_request(frame: bytes) -> ReadRequest:
    """A register read request from its 8 bytes (function 3 or 4, count 1..125)."""
    decoded = decode_frame(frame)
    if decoded.function not in READ_FUNCTIONS:
        raise FrameError(f"function {decoded.function} is not a register read (3 or 4)")
    if len(decoded.data) != 4:
        raise FrameError(f"a read request has 4 data bytes, got {len(decoded.data)}")
    address = int.from_bytes(decoded.data[:2], "big")
    count = int.from_bytes(decoded.data[2:], "big")
    try:
        return ReadRequest(decoded.unit, decoded.function, address, count)
    except ValueError as exc:
        raise FrameError(str(exc)) from exc


@dataclass(frozen=True, slots=True)
class ReadReply:
    """A normal answer to a register read."""

    unit: int
    function: int
    registers: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ExceptionReply:
    """An exception answer: the function code with its top bit set, and the exception code."""

    unit: int
    function: int  # the request's function code (without the 0x80 flag)
    code: int


def encode_read_reply(unit: int, function: int, registers: tuple[int, ...] | list[int]) -> bytes:
    """The answer frame carrying ``registers`` (each 0..65535, at most 125)."""
    if not 1 <= len(registers) <= MAX_READ_COUNT:
        raise ValueError(
            f"a read reply carries 1..{MAX_READ_COUNT} registers, got {len(registers)}"
        )
    try:
        payload = b"".join(r.to_bytes(2, "big") for r in registers)
    except OverflowError as exc:
        raise ValueError(f"register values must be 0..65535: {list(registers)}") from exc
    return with_crc(bytes((unit, function, len(payload))) + payload)


def encode_exception_reply(unit: int, function: int, code: int) -> bytes:
    """The 5-byte exception answer to ``function``."""
    return with_crc(bytes((unit, function | EXCEPTION_FLAG, code)))


def decode_reply(frame: bytes) -> ReadReply | ExceptionReply:
    """A register read's answer, normal or exception, from one whole frame."""
    decoded = decode_frame(frame)
    function, data = decoded.function, decoded.data
    if function & EXCEPTION_FLAG:
        if len(data) != 1:
            raise FrameError(f"an exception reply has 1 data byte, got {len(data)}")
        return ExceptionReply(decoded.unit, function & ~EXCEPTION_FLAG, data[0])
    if function not in READ_FUNCTIONS:
        raise FrameError(f"function {function} is not a register read (3 or 4)")
    if not data or data[0] != len(data) - 1:
        raise FrameError(
            f"byte count {data[0] if data else None} does not match the {max(len(data) - 1, 0)} "
            "data bytes that follow"
        )
    if data[0] % 2 or not 2 <= data[0] <= 2 * MAX_READ_COUNT:
        raise FrameError(f"byte count {data[0]} is not 2..250 bytes of whole registers")
    body = data[1:]
    registers = tuple(int.from_bytes(body[i : i + 2], "big") for i in range(0, len(body), 2))
    return ReadReply(decoded.unit, function, registers)


def _length(
    buffer: bytes, fixed: dict[int, int], counted: dict[int, int], base: int, *, reply: bool
) -> int | None:
    if len(buffer) < 2:
        return None
    function = buffer[1]
    if reply and function & EXCEPTION_FLAG:
        return 5
    if function in fixed:
        return fixed[function]
    if function in counted:
        at = counted[function]
        return base + buffer[at] if len(buffer) > at else None
    raise FrameError(f"function code {function} (0x{function:02x}) is not one streetgate knows")


def request_length(buffer: bytes) -> int | None:
    """Length of the request frame at the start of ``buffer``; None until enough bytes are in."""
    return _length(buffer, _FIXED_REQUEST, _COUNTED_REQUEST, 9, reply=False)


def reply_length(buffer: bytes) -> int | None:
    """Length of the reply frame at the start of ``buffer``; None until enough bytes are in."""
    return _length(buffer, _FIXED_REPLY, _COUNTED_REPLY, 5, reply=True)


def check_reply(buffer: bytes, request: ReadRequest) -> ReadReply | ExceptionReply | None:
    """Judge the bytes received so far after ``request``: its answer, or None if still incomplete.

    Raises :class:`FrameError` as soon as the bytes cannot become the answer: another unit's
    id, another function code, a byte count that does not match the request, a bad CRC (then
    :class:`ChecksumError`), or bytes that are no frame at all. Bytes after a whole answer are
    ignored, as a master ignores line noise after the frame it waited for.
    """
    if not buffer:
        return None
    if buffer[0] != request.unit:
        raise FrameError(
            f"answer starts with unit {buffer[0]}, the request was for unit {request.unit}: "
            f"{_hex(buffer)}"
        )
    if len(buffer) < 2:
        return None
    function = buffer[1]
    if function not in (request.function, request.function | EXCEPTION_FLAG):
        raise FrameError(
            f"answer has function code 0x{function:02x} to a request with function "
            f"{request.function}: {_hex(buffer)}"
        )
    if function == request.function and len(buffer) > 2 and buffer[2] != 2 * request.count:
        raise FrameError(
            f"answer announces {buffer[2]} data bytes for {request.count} registers "
            f"({2 * request.count} bytes)"
        )
    length = reply_length(buffer)
    if length is None or len(buffer) < length:
        return None
    return decode_reply(buffer[:length])


def read_reply_size(count: int) -> int:
    """Bytes of the normal answer to a read of ``count`` registers."""
    return 5 + 2 * count


def frame_gap(baudrate: int) -> float:
    """t3.5, the least silence between frames (s): 3.5 × 11 bits, or 1.75 ms above 19,200 baud."""
    if baudrate <= 0:
        raise ValueError(f"baud rate must be above 0, got {baudrate}")
    return 1.75e-3 if baudrate > 19200 else 3.5 * 11 / baudrate


def exchange_wire_time(
    request_bytes: int, reply_bytes: int, baudrate: int, bits_per_char: int = 10
) -> float:
    """Least bus time of one request and its answer: both frames and a t3.5 gap after each."""
    return (request_bytes + reply_bytes) * bits_per_char / baudrate + 2 * frame_gap(baudrate)
