"""The node's main loop: sample, keep the register table, serve Modbus, advertise.

One loop, no threads: each :meth:`Node.step` drains the SDS011 UART, samples when due, refreshes
the registers, sends a BTHome advertisement when due, then waits for Modbus requests until the
next thing is due. :meth:`Node.run` feeds the watchdog only after a step completed; a failed
sensor is data (status and error registers), not a failed step. A step that raises is logged and
not fed: if that keeps happening the watchdog resets the board.

Safe mode (no usable config): sensors are read and printed on the console with the reason, and
the node stays off the RS-485 bus and the radio (a default unit id could collide with another
device; a plain advert could leak what was meant to be encrypted).
"""

import gc
import json

from sgnode import VERSION, registers, ticks
from sgnode import config as config_mod
from sgnode.modbus_slave import Receiver, Stats, answer
from sgnode.sampler import Reading, Sampler

WATCHDOG_MS = 8000  # rp2040 allows at most 8388 ms
IDLE_MS = 50  # longest wait for Modbus bytes before looking at the clock again
WARMUP_MS = 2000  # first sample after boot: the SDS011 sends its first frame after ~1 s
SAFE_INTERVAL_S = 10


def safe_config():
    """What a node without a usable config runs: sensors only, no bus, no radio."""
    return config_mod.NodeConfig(
        "safe-mode",
        SAFE_INTERVAL_S,
        config_mod.ModbusConfig(False, 1, 9600),
        config_mod.BleConfig(False, 5, None),
        {},
    )


