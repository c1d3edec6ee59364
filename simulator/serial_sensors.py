"""Simulated serial sensors on virtual serial ports: SDS011, PMS5003 and a line-protocol device.

Usage::

    async with Sds011Sim("pm-1", period=0.1) as sim:
        config = sim.gateway_config(interval=1.0)  # port = sim.path
        ...
        assert sim.was_sent("pm2_5", reading.value)

Each simulated sensor drives one :class:`simulator.pty.VirtualSerialPort` with the real byte
protocol, at the wire speed of its baud rate: frames every ``period`` seconds in active mode,
answers to the host's commands (an SDS011 switches between active and query reporting, sleeps
and wakes, changes its working period; a PMS5003 switches to passive mode and answers reads).
Values are plausible and change over time (:class:`simulator.values.DeviceValues`); the last
``history`` frames sent are kept as :class:`Sent`, with the values exactly as a gateway decodes
them.

Faults, for the next ``count`` frames or until :meth:`SerialSensorSim.heal`:
:attr:`Fault.CHECKSUM` (a corrupted frame), :attr:`Fault.TRUNCATE` (a frame cut short, glued to
whatever follows), :attr:`Fault.GARBAGE` (noise before each frame), :attr:`Fault.SILENCE`
(nothing sent, no answers); and :meth:`SerialSensorSim.unplug` / :meth:`~SerialSensorSim.replug`.

The gateway is given :attr:`SerialSensorSim.path`, a symlink (in a temporary directory unless
``link`` is given) that always points at the current pty (a
:class:`simulator.pty.PluggableDevice`): unplugging removes it, replugging recreates it.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import ClassVar, TypedDict, Unpack

from drivers.profile import parse_profile
from drivers.serial import pms5003 as pms
from drivers.serial import sds011 as sds
from gateway.config.devices import LineField, LineSensor, Pms5003Device, Sds011Device
from gateway.core.errors import FrameError
from gateway.core.units import format_duration
from simulator.pty import PluggableDevice, VirtualSerialPort
from simulator.values import Clock, DeviceValues

__all__ = [
    "SERIAL_KINDS",
    "Fault",
    "LineDeviceSim",
    "Pms5003Sim",
    "Sds011Sim",
    "Sent",
    "SerialSensorSim",
]


class Fault(StrEnum):
    """What a simulated sensor can do wrong, frame by frame."""

    CHECKSUM = "checksum"  # the frame goes out with one byte wrong
    TRUNCATE = "truncate"  # only the start of the frame goes out; the next one follows it
    GARBAGE = "garbage"  # noise goes out before the (intact) frame
    SILENCE = "silence"  # nothing goes out, and commands get no answer


@dataclass(frozen=True, slots=True)
class Sent:
    """One frame sent: when (seconds since start), its values as decoded, and its fault."""

    t: float
    values: Mapping[str, float]
    fault: Fault | None  # None: the frame went out intact (GARBAGE before it included)


# Synthetic profiles: DeviceValues gives each metric a seeded, bounded, slowly changing value.
# Unknown quantities walk within 0..100; "Cel" and "%RH" get temperature and humidity curves.
_AIR = parse_profile(
    {"name": "air", "metrics": [{"name": "fine", "address": 0}, {"name": "coarse", "address": 1}]},
    "simulator.serial_sensors",
)
_WEATHER = parse_profile(
    {
        "name": "weather",
        "metrics": [
            {"name": "temperature", "address": 0, "type": "int16", "scale": 0.01, "unit": "Cel"},
            {"name": "humidity", "address": 1, "scale": 0.1, "unit": "%RH"},
            {"name": "pressure", "address": 2},
        ],
    },
    "simulator.serial_sensors",
)


class SimOptions(TypedDict, total=False):
    """Keyword options every simulated serial sensor takes (see :class:`SerialSensorSim`)."""

    period: float
    baudrate: int | None
    link: Path | None
    seed: int | str | None
    clock: Clock
    history: int


class SerialSensorSim(PluggableDevice):
    """A sensor on a virtual serial port; ``async with`` plugs it in and starts it.

    ``period``: seconds between frames in active mode; ``baudrate``: wire-time emulation (None:
    bytes arrive at once); ``link``: where the stable symlink goes; ``seed``: values and faults
    (default: the name); ``history``: frames kept in :attr:`history`.
    """

    kind: ClassVar[str]
    command_size: ClassVar[int] = 0  # host commands are fixed-size frames (0: none expected)
    command_magic: ClassVar[bytes] = b""
    _NOISE: ClassVar[bytes] = bytes(range(256))  # what garbage bytes are drawn from
    _kept_tail: ClassVar[int] = 1  # a truncated frame lacks at least this many last bytes

    def __init__(
        self,
        name: str,
        *,
        period: float = 1.0,
        baudrate: int | None = 9600,
        link: Path | None = None,
        seed: int | str | None = None,
        clock: Clock = time.monotonic,
        history: int = 64,
    ) -> None:
        if period <= 0:
            raise ValueError(f"period must be above 0 s, got {period}")
        super().__init__(
            task_name=f"sim:{self.kind}:{name}",
            link=link,
            link_name=f"tty-{name}",
            temp_prefix=f"streetgate-{self.kind}-",
            baudrate=baudrate,
        )
        self.name = name
        self.period = period
        self.history: deque[Sent] = deque(maxlen=history)
        self.frames_sent = 0  # intact frames
        self.bad_frames_sent = 0  # corrupted or truncated frames, noise lines
        self.garbage_bytes_sent = 0  # noise bytes between frames (not lines)
        self.bad_bytes_sent = 0  # bytes of corrupted and truncated frames
        self.commands: list[object] = []  # host commands received, decoded, in order
        self.commands_rejected = 0  # command frames with a bad checksum
        self._seed = name if seed is None else seed
        self._rng = random.Random(f"{self._seed}/faults")
        self._clock = clock
        self._t0 = clock()
        self._fault: Fault | None = None
        self._fault_left: int | None = None
        self._inbox = bytearray()

    # -- the port --------------------------------------------------------------------------

    def _on_plug(self) -> None:
        self._inbox.clear()
        self._power_up()

    # -- faults and history ----------------------------------------------------------------

    def inject(self, fault: Fault, count: int | None = None) -> None:
        """Apply ``fault`` to the next ``count`` frames (None: until :meth:`heal`)."""
        if count is not None and count < 1:
            raise ValueError(f"count must be at least 1 (or None), got {count}")
        self._fault, self._fault_left = fault, count

    def heal(self) -> None:
        """Send intact frames again."""
        self._fault, self._fault_left = None, None

    @property
    def fault(self) -> Fault | None:
        """The fault applied to the next frame, if any."""
        return self._fault

    def sent(self, metric: str) -> tuple[float, ...]:
        """The values of ``metric`` in the intact frames kept in :attr:`history`, oldest first."""
        return tuple(s.values[metric] for s in self.history if s.fault is None)

    def was_sent(self, metric: str, value: float) -> bool:
        """Whether an intact frame in :attr:`history` carried ``value`` for ``metric``."""
        return value in self.sent(metric)

    # -- what each sensor adds -------------------------------------------------------------

    def _power_up(self) -> None:
        """State after power-up (also at every replug)."""

    def _reporting(self) -> bool:
        """Whether the sensor sends frames by itself now."""
        return True

    def _interval(self) -> float:
        return self.period

    def measurement(self, t: float) -> tuple[bytes, dict[str, float]]:
        """A frame for time ``t`` and its values as a gateway decodes them."""
        raise NotImplementedError

    def _corrupt(self, frame: bytes) -> bytes:
        """``frame`` with one byte changed so that it no longer checks."""
        raise NotImplementedError

    def _garbage(self) -> tuple[bytes, int]:
        """Noise to send before a frame, and how many bad frames it makes on its own."""
        return bytes(self._rng.choice(self._NOISE) for _ in range(self._rng.randint(1, 12))), 0

    def _decode_command(self, frame: bytes) -> object:
        raise NotImplementedError

    def _config_extra(self) -> dict[str, object]:
        """Config keys beyond kind, name, port, interval and timeout."""
        return {"baudrate": self.baudrate or 9600}

    def _config(self, interval: float, timeout: float) -> dict[str, object]:
        base = {"kind": self.kind, "name": self.name, "port": self.path}
        return base | self._config_extra() | {"interval": interval, "timeout": timeout}

    def config_toml(self, interval: float, port: str | None = None) -> list[str]:
        """This sensor's ``[[devices]]`` entry for a gateway config, as TOML lines.

        ``port``: what the config should open (default :attr:`path`).
        """
        entry: dict[str, object] = {"kind": self.kind, "name": self.name}
        entry["port"] = port or self.path
        entry |= self._config_extra() | {"interval": format_duration(interval)}
        return ["[[devices]]"] + [f"{key} = {_toml_value(value)}" for key, value in entry.items()]

    async def _on_command(self, command: object, port: VirtualSerialPort) -> None:
        """Act on one host command (answer it, switch modes)."""

    # -- serving ---------------------------------------------------------------------------

    def _now(self) -> float:
        return self._clock() - self._t0

    def _take_fault(self) -> Fault | None:
        fault = self._fault
        if fault is not None and self._fault_left is not None:
            self._fault_left -= 1
            if self._fault_left <= 0:
                self.heal()
        return fault

    async def _serve(self, port: VirtualSerialPort) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._emit(port), name=f"sim:{self.kind}:{self.name}:emit")
            tg.create_task(self._listen(port), name=f"sim:{self.kind}:{self.name}:listen")

    async def _emit(self, port: VirtualSerialPort) -> None:
        while port.is_open:
            await asyncio.sleep(self._interval())
            if self._reporting():
                await self._send_measurement(port)

    async def _send_measurement(self, port: VirtualSerialPort) -> None:
        """Send one measurement frame, with the fault due, and remember it."""
        fault = self._take_fault()
        if fault is Fault.SILENCE:
            return
        t = self._now()
        frame, values = self.measurement(t)
        if fault is Fault.CHECKSUM:
            data = self._corrupt(frame)
            self.bad_frames_sent += 1
            self.bad_bytes_sent += len(data)
        elif fault is Fault.TRUNCATE:
            data = frame[: self._rng.randint(2, len(frame) - self._kept_tail)]
            self.bad_frames_sent += 1
            self.bad_bytes_sent += len(data)
        elif fault is Fault.GARBAGE:
            noise, bad = self._garbage()
            data = noise + frame
            self.bad_frames_sent += bad
            self.garbage_bytes_sent += 0 if bad else len(noise)
            self.frames_sent += 1
        else:
            data = frame
            self.frames_sent += 1
        self.history.append(Sent(t, values, fault if fault is not Fault.GARBAGE else None))
        await port.write(data)

    async def _listen(self, port: VirtualSerialPort) -> None:
        while True:
            data = await port.read()
            if not data:
                return  # unplugged
            if not self.command_size:
                continue  # a sensor that takes no commands ignores what it hears
            self._inbox += data
            for command in self._commands():
                self.commands.append(command)
                if self._fault is not Fault.SILENCE:
                    await self._on_command(command, port)

    def _commands(self) -> list[object]:
        """Complete command frames in the inbox (bad ones counted and skipped)."""
        inbox, size = self._inbox, self.command_size
        found: list[object] = []
        while (start := inbox.find(self.command_magic)) >= 0 and len(inbox) - start >= size:
            try:
                found.append(self._decode_command(bytes(inbox[start : start + size])))
            except FrameError:
                self.commands_rejected += 1
                del inbox[: start + 1]
                continue
            del inbox[: start + size]
        return found


class Sds011Sim(SerialSensorSim):
    """An SDS011: a measurement every second in active mode, or one per query in query mode.

    Honours the reporting-mode, query, sleep/work and working-period commands (addressed to
    its ``device_id`` or to every sensor) and answers them as the real sensor does. Like the
    real one it keeps the reporting mode and working period over a power cycle (a replug).
    """

    kind = "sds011"
    command_size = sds.COMMAND_SIZE
    command_magic = bytes([sds.HEAD, sds.COMMAND])
    _NOISE = bytes(b for b in range(256) if b != sds.HEAD)  # noise that makes no header

    def __init__(
        self,
        name: str,
        *,
        mode: sds.ReportingMode = sds.ReportingMode.ACTIVE,
        device_id: int = 0x1234,
        **options: Unpack[SimOptions],
    ) -> None:
        super().__init__(name, **options)
        self.mode = mode  # kept in the sensor's flash
        self.working_period = 0  # minutes, 0: continuous; kept in flash
        self.working = True
        self.device_id = device_id
        self._values = DeviceValues(_AIR, self._seed)

    def _power_up(self) -> None:
        self.working = True

    def _reporting(self) -> bool:
        return self.working and self.mode is sds.ReportingMode.ACTIVE

    def _interval(self) -> float:
        return self.working_period * 60.0 if self.working_period else self.period

    def measurement(self, t: float) -> tuple[bytes, dict[str, float]]:
        fine = self._values.value("fine", t)  # µg/m³, 0..100
        pm2_5 = round(fine * 10) / 10
        pm10 = round((fine + 0.5 * self._values.value("coarse", t)) * 10) / 10
        return sds.encode_measurement(pm2_5, pm10, self.device_id), {"pm2_5": pm2_5, "pm10": pm10}

    def _corrupt(self, frame: bytes) -> bytes:
        return frame[:8] + bytes([frame[8] ^ 0x5A]) + frame[9:]

    def _decode_command(self, frame: bytes) -> object:
        return sds.decode_command(frame)

    def _config_extra(self) -> dict[str, object]:
        mode = "query" if self.mode is sds.ReportingMode.QUERY else "active"
        return super()._config_extra() | {"mode": mode}

    def gateway_config(self, *, interval: float = 1.0, timeout: float = 3.0) -> Sds011Device:
        """The gateway's config entry for this sensor, in its current reporting mode."""
        return Sds011Device.model_validate(self._config(interval, timeout))

    async def _on_command(self, command: object, port: VirtualSerialPort) -> None:
        assert isinstance(command, sds.CommandFrame)
        if command.device_id not in (sds.ALL_DEVICES, self.device_id):
            return  # for another sensor on the same line
        setting = command.data[0] == 1
        code = command.command
        if code == sds.Command.QUERY_DATA:
            if self.working:
                await self._send_measurement(port)
            return
        if code == sds.Command.REPORTING_MODE:
            if setting:
                self.mode = sds.ReportingMode(command.data[1] & 1)
            value = int(self.mode)
        elif code == sds.Command.SLEEP_WORK:
            if setting:
                self.working = bool(command.data[1])
            value = int(self.working)
        elif code == sds.Command.WORKING_PERIOD:
            if setting and command.data[1] <= 30:
                self.working_period = command.data[1]
            value = self.working_period
        elif code == sds.Command.FIRMWARE:
            await port.write(sds.encode_reply(code, bytes([18, 11, 16]), self.device_id))
            return
        else:
            return  # the real sensor ignores what it does not know
        reply = bytes([int(setting), value, 0])
        await port.write(sds.encode_reply(code, reply, self.device_id))


