"""BLE payload codecs: BTHome v2, RuuviTag DF5 and GATT values (pure; no radio, no bleak).

The official vectors are copied as literals from their sources (bthome-ble's tests, Ruuvi's
dataformat_05.md). tests/vectors/ble.json holds the golden vectors shared by the decoders, the
encoders and the firmware's tests.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from drivers.ble.bthome import (
    OBJECTS,
    BthomeDecoder,
    ObjectKind,
    UnknownObjectError,
    decode_bthome,
    encode_bthome,
    mac_bytes,
)
from drivers.ble.gatt_codec import CharacteristicCodec
from drivers.ble.ruuvi import RuuviFields, decode_ruuvi, encode_ruuvi
from drivers.profile import DataType, Order
from gateway.config.devices import GattCharacteristic
from gateway.core.errors import ChecksumError, FrameError
from gateway.core.model import Sample

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[2] / "vectors" / "ble.json").read_text(encoding="utf-8")
)
BTHOME_VECTORS = VECTORS["bthome"]
BTHOME_SPEC_EXAMPLES = VECTORS["bthome_spec_examples"]
RUUVI_VECTORS = VECTORS["ruuvi"]

KEY = bytes.fromhex("231d39c1d7cc1ab1aee224cd096db932")
MAC = "54:48:E6:8F:80:A5"
ENCRYPTED = bytes.fromhex("41a47266c95f730011223378237214")


def values(samples: list[Sample]) -> dict[str, float]:
    return {s.metric: s.value for s in samples}


# -- BTHome v2: the official vectors ---------------------------------------------------------


@pytest.mark.parametrize(
    ("hex_data", "expected", "packet_id"),
    [
        ("4002ca0903bf13", {"temperature": 25.06, "humidity": 50.55}, None),
        ("40 0009 015d 025d09 03b718", {"battery": 93, "temperature": 23.97, "humidity": 63.27}, 9),
        ("40 04138a01", {"pressure": 1008.83}, None),
        ("40 0d120c 0e021c", {"pm25": 3090, "pm10": 7170}, None),
        ("40 0c020c", {"voltage": 3.074}, None),
        ("40 12e204", {"co2": 1250}, None),
        ("44 04138a01", {"pressure": 1008.83}, None),
    ],
)
def test_bthome_official_vectors(hex_data: str, expected: dict[str, float], packet_id: int | None):
    advert = decode_bthome(bytes.fromhex(hex_data))
    assert values(advert.samples) == expected
    assert advert.packet_id == packet_id
    assert not advert.encrypted
    assert advert.trigger_based == hex_data.startswith("44")


def test_bthome_official_encrypted_vector_with_its_key():
    advert = decode_bthome(ENCRYPTED, MAC, KEY)
    assert values(advert.samples) == {"temperature": 25.06, "humidity": 50.55}
    assert advert.encrypted
    assert advert.counter == int.from_bytes(bytes.fromhex("00112233"), "little")
    # and the encoder seals the plaintext 02CA0903BF13 into exactly the official bytes
    sealed = encode_bthome([(0x02, 25.06), (0x03, 50.55)], key=KEY, mac=MAC, counter=0x33221100)
    assert sealed == ENCRYPTED


def test_bthome_units_are_senml_style():
    advert = decode_bthome(bytes.fromhex("400009015d025d0903b718"))
    assert {s.metric: s.unit for s in advert.samples} == {
        "battery": "%",
        "temperature": "Cel",
        "humidity": "%RH",
    }


@pytest.mark.parametrize(
    ("data", "key", "error", "message"),
    [
        (ENCRYPTED, bytes(16), ChecksumError, "MIC does not match"),
        (ENCRYPTED[:-1] + bytes([ENCRYPTED[-1] ^ 1]), KEY, ChecksumError, "MIC does not match"),
        (ENCRYPTED[:5] + bytes([ENCRYPTED[5] ^ 0x80]) + ENCRYPTED[6:], KEY, ChecksumError, "MIC"),
        (ENCRYPTED, None, FrameError, "no key is configured"),
        (bytes.fromhex("4002ca0903bf13"), KEY, FrameError, "unencrypted BTHome advertisement"),
        (bytes.fromhex("41a4722233"), KEY, FrameError, "expected at least 8"),
        (b"", None, FrameError, "empty"),
        (bytes.fromhex("2002ca09"), None, FrameError, "version 1"),
        (bytes.fromhex("4002ca"), None, FrameError, "needs 2 bytes, only 1 left"),
        (bytes.fromhex("40020000fe01"), None, FrameError, "unknown BTHome object id 0xfe"),
        (bytes.fromhex("42a5808f"), None, FrameError, "says a MAC follows"),
        (bytes.fromhex("4053"), None, FrameError, "lacks its length byte"),
    ],
)
def test_bthome_bad_adverts_raise_frame_errors_naming_the_problem(
    data: bytes, key: bytes | None, error: type[FrameError], message: str
):
    with pytest.raises(error, match=message):
        decode_bthome(data, MAC, key)


def test_bthome_wrong_key_is_a_checksum_error_not_garbage_values():
    with pytest.raises(ChecksumError):
        BthomeDecoder(MAC, bytes.fromhex("814aac74c4f17b6c1581e1ab87816b99")).decode(ENCRYPTED)


def test_bthome_mac_included_is_read_and_used_for_the_nonce():
    plain = encode_bthome([(0x02, 21.5)], packet_id=3, mac=MAC, include_mac=True)
    assert plain[1:7] == mac_bytes(MAC)[::-1]
    advert = decode_bthome(plain)
    assert advert.mac == MAC
    assert values(advert.samples) == {"temperature": 21.5}
    sealed = encode_bthome([(0x02, 21.5)], key=KEY, mac=MAC, counter=7, include_mac=True)
    # the decoder is told another MAC (a random advertising address): the payload's one wins
    decoded = decode_bthome(sealed, "11:22:33:44:55:66", KEY)
    assert decoded.mac == MAC
    assert values(decoded.samples) == {"temperature": 21.5}


def test_bthome_text_and_raw_objects_are_skipped_and_events_and_binaries_kept():
    data = bytes.fromhex("40 00 07 21 01 3a 02 3c 01 03 53 03 616263 54 00")
    advert = decode_bthome(data)
    assert advert.packet_id == 7
    assert advert.samples == [
        Sample("motion_state", 1.0, ""),
        Sample("button", 2.0, ""),
        Sample("dimmer", -3.0, ""),
    ]


@pytest.mark.parametrize(("hex_object", "value"), BTHOME_SPEC_EXAMPLES, ids=str)
def test_bthome_spec_example_of_every_numeric_object_decodes_and_encodes(
    hex_object: str, value: float
):
    object_id = int(hex_object[:2], 16)
    advert = decode_bthome(bytes.fromhex("40" + hex_object))
    assert [(s.value, s.unit) for s in advert.samples] == [(value, OBJECTS[object_id].unit)]
    assert encode_bthome([(object_id, value)]).hex() == "40" + hex_object


def test_bthome_spec_examples_cover_every_numeric_object():
    numeric = {i for i, t in OBJECTS.items() if t.kind in (ObjectKind.SENSOR, ObjectKind.BINARY)}
    # 0x50 timestamp: its example's result is a date, not given as a number
    assert {int(h[:2], 16) for h, _ in BTHOME_SPEC_EXAMPLES} == numeric - {0x50}


@pytest.mark.parametrize(
    ("hex_data", "expected"),
    [
        # bthome.io/format's event, command and device examples
        ("40 3a00", [("button", 0.0)]),
        ("40 3a80", [("button", 128.0)]),  # hold_press
        ("40 3b0000", [("command", 0.0)]),  # off
        ("40 3b0002", [("command", 2.0)]),  # toggle
        ("40 3b010305", [("command", 3.0), ("command_steps", 5.0)]),  # step up 5 steps
        ("40 3b010405", [("command", 4.0), ("command_steps", 5.0)]),  # step down 5 steps
        ("40 3b0205aabb", [("command", 5.0)]),  # reserved opcode, manufacturer arguments
        ("40 3c0103", [("dimmer", -3.0)]),  # rotate left 3 steps
        ("40 3c020a", [("dimmer", 10.0)]),  # rotate right 10 steps
        ("40 f00100 f100010204 f2000106 6503", [("settings_revision", 3.0)]),
        ("40 530c48656c6c6f20576f726c6421 540c48656c6c6f20576f726c6421 0161", [("battery", 97.0)]),
    ],
)
def test_bthome_events_commands_and_skipped_objects(hex_data: str, expected: list[Any]):
    advert = decode_bthome(bytes.fromhex(hex_data))
    assert [(s.metric, s.value) for s in advert.samples] == expected


def test_bthome_objects_after_a_command_are_found_by_its_length_byte():
    # 3 argument bytes, and the reserved high bits of the length byte set: still 3
    advert = decode_bthome(bytes.fromhex("40 3b e3 01 aabbcc 6507"))
    assert values(advert.samples) == {"command": 1.0, "settings_revision": 7.0}
    with pytest.raises(FrameError, match=r"0x3b at byte 0 needs 4 bytes, only 3 left"):
        decode_bthome(bytes.fromhex("40 3b 03 01 aabb"))
    assert encode_bthome([(0x3B, 2), (0x65, 3)]).hex() == "403b00026503"
    with pytest.raises(ValueError, match="command opcode 9"):
        encode_bthome([(0x3B, 9)])


def test_bthome_unknown_object_id_is_refused_with_the_reason_and_its_place():
    with pytest.raises(UnknownObjectError) as caught:
        decode_bthome(bytes.fromhex("40 02ca09 66 01 03bf13"))
    error = caught.value
    assert isinstance(error, FrameError)
    assert (error.object_id, error.offset) == (0x66, 3)
    assert "0x66 at byte 3" in str(error)
    assert "not in the BTHome v2 object table" in str(error)
    assert "gives no length" in str(error)


def test_bthome_two_objects_of_one_metric_are_numbered():
    data = encode_bthome([(0x02, 21.5), (0x45, 22.1), (0x03, 40.0)])
    assert values(decode_bthome(data).samples) == {
        "temperature_1": 21.5,
        "humidity": 40.0,
        "temperature_2": 22.1,
    }


def test_bthome_encoder_refuses_values_that_do_not_fit_and_non_numeric_objects():
    with pytest.raises(ValueError, match="does not fit BTHome object 0x02"):
        encode_bthome([(0x02, 400.0)])
    with pytest.raises(ValueError, match="0x01"):
        encode_bthome([(0x01, -1)])
    with pytest.raises(ValueError, match="does not fit"):
        encode_bthome([(0x03, math.nan)])
    with pytest.raises(ValueError, match="cannot encode BTHome object id 0x53"):
        encode_bthome([(0x53, 1)])
    with pytest.raises(ValueError, match="cannot encode BTHome object id 0xfe"):
        encode_bthome([(0xFE, 1)])
    with pytest.raises(ValueError, match="needs the device's mac"):
        encode_bthome([(0x02, 1.0)], key=KEY)
    with pytest.raises(ValueError, match="packet id 256"):
        encode_bthome([], packet_id=256)
    with pytest.raises(ValueError, match="MAC address like"):
        mac_bytes("54-48-E6-8F-80-A5")


# -- RuuviTag data format 5: the official vectors ---------------------------------------------

G = 9.80665


def test_ruuvi_official_valid_vector():
    advert = decode_ruuvi(bytes.fromhex("0512FC5394C37C0004FFFC040CAC364200CDCBB8334C884F"))
    got = values(advert.samples)
    assert got["temperature"] == 24.3
    assert got["humidity"] == 53.49
    assert got["pressure"] == 100044
    assert [round(got[f"acceleration_{a}"] / G, 6) for a in "xyz"] == [0.004, -0.004, 1.036]
    assert got["voltage"] == 2.977
    assert got["tx_power"] == 4
    assert got["movement_count"] == 66
    assert advert.sequence == 205
    assert advert.mac == "CB:B8:33:4C:88:4F"
    assert {s.metric: s.unit for s in advert.samples}["pressure"] == "Pa"


def test_ruuvi_official_maximum_vector():
    advert = decode_ruuvi(bytes.fromhex("057FFFFFFEFFFE7FFF7FFF7FFFFFDEFEFFFECBB8334C884F"))
    got = values(advert.samples)
    assert (got["temperature"], got["humidity"], got["pressure"]) == (163.835, 163.835, 115534)
    assert [round(got[f"acceleration_{a}"] / G, 6) for a in "xyz"] == [32.767] * 3
    assert (got["voltage"], got["tx_power"], got["movement_count"]) == (3.646, 20, 254)
    assert advert.sequence == 65534


def test_ruuvi_official_minimum_vector():
    advert = decode_ruuvi(bytes.fromhex("058001000000008001800180010000000000CBB8334C884F"))
    got = values(advert.samples)
    assert (got["temperature"], got["humidity"], got["pressure"]) == (-163.835, 0, 50000)
    assert [round(got[f"acceleration_{a}"] / G, 6) for a in "xyz"] == [-32.767] * 3
    assert (got["voltage"], got["tx_power"], got["movement_count"]) == (1.6, -40, 0)
    assert advert.sequence == 0


def test_ruuvi_official_invalid_vector_has_no_values_at_all():
    advert = decode_ruuvi(bytes.fromhex("058000FFFFFFFF800080008000FFFFFFFFFFFFFFFFFFFFFF"))
    assert advert.samples == []  # "not available" never becomes a number
    assert advert.sequence is None
    assert advert.mac is None


def test_ruuvi_single_missing_field_is_left_out_and_the_rest_kept():
    data = encode_ruuvi(RuuviFields(temperature=21.0, humidity=None, pressure=101325.0))
    assert values(decode_ruuvi(data).samples) == {"temperature": 21.0, "pressure": 101325.0}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (bytes.fromhex("0512FC5394C37C0004FFFC040CAC364200CDCBB8334C88"), "24 bytes, got 23"),
        (bytes.fromhex("0312FC5394C37C0004FFFC040CAC364200CDCBB8334C884F"), "format 3"),
        (b"", "got 0"),
    ],
)
def test_ruuvi_bad_payloads(data: bytes, message: str):
    with pytest.raises(FrameError, match=message):
        decode_ruuvi(data)


def test_ruuvi_encoder_refuses_values_out_of_range():
    with pytest.raises(ValueError, match="temperature"):
        encode_ruuvi(RuuviFields(temperature=200.0))
    with pytest.raises(ValueError, match="even values"):
        encode_ruuvi(RuuviFields(tx_power=3))
    with pytest.raises(ValueError, match="voltage"):
        encode_ruuvi(RuuviFields(voltage=math.inf))
    with pytest.raises(ValueError, match="MAC"):
        encode_ruuvi(RuuviFields(mac="CB:B8:33:4C:88"))


# -- golden vectors: one file for the decoders, the encoders and the firmware ----------------


@pytest.mark.parametrize("vector", BTHOME_VECTORS, ids=lambda v: v["name"])
def test_bthome_golden_vector_decodes(vector: dict[str, Any]):
    key = bytes.fromhex(vector["key"]) if "key" in vector else None
    advert = decode_bthome(bytes.fromhex(vector["service_data"]), vector.get("mac"), key)
    assert [[s.metric, s.value, s.unit] for s in advert.samples] == vector["samples"]
    assert advert.packet_id == vector["packet_id"]
    assert advert.trigger_based == vector["trigger_based"]
    assert advert.counter == vector.get("counter")


@pytest.mark.parametrize("vector", BTHOME_VECTORS, ids=lambda v: v["name"])
def test_bthome_golden_vector_encodes(vector: dict[str, Any]):
    key = bytes.fromhex(vector["key"]) if "key" in vector else None
    data = encode_bthome(
        [(object_id, value) for object_id, value in vector["objects"]],
        packet_id=vector["packet_id"],
        trigger_based=vector["trigger_based"],
        key=key,
        mac=vector.get("mac"),
        counter=vector.get("counter", 0),
    )
    assert data.hex() == vector["service_data"]


@pytest.mark.parametrize("vector", RUUVI_VECTORS, ids=lambda v: v["name"])
def test_ruuvi_golden_vector_round_trips(vector: dict[str, Any]):
    data = bytes.fromhex(vector["manufacturer_data"])
    fields = vector["fields"]
    assert encode_ruuvi(RuuviFields(**fields)) == data
    advert = decode_ruuvi(data)
    assert advert.sequence == fields["sequence"]
    assert advert.mac == fields["mac"]
    expected = {k: v for k, v in fields.items() if k not in ("sequence", "mac") and v is not None}
    assert values(advert.samples) == expected


# -- hypothesis: nothing but FrameError escapes; encoders and decoders agree ------------------

MUTABLE = [bytes.fromhex(v["service_data"]) for v in BTHOME_VECTORS]


@st.composite
def mutated(draw: st.DrawFn, originals: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(originals)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "drop"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            del data[at:]
        elif op == "insert":
            data[at:at] = bytes([draw(st.integers(0, 255))])
        elif data:
            del data[at]
    return bytes(data)


@settings(max_examples=400)
@given(st.binary(max_size=40) | mutated(MUTABLE), st.sampled_from([None, KEY]))
@example(bytes.fromhex("42") + bytes(6) + bytes.fromhex("53ff"), None)
def test_bthome_decoder_raises_nothing_but_frame_errors(data: bytes, key: bytes | None):
    try:
        advert = decode_bthome(data, MAC, key)
    except FrameError:
        return
    assert all(isinstance(s.value, float) for s in advert.samples)


RUUVI_ORIGINALS = [bytes.fromhex(v["manufacturer_data"]) for v in RUUVI_VECTORS]


@settings(max_examples=300)
@given(st.binary(max_size=30) | mutated(RUUVI_ORIGINALS))
def test_ruuvi_decoder_raises_nothing_but_frame_errors(data: bytes):
    try:
        advert = decode_ruuvi(data)
    except FrameError:
        return
    assert all(math.isfinite(s.value) for s in advert.samples)


NUMERIC = sorted(i for i, t in OBJECTS.items() if t.kind in (ObjectKind.SENSOR, ObjectKind.BINARY))


@st.composite
def bthome_objects(draw: st.DrawFn) -> list[tuple[int, float]]:
    ids = draw(st.lists(st.sampled_from(NUMERIC), max_size=5, unique=True))
    objects = []
    for object_id in ids:
        shape = OBJECTS[object_id]
        bits = 8 * shape.length
        lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if shape.signed else (0, 2**bits - 1)
        objects.append((object_id, shape.to_value(draw(st.integers(lo, hi)))))
    return objects


@settings(max_examples=300)
@given(
    bthome_objects(),
    st.none() | st.integers(0, 255),
    st.booleans(),
    st.none() | st.binary(min_size=16, max_size=16),
    st.integers(0, 2**32 - 1),
)
def test_bthome_encoder_and_decoder_agree(
    objects: list[tuple[int, float]],
    packet_id: int | None,
    include_mac: bool,
    key: bytes | None,
    counter: int,
):
    data = encode_bthome(
        objects, packet_id=packet_id, key=key, mac=MAC, counter=counter, include_mac=include_mac
    )
    advert = decode_bthome(data, MAC, key)
    assert advert.packet_id == packet_id
    assert advert.encrypted == (key is not None)
    got = sorted((s.value, s.unit) for s in advert.samples)
    want = sorted((value, OBJECTS[object_id].unit) for object_id, value in objects)
    assert got == want


def finite(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


@settings(max_examples=300)
@given(
    st.builds(
        RuuviFields,
        temperature=st.none() | finite(-163.8, 163.8),
        humidity=st.none() | finite(0, 163.8),
        pressure=st.none() | finite(50000, 115534),
        acceleration_x=st.none() | finite(-321.3, 321.3),
        acceleration_y=st.none() | finite(-321.3, 321.3),
        acceleration_z=st.none() | finite(-321.3, 321.3),
        voltage=st.none() | finite(1.6, 3.646),
        tx_power=st.none() | st.integers(-20, 10).map(lambda n: 2 * n),
        movement_count=st.none() | st.integers(0, 254),
        sequence=st.none() | st.integers(0, 65534),
        mac=st.none() | st.binary(min_size=6, max_size=6).map(lambda b: b.hex(":").upper()),
    )
)
def test_ruuvi_encoder_and_decoder_agree(fields: RuuviFields):
    data = encode_ruuvi(fields)
    advert = decode_ruuvi(data)
    assert advert.sequence == fields.sequence
    assert advert.mac == (None if fields.mac == "FF:FF:FF:FF:FF:FF" else fields.mac)
    got = values(advert.samples)
    resolution = {
        "temperature": 0.005,
        "humidity": 0.0025,
        "pressure": 1,
        "acceleration_x": 0.00980665,
        "acceleration_y": 0.00980665,
        "acceleration_z": 0.00980665,
        "voltage": 0.001,
        "tx_power": 0,
        "movement_count": 0,
    }
    for metric, step in resolution.items():
        sent = getattr(fields, metric)
        if sent is None:
            assert metric not in got
        else:
            assert abs(got[metric] - sent) <= step / 2 + 1e-9, metric
    # the decoded values are exactly representable: encoding them again gives the same bytes
    integers = ("tx_power", "movement_count")
    decoded = {k: int(v) if k in integers else v for k, v in got.items()}
    again = RuuviFields(**decoded, sequence=advert.sequence, mac=advert.mac)  # type: ignore[arg-type]
    assert encode_ruuvi(again) == data


# -- GATT characteristic values ----------------------------------------------------------------


def characteristic(**kw: Any) -> GattCharacteristic:
    settings_ = {"uuid": "00002a6e-0000-1000-8000-00805f9b34fb", "metric": "temperature"}
    return GattCharacteristic.model_validate({**settings_, **kw})


@pytest.mark.parametrize(
    ("spec", "data", "expected"),
    [
        (characteristic(type="int16", scale=0.01, unit="Cel"), bytes.fromhex("d007"), 20.0),
        (characteristic(type="int16", scale=0.01), bytes.fromhex("18fc"), -10.0),
        (characteristic(type="uint16", byte_order="big", scale=0.1), bytes.fromhex("0227"), 55.1),
        (characteristic(type="uint32", offset=-100), bytes.fromhex("e8030000"), 900.0),
        (characteristic(type="float32"), bytes.fromhex("66666641"), 14.4),
        (characteristic(type="int64"), (-5).to_bytes(8, "little", signed=True), -5.0),
    ],
)
def test_gatt_values_decode_with_type_order_scale_and_offset(
    spec: GattCharacteristic, data: bytes, expected: float
):
    codec = CharacteristicCodec(spec)
    sample = codec.decode(data)
    assert sample == Sample(spec.metric, expected, spec.unit)
    assert codec.decode(codec.encode(expected)) == sample


def test_gatt_value_of_the_wrong_length_is_a_frame_error_naming_the_characteristic():
    codec = CharacteristicCodec(characteristic(type="int16"))
    with pytest.raises(
        FrameError, match=r"00002a6e-.*\(temperature\) returned 3 bytes, expected 2"
    ):
        codec.decode(b"\x01\x02\x03")


def test_gatt_encoder_refuses_values_that_do_not_fit():
    with pytest.raises(ValueError, match="does not fit a uint16"):
        CharacteristicCodec(characteristic(type="uint16")).encode(-1.0)


@given(
    st.sampled_from(list(DataType)),
    st.sampled_from(list(Order)),
    st.binary(max_size=10),
)
def test_gatt_decoder_raises_nothing_but_frame_errors(
    data_type: DataType, order: Order, data: bytes
):
    codec = CharacteristicCodec(characteristic(type=data_type, byte_order=order, scale=0.5))
    try:
        sample = codec.decode(data)
    except FrameError:
        assert len(data) != codec.size
        return
    assert isinstance(sample.value, float)
