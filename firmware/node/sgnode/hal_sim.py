"""The simulated board (MicroPython unix port): sensors in software, RS-485 on a pty.

The RS-485 UART is a file path (a pseudo-terminal), from ``SGNODE_UART`` or None; the SDS011
and SHT3x produce plausible drifting values from a seeded generator (``SGNODE_SEED``); the
watchdog and BLE radio are stand-ins that count and print. Console lines go to stdout.
"""

import os
import select
import sys
import time

from sgnode.sim_sensors import SimI2C, SimSds011
from sgnode.ticks import Clock

DEFAULT_MAC = b"\x02\x53\x47\x00\x00\x01"  # locally administered: "SG" 00 00 01


class PtyPort:
    """A serial port at a path (a pty standing in for the RS-485 adapter)."""

    def __init__(self, path):
        self._file = open(path, "r+b", buffering=0)  # noqa: SIM115  (lives as long as the node)
        fd = self._file.fileno()
        try:
            import termios

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
        self.hung_up = False

    def wait(self, timeout_ms):
        """Whether bytes are waiting, after up to ``timeout_ms``."""
        events = self._poll.poll(max(0, timeout_ms))
        if events and events[0][1] & (select.POLLHUP | select.POLLERR):
            # The far end is gone (the pty's master closed): like a cut cable, wait quietly
            # instead of spinning on an endless "readable".
            if not self.hung_up:
                self.hung_up = True
                sys.stdout.write("rs-485 port hung up\n")
            time.sleep_ms(max(0, timeout_ms))
            return False
        return bool(events)

    def read(self):
        """What is waiting, or None."""
        if not self._poll.poll(0):
            return None
        try:
            n = self._file.readinto(self._buf)
        except OSError:  # EIO once the master side closed
            return None
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

    def reset(self):
        """A process cannot reboot itself: it exits (whoever runs it may start it again)."""
        sys.exit(1)

    def reset_cause(self):
        """A process always starts from power-on."""
        return "power-on"
