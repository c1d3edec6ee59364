"""What ``streetgate scan serial|modbus`` finds, as pure functions and plain data.

:func:`serial_ports` lists the attached serial ports with their USB identity and the
``usb:VID:PID[:SERIAL]`` spec of :mod:`drivers.serial_port` to paste into a config; the port
source and the ``/dev/serial/by-id`` directory are parameters, so tests hand in constructed
``ListPortInfo`` objects.

:func:`scan_modbus` probes unit ids through a :class:`ModbusProber` (the real drivers:
:class:`TcpProber` wraps :class:`drivers.modbus_tcp.ModbusTcpDriver`, :class:`RtuProber`
:class:`drivers.modbus_rtu.ModbusRtuBusDriver`), then reads every shipped profile's plan from
each unit that answered and ranks the profiles that fit (:func:`profile_fit`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from drivers.modbus.rtu import ModbusRtuBusDriver
from drivers.modbus.tcp import ModbusTcpDriver
from drivers.profile import Profile, builtin_profiles, load_profile
from drivers.serial.port import PortInfo, UsbPortSpec, match_usb_port
from gateway.config.devices import ModbusRtuBus, ModbusTcpDevice, RtuUnit
from gateway.core.errors import (
    BadFrame,
    DeviceTimeout,
    ModbusExceptionCode,
    ModbusExceptionResponse,
    PortUnavailable,
    ProtocolError,
)

if TYPE_CHECKING:
    from gateway.core.model import Sample

__all__ = [
    "BY_ID_DIR",
    "ModbusProber",
    "ProfileFit",
    "RtuProber",
    "SerialPortEntry",
    "TcpProber",
    "UnitFound",
    "by_id_links",
    "out_of_range",
    "parse_units",
    "plausible",
    "profile_fit",
    "scan_modbus",
    "serial_ports",
    "shipped_profiles",
]

BY_ID_DIR = Path("/dev/serial/by-id")


class ListedPort(PortInfo, Protocol):
    """What the serial scan reads of a ``serial.tools.list_ports_common.ListPortInfo``."""

    manufacturer: str | None
    product: str | None
    location: str | None
    description: str


@dataclass(frozen=True, slots=True)
class SerialPortEntry:
    """One attached serial port as ``scan serial`` reports it."""

    device: str
    by_id: str | None  # the stable /dev/serial/by-id link to it, if udev made one
    vid: int | None
    pid: int | None
    serial_number: str | None
    manufacturer: str | None
    product: str | None
    location: str | None
    description: str
    spec: str | None  # what to write as `port = ...` in the config: usb:..., by-id, or the path
    spec_note: str | None  # why the spec is not a unique usb:VID:PID:SERIAL, when it is not

    @property
    def usb_id(self) -> str | None:
        """``VID:PID`` in lsusb's form, None for a port that is not USB."""
        if self.vid is None or self.pid is None:
            return None
        return f"{self.vid:04x}:{self.pid:04x}"

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (``--json``)."""
        return {
            "device": self.device,
            "by_id": self.by_id,
            "usb_id": self.usb_id,
            "serial_number": self.serial_number,
            "manufacturer": self.manufacturer,
            "product": self.product,
            "location": self.location,
            "description": self.description,
            "spec": self.spec,
            "spec_note": self.spec_note,
        }


def by_id_links(directory: Path = BY_ID_DIR) -> dict[str, str]:
    """Real device path -> its ``by-id`` link (blocks: reads the directory; empty if none)."""
    links: dict[str, str] = {}
    try:
        entries = sorted(directory.iterdir())
    except OSError:
        return links
    for link in entries:
        target = os.path.realpath(link)
        links.setdefault(target, str(link))
    return links


def _spec_for(
    port: ListedPort, ports: Sequence[ListedPort], by_id: str | None
) -> tuple[str, str | None]:
    """The port spec to paste into a config, and a note when it is not a usb: spec that matches
    exactly this port under :func:`drivers.serial_port.match_usb_port`'s rules."""
    if port.vid is None or port.pid is None:
        return by_id or port.device, "not a USB port: use the path"
    candidates: list[UsbPortSpec] = []
    if port.serial_number:
        candidates.append(UsbPortSpec(port.vid, port.pid, port.serial_number))
    candidates.append(UsbPortSpec(port.vid, port.pid))
    for wanted in reversed(candidates):  # the shortest spec that picks exactly this port
        try:
            if match_usb_port(wanted, ports, port.device) == port.device:
                return str(wanted), None
        except PortUnavailable:
            continue
    fallback = by_id or port.device
    return fallback, "several attached adapters share this USB identity and serial: use the path"


