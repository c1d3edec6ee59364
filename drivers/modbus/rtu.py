"""A Modbus RTU bus: several devices on one serial port, polled one request at a time.

:class:`ModbusRtuBusDriver` is the port (``async with`` opens it, :meth:`~ModbusRtuBusDriver.
read_unit` reads one unit's register map); :class:`RtuBusPoller` is the bus's
:class:`drivers.base.Source`: one task that keeps every unit on its own drift-free schedule.

On RS-485 only one device talks at a time, so a silent unit costs the whole bus its timeout.
The poller therefore reads a unit until its first failed request (a dead unit costs at most one
timeout per poll), backs it off with :func:`gateway.backoff.next_delay` while the live units keep
their slots, and serves units that are due at the same time earliest-due first, in turn.

pymodbus drops an answer with a bad CRC or garbage bytes silently and then times out;
:class:`_ReplyWatch` sees the raw bytes (pymodbus's ``trace_packet`` hook) and checks them with
the pure decoders of :mod:`drivers.modbus_rtu_frame`, so such a timeout becomes
:class:`gateway.errors.BadFrame` with the reason, and only true silence is a
:class:`gateway.errors.DeviceTimeout`. The driver also keeps the line quiet for t3.5 between
frames, as the Modbus serial-line spec requires and pymodbus does not.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Self

from pymodbus.client import AsyncModbusSerialClient
from pymodbus.framer import FramerType

from drivers.modbus.codec import ReadBlock, decode_block, plan_reads
from drivers.modbus.errors import PymodbusErrors, connect, registers_of
from drivers.modbus.rtu_frame import ReadRequest, check_reply, frame_gap
from drivers.profile import Function
from drivers.serial.port import resolve_port_async
from gateway.core.backoff import next_delay
from gateway.core.errors import BadFrame, DeviceError, DeviceTimeout, FrameError, PortUnavailable
from gateway.core.health import DeviceStatus
from gateway.core.model import Quality
from gateway.core.polling import BACKOFF_CAP, next_slot, record_failure, record_success, stamp

if TYPE_CHECKING:
    from pymodbus.pdu import ModbusPDU

    from drivers.base import Sink
    from drivers.modbus.config import ModbusRtuBus, RtuUnit
    from gateway.core.clock import SystemClock
    from gateway.core.model import Sample

__all__ = ["ModbusRtuBusDriver", "RtuBusPoller"]

log = logging.getLogger(__name__)

_FUNCTION_CODES = {Function.HOLDING: 3, Function.INPUT: 4}


class _ReplyWatch:
    """Sees every byte pymodbus sends and receives, and judges what came back for a request.

    pymodbus hands ``trace_packet`` its whole receive buffer each time bytes arrive; the verdict
    on the latest buffer is kept until the next request is sent.
    """

    def __init__(self) -> None:
        self.last_traffic = -float("inf")  # monotonic time of the last byte sent or received
        self._request: ReadRequest | None = None
        self._error: FrameError | None = None
        self._received = 0

    def expect(self, request: ReadRequest) -> None:
        """The next frame sent is ``request``; forget what was said about the previous one."""
        self._request = request
        self._error = None
        self._received = 0

    def trace(self, sending: bool, data: bytes) -> bytes:
        """pymodbus's ``trace_packet`` hook: note the time and judge received bytes."""
        self.last_traffic = time.monotonic()
        if sending or self._request is None:
            return data
        self._received = len(data)
        try:
            check_reply(data, self._request)
        except FrameError as exc:
            self._error = exc
        else:
            self._error = None
        return data

    def bad_reply(self) -> FrameError | None:
        """Why the bytes received since the request are no answer to it (None: none came)."""
        if self._error is not None:
            return self._error
        if self._received:
            return FrameError(f"incomplete answer: {self._received} bytes, then silence")
        return None


