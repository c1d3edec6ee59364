"""Simulated Modbus RTU devices on one RS-485 bus: a virtual serial port, real RTU frames.

Usage::

    specs = [DeviceSpec("meter-1", sdm120, unit_id=1), DeviceSpec("meter-2", sdm120, unit_id=2)]
    async with ModbusRtuSimulator(specs, baudrate=19200) as bus:
        config = bus.gateway_config("cabinet-bus")  # port = bus.path
        ...
        assert bus["meter-1"].was_served("voltage", reading.value)

The bus is one :class:`simulator.pty.VirtualSerialPort`. The simulator behaves like the
devices on a real bus, with the frame timing of the configured baud rate (exact to the
microsecond on a :func:`precise_timer_loop`, as ``streetgate sim --rtu`` runs it):

- a request takes its wire time to arrive, and it ends where the line goes quiet for t3.5
  (frames are found by silence, as a real device finds them, not by parsing);
- a frame with a bad CRC, or for a unit id nobody has, gets no answer: the client times out;
- the addressed unit answers after t3.5 plus ``turnaround`` (its processing time), and the
  answer takes its own wire time (the port's wire-time emulation).

Values come from a :class:`simulator.registers.RegisterMap` per unit, as in the TCP simulator.
Fault switches per unit: :meth:`SimulatedRtuUnit.fail_with` (an exception code),
:meth:`~SimulatedRtuUnit.go_silent`, :meth:`~SimulatedRtuUnit.answer_bad_crc`,
:meth:`~SimulatedRtuUnit.answer_garbage`; for the bus, :meth:`ModbusRtuSimulator.unplug` and
:meth:`~ModbusRtuSimulator.replug`.

The gateway is given :attr:`ModbusRtuSimulator.path`, a symlink (in a temporary directory
unless ``link`` is given) that always points at the current pty (a
:class:`simulator.pty.PluggableDevice`): unplugging removes it, replugging creates it again.
"""

from __future__ import annotations

import asyncio
import random
import selectors
import time
from collections.abc import Iterable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import Literal

from drivers.modbus.codec import ReadBlock
from drivers.modbus.rtu_frame import (
    READ_FUNCTIONS,
    RtuFrame,
    decode_frame,
    decode_read_request,
    encode_exception_reply,
    encode_read_reply,
    frame_gap,
)
from gateway.config.devices import ModbusRtuBus, RtuUnit
from gateway.core.errors import FrameError, ModbusExceptionCode
from simulator.modbus_server import DeviceSpec
from simulator.pty import PluggableDevice, VirtualSerialPort, bits_per_char
from simulator.registers import RegisterMap
from simulator.values import Clock

__all__ = ["ModbusRtuSimulator", "SimulatedRtuUnit", "UnitFault", "precise_timer_loop"]

BROADCAST = 0


def precise_timer_loop() -> asyncio.AbstractEventLoop:
    """An event loop whose timers fire within microseconds, for exact wire timing.

    asyncio's default selector on Linux (epoll) rounds every wait up to a whole millisecond, so
    each emulated frame would arrive up to 1 ms late (at 19,200 baud a small exchange is 13 ms);
    ``select()`` waits in microseconds. For a simulator process, which watches a few file
    descriptors; the gateway keeps the default loop.
    """
    return asyncio.SelectorEventLoop(selectors.SelectSelector())


class UnitFault(StrEnum):
    """How a unit misbehaves on the wire (exception codes are set with ``fail_with``)."""

    NONE = "none"
    SILENT = "silent"  # hears requests, never answers
    BAD_CRC = "bad_crc"  # answers, with the CRC bytes corrupted
    GARBAGE = "garbage"  # answers bytes that are no frame at all