def serial_ports(
    source: Callable[[], Iterable[ListedPort]],
    links: dict[str, str] | None = None,
) -> list[SerialPortEntry]:
    """The attached ports from ``source`` (pyserial's ``comports``), sorted by device path.

    ``links`` maps a device path to its ``by-id`` link (:func:`by_id_links`). Both block, so
    call this off the event loop.
    """
    ports = sorted(source(), key=lambda p: p.device)
    links = {} if links is None else links
    entries = []
    for port in ports:
        by_id = links.get(port.device)
        spec, note = _spec_for(port, ports, by_id)
        entries.append(
            SerialPortEntry(
                device=port.device,
                by_id=by_id,
                vid=port.vid,
                pid=port.pid,
                serial_number=port.serial_number,
                manufacturer=port.manufacturer,
                product=port.product,
                location=port.location,
                description=port.description,
                spec=spec,
                spec_note=note,
            )
        )
    return entries


# -- Modbus ---------------------------------------------------------------------------------

# A Modbus TCP gateway answers these when nothing answers at the unit id behind it.
_NOBODY_THERE = frozenset(
    {ModbusExceptionCode.GATEWAY_PATH_UNAVAILABLE, ModbusExceptionCode.GATEWAY_TARGET_NO_RESPONSE}
)
# Largest magnitude a street device plausibly reports (energy counters stay far below this);
# float32 noise from reading the wrong registers is typically 1e-30 or 1e30.
_PLAUSIBLE_MAX = 1e9
_PLAUSIBLE_MIN = 1e-9


def parse_units(text: str) -> list[int]:
    """``1-247``, ``1,2,5`` or a mix (``1-4,10``) as sorted unique unit ids 1..247."""
    units: set[int] = set()
    for part in text.split(","):
        item = part.strip()
        low_text, _, high_text = item.partition("-")
        try:
            low = int(low_text)
            high = int(high_text) if high_text else low
        except ValueError:
            raise ValueError(f"{text!r}: expected unit ids like 1-247 or 1,2,5") from None
        if low > high:
            raise ValueError(f"{text!r}: range {item} runs backwards")
        units.update(range(low, high + 1))
    bad = sorted(u for u in units if not 1 <= u <= 247)
    if bad:
        raise ValueError(f"unit ids must be 1..247 (0 is broadcast); got {bad}")
    return sorted(units)


def plausible(value: float) -> bool:
    """Whether a decoded value looks like a measurement rather than misread registers."""
    if not math.isfinite(value):
        return False
    return value == 0 or _PLAUSIBLE_MIN <= abs(value) <= _PLAUSIBLE_MAX


def shipped_profiles() -> list[Profile]:
    """Every profile that ships with streetgate, in name order."""
    return [load_profile(name) for name in builtin_profiles()]


class ModbusProber(Protocol):
    """Reads one profile's plan from one unit through a real driver; errors as streetgate's."""

    @property
    def where(self) -> str:
        """The bus or host, for messages."""
        ...

    async def read(self, unit_id: int, profile: Profile) -> list[Sample]:
        """Every metric of ``profile`` from ``unit_id``; raises DeviceError subclasses."""
        ...

    async def close(self) -> None:
        """Release the port or connection."""
        ...