class Pms5003Sim(SerialSensorSim):
    """A PMS5003 in active mode (a frame every ``period``); answers mode, read and sleep commands.

    Values: PM1.0 ≤ PM2.5 ≤ PM10 in µg/m³ with CF=1 values above the atmospheric ones in dense
    air, as the Plantower manual describes, and particle counts that follow the masses.
    """

    kind = "pms5003"
    command_size = pms.COMMAND_SIZE
    command_magic = pms.MAGIC
    # One checksum byte short, a frame followed by the next one's "B" (0x42) is valid when its
    # checksum ends in 0x42: cut at least two bytes, so every truncated frame is a bad one.
    _kept_tail = 2
    _NOISE = bytes(b for b in range(256) if b != 0x42)  # noise that makes no header

    def __init__(self, name: str, **options: Unpack[SimOptions]) -> None:
        super().__init__(name, **options)
        self.active = True
        self.working = True
        self._values = DeviceValues(_AIR, self._seed)

    def _power_up(self) -> None:
        self.active = True  # the PMS5003 forgets its mode at power-up
        self.working = True

    def _reporting(self) -> bool:
        return self.working and self.active

    def measurement(self, t: float) -> tuple[bytes, dict[str, float]]:
        fine = self._values.value("fine", t)
        coarse = self._values.value("coarse", t)
        pm2_5 = round(fine)
        pm1_0 = round(fine * 0.7)
        pm10 = round(fine + 0.5 * coarse)

        def cf1(atm: int) -> int:
            return atm if atm < 30 else round(atm * 1.45 - 13.5)

        n0_3 = round(120 + 95 * pm1_0 + 30 * pm2_5)
        n0_5 = round(n0_3 * 0.3)
        n1_0 = round(n0_5 * 0.2 + 2 * pm2_5)
        n2_5 = round(1.5 * (pm10 - pm2_5) + 0.05 * n1_0)
        n5_0 = round(n2_5 * 0.25)
        n10 = round(n5_0 * 0.3)
        measurement = pms.Measurement(
            cf1(pm1_0), cf1(pm2_5), cf1(pm10), pm1_0, pm2_5, pm10, n0_3, n0_5, n1_0, n2_5, n5_0, n10
        )
        values = {
            "pm1_0": pm1_0,
            "pm2_5": pm2_5,
            "pm10": pm10,
            "n0_3": n0_3,
            "n0_5": n0_5,
            "n1_0": n1_0,
            "n2_5": n2_5,
            "n5_0": n5_0,
            "n10": n10,
        }
        return pms.encode_measurement(measurement), {k: float(v) for k, v in values.items()}

    def _corrupt(self, frame: bytes) -> bytes:
        return frame[:12] + bytes([frame[12] ^ 0x01]) + frame[13:]  # PM2.5 (atm), high byte

    def _decode_command(self, frame: bytes) -> object:
        return pms.decode_command(frame)

    def gateway_config(self, *, interval: float = 1.0, timeout: float = 3.0) -> Pms5003Device:
        """The gateway's config entry for this sensor."""
        return Pms5003Device.model_validate(self._config(interval, timeout))

    async def _on_command(self, command: object, port: VirtualSerialPort) -> None:
        assert isinstance(command, pms.CommandFrame)
        if command.command == pms.Command.MODE:
            self.active = bool(command.data & 1)
            await port.write(pms.encode_reply(pms.Command.MODE, command.data & 0xFF))
        elif command.command == pms.Command.READ and not self.active and self.working:
            await self._send_measurement(port)
        elif command.command == pms.Command.SLEEP:
            if command.data & 1:
                self.working = True  # waking up: no reply, frames follow
            else:
                self.working = False
                await port.write(pms.encode_reply(pms.Command.SLEEP, 0))