class SimulatedRtuUnit:
    """One device on the simulated bus: its register map, what it served, its fault switches."""

    def __init__(self, spec: DeviceSpec, clock: Clock, history: int) -> None:
        if not 1 <= spec.unit_id <= 247:
            raise ValueError(f"{spec.name}: an RTU unit id is 1..247, got {spec.unit_id}")
        self.name = spec.name
        self.profile = spec.profile
        self.unit_id = spec.unit_id
        seed = spec.name if spec.seed is None else spec.seed
        self.registers = RegisterMap(spec.profile, seed, clock, history)
        self.plan: tuple[ReadBlock, ...] = self.registers.plan
        self.requests = 0  # frames addressed to this unit that it heard
        self.answers = 0  # frames it sent back (whatever the fault)
        self._exception: ModbusExceptionCode | None = None
        self._fault = UnitFault.NONE
        self._rng = random.Random(f"garbage:{seed}")

    def served(self, metric: str) -> tuple[float, ...]:
        """The last values of ``metric`` on the wire, oldest first, as a gateway decodes them."""
        return self.registers.served(metric)

    def was_served(self, metric: str, value: float) -> bool:
        """Whether ``value`` is one of the last values of ``metric`` this unit served."""
        return self.registers.was_served(metric, value)

    @property
    def fault(self) -> UnitFault:
        """The wire fault in force."""
        return self._fault

    def fail_with(self, code: ModbusExceptionCode | None) -> None:
        """Answer every request with this Modbus exception code (None: answer normally)."""
        if code is ModbusExceptionCode.UNKNOWN:
            raise ValueError("UNKNOWN is not a code a device can send")
        self._exception = code

    def go_silent(self) -> None:
        """Hear requests but never answer (a dead or disconnected device)."""
        self._fault = UnitFault.SILENT

    def answer_bad_crc(self) -> None:
        """Answer with a corrupted CRC (noise on the line)."""
        self._fault = UnitFault.BAD_CRC

    def answer_garbage(self) -> None:
        """Answer with bytes that are no frame (wrong baud rate, a babbling device)."""
        self._fault = UnitFault.GARBAGE

    def heal(self) -> None:
        """Clear every injected fault and exception code."""
        self._fault = UnitFault.NONE
        self._exception = None

    def gateway_unit(self, interval: float = 1.0) -> RtuUnit:
        """The gateway's config entry for this unit."""
        return RtuUnit(
            name=self.name, unit_id=self.unit_id, profile=self.profile, interval=interval
        )

    def answer(self, request: RtuFrame, raw: bytes) -> bytes | None:
        """The bytes this unit puts on the bus for a request addressed to it (None: silence)."""
        self.requests += 1
        if self._fault is UnitFault.SILENT:
            return None
        reply = self._reply(request, raw)
        if self._fault is UnitFault.BAD_CRC:
            reply = reply[:-2] + bytes(b ^ 0xA5 for b in reply[-2:])
        elif self._fault is UnitFault.GARBAGE:
            reply = bytes(self._rng.randrange(256) for _ in reply)
        self.answers += 1
        return reply

    def _reply(self, request: RtuFrame, raw: bytes) -> bytes:
        function = request.function
        if self._exception is not None:
            return encode_exception_reply(self.unit_id, function, self._exception)
        if function not in READ_FUNCTIONS:
            return encode_exception_reply(
                self.unit_id, function, ModbusExceptionCode.ILLEGAL_FUNCTION
            )
        try:
            read = decode_read_request(raw)
        except FrameError:
            return encode_exception_reply(
                self.unit_id, function, ModbusExceptionCode.ILLEGAL_DATA_VALUE
            )
        registers = self.registers.read(function, read.address, read.count)
        if registers is None:
            return encode_exception_reply(
                self.unit_id, function, ModbusExceptionCode.ILLEGAL_DATA_ADDRESS
            )
        return encode_read_reply(self.unit_id, function, list(registers))