class TcpProber:
    """Probes over Modbus TCP: one :class:`ModbusTcpDriver` connection per read."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self._host, self._port, self._timeout = host, port, timeout

    @property
    def where(self) -> str:
        return f"{self._host}:{self._port}"

    async def read(self, unit_id: int, profile: Profile) -> list[Sample]:
        config = ModbusTcpDevice(
            kind="modbus_tcp",
            name=f"unit-{unit_id}",
            host=self._host,
            port=self._port,
            unit_id=unit_id,
            profile=profile,
            timeout=self._timeout,
        )
        async with ModbusTcpDriver(config) as driver:
            return await driver.poll()

    async def close(self) -> None:
        return None


class RtuProber:
    """Probes an RS-485 bus through :class:`ModbusRtuBusDriver`, keeping the port open while
    consecutive reads use the same profile (the driver's read plans are per bus config)."""

    def __init__(
        self,
        port: str,
        units: Sequence[int],
        *,
        baudrate: int = 9600,
        parity: Literal["N", "E", "O"] = "N",
        stopbits: Literal[1, 2] = 1,
        timeout: float = 0.2,
    ) -> None:
        self._port = port
        self._units = tuple(units)
        self._line: dict[str, Any] = {
            "baudrate": baudrate,
            "parity": parity,
            "stopbits": stopbits,
            "timeout": timeout,
        }
        self._open: tuple[str, ModbusRtuBusDriver, dict[int, RtuUnit]] | None = None

    @property
    def where(self) -> str:
        return self._port

    async def _driver(self, profile: Profile) -> tuple[ModbusRtuBusDriver, dict[int, RtuUnit]]:
        if self._open is not None and self._open[0] == profile.name:
            return self._open[1], self._open[2]
        await self.close()
        units = {
            uid: RtuUnit(name=f"unit-{uid}", unit_id=uid, profile=profile) for uid in self._units
        }
        bus = ModbusRtuBus(
            kind="modbus_rtu",
            name="scan",
            port=self._port,
            units=tuple(units.values()),
            **self._line,
        )
        driver = ModbusRtuBusDriver(bus)
        await driver.__aenter__()
        self._open = (profile.name, driver, units)
        return driver, units

    async def read(self, unit_id: int, profile: Profile) -> list[Sample]:
        driver, units = await self._driver(profile)
        return await driver.read_unit(units[unit_id])

    async def close(self) -> None:
        opened, self._open = self._open, None
        if opened is not None:
            await opened[1].__aexit__(None, None, None)


@dataclass(frozen=True, slots=True)
class ProfileFit:
    """How one shipped profile did on one unit."""

    profile: str
    fits: bool
    metrics: int  # metrics read (all of the profile's when it fits)
    reason: str  # why it does not fit; "" when it does
    values: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "profile": self.profile,
            "fits": self.fits,
            "metrics": self.metrics,
            "reason": self.reason,
            # JSON has no NaN or infinity: misread registers can decode to either.
            "values": {m: v if math.isfinite(v) else None for m, v in self.values.items()},
        }


@dataclass(slots=True)
class UnitFound:
    """A unit id that answered the probe, with what, and the profiles that fit it, best first."""

    unit_id: int
    answer: str  # "registers", or the exception or bad frame it answered with
    fits: list[ProfileFit] = field(default_factory=list)
    misfits: list[ProfileFit] = field(default_factory=list)

    @property
    def best(self) -> str | None:
        """The best fitting profile's name."""
        return self.fits[0].profile if self.fits else None

    def as_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "unit_id": self.unit_id,
            "answer": self.answer,
            "best_profile": self.best,
            "fits": [f.as_dict() for f in self.fits],
            "misfits": [f.as_dict() for f in self.misfits],
        }


def _exception_text(code: ModbusExceptionCode) -> str:
    return f"exception {code.value} {code.name}"


def profile_fit(profile: Profile, outcome: list[Sample] | ProtocolError) -> ProfileFit:
    """Whether a profile fits, given what reading its plan gave: samples, or the error."""
    if isinstance(outcome, ProtocolError):
        if isinstance(outcome, ModbusExceptionResponse):
            reason = f"{_exception_text(outcome.code)} at {outcome.address}"
        else:
            reason = str(outcome)
        return ProfileFit(profile.name, fits=False, metrics=0, reason=reason)
    values = {s.metric: s.value for s in outcome}
    odd = [f"{m}={v:g}" for m, v in values.items() if not plausible(v)]
    if odd:
        return ProfileFit(
            profile.name, False, len(values), f"implausible values: {', '.join(odd)}", values
        )
    outside = out_of_range(profile, outcome)
    if outside:
        return ProfileFit(profile.name, False, len(values), "; ".join(outside), values)
    return ProfileFit(profile.name, True, len(values), "", values)


