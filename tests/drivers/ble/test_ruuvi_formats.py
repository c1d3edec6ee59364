"""Ruuvi data formats 3 (RAWv1), 6 and E1 (Ruuvi Air): Ruuvi's published vectors, both ways.

The vectors are in tests/vectors/ble.json ("ruuvi_v3", "ruuvi_v6", "ruuvi_e1"; their sources in
"ruuvi_formats_about"). Format 5 is tested in test_codecs.py.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.ble.ruuvi import DATA_FORMATS, RuuviFields, decode_ruuvi, encode_ruuvi
from drivers.ble.ruuvi_air import RuuviAirFields, encode_ruuvi_air
from gateway.core.errors import FrameError
from tests.support.ruuvi_vectors import VECTORS, air_fields

G = 9.80665
AIR = [(6, v) for v in VECTORS["ruuvi_v6"]] + [(0xE1, v) for v in VECTORS["ruuvi_e1"]]
FLAGS_OFFSET = {6: 16, 0xE1: 28}
AIR_IDS = [f"{f:X}-{v['name']}" for f, v in AIR]
DOCUMENTED_FLAG_BITS = 0xC1  # calibration (bit 0), VOC and NOx bit 0 (bits 6, 7)


def values(advert: Any) -> dict[str, float]:
    return {s.metric: s.value for s in advert.samples}


@pytest.mark.parametrize("vector", VECTORS["ruuvi_v3"], ids=lambda v: v["name"])
def test_format_3_vectors_decode(vector: dict[str, Any]):
    advert = decode_ruuvi(bytes.fromhex(vector["manufacturer_data"]))
    got = values(advert)
    want = dict(vector["samples"])
    acceleration_g = want.pop("acceleration_g")
    assert [round(got.pop(f"acceleration_{a}") / G, 6) for a in "xyz"] == acceleration_g
    assert got == want
    assert (advert.data_format, advert.sequence, advert.mac) == (3, None, None)


@pytest.mark.parametrize("vector", VECTORS["ruuvi_v3"], ids=lambda v: v["name"])
def test_format_3_vectors_encode_byte_for_byte(vector: dict[str, Any]):
    data = bytes.fromhex(vector["manufacturer_data"])
    fields = RuuviFields(**values(decode_ruuvi(data)))  # type: ignore[arg-type]
    assert encode_ruuvi(fields, data_format=3) == data


@pytest.mark.parametrize(
    ("data_format", "vector"), AIR, ids=lambda v: getattr(v, "get", str)("name")
)
def test_air_vectors_decode(data_format: int, vector: dict[str, Any]):
    advert = decode_ruuvi(bytes.fromhex(vector["manufacturer_data"]))
    assert values(advert) == vector["samples"]
    assert [s.unit for s in advert.samples if s.metric.startswith("pm")] == ["ug/m3"] * sum(
        1 for m in vector["samples"] if m.startswith("pm")
    )
    assert (advert.data_format, advert.sequence, advert.mac) == (
        data_format,
        vector["sequence"],
        vector["mac"],
    )


@pytest.mark.parametrize(
    ("data_format", "vector"), AIR, ids=lambda v: getattr(v, "get", str)("name")
)
def test_air_vectors_encode_byte_for_byte_but_reserved_flag_bits(
    data_format: int, vector: dict[str, Any]
):
    official = bytearray.fromhex(vector["manufacturer_data"])
    official[FLAGS_OFFSET[data_format]] &= DOCUMENTED_FLAG_BITS  # we write reserved bits as 0
    assert encode_ruuvi_air(air_fields(vector, data_format), data_format) == official


@pytest.mark.parametrize(
    ("hex_data", "message"),
    [
        ("0329", r"data format 3 \(RAWv1\) is 14 bytes, got 2"),
        ("03291A64CE1EFC18F94202CA0B53", "fraction byte 100 is above 99"),
        ("06170C", "data format 6 is 20 bytes, got 3"),
        ("E1170C", "data format E1 is 40 bytes, got 3"),
        ("04", r"data format 0x04 is not supported \(this gateway reads 0x03 \(RAWv1\), 0x05"),
        ("", "empty Ruuvi manufacturer data"),
    ],
)
def test_bad_payloads_say_what_is_wrong(hex_data: str, message: str):
    with pytest.raises(FrameError, match=message):
        decode_ruuvi(bytes.fromhex(hex_data))


def test_encoders_refuse_what_the_format_cannot_carry():
    with pytest.raises(ValueError, match="format 3 does not carry sequence"):
        encode_ruuvi(RuuviFields(temperature=1.0, sequence=0), data_format=3)
    with pytest.raises(ValueError, match="no 'not available' marker"):
        encode_ruuvi(RuuviFields(temperature=1.0), data_format=3)
    with pytest.raises(ValueError, match="format 6 does not carry pm1, pm10"):
        encode_ruuvi_air(RuuviAirFields(pm1=1.0, pm10=2.0, sequence=1), data_format=6)
    with pytest.raises(ValueError, match=r"sequence 0\.\.255"):
        encode_ruuvi_air(RuuviAirFields(sequence=256), data_format=6)
    with pytest.raises(ValueError, match="voc_index"):
        encode_ruuvi_air(RuuviAirFields(voc_index=511))
    with pytest.raises(ValueError, match="formats are 6 and 0xE1"):
        encode_ruuvi_air(RuuviAirFields(), data_format=5)


def test_a_temperature_of_minus_half_a_degree_keeps_its_sign_in_format_3():
    data = encode_ruuvi(
        RuuviFields(
            temperature=-0.5,
            humidity=50.0,
            pressure=100000.0,
            acceleration_x=0.0,
            acceleration_y=0.0,
            acceleration_z=0.0,
            voltage=3.0,
        ),
        data_format=3,
    )
    assert data[2:4] == bytes([0x80, 50])
    assert values(decode_ruuvi(data))["temperature"] == -0.5


ORIGINALS = [
    bytes.fromhex(v["manufacturer_data"])
    for key in ("ruuvi", "ruuvi_v3", "ruuvi_v6", "ruuvi_e1")
    for v in VECTORS[key]
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(ORIGINALS)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data) - 1)) if data else 0
        op = draw(st.sampled_from(["flip", "cut", "insert"]))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            del data[at:]
        else:
            data[at:at] = bytes([draw(st.integers(0, 255))])
    return bytes(data)


@settings(max_examples=500)
@given(
    st.binary(max_size=45)
    | mutated()
    | st.tuples(st.sampled_from(sorted(DATA_FORMATS)), st.binary(max_size=45)).map(
        lambda t: bytes([t[0]]) + t[1]
    )
)
def test_random_bytes_raise_nothing_but_frame_errors(data: bytes):
    try:
        advert = decode_ruuvi(data)
    except FrameError:
        return
    assert advert.data_format == data[0]
    assert all(isinstance(s.value, float) and math.isfinite(s.value) for s in advert.samples)


def finite(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


@settings(max_examples=200)
@given(
    st.builds(
        RuuviAirFields,
        temperature=st.none() | finite(-163.8, 163.8),
        humidity=st.none() | finite(0, 163.8),
        pressure=st.none() | finite(50000, 115534),
        pm1=st.none() | finite(0, 6553.4),
        pm25=st.none() | finite(0, 6553.4),
        pm4=st.none() | finite(0, 6553.4),
        pm10=st.none() | finite(0, 6553.4),
        co2=st.none() | st.integers(0, 65534).map(float),
        voc_index=st.none() | st.integers(0, 510),
        nox_index=st.none() | st.integers(0, 510),
        illuminance=st.none() | finite(0, 167772.14),
        calibrating=st.booleans(),
        sequence=st.none() | st.integers(0, 16777214),
        mac=st.none() | st.binary(min_size=6, max_size=6).map(lambda b: b.hex(":").upper()),
    )
)
def test_e1_encoder_and_decoder_agree(fields: RuuviAirFields):
    advert = decode_ruuvi(encode_ruuvi_air(fields))
    got = values(advert)
    assert got.pop("calibration_state") == float(fields.calibrating)
    steps = {"temperature": 0.005, "humidity": 0.0025, "pressure": 1, "illuminance": 0.01}
    for name in ("temperature", "humidity", "pressure", "pm1", "pm25", "pm4", "pm10", "co2",
                 "voc_index", "nox_index", "illuminance"):  # fmt: skip
        sent = getattr(fields, name)
        if sent is None:
            assert name not in got
        else:
            step = steps.get(name, 0.1 if name.startswith("pm") else 0)
            assert abs(got[name] - sent) <= step / 2 + 1e-9, name
    assert advert.sequence == fields.sequence
    assert advert.mac == (None if fields.mac == "FF:FF:FF:FF:FF:FF" else fields.mac)


def test_docs_ble_md_lists_every_ruuvi_format_and_metric():
    text = (Path(__file__).resolve().parents[3] / "docs" / "ble.md").read_text(encoding="utf-8")
    table = text.split("## Ruuvi", 1)[1]
    rows = [line for line in table.splitlines() if line.startswith("| ") and "bytes" in line]
    assert [row.split("|")[1].split()[0].rstrip(",") for row in rows] == [
        f"{f:X}" for f in sorted(DATA_FORMATS)
    ]
    metrics = {
        s.metric
        for key in ("ruuvi", "ruuvi_v3", "ruuvi_v6", "ruuvi_e1")
        for v in VECTORS[key]
        for s in decode_ruuvi(bytes.fromhex(v["manufacturer_data"])).samples
    }
    missing = {m for m in metrics if f"`{m}" not in table and m.split("_")[0] != "acceleration"}
    assert not missing, f"docs/ble.md does not name {sorted(missing)}"
