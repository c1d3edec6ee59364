"""Which attached serial ports look like MicroPython boards, by their USB identity (VID:PID).

Two kinds: chips whose own USB runs MicroPython's REPL (Espressif native USB, Raspberry Pi
RP2040/RP2350, MicroPython's pyboard id), and USB-UART bridge chips that sit in front of an
ESP32/ESP8266's UART on most dev boards. A bridge could carry anything, so it is a candidate;
only ``node deploy`` (which asks for the raw REPL) can tell for sure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

__all__ = ["BoardKind", "NodeBoard", "identify", "node_boards"]


class BoardKind(StrEnum):
    """How the board's REPL reaches USB."""

    NATIVE = "MicroPython native"
    BRIDGE = "USB-UART bridge"


#: VID -> (kind, chip family) for vendors whose every product is a MicroPython-capable chip.
_VENDORS: dict[int, tuple[BoardKind, str]] = {
    0x303A: (BoardKind.NATIVE, "Espressif native USB (ESP32-S2/S3/C3/C6)"),
    0x2E8A: (BoardKind.NATIVE, "Raspberry Pi RP2040/RP2350"),
}
#: (VID, PID) -> (kind, chip) for single products.
_PRODUCTS: dict[tuple[int, int], tuple[BoardKind, str]] = {
    (0xF055, 0x9800): (BoardKind.NATIVE, "MicroPython pyboard / generic MicroPython USB"),
    (0x10C4, 0xEA60): (BoardKind.BRIDGE, "Silicon Labs CP210x"),
    (0x1A86, 0x7523): (BoardKind.BRIDGE, "WCH CH340"),
    (0x1A86, 0x55D4): (BoardKind.BRIDGE, "WCH CH9102"),
    (0x0403, 0x6001): (BoardKind.BRIDGE, "FTDI FT232R"),
    (0x0403, 0x6015): (BoardKind.BRIDGE, "FTDI FT231X"),
}


class ListedPort(Protocol):
    """What this module reads of pyserial's ``ListPortInfo``."""

    device: str
    vid: int | None
    pid: int | None
    serial_number: str | None
    description: str


@dataclass(frozen=True, slots=True)
class NodeBoard:
    """A port that looks like a MicroPython board."""

    device: str
    vid: int
    pid: int
    kind: BoardKind
    chip: str
    serial_number: str | None
    description: str

    @property
    def usb_id(self) -> str:
        """``VID:PID`` in lsusb's form."""
        return f"{self.vid:04x}:{self.pid:04x}"

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (``node list --json``)."""
        return {
            "device": self.device,
            "usb_id": self.usb_id,
            "kind": self.kind.value,
            "chip": self.chip,
            "serial_number": self.serial_number,
            "description": self.description,
        }


def identify(vid: int | None, pid: int | None) -> tuple[BoardKind, str] | None:
    """Kind and chip for a USB identity, or None when it is not a known MicroPython carrier."""
    if vid is None or pid is None:
        return None
    return _PRODUCTS.get((vid, pid)) or _VENDORS.get(vid)


def node_boards(source: Callable[[], Iterable[ListedPort]]) -> list[NodeBoard]:
    """The ports from ``source`` (pyserial's ``comports``) that look like boards, by path."""
    boards = []
    for port in sorted(source(), key=lambda p: p.device):
        known = identify(port.vid, port.pid)
        if known is None or port.vid is None or port.pid is None:
            continue
        kind, chip = known
        boards.append(
            NodeBoard(
                device=port.device,
                vid=port.vid,
                pid=port.pid,
                kind=kind,
                chip=chip,
                serial_number=port.serial_number,
                description=port.description,
            )
        )
    return boards
