"""Simulated sensors for the unix port: an SDS011 in active mode and an SHT3x on I2C, with
plausible values drifting from a seeded generator (same seed, same values)."""

from sgnode import sds011, sht3x, ticks


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
        self.commands = []  # the last commands the node sent

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
        """Commands are counted (the simulated sensor is always awake and active)."""
        self.commands.append(bytes(data))
        if len(self.commands) > 8:
            self.commands.pop(0)


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
