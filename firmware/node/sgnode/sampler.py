"""Sampling: the SDS011 stream and the SHT3x measurement into one :class:`Reading`."""

from sgnode import registers, sds011, sht3x, ticks

PM_FRESH_MS = 3000  # an SDS011 frame older than this is no reading


class Reading:
    """The latest sample and the node's state, as the registers publish it."""

    def __init__(self):
        self.pm25_x10 = None
        self.pm10_x10 = None
        self.temp_x100 = None
        self.rh_x100 = None
        self.status = 0
        self.error = registers.ERROR_NONE
        self.uptime_s = 0
        self.sample_age_s = 0
        self.samples = 0

    def as_dict(self):
        """The sample's values for the console line."""
        return {
            "pm25_x10": self.pm25_x10,
            "pm10_x10": self.pm10_x10,
            "temp_x100": self.temp_x100,
            "rh_x100": self.rh_x100,
            "status": self.status,
            "error": self.error,
            "samples": self.samples,
        }


class Sampler:
    """Reads the sensors of one board; a failed sensor is a status bit and an error code."""

    def __init__(self, board, pins):
        self.clock = board.clock
        self.sds_port = board.sds011_port(pins)
        self.i2c = board.i2c(pins)
        self.sds = sds011.Reader()
        self._sds_last = None  # ticks of the last good SDS011 frame
        self._sds_bad_seen = 0
        try:
            for frame in sds011.wake_commands():
                self.sds_port.write(frame)
        except OSError:
            pass  # an unplugged sensor: its samples will say so (ERROR_SDS011_NO_FRAME)

    def drain(self, now):
        """Read what the SDS011 sent (it sends every second; its UART buffer must not fill)."""
        data = self.sds_port.read()
        if data and self.sds.feed(data):
            self._sds_last = now

    def sample(self, r, now):
        """Fill ``r`` (a :class:`Reading`) from the sensors."""
        r.status = 0
        r.error = registers.ERROR_NONE
        if self._sds_last is not None and ticks.diff(now, self._sds_last) <= PM_FRESH_MS:
            r.pm25_x10, r.pm10_x10, _ = self.sds.latest
            r.status |= registers.STATUS_PM_VALID
        else:
            r.pm25_x10 = r.pm10_x10 = None
            bad = self.sds.bad != self._sds_bad_seen
            r.error = registers.ERROR_SDS011_BAD_FRAME if bad else registers.ERROR_SDS011_NO_FRAME
        self._sds_bad_seen = self.sds.bad
        try:
            self.i2c.writeto(sht3x.ADDRESS, sht3x.MEASURE_HIGH)
            self.clock.sleep_ms(sht3x.MEASURE_MS)
            r.temp_x100, r.rh_x100 = sht3x.decode(self.i2c.readfrom(sht3x.ADDRESS, 6))
            r.status |= registers.STATUS_TH_VALID
        except OSError:
            r.temp_x100 = r.rh_x100 = None
            r.error = r.error or registers.ERROR_SHT3X_NO_ANSWER
        except ValueError:
            r.temp_x100 = r.rh_x100 = None
            r.error = r.error or registers.ERROR_SHT3X_CRC
        r.samples += 1