class ModbusRtuBusDriver:
    """The serial port of one bus: ``async with ModbusRtuBusDriver(bus) as port: ...``.

    ``__aenter__`` resolves the configured port (:func:`drivers.serial_port.resolve_port_async`)
    and opens it, raising :class:`PortUnavailable` when it cannot; leaving closes it; entering
    the same object again reopens it. pymodbus's retries and reconnects are off: the poller owns
    both. A lost port makes every later read raise :class:`PortUnavailable` until re-entered.
    """

    def __init__(self, bus: ModbusRtuBus) -> None:
        self._bus = bus
        self._plans: dict[str, tuple[ReadBlock, ...]] = {
            unit.name: tuple(
                plan_reads(
                    unit.profile.metrics,
                    unit.profile.max_registers_per_request,
                    unit.profile.max_gap,
                )
            )
            for unit in bus.units
        }
        self._gap = frame_gap(bus.baudrate)
        self._watch = _ReplyWatch()
        self._client: AsyncModbusSerialClient | None = None
        self._errors = PymodbusErrors(
            bus.name, self._is_connected, self._forget_late_answer, PortUnavailable
        )
        self.requests = 0  # requests sent since the driver was made
        self.opens = 0  # times the port was opened

    @property
    def name(self) -> str:
        """The bus name from the config."""
        return self._bus.name

    @property
    def plans(self) -> Mapping[str, tuple[ReadBlock, ...]]:
        """Unit name -> the read requests one :meth:`read_unit` makes, in order."""
        return self._plans

    def _is_connected(self) -> bool:
        return self._client is not None and self._client.connected

    def _forget_late_answer(self) -> None:
        # pymodbus empties its receive buffer before each request, and the poller keeps the
        # line quiet for t3.5 first; a late answer can only arrive while the next request is
        # outstanding, and _ReplyWatch/registers_of reject it unless it is indistinguishable
        # from the real answer (same unit, function and count), as on any RS-485 master.
        return None

    async def __aenter__(self) -> Self:
        if self._client is not None:
            raise RuntimeError(f"{self.name}: bus driver entered twice without leaving")
        bus = self._bus
        path = await resolve_port_async(bus.port, bus.name)
        client = AsyncModbusSerialClient(
            path,
            framer=FramerType.RTU,
            baudrate=bus.baudrate,
            bytesize=8,
            parity=bus.parity,
            stopbits=bus.stopbits,
            name=bus.name,
            timeout=bus.timeout,
            retries=0,
            reconnect_delay=0,  # 0 turns pymodbus's background reconnect off
            trace_packet=self._watch.trace,
        )
        errors = self._errors
        errors.device, errors.doing = bus.name, f"opening {path}"
        if not await connect(client, errors):
            where = path if path == bus.port else f"{bus.port} ({path})"
            raise PortUnavailable(bus.name, f"cannot open {where}: {await _open_error(path)}")
        self._client = client
        self.opens += 1
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    async def read_unit(self, unit: RtuUnit) -> list[Sample]:
        """Read every metric of one unit's profile: one request per block of its plan."""
        plan = self._plans[unit.name]
        samples: list[Sample] = []
        for block in plan:
            samples += decode_block(block, await self._read(unit, block))
        return samples

    async def _read(self, unit: RtuUnit, block: ReadBlock) -> Sequence[int]:
        client = self._client
        if client is None:
            raise RuntimeError(f"{self.name}: read_unit() outside 'async with'")
        if not client.connected:
            raise PortUnavailable(unit.name, f"{self._bus.port} went away")
        # t3.5 of silence since the last byte on the line before the next frame.
        quiet = self._watch.last_traffic + self._gap - time.monotonic()
        if quiet > 0:
            await asyncio.sleep(quiet)
        function = _FUNCTION_CODES[block.function]
        self._watch.expect(ReadRequest(unit.unit_id, function, block.address, block.count))
        read: Callable[..., Awaitable[ModbusPDU]] = (
            client.read_input_registers
            if block.function is Function.INPUT
            else client.read_holding_registers
        )
        errors = self._errors
        errors.device = unit.name
        errors.doing = (
            f"reading {block.count} {block.function.value} registers at {block.address} "
            f"from unit {unit.unit_id}"
        )
        self.requests += 1
        try:
            with errors:
                response = await read(block.address, count=block.count, device_id=unit.unit_id)
        except DeviceTimeout as exc:
            reason = self._watch.bad_reply()
            if reason is not None:
                raise BadFrame(unit.name, reason) from exc
            raise
        return registers_of(response, unit.name, block)


