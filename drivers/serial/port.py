"""Where a serial port named in the config is: a device path, a USB identity, or a pyserial URL.

Config syntax (:data:`drivers.serial.config.SERIAL_PORT_PATTERN`):

- ``/dev/ttyUSB0``, ``/dev/serial/by-id/usb-FTDI_...-if00-port0``, ``COM3``: used as written. A
  ``by-id`` symlink is kept as a path (the OS follows it when the port is opened), so a re-plugged
  adapter that came back as another ``ttyUSBn`` is found again.
- ``usb:VID:PID[:SERIAL]`` (hex ids as ``lsusb`` prints them): the attached port with that USB
  identity, looked up when the port is opened; several adapters of one model need the serial.
- ``socket://host:port``, ``rfc2217://host:port``: pyserial URLs, passed through.

:func:`match_usb_port` is the pure matching rule (testable with constructed
``serial.tools.list_ports_common.ListPortInfo`` objects); :func:`resolve_port` adds the lookup of
attached ports, which reads sysfs and so blocks: on the event loop use :func:`resolve_port_async`.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from serial.tools.list_ports import comports  # type: ignore[import-untyped]

from gateway.core.errors import PortUnavailable

__all__ = [
    "PortInfo",
    "UsbPortSpec",
    "describe_ports",
    "match_usb_port",
    "parse_usb_spec",
    "resolve_port",
    "resolve_port_async",
]


class PortInfo(Protocol):
    """What matching needs of a ``serial.tools.list_ports_common.ListPortInfo``."""

    device: str
    vid: int | None
    pid: int | None
    serial_number: str | None


_USB = re.compile(r"^usb:([0-9A-Fa-f]{4}):([0-9A-Fa-f]{4})(?::(\S+))?$")


@dataclass(frozen=True, slots=True)
class UsbPortSpec:
    """A USB serial adapter identified by vendor id, product id and optionally serial number."""

    vid: int
    pid: int
    serial_number: str | None = None

    def __str__(self) -> str:
        serial = f":{self.serial_number}" if self.serial_number is not None else ""
        return f"usb:{self.vid:04x}:{self.pid:04x}{serial}"


def parse_usb_spec(spec: str) -> UsbPortSpec | None:
    """The USB identity in a ``usb:VID:PID[:SERIAL]`` spec; None for any other kind of spec."""
    if not spec.startswith("usb:"):
        return None
    match = _USB.fullmatch(spec)
    if match is None:
        raise ValueError(
            f"{spec!r}: expected usb:VID:PID[:SERIAL] with 4-digit hex ids, e.g. usb:0403:6001"
        )
    vid, pid, serial = match.groups()
    return UsbPortSpec(int(vid, 16), int(pid, 16), serial)


def _describe(port: PortInfo) -> str:
    if port.vid is None or port.pid is None:
        return f"{port.device} (not USB)"
    serial = f" serial {port.serial_number}" if port.serial_number else " no serial"
    return f"{port.device} (usb:{port.vid:04x}:{port.pid:04x}{serial})"


def describe_ports(ports: Sequence[PortInfo]) -> str:
    """The attached ports, for an error message: path and USB identity of each."""
    if not ports:
        return "no serial ports are attached"
    return "attached: " + ", ".join(_describe(p) for p in sorted(ports, key=lambda p: p.device))


def match_usb_port(wanted: UsbPortSpec, ports: Sequence[PortInfo], device: str) -> str:
    """The path of the one port in ``ports`` with the wanted USB identity.

    Serial numbers compare case-insensitively (adapters print them in either case). Raises
    :class:`PortUnavailable` (for ``device``) when none matches, or when several match and
    ``wanted`` names no serial number to choose between them.
    """
    candidates = [p for p in ports if p.vid == wanted.vid and p.pid == wanted.pid]
    if wanted.serial_number is not None:
        serial = wanted.serial_number.casefold()
        candidates = [
            p for p in candidates if p.serial_number and p.serial_number.casefold() == serial
        ]
    if not candidates:
        raise PortUnavailable(
            device, f"no serial port {wanted} is attached; {describe_ports(ports)}"
        )
    if len(candidates) > 1:
        raise PortUnavailable(
            device,
            f"{len(candidates)} serial ports match {wanted}; add the serial number "
            f"(usb:VID:PID:SERIAL) to choose one; {describe_ports(candidates)}",
        )
    return candidates[0].device


def resolve_port(spec: str, device: str | None = None) -> str:
    """What to hand to pyserial for a config's port spec (see the module docstring).

    ``device`` names the device in errors (default: the spec). Blocks while it lists the
    attached ports for a ``usb:`` spec; use :func:`resolve_port_async` on the event loop.
    """
    who = device if device is not None else spec
    try:
        wanted = parse_usb_spec(spec)
    except ValueError as exc:
        raise PortUnavailable(who, str(exc)) from exc
    if wanted is None:
        return spec
    ports: list[PortInfo] = comports()
    return match_usb_port(wanted, ports, who)


async def resolve_port_async(spec: str, device: str | None = None) -> str:
    """:func:`resolve_port` without blocking the event loop (the sysfs scan runs in a thread)."""
    if not spec.startswith("usb:"):
        return resolve_port(spec, device)
    return await asyncio.to_thread(resolve_port, spec, device)