@dataclass(frozen=True, slots=True)
class _LineMetric:
    name: str
    render: Callable[[float], str]  # value -> the text on the line
    field: LineField


class LineDeviceSim(SerialSensorSim):
    """A weather sensor printing one ASCII line per ``period``: ``T=21.53 RH=45.2 P=101325``.

    Temperature in °C, humidity in %RH, pressure in Pa (the config scales it to hPa). A
    corrupted line has its ``RH=`` mangled; noise is a line of its own (one bad line each).
    """

    kind = "line"
    _kept_tail = 3  # a cut line lacks its last character and its line end
    PATTERN = r"^T=(?P<temperature>-?\d+\.\d\d) RH=(?P<humidity>\d+\.\d) P=(?P<pressure>\d+)$"
    METRICS = (
        _LineMetric("temperature", "{:.2f}".format, LineField(unit="Cel")),
        _LineMetric("humidity", "{:.1f}".format, LineField(unit="%RH")),
        _LineMetric("pressure", lambda pa: str(round(pa)), LineField(unit="hPa", scale=0.01)),
    )

    def __init__(self, name: str, **options: Unpack[SimOptions]) -> None:
        super().__init__(name, **options)
        self._values = DeviceValues(_WEATHER, self._seed)

    @property
    def fields(self) -> dict[str, LineField]:
        """The ``fields`` a gateway config needs for :attr:`PATTERN`."""
        return {m.name: m.field for m in self.METRICS}

    def measurement(self, t: float) -> tuple[bytes, dict[str, float]]:
        raw = {
            "temperature": self._values.value("temperature", t),
            "humidity": self._values.value("humidity", t),
            "pressure": 100_000.0 + 30.0 * self._values.value("pressure", t),  # Pa
        }
        texts = {m.name: m.render(raw[m.name]) for m in self.METRICS}
        line = f"T={texts['temperature']} RH={texts['humidity']} P={texts['pressure']}\r\n"
        values = {  # decimal arithmetic: the value the printed digits mean, scaled exactly
            m.name: float(
                Decimal(texts[m.name]) * Decimal(repr(m.field.scale))
                + Decimal(repr(m.field.offset))
            )
            for m in self.METRICS
        }
        return line.encode("ascii"), values

    def _corrupt(self, frame: bytes) -> bytes:
        return frame.replace(b"RH=", b"RH:")

    def _config_extra(self) -> dict[str, object]:
        fields = {m.name: m.field.model_dump(exclude_defaults=True) for m in self.METRICS}
        return super()._config_extra() | {"pattern": self.PATTERN, "fields": fields}

    def gateway_config(self, *, interval: float = 1.0, timeout: float = 3.0) -> LineSensor:
        """The gateway's config entry for this sensor: :attr:`PATTERN` and :attr:`fields`."""
        return LineSensor.model_validate(self._config(interval, timeout))

    def _garbage(self) -> tuple[bytes, int]:
        noise = "".join(self._rng.choice("~#!%&") for _ in range(self._rng.randint(1, 12)))
        return noise.encode() + b"\r\n", 1


def _toml_value(value: object) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # JSON string escapes are valid TOML ones
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    raise TypeError(f"no TOML for {value!r}")


SERIAL_KINDS: dict[str, type[SerialSensorSim]] = {
    "sds011": Sds011Sim,
    "pms5003": Pms5003Sim,
    "line": LineDeviceSim,
}
