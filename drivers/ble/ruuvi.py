"""RuuviTag data format 5 (RAWv2): a pure decoder and encoder (no I/O).

Manufacturer Specific Data of company 0x0499, 24 bytes, most significant byte first
(ruuvi-sensor-protocols ``dataformat_05.md``)::

    0      format (5)
    1-2    temperature     int16  × 0.005 °C       0x8000 = not available
    3-4    humidity        uint16 × 0.0025 %RH     0xFFFF = not available
    5-6    pressure        uint16 + 50000 Pa       0xFFFF = not available
    7-12   acceleration    3 × int16 mG (X, Y, Z)  0x8000 = not available
    13-14  power           11 bits battery mV - 1600 (2047 n/a), 5 bits TX dBm (-40 + 2n, 31 n/a)
    15     movement count  uint8                   255 = not available
    16-17  sequence        uint16                  65535 = not available
    18-23  MAC address                             FF:FF:FF:FF:FF:FF = not available

A field that is "not available" is left out of the samples (never turned into a number).
The measurement sequence number is returned apart from the samples: it tells repeats of one
measurement from new ones. Acceleration is reported in m/s² (1 mG = 0.00980665 m/s²).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

from gateway.core.errors import FrameError
from gateway.core.model import Sample

__all__ = [
    "DATA_FORMAT",
    "LENGTH",
    "MANUFACTURER_ID",
    "RuuviAdvert",
    "RuuviFields",
    "decode_ruuvi",
    "encode_ruuvi",
]

MANUFACTURER_ID = 0x0499  # Ruuvi Innovations Ltd., the key in bleak's manufacturer_data
DATA_FORMAT = 5
LENGTH = 24

_LAYOUT = struct.Struct(">BhHHhhhHBH6s")
_G = 0.00980665  # m/s² per mG
_G_NUMERATOR, _G_DENOMINATOR = 980665, 100_000_000  # _G as an exact fraction
_NA_INT16 = -0x8000
_NA_UINT16 = 0xFFFF
_NA_BATTERY = 2047
_NA_TX = 31
_NA_MOVEMENT = 0xFF
_NA_MAC = b"\xff" * 6


@dataclass(frozen=True, slots=True)
class RuuviFields:
    """What one DF5 advertisement says; None is "not available" (what the encoder takes)."""

    temperature: float | None = None  # °C
    humidity: float | None = None  # %RH
    pressure: float | None = None  # Pa
    acceleration_x: float | None = None  # m/s²
    acceleration_y: float | None = None
    acceleration_z: float | None = None
    voltage: float | None = None  # battery, V
    tx_power: int | None = None  # dBm
    movement_count: int | None = None
    sequence: int | None = None
    mac: str | None = None  # AA:BB:CC:DD:EE:FF


@dataclass(frozen=True, slots=True)
class RuuviAdvert:
    """One decoded DF5 advertisement."""

    samples: list[Sample]
    sequence: int | None  # the measurement sequence number
    mac: str | None  # the MAC the payload carries


def decode_ruuvi(data: bytes) -> RuuviAdvert:
    """Decode the manufacturer data of company 0x0499 (the bytes after the company id)."""
    if len(data) != LENGTH:
        raise FrameError(f"Ruuvi data format 5 is {LENGTH} bytes, got {len(data)}")
    if data[0] != DATA_FORMAT:
        raise FrameError(f"Ruuvi data format {data[0]} is not supported (expected 5, RAWv2)")
    _, temp, hum, pres, ax, ay, az, power, movement, seq, mac = _LAYOUT.unpack(data)
    samples = []
    # Each value is one correctly rounded division, so it is exactly the decimal the format
    # means (x 0.005 is / 200: 4860 / 200 is 24.3), without binary noise.
    if temp != _NA_INT16:
        samples.append(Sample("temperature", temp / 200, "Cel"))
    if hum != _NA_UINT16:
        samples.append(Sample("humidity", hum / 400, "%RH"))
    if pres != _NA_UINT16:
        samples.append(Sample("pressure", float(pres + 50000), "Pa"))
    for metric, raw in (("acceleration_x", ax), ("acceleration_y", ay), ("acceleration_z", az)):
        if raw != _NA_INT16:
            samples.append(Sample(metric, raw * _G_NUMERATOR / _G_DENOMINATOR, "m/s2"))
    battery, tx = power >> 5, power & 0x1F
    if battery != _NA_BATTERY:
        samples.append(Sample("voltage", (battery + 1600) / 1000, "V"))
    if tx != _NA_TX:
        samples.append(Sample("tx_power", float(tx * 2 - 40), "dBm"))
    if movement != _NA_MOVEMENT:
        samples.append(Sample("movement_count", float(movement), ""))
    return RuuviAdvert(
        samples=samples,
        sequence=None if seq == _NA_UINT16 else seq,
        mac=None if mac == _NA_MAC else ":".join(f"{b:02X}" for b in mac),
    )


# (lowest, highest, "not available") of each raw field
_INT16 = (-32767, 32767, _NA_INT16)
_UINT16 = (0, 65534, _NA_UINT16)
_BATTERY = (0, 2046, _NA_BATTERY)
_TX = (0, 30, _NA_TX)
_MOVEMENT = (0, 254, _NA_MOVEMENT)


def _fit(name: str, value: float | None, raw: float, limits: tuple[int, int, int]) -> int:
    lo, hi, absent = limits
    if value is None:
        return absent
    if not math.isfinite(raw) or not lo <= (rounded := round(raw)) <= hi:
        raise ValueError(f"Ruuvi {name} = {value!r} is outside what data format 5 can carry")
    return rounded


def encode_ruuvi(fields: RuuviFields) -> bytes:
    """The 24 manufacturer-data bytes for ``fields`` (ValueError if a value does not fit)."""
    f = fields
    temp = _fit("temperature", f.temperature, (f.temperature or 0) / 0.005, _INT16)
    hum = _fit("humidity", f.humidity, (f.humidity or 0) / 0.0025, _UINT16)
    pres = _fit("pressure", f.pressure, (f.pressure or 0) - 50000, _UINT16)
    acc = [
        _fit(name, value, (value or 0) / _G, _INT16)
        for name, value in (
            ("acceleration_x", f.acceleration_x),
            ("acceleration_y", f.acceleration_y),
            ("acceleration_z", f.acceleration_z),
        )
    ]
    battery = _fit("voltage", f.voltage, (f.voltage or 0) * 1000 - 1600, _BATTERY)
    if f.tx_power is not None and f.tx_power % 2:
        raise ValueError(f"Ruuvi tx_power = {f.tx_power} dBm: data format 5 carries even values")
    tx = _fit("tx_power", f.tx_power, ((f.tx_power or 0) + 40) / 2, _TX)
    movement = _fit("movement_count", f.movement_count, f.movement_count or 0, _MOVEMENT)
    seq = _fit("sequence", f.sequence, f.sequence or 0, _UINT16)
    mac = _NA_MAC if f.mac is None else _mac(f.mac)
    return _LAYOUT.pack(DATA_FORMAT, temp, hum, pres, *acc, (battery << 5) | tx, movement, seq, mac)


def _mac(text: str) -> bytes:
    parts = text.split(":")
    if len(parts) != 6 or not all(len(p) == 2 for p in parts):
        raise ValueError(f"expected a MAC address like CB:B8:33:4C:88:4F, got {text!r}")
    try:
        return bytes.fromhex("".join(parts))
    except ValueError:
        raise ValueError(f"expected a MAC address like CB:B8:33:4C:88:4F, got {text!r}") from None
