"""Modbus RTU slave: CRC16, request framing on a byte stream, function 0x03/0x04 answers.

Pure logic, no I/O: :class:`Receiver` cuts a byte stream into frames (by the request length the
function code implies, or by t3.5 of silence), :func:`answer` turns one frame into the reply bytes
or None (silence: a bad CRC, another unit's frame, a broadcast). Holding (0x03) and input (0x04)
registers are the same table, for masters that only speak one of them.
"""

import struct
from array import array

from sgnode import ticks

ILLEGAL_FUNCTION = 1
ILLEGAL_DATA_ADDRESS = 2
ILLEGAL_DATA_VALUE = 3
MAX_READ = 125  # registers per read (Modbus application protocol)
MAX_FRAME = 256  # the longest RTU frame; more bytes without a gap is noise

_TABLE = array("H", bytes(512))  # 512 bytes of RAM, not a tuple of 256 objects
for _byte in range(256):
    _crc = _byte
    for _ in range(8):
        _crc = (_crc >> 1) ^ 0xA001 if _crc & 1 else _crc >> 1
    _TABLE[_byte] = _crc


def crc16(data):
    """CRC-16/MODBUS of ``data`` (sent low byte first)."""
    crc = 0xFFFF
    table = _TABLE
    for byte in data:
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc


def with_crc(body):
    """``body`` followed by its CRC, low byte first."""
    crc = crc16(body)
    return bytes(body) + bytes((crc & 0xFF, crc >> 8))


def gap_ms(baudrate):
    """t3.5 (3.5 characters of 11 bits; 1.75 ms above 19200 baud) in whole ticks_ms.

    Rounded up, plus one: a ticks_ms difference of n means at least n - 1 ms passed.
    """
    if baudrate > 19200:
        return 2
    return max(2, (3500 * 11 + baudrate - 1) // baudrate + 1)


def request_length(buf):
    """Length of the request starting ``buf`` from its function code; 0 while unknown."""
    if len(buf) < 2:
        return 0
    function = buf[1]
    if function <= 6:
        return 8
    if function in (15, 16):
        return 9 + buf[6] if len(buf) >= 7 else 0
    return 0  # unknown function: the frame ends at the silence after it


class Receiver:
    """Collects bytes from the line and hands out whole frames."""

    def __init__(self, baudrate):
        self.gap = gap_ms(baudrate)
        self._buf = bytearray()
        self._ready = None  # a frame ended by silence, not taken yet
        self._last = 0
        self.overruns = 0  # more than MAX_FRAME bytes without a gap: dropped

    def push(self, data, now):
        """Bytes read from the UART at ``now`` (ticks_ms)."""
        if self._buf and ticks.diff(now, self._last) >= self.gap:
            # Silence since the last byte ended that frame: these bytes start the next one.
            self._ready = bytes(self._buf)
            self._buf = bytearray()
        if len(self._buf) + len(data) > MAX_FRAME:
            self._buf = bytearray()
            self.overruns += 1
            return
        self._buf.extend(data)
        self._last = now

    def pending(self):
        """Whether a partial frame is waiting for more bytes or for its gap."""
        return len(self._buf) > 0 or self._ready is not None

    def take(self, now):
        """The next whole frame, or None."""
        if self._ready is not None:
            frame, self._ready = self._ready, None
            return frame
        buf = self._buf
        if not buf:
            return None
        size = request_length(buf)
        if size and len(buf) >= size:
            frame = bytes(buf[:size])
            self._buf = buf[size:]
            return frame
        if ticks.diff(now, self._last) >= self.gap:
            frame = bytes(buf)
            self._buf = bytearray()
            return frame
        return None


def exception_reply(unit_id, function, code):
    """An exception response: function code with the high bit set, then the code."""
    return with_crc(bytes((unit_id, function | 0x80, code)))


class Stats:
    """What the slave saw, for the console and the tests."""

    def __init__(self):
        self.answered = 0
        self.exceptions = 0
        self.bad_crc = 0
        self.not_ours = 0


def answer(frame, unit_id, registers, stats):  # noqa: PLR0911  (one return per outcome)
    """The reply to ``frame`` (bytes), or None when the slave must stay silent.

    ``registers`` is a sequence of 16-bit values (an ``array('H')``): register ``i`` is
    ``registers[i]`` in both the input (0x04) and the holding (0x03) table.
    """
    if len(frame) < 4:
        stats.bad_crc += 1  # a fragment: noise on the line
        return None
    if crc16(memoryview(frame)[:-2]) != frame[-2] | (frame[-1] << 8):
        stats.bad_crc += 1
        return None
    unit = frame[0]
    if unit != unit_id:  # another unit's request or reply, or a broadcast (0): never answered
        stats.not_ours += 1
        return None
    function = frame[1]
    if function not in (3, 4):
        stats.exceptions += 1
        return exception_reply(unit, function, ILLEGAL_FUNCTION)
    if len(frame) != 8:
        stats.exceptions += 1
        return exception_reply(unit, function, ILLEGAL_DATA_VALUE)
    address, count = struct.unpack(">HH", frame[2:6])
    if not 1 <= count <= MAX_READ:
        stats.exceptions += 1
        return exception_reply(unit, function, ILLEGAL_DATA_VALUE)
    if address + count > len(registers):
        stats.exceptions += 1
        return exception_reply(unit, function, ILLEGAL_DATA_ADDRESS)
    body = bytearray(3 + 2 * count)
    body[0] = unit
    body[1] = function
    body[2] = 2 * count
    for i in range(count):
        struct.pack_into(">H", body, 3 + 2 * i, registers[address + i])
    stats.answered += 1
    return with_crc(body)
