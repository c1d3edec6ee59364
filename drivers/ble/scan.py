"""Passive BLE sensors (BTHome v2, Ruuvi 3, 5, 6, E1): one bleak scanner hears all of them.

:class:`BleScanSource` is a :class:`drivers.base.Source` run as the task ``scan:ble``; it owns
two more tasks, ``scan:ble:deliver`` and ``scan:ble:watchdog``:

- ``scan:ble`` starts the scanner - passive where the backend supports it (BlueZ with
  or-patterns for 0xFCD2 service data and Ruuvi's company id; it falls back to active scanning
  when passive is refused) - and restarts it when nothing at all has been heard for the shortest
  ``stale_after``: on BlueZ a vanished adapter does not end a scan, it only silences it, and the
  restart is what finds out. A failed start is :class:`gateway.errors.AdapterUnavailable`:
  every device goes DOWN and the start is retried after :func:`gateway.backoff.next_delay`.
- The advertisement callback runs on the event loop for every advert and never blocks: it picks
  the device by MAC (case-insensitive; a BTHome advert may also carry its MAC), decodes it,
  drops repeats, stamps the samples (:func:`gateway.core.polling.stamp`) and appends them to a
  bounded queue. A bad advert is a :class:`gateway.errors.BadFrame` on its device.
- ``scan:ble:deliver`` hands the queued readings to the sink (the outbox) in batches.
  **When the queue is full** (the sink is held back longer than ``queue_size`` adverts take to
  arrive) the oldest queued advert's readings are dropped and counted in ``dropped_readings``:
  the callback cannot wait, and the newest values are worth most.
- ``scan:ble:watchdog`` marks a device DOWN (a :class:`gateway.errors.DeviceTimeout`) once
  ``stale_after`` passes without a good advert; the next good advert makes it OK again.

**Repeats.** Sensors send each measurement several times, and BlueZ reports the last advert
data again with every RSSI update. A device's adverts are told apart by a key: the BTHome
packet id (object 0x00) or the Ruuvi measurement sequence number, else the payload bytes
themselves. An advert is a repeat, and is not stored, when its key equals the key of the
device's last *stored* advert and that advert was stored less than ``repeat_window`` ago
(:func:`is_repeat`). Any other key is new, so a sensor that restarts or wraps its counter is
heard at once; and a key that stays the same for longer than the window (a sensor whose
counter is stuck) is stored again once per window instead of being ignored forever. A device
that goes stale forgets its last key.

**Ruuvi Air sends every measurement twice**, as data format 6 (legacy advertising, for
Bluetooth 4 receivers) and as E1 (extended advertising, with more in it); Ruuvi: a receiver
that hears E1 should discard 6. So a format 6 advert from a device whose E1 was heard less than
``repeat_window`` ago is dropped as superseded (a sign of life, counted in ``superseded``),
and both formats use the low byte of the measurement sequence as their repeat key (format 6
carries only that byte): an E1 right after the 6 of the same measurement (heard before any
E1) is a repeat. Each measurement is stored once, from E1 whenever E1 is heard; a receiver
without extended advertising keeps storing format 6.

**Replays.** An encrypted BTHome advert whose counter is at or below the last one accepted
from that device (MAC and key) is dropped before it counts as heard, and counted in the
device's ``dropped["replay"]``: its MIC is genuine, but it was recorded earlier. The last
counters persist in a small file beside the outbox (:mod:`drivers.ble_counters`):
``scan:ble:deliver`` writes it, in a thread, *before* it hands the readings of newly accepted
adverts to the sink, so a restart never accepts a stored advert again. Writes are debounced:
at most one per ``counter_interval`` while fewer than ``COUNTER_EARLY_WRITE`` adverts wait (the
readings wait with them), at once beyond that, and once more at a clean stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from bleak import BleakScanner
from bleak.args.bluez import BlueZScannerArgs, OrPattern
from bleak.assigned_numbers import AdvertisementDataType
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner

from drivers.base import Sink
from drivers.ble.bthome import INFO_MAC_INCLUDED, SERVICE_UUID, SERVICE_UUID16, BthomeDecoder
from drivers.ble.common import BleakErrors
from drivers.ble.config import BthomeDevice, RuuviDevice
from drivers.ble.counters import CounterFile, counter_id
from drivers.ble.ruuvi import MANUFACTURER_ID, decode_ruuvi
from drivers.ble.ruuvi_air import LENGTH_E1
from gateway.core.backoff import next_delay
from gateway.core.clock import SystemClock
from gateway.core.errors import AdapterUnavailable, BadFrame, DeviceError, DeviceTimeout, FrameError
from gateway.core.health import DeviceStatus, Health, health_after
from gateway.core.model import Quality, Reading, Sample
from gateway.core.polling import stamp

__all__ = ["COUNTER_EARLY_WRITE", "REPLAY", "BleScanSource", "BleScanStats", "Seen", "is_repeat"]

log = logging.getLogger(__name__)

ScanMode = Literal["active", "passive"]
#: How a device's payload decodes: its samples, its repeat key, its encryption counter.
_Decode = Callable[[bytes], tuple[list[Sample], int | bytes, int | None]]
#: The reason a replayed advert is counted under in ``DeviceStatus.dropped``.
REPLAY = "replay"
#: Queued adverts beyond which new counters are written without waiting for the interval.
COUNTER_EARLY_WRITE = 256


@dataclass(frozen=True, slots=True)
class Seen:
    """The last stored advert of a device: its repeat key and when it was stored."""

    key: int | bytes
    at: float  # monotonic seconds


def is_repeat(seen: Seen | None, key: int | bytes, now: float, window: float) -> bool:
    """Whether an advert with ``key`` heard at ``now`` repeats the last stored one (``seen``)."""
    return seen is not None and seen.key == key and now - seen.at < window


@dataclass(frozen=True, slots=True)
class BleScanStats:
    """The scanner's counters, for status reporting and tests."""

    scanning: ScanMode | None  # None while the scanner is not running
    scanner_starts: int
    adapter_failures: int
    queue_depth: int  # adverts waiting for the sink
    queue_size: int
    dropped_readings: int  # readings dropped because the queue was full
    repeats: int  # adverts recognised as repeats and not stored
    foreign_adverts: int  # adverts from devices not in the config
    replays: int = 0  # encrypted adverts dropped: counter at or below the last accepted
    superseded: int = 0  # Ruuvi Air format 6 adverts dropped: the device's E1 is heard
    counter_writes: int = 0  # times the counter file was written


