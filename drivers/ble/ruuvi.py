"""Ruuvi advertisements: data formats 3, 5, 6 and E1, pure decoders and encoders (no I/O).

All are Manufacturer Specific Data of company 0x0499, most significant byte first; the first
byte names the format (docs.ruuvi.com, communication/bluetooth-advertisements):

- **3 (RAWv1)**, 14 bytes, older RuuviTag firmware: humidity, temperature, pressure,
  acceleration, battery. It has no "not available" markers (Ruuvi: "send 0").
- **5 (RAWv2)**, 24 bytes, the RuuviTag's format, below.
- **6**, 20 bytes, Ruuvi Air over Bluetooth 4: climate, PM2.5, CO2, VOC and NOx index,
  luminosity (logarithmic, one byte), an 8-bit sequence, the low 3 bytes of the MAC.
- **E1 (Extended v1)**, 40 bytes, Ruuvi Air over Bluetooth 5 extended advertising: as 6 with
  PM1.0/2.5/4.0/10, luminosity in 0.01 lx, a 24-bit sequence and the full MAC. A Ruuvi Air
  sends both 6 and E1; Ruuvi says a receiver that hears E1 should discard 6.

Data format 5, 24 bytes (``dataformat_05.md``)::

    0      format (5)
    1-2    temperature     int16  × 0.005 °C       0x8000 = not available
    3-4    humidity        uint16 × 0.0025 %RH     0xFFFF = not available
    5-6    pressure        uint16 + 50000 Pa       0xFFFF = not available
    7-12   acceleration    3 × int16 mG (X, Y, Z)  0x8000 = not available
    13-14  power           11 bits battery mV - 1600 (2047 n/a), 5 bits TX dBm (-40 + 2n, 31 n/a)
    15     movement count  uint8                   255 = not available
    16-17  sequence        uint16                  65535 = not available
    18-23  MAC address                             FF:FF:FF:FF:FF:FF = not available

In every format a field that is "not available" is left out of the samples (never turned into
a number). The measurement sequence number is returned apart from the samples: it tells repeats
of one measurement from new ones. Acceleration is reported in m/s² (1 mG = 0.00980665 m/s²).
Formats 6 and E1 are decoded in :mod:`drivers.ble.ruuvi_air`; :func:`decode_ruuvi` takes any.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

from drivers.ble.ruuvi_air import climate_samples, decode_ruuvi_air, mac_bytes
from gateway.core.errors import FrameError
from gateway.core.model import Sample

__all__ = [
    "DATA_FORMAT",
    "DATA_FORMATS",
    "LENGTH",
    "LENGTH_V3",
    "MANUFACTURER_ID",
    "TAG_METRICS",
    "RuuviAdvert",
    "RuuviFields",
    "decode_ruuvi",
    "encode_ruuvi",
]

MANUFACTURER_ID = 0x0499  # Ruuvi Innovations Ltd., the key in bleak's manufacturer_data
DATA_FORMAT = 5
LENGTH = 24
LENGTH_V3 = 14
#: Every data format :func:`decode_ruuvi` reads, with its name.
DATA_FORMATS: dict[int, str] = {3: "RAWv1", 5: "RAWv2", 6: "Ruuvi Air", 0xE1: "Ruuvi Air, extended"}

#: The metrics of a RuuviTag (data format 5; format 3 lacks the last two): the measurements
#: of :class:`RuuviFields`, by the names the decoder gives its samples.
TAG_METRICS = (
    "temperature",
    "humidity",
    "pressure",
    "acceleration_x",
    "acceleration_y",
    "acceleration_z",
    "voltage",
    "tx_power",
    "movement_count",
)

_LAYOUT = struct.Struct(">BhHHhhhHBH6s")
_LAYOUT_V3 = struct.Struct(">BBBBHhhhH")
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
    """What one DF5 (or DF3) advertisement says; None is "not available" (the encoder's input).

    Data format 3 carries temperature, humidity, pressure, acceleration and voltage only.
    """

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
    """One decoded Ruuvi advertisement."""

    samples: list[Sample]
    sequence: int | None  # the measurement sequence number
    mac: str | None  # the MAC the payload carries (None in 3 and 6: none, or only 3 bytes)
    data_format: int = DATA_FORMAT


def decode_ruuvi(data: bytes) -> RuuviAdvert:
    """Decode the manufacturer data of company 0x0499 (the bytes after the company id), in
    any of :data:`DATA_FORMATS`; FrameError for anything else."""
    if not data:
        raise FrameError("empty Ruuvi manufacturer data (got 0 bytes; expected the format byte)")
    data_format = data[0]
    if data_format == DATA_FORMAT:
        return _decode_v5(data)
    if data_format == 3:
        return _decode_v3(data)
    if data_format in DATA_FORMATS:
        samples, sequence, mac = decode_ruuvi_air(data)
        return RuuviAdvert(samples, sequence, mac, data_format)
    known = ", ".join(f"0x{f:02X} ({name})" for f, name in DATA_FORMATS.items())
    raise FrameError(
        f"Ruuvi data format 0x{data_format:02X} is not supported (this gateway reads {known})"
    )


def _decode_v5(data: bytes) -> RuuviAdvert:
    if len(data) != LENGTH:
        raise FrameError(f"Ruuvi data format 5 is {LENGTH} bytes, got {len(data)}")
    _, temp, hum, pres, ax, ay, az, power, movement, seq, mac = _LAYOUT.unpack(data)
    # Each value is one correctly rounded division, so it is exactly the decimal the format
    # means (x 0.005 is / 200: 4860 / 200 is 24.3), without binary noise.
    samples = climate_samples(temp, hum, pres)
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


def _decode_v3(data: bytes) -> RuuviAdvert:
    if len(data) != LENGTH_V3:
        raise FrameError(f"Ruuvi data format 3 (RAWv1) is {LENGTH_V3} bytes, got {len(data)}")
    _, hum, temp_int, temp_frac, pres, ax, ay, az, battery = _LAYOUT_V3.unpack(data)
    if temp_frac > 99:
        raise FrameError(
            f"Ruuvi data format 3: temperature fraction byte {temp_frac} is above 99 (hundredths)"
        )
    # Sign and magnitude, not two's complement: bit 7 is the sign, the rest whole degrees.
    centi = (temp_int & 0x7F) * 100 + temp_frac
    samples = [
        Sample("temperature", (-centi if temp_int & 0x80 else centi) / 100, "Cel"),
        Sample("humidity", hum / 2, "%RH"),
        Sample("pressure", float(pres + 50000), "Pa"),
    ]
    for metric, raw in (("acceleration_x", ax), ("acceleration_y", ay), ("acceleration_z", az)):
        samples.append(Sample(metric, raw * _G_NUMERATOR / _G_DENOMINATOR, "m/s2"))
    samples.append(Sample("voltage", battery / 1000, "V"))
    return RuuviAdvert(samples=samples, sequence=None, mac=None, data_format=3)


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
        raise ValueError(f"Ruuvi {name} = {value!r} is outside what its data format can carry")
    return rounded


def encode_ruuvi(fields: RuuviFields, data_format: int = DATA_FORMAT) -> bytes:
    """The manufacturer-data bytes of ``fields`` in data format 5 (24 bytes) or 3 (14 bytes);
    ValueError if a value does not fit, or a field the format lacks is given."""
    if data_format == 3:
        return _encode_v3(fields)
    if data_format != DATA_FORMAT:
        raise ValueError(
            f"encode_ruuvi writes data formats 3 and 5, not {data_format} "
            "(formats 6 and E1: drivers.ble.ruuvi_air.encode_ruuvi_air)"
        )
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
    mac = mac_bytes(f.mac)
    return _LAYOUT.pack(DATA_FORMAT, temp, hum, pres, *acc, (battery << 5) | tx, movement, seq, mac)


def _encode_v3(f: RuuviFields) -> bytes:
    lacking = ("tx_power", "movement_count", "sequence", "mac")
    extra = [name for name in lacking if getattr(f, name) is not None]
    if extra:
        raise ValueError(f"Ruuvi data format 3 does not carry {', '.join(extra)}")
    values = [f.temperature, f.humidity, f.pressure, f.voltage]
    values += [f.acceleration_x, f.acceleration_y, f.acceleration_z]
    if any(v is None for v in values):
        # Ruuvi's advice for 3 is to send 0; a receiver would take that for a reading.
        raise ValueError("Ruuvi data format 3 has no 'not available' marker: give every value")
    temp = f.temperature or 0.0
    centi = _fit("temperature", temp, abs(temp) * 100, (0, 12799, -1))
    temp_int = (centi // 100) | (0x80 if temp < 0 and centi else 0)
    acc = [
        _fit(name, value, (value or 0) / _G, _INT16)
        for name, value in (
            ("acceleration_x", f.acceleration_x),
            ("acceleration_y", f.acceleration_y),
            ("acceleration_z", f.acceleration_z),
        )
    ]
    return _LAYOUT_V3.pack(
        3,
        _fit("humidity", f.humidity, (f.humidity or 0) * 2, (0, 255, -1)),
        temp_int,
        centi % 100,
        _fit("pressure", f.pressure, (f.pressure or 0) - 50000, (0, 65535, -1)),
        *acc,
        _fit("voltage", f.voltage, (f.voltage or 0) * 1000, (0, 65535, -1)),
    )
