"""Nova Fitness SDS011 measurement frames (UART 9600 8N1, one frame a second in active mode).

``AA C0 pm25_lo pm25_hi pm10_lo pm10_hi id_lo id_hi checksum AB``; values are µg/m³ × 10,
little-endian; checksum = sum of bytes 2..7 & 0xFF. Host commands are 19 bytes:
``AA B4 command data(12) id_lo id_hi checksum AB`` (checksum of bytes 2..16; id FF FF: any
sensor). Pure code, no I/O.
"""

FRAME_SIZE = 10
HEAD = 0xAA
MEASUREMENT = 0xC0
TAIL = 0xAB
COMMAND = 0xB4
REPORTING_MODE = 0x02  # data: 1 (set), 0 active / 1 query
SLEEP_WORK = 0x06  # data: 1 (set), 0 sleep / 1 work
WORKING_PERIOD = 0x08  # data: 1 (set), minutes (0: continuous)


def command(cmd, set_value, device_id=0xFFFF):
    """A 19-byte host command that sets ``cmd`` to ``set_value``."""
    body = bytearray(15)
    body[0] = cmd
    body[1] = 1  # set (0 would query the current setting)
    body[2] = set_value
    body[13] = device_id & 0xFF
    body[14] = device_id >> 8
    return bytes((HEAD, COMMAND)) + bytes(body) + bytes((sum(body) & 0xFF, TAIL))


def wake_commands():
    """What the node sends at boot: work, report actively, continuously.

    The sensor keeps these settings in flash; someone may have left it asleep or in query mode.
    """
    return (command(SLEEP_WORK, 1), command(REPORTING_MODE, 0), command(WORKING_PERIOD, 0))


def decode(frame):
    """(pm25 × 10, pm10 × 10, device id) of one 10-byte frame; ValueError names what is wrong."""
    if len(frame) != FRAME_SIZE:
        raise ValueError("SDS011 frame: expected 10 bytes, got {}".format(len(frame)))
    if frame[0] != HEAD or frame[1] != MEASUREMENT or frame[9] != TAIL:
        raise ValueError("SDS011 frame: expected AA C0 .. AB")
    if sum(frame[2:8]) & 0xFF != frame[8]:
        raise ValueError("SDS011 frame: checksum mismatch")
    return (
        frame[2] | (frame[3] << 8),
        frame[4] | (frame[5] << 8),
        frame[6] | (frame[7] << 8),
    )


def encode(pm25_x10, pm10_x10, device_id):
    """The frame a sensor sends for these values (used by the simulated sensor and tests)."""
    body = bytes(
        (
            pm25_x10 & 0xFF,
            pm25_x10 >> 8,
            pm10_x10 & 0xFF,
            pm10_x10 >> 8,
            device_id & 0xFF,
            device_id >> 8,
        )
    )
    return bytes((HEAD, MEASUREMENT)) + body + bytes((sum(body) & 0xFF, TAIL))


class Reader:
    """Finds measurement frames in the UART byte stream; keeps the latest good one."""

    def __init__(self):
        self._buf = bytearray()
        self.latest = None  # (pm25 × 10, pm10 × 10, id)
        self.frames = 0
        self.bad = 0

    def feed(self, data):
        """Bytes from the UART; returns how many good frames they completed."""
        buf = self._buf
        buf.extend(data)
        found = 0
        while len(buf) >= FRAME_SIZE:
            if buf[0] != HEAD or buf[1] != MEASUREMENT:
                start = buf.find(bytes((HEAD,)), 1)
                buf = buf[start:] if start > 0 else bytearray()
                continue
            try:
                self.latest = decode(buf[:FRAME_SIZE])
            except ValueError:
                self.bad += 1
                buf = buf[1:]
                continue
            buf = buf[FRAME_SIZE:]
            self.frames += 1
            found += 1
        if len(buf) > 2 * FRAME_SIZE:  # never grows: keep only what could start a frame
            buf = buf[-FRAME_SIZE:]
        self._buf = buf
        return found