class _Device:
    """Runtime state of one configured passive device."""

    __slots__ = (
        "bthome",
        "counter",
        "counter_id",
        "decode",
        "e1_at",
        "last_heard",
        "name",
        "payload",
        "repeats",
        "seen",
        "stale_after",
        "status",
        "superseded",
    )

    def __init__(self, name: str, stale_after: float, bthome: bool, decode: _Decode) -> None:
        self.name = name
        self.stale_after = stale_after
        self.bthome = bthome  # payload in BTHome service data; else in Ruuvi manufacturer data
        self.decode = decode
        self.status = DeviceStatus(name)
        self.last_heard = 0.0  # monotonic; set when scanning starts
        self.seen: Seen | None = None
        self.payload = b""  # the payload of the last stored advert
        self.repeats = 0
        self.counter_id: str | None = None  # set for encrypted BTHome devices
        self.counter = -1  # the last accepted encryption counter (-1: none yet)
        self.e1_at = -float("inf")  # monotonic time of the last good Ruuvi E1 advert
        self.superseded = 0  # Ruuvi Air format 6 adverts dropped because E1 is heard


def _bthome(device: BthomeDevice) -> _Decode:
    key = device.key
    decoder = BthomeDecoder(
        device.mac.upper(), bytes.fromhex(key.get_secret_value()) if key is not None else None
    )

    def decode(data: bytes) -> tuple[list[Sample], int | bytes, int | None]:
        advert = decoder.decode(data)
        packet_id = advert.packet_id
        return advert.samples, bytes(data) if packet_id is None else packet_id, advert.counter

    return decode