async def _open_error(path: str) -> str:
    """Why a port did not open, for the message (pymodbus only reports that it did not)."""
    if "://" in path:
        return "no connection to the remote port"

    def probe() -> str:
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError as exc:
            return exc.strerror or str(exc)
        os.close(fd)
        return "it is in use (another program holds its exclusive lock)"

    return await asyncio.to_thread(probe)


@dataclass(order=True)
class _Slot:
    """A unit's place in the bus's queue: earliest due first, then first queued."""

    due: float
    seq: int
    index: int = field(compare=False)


class RtuBusPoller:
    """The bus's :class:`drivers.base.Source`: polls every unit on its own schedule.

    Each unit's polls sit on a fixed grid on the monotonic clock (anchor + k × interval); a poll
    served late skips the slots it missed (counted as overruns) instead of bunching up. A
    failing unit is retried after :func:`gateway.backoff.next_delay` from its interval; when the
    port is missing or lost, every unit fails with :class:`PortUnavailable` and the port is
    reopened with the same backoff, from the shortest unit interval.
    """

    def __init__(
        self,
        bus: ModbusRtuBus,
        sink: Sink,
        clock: SystemClock,
        rng: random.Random | None = None,
    ) -> None:
        self._bus = bus
        self._sink = sink
        self._clock = clock
        self._rng = rng or random.Random()
        self.driver = ModbusRtuBusDriver(bus)
        self._units = bus.units
        self._statuses = {unit.name: DeviceStatus(unit.name) for unit in bus.units}
        self._port_failures = 0
        self._retry_base = min(unit.interval for unit in bus.units)

    @property
    def task_name(self) -> str:
        """``poll:modbus_rtu:<bus>``."""
        return f"poll:modbus_rtu:{self._bus.name}"

    @property
    def statuses(self) -> Mapping[str, DeviceStatus]:
        """Unit name -> health and counters."""
        return self._statuses

    async def run(self) -> None:
        """Poll until cancelled; device and port failures change statuses, never end this."""
        while True:
            try:
                async with self.driver:
                    self._port_failures = 0
                    await self._serve()
            except PortUnavailable as exc:
                self._port_lost(exc)
            delay = next_delay(
                self._port_failures - 1,
                self._rng,
                self._retry_base,
                max(self._retry_base, BACKOFF_CAP),
            )
            await asyncio.sleep(delay)

    def _port_lost(self, exc: PortUnavailable) -> None:
        self._port_failures += 1
        reason = str(exc).removeprefix(f"{exc.device}: ")
        for unit in self._units:
            record_failure(self._statuses[unit.name], PortUnavailable(unit.name, reason))

    def _quality(self) -> Quality:
        return Quality.GOOD if self._clock.synchronised() else Quality.CLOCK_UNSYNCED

    async def _serve(self) -> None:
        """Serve the units, one request at a time, until the port is lost."""
        units, statuses, driver = self._units, self._statuses, self.driver
        start = time.monotonic()
        anchors: list[float | None] = [None] * len(units)  # None: re-anchor at the next success
        queue = [_Slot(start, i, i) for i in range(len(units))]
        seq = len(units)
        while True:
            slot = heapq.heappop(queue)
            unit = units[slot.index]
            status = statuses[unit.name]
            delay = slot.due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            began = time.monotonic()
            try:
                samples = await driver.read_unit(unit)
            except PortUnavailable:
                raise
            except DeviceError as exc:
                record_failure(status, exc)
                anchors[slot.index] = None
                due = time.monotonic() + next_delay(
                    status.consecutive_failures - 1,
                    self._rng,
                    unit.interval,
                    max(unit.interval, BACKOFF_CAP),
                )
            else:
                record_success(status)
                await self._sink(stamp(unit.name, samples, self._clock.now_ms(), self._quality()))
                anchor = anchors[slot.index]
                on_grid = slot.due
                if anchor is None:
                    anchor = anchors[slot.index] = on_grid = began
                due = next_slot(anchor, unit.interval, time.monotonic())
                skipped = round((due - on_grid) / unit.interval) - 1
                if skipped > 0:
                    status.overruns += skipped
            heapq.heappush(queue, _Slot(due, seq, slot.index))
            seq += 1