#: How units are shown in a rejection (the profile's unit codes are UCUM-like).
_UNIT_SHOWN = {"Cel": "°C", "ug/m3": "µg/m³"}


def out_of_range(profile: Profile, samples: Sequence[Sample]) -> list[str]:
    """``temperature -275.9 °C outside -40..80`` for each sample outside its metric's
    plausible range (:attr:`drivers.profile.MetricSpec.plausible_range`)."""
    specs = {m.name: m for m in profile.metrics}
    reasons = []
    for sample in samples:
        spec = specs.get(sample.metric)
        bounds = spec.plausible_range if spec is not None else None
        if bounds is None or bounds[0] <= sample.value <= bounds[1]:
            continue
        unit = _UNIT_SHOWN.get(sample.unit, sample.unit)
        low, high = bounds
        span = f">= {low:g}" if math.isinf(high) else f"{low:g}..{high:g}"
        shown = f"{sample.value:g}" + (f" {unit}" if unit else "")
        reasons.append(f"{sample.metric} {shown} outside {span}")
    return reasons


def _rank(fits: list[ProfileFit]) -> list[ProfileFit]:
    # More metrics read without complaint is stronger evidence: a small profile (two registers)
    # also reads fine from a meter whose register map covers its addresses.
    return sorted(fits, key=lambda f: (-f.metrics, f.profile))


async def _probe(
    prober: ModbusProber, unit_id: int, profile: Profile
) -> tuple[str | None, list[Sample] | ProtocolError]:
    """What the unit answered to ``profile``'s reads (None: nobody there)."""
    try:
        samples = await prober.read(unit_id, profile)
    except DeviceTimeout:
        return None, ProtocolError(f"unit-{unit_id}", "no answer")
    except ModbusExceptionResponse as exc:
        if exc.code in _NOBODY_THERE:
            return None, exc
        return _exception_text(exc.code), exc
    except BadFrame as exc:
        return f"bad frame: {exc.reason}", exc
    except ProtocolError as exc:
        return str(exc), exc
    return "registers", samples


async def scan_modbus(
    prober: ModbusProber,
    units: Sequence[int],
    profiles: Sequence[Profile],
    progress: Callable[[int], None] | None = None,
) -> list[UnitFound]:
    """Probe ``units`` with the first profile's reads, then try every profile on the units that
    answered. ``progress(unit_id)`` is called after each unit's probe.

    Absent units (silence, or a TCP gateway's GATEWAY_* exception) cost one timeout each and are
    not reported. A connection or port that fails raises :class:`DeviceUnreachable`.
    """
    if not profiles:
        raise ValueError("no profiles to try")
    first, others = profiles[0], profiles[1:]
    found: list[UnitFound] = []
    first_outcomes: dict[int, list[Sample] | ProtocolError] = {}
    try:
        for unit_id in units:
            answer, outcome = await _probe(prober, unit_id, first)
            if answer is not None:
                found.append(UnitFound(unit_id, answer))
                first_outcomes[unit_id] = outcome
            if progress is not None:
                progress(unit_id)
        # Profile by profile, so an RTU port is reopened once per profile, not per unit.
        results: dict[int, list[ProfileFit]] = {
            u.unit_id: [profile_fit(first, first_outcomes[u.unit_id])] for u in found
        }
        for profile in others:
            for unit in found:
                _, outcome = await _probe(prober, unit.unit_id, profile)
                results[unit.unit_id].append(profile_fit(profile, outcome))
    finally:
        await prober.close()
    for unit in found:
        unit.fits = _rank([f for f in results[unit.unit_id] if f.fits])
        unit.misfits = [f for f in results[unit.unit_id] if not f.fits]
    return found
