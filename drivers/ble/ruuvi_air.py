"""Ruuvi Air advertisements, data formats 6 and E1: a pure decoder and encoder (no I/O).

Manufacturer Specific Data of company 0x0499, most significant byte first (docs.ruuvi.com,
``data-format-6.md``, ``data-format-e1.md``)::

    format 6, 20 bytes                          format E1, 40 bytes
    0      6                                    0      0xE1
    1-2    temperature  int16 × 0.005 °C        1-2    temperature
    3-4    humidity     uint16 × 0.0025 %RH     3-4    humidity
    5-6    pressure     uint16 + 50000 Pa       5-6    pressure
    7-8    PM2.5        uint16 × 0.1 µg/m³      7-14   PM1.0, PM2.5, PM4.0, PM10  uint16 × 0.1
    9-10   CO2          uint16 ppm              15-16  CO2
    11     VOC index    bits 8..1 (bit 0: flags bit 6)     17  VOC index (likewise)
    12     NOx index    bits 8..1 (bit 0: flags bit 7)     18  NOx index (likewise)
    13     luminosity   log code 0..254         19-21  luminosity  uint24 × 0.01 lx
    14     reserved                             22-24  reserved
    15     sequence     uint8 (no n/a)          25-27  sequence    uint24
    16     flags                                28     flags
    17-19  MAC, low 3 bytes                     29-33  reserved
                                                34-39  MAC

"Not available" is the largest value of an unsigned field, the smallest of a signed one, 0x1FF
for the 9-bit indexes, all ones for the MAC; it is left out of the samples. Flags bit 0 is
"calibration in progress" (the values are not fully accurate yet): the sample
``calibration_state`` (1 = in progress). Format 6's luminosity code is logarithmic:
``exp(code × ln(65536) / 254) - 1`` lx, rounded to 0.01 as Ruuvi advises. Format 6 carries only
the low 24 bits of the MAC, so its MAC is None. :func:`drivers.ble.ruuvi.decode_ruuvi` wraps
what :func:`decode_ruuvi_air` returns into its ``RuuviAdvert``. Reserved bytes are written
as 0xFF, reserved flag bits as 0, and both ignored when read (Ruuvi's firmware already uses some
for sound levels that the published formats do not describe yet).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import NamedTuple

from gateway.core.errors import FrameError
from gateway.core.model import Sample

__all__ = [
    "LENGTH_E1",
    "LENGTH_V6",
    "AirDecoded",
    "RuuviAirFields",
    "climate_samples",
    "decode_ruuvi_air",
    "encode_ruuvi_air",
    "mac_bytes",
]

LENGTH_V6 = 20
LENGTH_E1 = 40
_V6 = struct.Struct(">BhHHHHBBBBBB3s")
_E1 = struct.Struct(">BhHHHHHHHBB3s3s3sB5s6s")
_NA_INT16 = -0x8000
_NA_UINT16 = 0xFFFF
_NA_INDEX = 0x1FF
_NA_LUX_CODE = 0xFF
_NA_UINT24 = 0xFFFFFF
_CALIBRATING = 0x01
_VOC_BIT = 0x40
_NOX_BIT = 0x80
_LUX_STEP = math.log(65536) / 254  # format 6: ln(lx + 1) per code


@dataclass(frozen=True, slots=True)
class RuuviAirFields:
    """What one format 6 or E1 advertisement says; None is "not available".

    ``pm1``, ``pm4`` and ``pm10`` exist in E1 only. ``sequence`` is 0..255 in format 6 (the low
    byte of E1's), 0..16777214 in E1.
    """

    temperature: float | None = None  # °C
    humidity: float | None = None  # %RH
    pressure: float | None = None  # Pa
    pm1: float | None = None  # µg/m³
    pm25: float | None = None
    pm4: float | None = None
    pm10: float | None = None
    co2: float | None = None  # ppm
    voc_index: int | None = None  # 0..500, unitless
    nox_index: int | None = None
    illuminance: float | None = None  # lx
    calibrating: bool = False
    sequence: int | None = None
    mac: str | None = None  # AA:BB:CC:DD:EE:FF (format 6 sends the last 3 bytes)


class AirDecoded(NamedTuple):
    """What one format 6 or E1 advertisement says."""

    samples: list[Sample]
    sequence: int | None
    mac: str | None  # None in format 6 (only 3 bytes of it), or when "not available"


def climate_samples(temp: int, hum: int, pres: int) -> list[Sample]:
    """Temperature, humidity and pressure as Ruuvi formats 5, 6 and E1 encode them (the same
    scales and "not available" values); a value that is not available is left out."""
    samples = []
    # One correctly rounded division per value: exactly the decimal the format means.
    if temp != _NA_INT16:
        samples.append(Sample("temperature", temp / 200, "Cel"))
    if hum != _NA_UINT16:
        samples.append(Sample("humidity", hum / 400, "%RH"))
    if pres != _NA_UINT16:
        samples.append(Sample("pressure", float(pres + 50000), "Pa"))
    return samples


def _air(
    pms: tuple[tuple[str, int], ...], co2: int, voc: int, nox: int, flags: int
) -> list[Sample]:
    samples = [Sample(metric, raw / 10, "ug/m3") for metric, raw in pms if raw != _NA_UINT16]
    if co2 != _NA_UINT16:
        samples.append(Sample("co2", float(co2), "ppm"))
    voc_index = (voc << 1) | bool(flags & _VOC_BIT)
    if voc_index != _NA_INDEX:
        samples.append(Sample("voc_index", float(voc_index), ""))
    nox_index = (nox << 1) | bool(flags & _NOX_BIT)
    if nox_index != _NA_INDEX:
        samples.append(Sample("nox_index", float(nox_index), ""))
    return samples


def decode_ruuvi_air(data: bytes) -> AirDecoded:
    """Decode format 6 or E1 manufacturer data (the bytes after the company id)."""
    if not data or data[0] not in (6, 0xE1):
        raise FrameError("Ruuvi Air data starts with format byte 6 or 0xE1")
    if data[0] == 6:
        if len(data) != LENGTH_V6:
            raise FrameError(f"Ruuvi data format 6 is {LENGTH_V6} bytes, got {len(data)}")
        _, temp, hum, pres, pm25, co2, voc, nox, lux, _, seq, flags, _ = _V6.unpack(data)
        samples = climate_samples(temp, hum, pres) + _air((("pm25", pm25),), co2, voc, nox, flags)
        if lux != _NA_LUX_CODE:
            samples.append(Sample("illuminance", round(math.expm1(lux * _LUX_STEP), 2), "lx"))
        samples.append(Sample("calibration_state", float(flags & _CALIBRATING), ""))
        return AirDecoded(samples, seq, None)
    if len(data) != LENGTH_E1:
        raise FrameError(f"Ruuvi data format E1 is {LENGTH_E1} bytes, got {len(data)}")
    fields = _E1.unpack(data)
    _, temp, hum, pres, pm1, pm25, pm4, pm10, co2, voc, nox, lux_b, _, seq_b, flags, _, mac = fields
    pms = (("pm1", pm1), ("pm25", pm25), ("pm4", pm4), ("pm10", pm10))
    samples = climate_samples(temp, hum, pres) + _air(pms, co2, voc, nox, flags)
    lux = int.from_bytes(lux_b, "big")
    if lux != _NA_UINT24:
        samples.append(Sample("illuminance", lux / 100, "lx"))
    samples.append(Sample("calibration_state", float(flags & _CALIBRATING), ""))
    seq = int.from_bytes(seq_b, "big")
    return AirDecoded(
        samples,
        None if seq == _NA_UINT24 else seq,
        None if mac == b"\xff" * 6 else ":".join(f"{b:02X}" for b in mac),
    )


def _fit(name: str, value: float | None, scale: float, hi: int, absent: int, *, lo: int = 0) -> int:
    if value is None:
        return absent
    raw = value * scale
    if not math.isfinite(raw) or not lo <= (rounded := round(raw)) <= hi:
        raise ValueError(f"Ruuvi Air {name} = {value!r} is outside what its data format carries")
    return rounded


def _offset_pressure(value: float | None) -> float | None:
    return None if value is None else value - 50000


def mac_bytes(text: str | None) -> bytes:
    """A MAC address as the 6 bytes Ruuvi formats carry (all 0xFF: "not available")."""
    if text is None:
        return b"\xff" * 6
    parts = text.split(":")
    if len(parts) != 6 or not all(len(p) == 2 for p in parts):
        raise ValueError(f"expected a MAC address like CB:B8:33:4C:88:4F, got {text!r}")
    try:
        return bytes.fromhex("".join(parts))
    except ValueError:
        raise ValueError(f"expected a MAC address like CB:B8:33:4C:88:4F, got {text!r}") from None


def encode_ruuvi_air(fields: RuuviAirFields, data_format: int = 0xE1) -> bytes:
    """The manufacturer-data bytes of ``fields`` in format E1 (40 bytes) or 6 (20 bytes);
    ValueError if a value does not fit, or a field format 6 lacks is given."""
    f = fields
    if data_format not in (6, 0xE1):
        raise ValueError(f"Ruuvi Air data formats are 6 and 0xE1, not {data_format}")
    temp = _fit("temperature", f.temperature, 200, 32767, _NA_INT16, lo=-32767)
    hum = _fit("humidity", f.humidity, 400, 65534, _NA_UINT16)
    pres = _fit("pressure", _offset_pressure(f.pressure), 1, 65534, _NA_UINT16)
    pm25 = _fit("pm25", f.pm25, 10, 65534, _NA_UINT16)
    co2 = _fit("co2", f.co2, 1, 65534, _NA_UINT16)
    voc = _fit("voc_index", f.voc_index, 1, 510, _NA_INDEX)
    nox = _fit("nox_index", f.nox_index, 1, 510, _NA_INDEX)
    flags = (
        (_CALIBRATING if f.calibrating else 0)
        | (_VOC_BIT if voc & 1 else 0)
        | (_NOX_BIT if nox & 1 else 0)
    )
    mac = mac_bytes(f.mac)
    if data_format == 6:
        extra = [n for n in ("pm1", "pm4", "pm10") if getattr(f, n) is not None]
        if extra:
            raise ValueError(f"Ruuvi data format 6 does not carry {', '.join(extra)}")
        if f.illuminance is None:
            lux = _NA_LUX_CODE
        elif not 0 <= f.illuminance <= 65535:
            raise ValueError(f"Ruuvi Air illuminance = {f.illuminance!r} is outside 0..65535 lx")
        else:
            lux = round(math.log1p(f.illuminance) / _LUX_STEP)
        if f.sequence is None or not 0 <= f.sequence <= 0xFF:
            raise ValueError(f"Ruuvi data format 6 needs a sequence 0..255, got {f.sequence!r}")
        return _V6.pack(
            6, temp, hum, pres, pm25, co2, voc >> 1, nox >> 1, lux, 0xFF, f.sequence, flags, mac[3:]
        )
    pms = [_fit(n, getattr(f, n), 10, 65534, _NA_UINT16) for n in ("pm1", "pm4", "pm10")]
    lux24 = _fit("illuminance", f.illuminance, 100, _NA_UINT24 - 1, _NA_UINT24)
    seq = _NA_UINT24 if f.sequence is None else f.sequence
    if not 0 <= seq <= _NA_UINT24:
        raise ValueError(f"Ruuvi data format E1 sequence {seq} is outside 0..16777214")
    return _E1.pack(
        0xE1,
        temp,
        hum,
        pres,
        pms[0],
        pm25,
        pms[1],
        pms[2],
        co2,
        voc >> 1,
        nox >> 1,
        lux24.to_bytes(3, "big"),
        b"\xff" * 3,
        seq.to_bytes(3, "big"),
        flags,
        b"\xff" * 5,
        mac,
    )