#: Ruuvi Air's data formats: one measurement is sent in both (module doc).
_RUUVI_AIR_LEGACY, _RUUVI_AIR_EXTENDED = 6, 0xE1


def _ruuvi(data: bytes) -> tuple[list[Sample], int | bytes, int | None]:
    advert = decode_ruuvi(data)
    sequence = advert.sequence
    if sequence is None:
        return advert.samples, bytes(data), None
    if advert.data_format in (_RUUVI_AIR_LEGACY, _RUUVI_AIR_EXTENDED):
        sequence &= 0xFF  # format 6 carries the low byte: one key for both formats
    return advert.samples, sequence, None


def _or_patterns(devices: Sequence[BthomeDevice | RuuviDevice]) -> list[OrPattern]:
    """BlueZ advertisement-monitor patterns that let exactly our formats through."""
    patterns = []
    if any(isinstance(d, BthomeDevice) for d in devices):
        patterns.append(
            OrPattern(
                0, AdvertisementDataType.SERVICE_DATA_UUID16, SERVICE_UUID16.to_bytes(2, "little")
            )
        )
    if any(isinstance(d, RuuviDevice) for d in devices):
        patterns.append(
            OrPattern(
                0,
                AdvertisementDataType.MANUFACTURER_SPECIFIC_DATA,
                MANUFACTURER_ID.to_bytes(2, "little"),
            )
        )
    return patterns


