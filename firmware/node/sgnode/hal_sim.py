"""The simulated board (MicroPython unix port): sensors in software, RS-485 on a pty.

The RS-485 UART is a file path (a pseudo-terminal), from ``SGNODE_UART`` or None; the SDS011
and SHT3x produce plausible drifting values from a seeded generator (``SGNODE_SEED``); the
watchdog and BLE radio are stand-ins that count and print. Console lines go to stdout.
"""

import os
import select
import sys
import time

from sgnode import sds011, sht3x, ticks

DEFAULT_MAC = b"\x02\x53\x47\x00\x00\x01"  # locally administered: "SG" 00 00 01


class Clock:
    """Real time."""

    def ticks_ms(self):
        """Milliseconds, wrapping."""
        return time.ticks_ms()

    def sleep_ms(self, ms):
        """Block for ``ms``."""
        if ms > 0:
            time.sleep_ms(ms)


class Drift:
    """A bounded random walk (a linear congruential generator: same seed, same values)."""

    def __init__(self, seed, value, lo, hi, step):
        self._x = seed & 0x7FFFFFFF
        self.value = value
        self._lo = lo
        self._hi = hi
        self._step = step

    def next(self):
        """The next value."""
        self._x = (self._x * 1103515245 + 12345) & 0x7FFFFFFF
        delta = (self._x >> 8) % (2 * self._step + 1) - self._step
        self.value = max(self._lo, min(self._hi, self.value + delta))
        return self.value


class SimSds011:
    """An SDS011 in active mode: a frame every second of ``clock`` time (latest one only)."""

    def __init__(self, clock, seed):
        self._clock = clock
        self._last = clock.ticks_ms()
        self._pm25 = Drift(seed, 85, 5, 900, 6)  # µg/m³ × 10
        self._pm10 = Drift(seed + 1, 140, 10, 1500, 9)
        self.broken = False  # True: silence, as with a loose connector

    def wait(self, timeout_ms):
        """Waiting is the node's business on this UART; never blocks."""
        return False

    def read(self):
        """A frame if at least a second passed since the last one."""
        now = self._clock.ticks_ms()
        if self.broken or ticks.diff(now, self._last) < 1000:
            return None
        self._last = now
        pm25 = self._pm25.next()
        return sds011.encode(pm25, max(pm25, self._pm10.next()), 0xF9BC)

    def write(self, data):
        """Commands are accepted and ignored (the sensor stays in active mode)."""


class SimI2C:
    """An I2C bus with an SHT3x at 0x44."""

    def __init__(self, seed):
        self._temp = Drift(seed + 2, 1850, -2000, 4500, 7)  # °C × 100
        self._rh = Drift(seed + 3, 5500, 1500, 9500, 25)  # % × 100
        self._measured = False
        self.broken = False

    def writeto(self, addr, buf):
        """Start a measurement (the only command the node sends)."""
        if self.broken or addr != sht3x.ADDRESS:
            raise OSError(19)  # ENODEV: no ACK
        self._measured = bytes(buf) == sht3x.MEASURE_HIGH
        return len(buf)

    def readfrom(self, addr, n):
        """The measurement's 6 bytes."""
        if self.broken or addr != sht3x.ADDRESS or not self._measured:
            raise OSError(19)
        self._measured = False
        return sht3x.encode(self._temp.next(), self._rh.next())[:n]


class PtyPort:
    """A serial port at a path (a pty standing in for the RS-485 adapter)."""

    def __init__(self, path):
        self._file = open(path, "r+b", buffering=0)  # noqa: SIM115  (lives as long as the node)
        fd = self._file.fileno()
        try:
            import termios  # noqa: PLC0415

            termios.setraw(fd)
            attrs = termios.tcgetattr(fd)
            attrs[6][6] = 0  # VMIN: a read returns what is there ...
            attrs[6][5] = 0  # VTIME: ... at once
            termios.tcsetattr(fd, termios.TCSANOW, attrs)
        except (ImportError, OSError):
            pass  # not a tty (a test's pipe): reads are gated by poll anyway
        self._poll = select.poll()
        self._poll.register(self._file, select.POLLIN)
        self._buf = bytearray(256)

    def wait(self, timeout_ms):
        """Whether bytes are waiting, after up to ``timeout_ms``."""
        return bool(self._poll.poll(max(0, timeout_ms)))

    def read(self):
        """What is waiting, or None."""
        if not self._poll.poll(0):
            return None
        n = self._file.readinto(self._buf)
        return bytes(self._buf[:n]) if n else None

    def write(self, data):
        """All of ``data``."""
        view = memoryview(data)
        while view:
            n = self._file.write(view)
            view = view[n or 0 :]


class Watchdog:
    """Counts feeds (a unix process has no hardware watchdog)."""

    def __init__(self, timeout_ms):
        self.timeout_ms = timeout_ms
        self.feeds = 0

    def feed(self):
        """Note a good loop iteration."""
        self.feeds += 1


class Advertiser:
    """Prints each advertisement's service data as hex (the virtual board shows it)."""

    def __init__(self, log):
        self._log = log
        self.sent = 0

    def advertise(self, service_data, interval_ms):
        """One new advertisement."""
        self.sent += 1
        self._log("bthome " + service_data.hex())


def _env(name):
    try:
        return os.getenv(name)
    except AttributeError:
        return None


class Board:
    """The simulated board; ``clock`` and ``uart`` are replaceable for tests."""

    name = "sim"

    def __init__(self, clock=None, uart=None, seed=None, out=None):
        self.clock = clock or Clock()
        self._uart = uart if uart is not None else _env("SGNODE_UART")
        self._seed = seed if seed is not None else int(_env("SGNODE_SEED") or "1")
        self._out = out
        self.config_path = _env("SGNODE_CONFIG") or "node.json"
        self.state_dir = _env("SGNODE_STATE") or "."
        self.sds = SimSds011(self.clock, self._seed)
        self.bus = SimI2C(self._seed)
        self.wdt = None
        self.ble = Advertiser(self.log)

    def log(self, text):
        """One console line."""
        if self._out is not None:
            self._out(text)
            return
        sys.stdout.write(text + "\n")

    def modbus_port(self, baudrate, pins):
        """The pty at SGNODE_UART (or the port a test passed in); None without one."""
        if self._uart is None:
            return None
        if isinstance(self._uart, str):
            return PtyPort(self._uart)
        return self._uart

    def sds011_port(self, pins):
        """The simulated SDS011."""
        return self.sds

    def i2c(self, pins):
        """The simulated I2C bus."""
        return self.bus

    def watchdog(self, timeout_ms):
        """A counting stand-in."""
        self.wdt = Watchdog(timeout_ms)
        return self.wdt

    def advertiser(self):
        """The printing stand-in radio."""
        return self.ble

    def mac(self):
        """A fixed locally administered address."""
        return DEFAULT_MAC

    def reset_cause(self):
        """A process always starts from power-on."""
        return "power-on"
