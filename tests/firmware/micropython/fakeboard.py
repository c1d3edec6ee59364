"""A board for the MicroPython tests: simulated sensors (hal_sim) on a fake clock, a scripted
Modbus master, a watchdog that counts, console lines kept in a bounded list."""

import os

from sgnode import hal_sim, ticks

STATE_DIR = os.getenv("SGNODE_STATE") or "/tmp"


class FakeClock:
    """Time that passes only when the node sleeps or waits; starts just before ticks wrap."""

    def __init__(self, start=-5000):
        self.now = ticks.add(0, start)
        self.elapsed = 0

    def ticks_ms(self):
        return self.now

    def sleep_ms(self, ms):
        self.advance(ms)

    def advance(self, ms):
        if ms > 0:
            self.now = ticks.add(self.now, ms)
            self.elapsed += ms


class ScriptedMaster:
    """The RS-485 line: requests the test queues arrive at their time; replies are kept."""

    def __init__(self, clock):
        self.clock = clock
        self.queue = []  # (elapsed ms, bytes), in time order
        self.replies = []
        self.keep = 8  # replies kept (bounded: the memory test runs for an hour)
        self.reply_count = 0

    def send_at(self, at_ms, data):
        self.queue.append((at_ms, data))

    def wait(self, timeout_ms):
        if self.queue:
            due = self.queue[0][0] - self.clock.elapsed
            if due <= timeout_ms:
                self.clock.advance(due)
                return True
        self.clock.advance(timeout_ms)
        return False

    def read(self):
        if self.queue and self.queue[0][0] <= self.clock.elapsed:
            return self.queue.pop(0)[1]
        return None

    def write(self, data):
        self.reply_count += 1
        self.replies.append(bytes(data))
        if len(self.replies) > self.keep:
            self.replies.pop(0)


class CountingWatchdog:
    def __init__(self, timeout_ms):
        self.timeout_ms = timeout_ms
        self.feeds = 0

    def feed(self):
        self.feeds += 1


class FakeBoard(hal_sim.Board):
    """hal_sim's sensors, with a fake clock, a scripted master and a kept console."""

    def __init__(self, state_dir=STATE_DIR, keep_lines=50):
        self.lines = []
        self._keep = keep_lines
        clock = FakeClock()
        self.master = ScriptedMaster(clock)
        super().__init__(clock=clock, uart=self.master, seed=7, out=self._line)
        self.state_dir = state_dir

    def _line(self, text):
        self.lines.append(text)
        if len(self.lines) > self._keep:
            self.lines.pop(0)

    def watchdog(self, timeout_ms):
        self.wdt = CountingWatchdog(timeout_ms)
        return self.wdt