class BleScanSource:
    """Every passive BLE device of the config, heard through one scanner (see module doc)."""

    task_name = "scan:ble"

    def __init__(
        self,
        devices: Sequence[BthomeDevice | RuuviDevice],
        sink: Sink,
        clock: SystemClock,
        backend: type[BaseBleakScanner] | None = None,
        adapter: str | None = None,
        *,
        scanning_mode: ScanMode = "passive",
        queue_size: int = 4096,
        repeat_window: float = 30.0,
        retry_base: float = 2.0,
        retry_cap: float = 60.0,
        rng: random.Random | None = None,
        counters: CounterFile | None = None,
        counter_interval: float = 1.0,
    ) -> None:
        """``counters``: where the last accepted encryption counters persist (None: in memory
        only, e.g. ``streetgate read``); ``counter_interval``: the least time between writes."""
        if not devices:
            raise ValueError("a BLE scan source needs at least one device")
        if queue_size < 1 or repeat_window <= 0 or not 0 < retry_base <= retry_cap:
            raise ValueError(
                "need queue_size >= 1, repeat_window > 0 and 0 < retry_base <= retry_cap"
            )
        self._sink = sink
        self._clock = clock
        self._backend = backend
        self._adapter = adapter
        self._mode: ScanMode = scanning_mode
        self._patterns = _or_patterns(devices)
        self._queue_size = queue_size
        self._repeat_window = repeat_window
        self._retry_base = retry_base
        self._retry_cap = retry_cap
        self._rng = rng or random.Random()
        self._devices: list[_Device] = []
        self._by_mac: dict[str, _Device] = {}
        for config in devices:
            mac = config.mac.upper()
            if mac in self._by_mac:
                raise ValueError(
                    f"{config.name}: MAC {mac} is already used by {self._by_mac[mac].name}"
                )
            if isinstance(config, BthomeDevice):
                device = _Device(config.name, config.stale_after, True, _bthome(config))
                if config.key is not None:
                    key = bytes.fromhex(config.key.get_secret_value())
                    device.counter_id = counter_id(mac, key)
            else:
                device = _Device(config.name, config.stale_after, False, _ruuvi)
            self._devices.append(device)
            self._by_mac[mac] = device
        self._has_bthome = any(isinstance(d, BthomeDevice) for d in devices)
        self._statuses = {d.name: d.status for d in self._devices}
        self._restart_after = min(d.stale_after for d in self._devices)
        self._errors = BleakErrors(None, adapter)
        self._queue: deque[list[Reading]] = deque()
        self._queued = asyncio.Event()
        self._restart = asyncio.Event()
        self._scanning: ScanMode | None = None
        self._scanning_now = asyncio.Event()  # set while a scan runs
        self._last_any = 0.0  # monotonic time of the last advert of any kind
        self._scanner_starts = 0
        self._adapter_failures = 0
        self._dropped = 0
        self._overflowing = False
        self._foreign = 0
        self._counters = counters
        self._counter_interval = counter_interval
        self._init_counter_state()

    def _init_counter_state(self) -> None:
        self._counter_file: dict[str, int] = {}  # as last loaded or written
        self._counters_dirty = False
        self._counter_written_at = -float("inf")  # monotonic
        self._counter_writes = 0
        self._counter_write_failing = False

    # -- the Source protocol ---------------------------------------------------------------

    @property
    def statuses(self) -> Mapping[str, DeviceStatus]:
        """Health and counters per device name."""
        return self._statuses

    async def run(self) -> None:
        """Scan, deliver and watch until cancelled; never ends because of a BLE failure."""
        if self._counters is not None:
            loaded = await asyncio.to_thread(self._counters.load)
            self._counter_file = loaded
            for device in self._devices:
                if device.counter_id is not None:
                    device.counter = max(device.counter, loaded.get(device.counter_id, -1))
        now = time.monotonic()
        for device in self._devices:
            device.last_heard = now
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._deliver(), name=f"{self.task_name}:deliver")
            tg.create_task(self._watchdog(), name=f"{self.task_name}:watchdog")
            await self._scan()

    async def wait_scanning(self) -> None:
        """Return once a scan is running (the adapter is there and the scanner started)."""
        await self._scanning_now.wait()

    def stats(self) -> BleScanStats:
        """The scanner's counters right now."""
        return BleScanStats(
            scanning=self._scanning,
            scanner_starts=self._scanner_starts,
            adapter_failures=self._adapter_failures,
            queue_depth=len(self._queue),
            queue_size=self._queue_size,
            dropped_readings=self._dropped,
            repeats=sum(d.repeats for d in self._devices),
            foreign_adverts=self._foreign,
            replays=sum(d.status.dropped[REPLAY] for d in self._devices),
            superseded=sum(d.superseded for d in self._devices),
            counter_writes=self._counter_writes,
        )

    # -- scan:ble --------------------------------------------------------------------------

    async def _scan(self) -> None:
        failures = 0
        while True:
            try:
                scanner = await self._start()
            except AdapterUnavailable as exc:
                self._adapter_failed(exc)
                await asyncio.sleep(
                    next_delay(failures, self._rng, self._retry_base, self._retry_cap)
                )
                failures += 1
                continue
            failures = 0
            self._scanner_starts += 1
            now = time.monotonic()
            self._last_any = now
            for device in self._devices:
                # Heard or not, each device gets a full stale_after from the (re)start.
                device.last_heard = max(device.last_heard, now)
            try:
                self._restart.clear()
                await self._restart.wait()
                log.info(
                    "BLE scan: nothing heard for %gs; restarting the scanner", self._restart_after
                )
            finally:
                self._scanning = None
                self._scanning_now.clear()
                await self._stop(scanner)

    async def _start(self) -> BleakScanner:
        errors = self._errors
        if self._mode == "passive":
            errors.doing = "starting a passive scan"
            try:
                with errors:
                    return await self._start_scanner("passive")
            except AdapterUnavailable as passive_error:
                errors.doing = "starting a scan (passive, then active)"
                with errors:
                    scanner = await self._start_scanner("active")
                log.warning("BLE: passive scanning refused (%s); scanning actively", passive_error)
                self._mode = "active"
                return scanner
        errors.doing = "starting an active scan"
        with errors:
            return await self._start_scanner("active")

    async def _start_scanner(self, mode: ScanMode) -> BleakScanner:
        bluez: BlueZScannerArgs = {}
        if self._adapter is not None:
            bluez["adapter"] = self._adapter
        if mode == "passive":
            bluez["or_patterns"] = list(self._patterns)
        scanner = BleakScanner(self._on_advert, None, mode, bluez=bluez, backend=self._backend)
        await scanner.start()
        self._scanning = mode
        self._scanning_now.set()
        log.info("BLE: %s scan started for %d device(s)", mode, len(self._devices))
        return scanner

    async def _stop(self, scanner: BleakScanner) -> None:
        errors = self._errors
        errors.doing = "stopping the scan"
        try:
            with errors:
                await scanner.stop()
        except AdapterUnavailable as exc:
            log.info("BLE: the scan did not stop cleanly: %s", exc)

    def _adapter_failed(self, exc: AdapterUnavailable) -> None:
        self._adapter_failures += 1
        if self._adapter_failures == 1 or any(
            d.status.health is not Health.DOWN for d in self._devices
        ):
            log.warning("BLE: %s", exc)
        for device in self._devices:
            self._failed(device, exc, down=True)

    # -- the advertisement callback ---------------------------------------------------------

    def _on_advert(self, ble_device: BLEDevice, adv: AdvertisementData) -> None:  # noqa: PLR0911, PLR0912 - one exit per kind of advert
        now = time.monotonic()
        self._last_any = now
        device = self._by_mac.get(ble_device.address)
        if device is None:
            device = self._by_mac.get(ble_device.address.upper()) or self._by_embedded_mac(adv)
            if device is None:
                self._foreign += 1
                return
        if device.bthome:
            data = adv.service_data.get(SERVICE_UUID)
        else:
            data = adv.manufacturer_data.get(MANUFACTURER_ID)
        if data is None:
            return  # e.g. a scan response: nothing for us in it
        if not device.bthome and self._superseded(device, data, now):
            return
        window = self._repeat_window
        seen = device.seen
        if seen is not None and data == device.payload and now - seen.at < window:
            # The very bytes of the last stored advert (the common repeat): the same key, so
            # no need to decode them again.
            self._heard(device, now)
            device.repeats += 1
            return
        try:
            samples, key, counter = device.decode(data)
        except FrameError as exc:
            self._failed(device, BadFrame(device.name, exc))
            return
        if counter is not None and self._replayed(device, counter):
            return
        self._heard(device, now)
        if is_repeat(seen, key, now, window):
            device.repeats += 1
            return
        device.seen = Seen(key, now)
        device.payload = data
        device.status.polls_ok += 1
        if not samples:
            return
        clock = self._clock
        quality = Quality.GOOD if clock.synchronised() else Quality.CLOCK_UNSYNCED
        queue = self._queue
        if len(queue) >= self._queue_size:
            dropped = queue.popleft()
            if not self._overflowing:
                self._overflowing = True  # warn once per episode; the deliver task re-arms it
                log.warning(
                    "BLE: the sink is behind; dropping the oldest queued readings "
                    "(queue of %d adverts full)",
                    self._queue_size,
                )
            self._dropped += len(dropped)
        queue.append(stamp(device.name, samples, clock.now_ms(), quality))
        self._queued.set()

    def _superseded(self, device: _Device, data: bytes, now: float) -> bool:
        """Ruuvi Air: note a heard E1 advert; whether ``data`` is a format 6 copy of a
        measurement whose E1 this scanner hears (then dropped as a sign of life; module doc)."""
        data_format = data[:1]
        if data_format == b"\xe1" and len(data) == LENGTH_E1:
            device.e1_at = now
        elif data_format == b"\x06" and now - device.e1_at < self._repeat_window:
            self._heard(device, now)
            device.superseded += 1
            return True
        return False

    def _replayed(self, device: _Device, counter: int) -> bool:
        """Whether an authentic encrypted advert is old (then counted); else its counter is
        the device's last accepted one, to be persisted."""
        if device.counter_id is None:
            return False
        if counter <= device.counter:
            # Genuine MIC, old counter: recorded and played back (or an old copy). Not a sign of
            # life, not a failure of the device either.
            device.status.dropped[REPLAY] += 1
            return True
        device.counter = counter
        if not self._counters_dirty:
            self._counters_dirty = True
            self._queued.set()  # persisted even if the advert is a repeat
        return False

    def _by_embedded_mac(self, adv: AdvertisementData) -> _Device | None:
        """A BTHome advert that carries its MAC (sent from a random address)."""
        if not self._has_bthome:
            return None
        data = adv.service_data.get(SERVICE_UUID)
        if data is None or len(data) < 7 or not data[0] & INFO_MAC_INCLUDED:
            return None
        return self._by_mac.get(":".join(f"{b:02X}" for b in data[6:0:-1]))

    # -- health ------------------------------------------------------------------------------

    def _heard(self, device: _Device, now: float) -> None:
        device.last_heard = now
        status = device.status
        if status.health is not Health.OK:
            log.info("device %s: %s -> ok", status.name, status.health.value)
            status.health = Health.OK
        status.consecutive_failures = 0
        status.last_ok_unix = time.time()

    def _failed(self, device: _Device, exc: DeviceError, *, down: bool = False) -> None:
        status = device.status
        status.consecutive_failures += 1
        status.polls_failed += 1
        status.errors_by_kind[type(exc).__name__] += 1
        status.last_error = str(exc)
        health = Health.DOWN if down else health_after(status.consecutive_failures)
        if health is not status.health:
            log.warning(
                "device %s: %s -> %s: %s", status.name, status.health.value, health.value, exc
            )
            status.health = health

    # -- scan:ble:watchdog -------------------------------------------------------------------

    async def _watchdog(self) -> None:
        tick = min(max(self._restart_after / 4, 0.01), 5.0)
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            for device in self._devices:
                silent = now - device.last_heard
                if silent >= device.stale_after and device.status.health is not Health.DOWN:
                    device.seen = None  # whatever it sends next is new
                    self._failed(
                        device,
                        DeviceTimeout(device.name, f"no advertisement for {silent:.1f}s"),
                        down=True,
                    )
            if self._scanning is not None and now - self._last_any >= self._restart_after:
                self._restart.set()

    # -- scan:ble:deliver --------------------------------------------------------------------

    async def _deliver(self) -> None:
        queue = self._queue
        batch: list[Reading] = []
        try:
            while True:
                await self._queued.wait()
                self._queued.clear()
                if self._counters_dirty and self._counters is not None:
                    await self._counter_debounce()
                batch = [reading for readings in queue for reading in readings]
                queue.clear()
                self._overflowing = False
                # The counters of every advert in the batch, on disk before its readings are
                # handed over (the callback runs on this loop: nothing slips in between).
                await self._write_counters()
                if batch:
                    await self._sink(batch)
                batch = []
        except asyncio.CancelledError:
            # Stopping: hand over what was heard but not delivered yet, if the sink takes it
            # promptly; what it does not take is counted as dropped.
            batch += [reading for readings in queue for reading in readings]
            queue.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._write_counters()
            if batch:
                await self._flush(batch)
            raise

    async def _counter_debounce(self) -> None:
        """Wait until ``counter_interval`` has passed since the last write, or adverts pile up."""
        deadline = self._counter_written_at + self._counter_interval
        while len(self._queue) < COUNTER_EARLY_WRITE:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._queued.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(left, 0.05)):
                    await self._queued.wait()

    async def _write_counters(self) -> None:
        """Persist the counters accepted since the last write (nothing when none were)."""
        if not self._counters_dirty or self._counters is None:
            self._counters_dirty = False
            return
        self._counters_dirty = False
        counters = dict(self._counter_file)
        counters.update(
            (d.counter_id, d.counter)
            for d in self._devices
            if d.counter_id is not None and d.counter >= 0
        )
        self._counter_written_at = time.monotonic()
        try:
            await asyncio.to_thread(self._counters.save, counters)
        except OSError as exc:
            self._counters_dirty = True  # tried again with the next batch
            if not self._counter_write_failing:
                self._counter_write_failing = True
                log.error(  # noqa: TRY400 - the OSError says it all
                    "BLE: cannot write %s (%s): after a restart, adverts heard since the last "
                    "write could be replayed once",
                    self._counters.path,
                    exc,
                )
            return
        self._counter_write_failing = False
        self._counter_file = counters
        self._counter_writes += 1

    async def _flush(self, batch: list[Reading]) -> None:
        try:
            async with asyncio.timeout(1.0):
                await self._sink(batch)
        except TimeoutError:
            self._dropped += len(batch)
            log.warning("BLE: %d readings not delivered at shutdown", len(batch))