class Node:
    """One node on one board: ``Node(board, cfg).run()``; ``cfg`` None means safe mode."""

    def __init__(self, board, cfg, safe_reason=None):
        self.board = board
        self.clock = board.clock
        self.safe_reason = safe_reason
        if cfg is None:
            cfg = safe_config()
            self.safe_reason = safe_reason or "no config"
        self.cfg = cfg
        self.table = registers.new_table()
        self.reading = Reading()
        self.sampler = Sampler(board, cfg.pins)
        self.port = None
        self.stats = Stats()
        if cfg.modbus.enabled:
            self.port = board.modbus_port(cfg.modbus.baudrate, cfg.pins)
            if self.port is None:
                board.log("warning: modbus enabled but this board has no RS-485 port")
        self.rx = Receiver(cfg.modbus.baudrate)
        self.beacon = None
        self.ble_refused = None  # why encrypted BLE is off although configured
        if cfg.ble.enabled:
            from sgnode.beacon import Beacon, NoCounterState  # RAM for BLE only where it is on

            try:
                self.beacon = Beacon(board, cfg.ble)
            except NoCounterState as exc:
                self.ble_refused = (
                    "no encryption counter state ({}): encrypted adverts refused (a counter "
                    "from 0 would reuse nonces); deploy a new key: streetgate node deploy "
                    "--rotate-key".format(exc)
                )
        self.packet_id = 0
        self.wdt = None
        self.failed_steps = 0
        now = self.clock.ticks_ms()
        self._last_step = now
        self._uptime_ms = 0
        self._last_sample = now
        self._next_sample = ticks.add(now, min(WARMUP_MS, cfg.sample_interval_s * 1000))
        self._next_advert = self._next_sample

    def boot_banner(self):
        """The first console lines: who, what, and safe mode's reason."""
        log = self.board.log
        cfg = self.cfg
        log(
            "sgnode {}.{} node {} board {} reset {}".format(
                VERSION[0], VERSION[1], cfg.node_id, self.board.name, self.board.reset_cause()
            )
        )
        if self.safe_reason is not None:
            log("SAFE MODE: " + self.safe_reason)
            return
        beacon = self.beacon
        ble = "ble off"
        if self.ble_refused is not None:
            log("BLE OFF: " + self.ble_refused)
        if beacon is not None:
            ble = "ble on every {} s{}; mac {}".format(
                cfg.ble.interval_s,
                " encrypted" if beacon.cipher is not None else "",
                ":".join("{:02X}".format(b) for b in beacon.mac),
            )
        log(
            "modbus {} unit {} baud {}; {}".format(
                "on" if self.port is not None else "off",
                cfg.modbus.unit_id,
                cfg.modbus.baudrate,
                ble,
            )
        )

    # --- the loop ----------------------------------------------------------------------------

    def run(self, steps=None):
        """Loop forever (or ``steps`` times): step, then feed the watchdog."""
        if self.wdt is None:
            self.wdt = self.board.watchdog(WATCHDOG_MS)
        done = 0
        while steps is None or done < steps:
            done += 1
            try:
                self.step()
            except Exception as exc:  # noqa: BLE001  (the watchdog decides; the log says why)
                self.failed_steps += 1
                self.board.log("error in loop: {}: {}".format(type(exc).__name__, exc))
                self.clock.sleep_ms(100)
                continue
            self.wdt.feed()

    def step(self):
        """One iteration: sensors, registers, advertisement, then Modbus until something is due."""
        now = self.clock.ticks_ms()
        self._uptime_ms += ticks.diff(now, self._last_step)
        self._last_step = now
        self.sampler.drain(now)
        interval_ms = self.cfg.sample_interval_s * 1000
        if ticks.diff(now, self._next_sample) >= 0:
            self.sample(now)
            self._next_sample = ticks.add(self._next_sample, interval_ms)
            if ticks.diff(now, self._next_sample) >= 0:  # fell behind: no burst of catch-ups
                self._next_sample = ticks.add(now, interval_ms)
        self._refresh(now)
        wait = min(IDLE_MS, max(0, ticks.diff(self._next_sample, now)))
        if self.beacon is not None:
            if ticks.diff(now, self._next_advert) >= 0:
                self.advertise()
                self._next_advert = ticks.add(now, self.cfg.ble.interval_s * 1000)
            wait = min(wait, max(0, ticks.diff(self._next_advert, now)))
        if self.port is None:
            self.clock.sleep_ms(wait)
        else:
            self.serve(wait)

    def serve(self, wait_ms):
        """Answer the Modbus requests that arrive within ``wait_ms``."""
        port = self.port
        rx = self.rx
        if rx.pending():
            wait_ms = min(wait_ms, rx.gap)
        if port.wait(wait_ms):
            data = port.read()
            if data:
                rx.push(data, self.clock.ticks_ms())
        while True:
            frame = rx.take(self.clock.ticks_ms())
            if frame is None:
                return
            reply = answer(frame, self.cfg.modbus.unit_id, self.table, self.stats)
            if reply is not None:
                port.write(reply)

    # --- sensors and radio -------------------------------------------------------------------

    def sample(self, now):
        """Take one sample into :attr:`reading`, publish it in the registers, print it."""
        r = self.reading
        self.sampler.sample(r, now)
        if self.beacon is not None:
            r.status |= registers.STATUS_BLE_ON
        self.packet_id = (self.packet_id + 1) & 0xFF
        self._last_sample = now
        self._refresh(now)
        line = r.as_dict()
        line["mem_free"] = gc.mem_free()  # the heap, watched from the console over days
        self.board.log("sample " + json.dumps(line))
        if self.safe_reason is not None:
            self.board.log("SAFE MODE: " + self.safe_reason)
        if self.ble_refused is not None:
            self.board.log("BLE OFF: " + self.ble_refused)

    def _refresh(self, now):
        r = self.reading
        r.uptime_s = self._uptime_ms // 1000
        r.sample_age_s = ticks.diff(now, self._last_sample) // 1000
        registers.store(self.table, r, VERSION)

    def advertise(self):
        """Send the latest sample (the same packet id until the next sample)."""
        if not self.beacon.send(self.reading, self.packet_id):
            self.beacon = None


def boot(board, cfg, why):
    """The node for a loaded config (``config.load``'s pair); safe mode when the config is
    missing or broken, or the hardware does not open. Prints the banner."""
    try:
        node = Node(board, cfg, why)
    except OSError as exc:  # a port that does not open: keep the console, drop the rest
        if cfg is None:
            raise
        node = Node(board, None, "cannot open the hardware: {}".format(exc))
    node.boot_banner()
    return node


def start(board, cfg, why):
    """Boot, then run forever."""
    boot(board, cfg, why).run()