class ModbusRtuSimulator(PluggableDevice):
    """Several RTU units on one virtual serial port; ``async with`` serves them."""

    baudrate: int
    parity: Literal["N", "E", "O"]
    stopbits: Literal[1, 2]

    def __init__(
        self,
        units: Iterable[DeviceSpec],
        *,
        baudrate: int = 19200,
        parity: Literal["N", "E", "O"] = "N",
        stopbits: Literal[1, 2] = 1,
        turnaround: float = 0.0,
        link: Path | None = None,
        clock: Clock = time.monotonic,
        history: int = 64,
    ) -> None:
        specs = list(units)
        if not specs:
            raise ValueError("a simulated bus needs at least one unit")
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"unit names must be unique: {names}")
        ids = [s.unit_id for s in specs]
        if len(set(ids)) != len(ids):
            raise ValueError(f"unit ids must be unique on a bus: {ids}")
        if baudrate <= 0:
            raise ValueError(f"baud rate must be above 0, got {baudrate}")
        if turnaround < 0:
            raise ValueError(f"turnaround must be >= 0 s, got {turnaround}")
        super().__init__(
            task_name=f"sim:modbus_rtu:{'ttyRTU0' if link is None else link.name}",
            link=link,
            link_name="ttyRTU0",
            temp_prefix="streetgate-rtu-",
            baudrate=baudrate,
            parity=parity,
            stopbits=stopbits,
        )
        self.turnaround = turnaround
        self._units = {s.name: SimulatedRtuUnit(s, clock, history) for s in specs}
        self._by_id = {u.unit_id: u for u in self._units.values()}
        self.frames_heard = 0  # frames the bus carried from the gateway (whole, by silence)
        self.frames_ignored = 0  # of those: bad CRC or too short, so nobody answered

    def __getitem__(self, name: str) -> SimulatedRtuUnit:
        return self._units[name]

    def __iter__(self) -> Iterator[SimulatedRtuUnit]:
        return iter(self._units.values())

    def __len__(self) -> int:
        return len(self._units)

    def gateway_config(
        self, name: str = "sim-bus", *, timeout: float = 0.5, interval: float = 1.0
    ) -> ModbusRtuBus:
        """The gateway's config entry for polling every unit of this bus."""
        return ModbusRtuBus(
            kind="modbus_rtu",
            name=name,
            port=self.path,
            baudrate=self.baudrate,
            parity=self.parity,
            stopbits=self.stopbits,
            timeout=timeout,
            units=tuple(u.gateway_unit(interval) for u in self),
        )

    async def _serve(self, port: VirtualSerialPort) -> None:
        """Answer frames on ``port`` until it is closed."""
        loop = asyncio.get_running_loop()
        char_time = bits_per_char(self.parity, self.stopbits) / self.baudrate
        gap = frame_gap(self.baudrate)
        while True:
            data = await port.read()
            if not data:
                return  # unplugged
            frame = bytearray(data)
            # The bytes arrived at once through the pty; on a wire they take their time, and the
            # frame ends only when the line has been quiet for t3.5 after the last one.
            wire_end = loop.time() + len(data) * char_time
            while True:
                try:
                    async with asyncio.timeout_at(wire_end + gap):
                        more = await port.read()
                except TimeoutError:
                    break
                if not more:
                    return
                frame += more
                wire_end = max(wire_end, loop.time()) + len(more) * char_time
            reply = self._dispatch(bytes(frame))
            if reply is None:
                continue
            if self.turnaround:
                await asyncio.sleep(self.turnaround)
            await port.write(reply)  # takes the reply's wire time

    def _dispatch(self, frame: bytes) -> bytes | None:
        self.frames_heard += 1
        try:
            request = decode_frame(frame)
        except FrameError:
            self.frames_ignored += 1  # a real device drops a frame it cannot check
            return None
        if request.unit == BROADCAST:
            return None  # broadcasts are never answered
        unit = self._by_id.get(request.unit)
        if unit is None:
            return None  # nobody on the bus has this id: silence, the client times out
        return unit.answer(request, frame)
