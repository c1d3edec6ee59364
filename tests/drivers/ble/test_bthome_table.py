"""Our BTHome v2 object table against the reference parser's (dev-only: ``bthome-ble``).

``bthome-ble`` (Bluetooth-Devices, the parser behind Home Assistant's BTHome integration) keeps
its table in ``bthome_ble.const.MEAS_TYPES``: per object id a ``MeasTypes`` with
``data_length``, ``data_format`` ("unsigned_integer", "signed_integer", "timestamp", "string",
"raw", "command", "device_type_id", "firmware_version_3/4") and ``factor``. The gateway never
imports it; these tests find a new object id, or a length, sign or factor we copied wrong, the
day the dev extra pulls a newer release. Skipped (with the reason) where the library is absent.
"""

from __future__ import annotations

from typing import Any

import pytest

from drivers.ble.bthome import COMMAND_OPCODES, OBJECTS, ObjectKind, decode_bthome

const = pytest.importorskip(
    "bthome_ble.const",
    reason="bthome-ble is not installed (it is in the dev extra: pip install -e '.[dev]')",
)
event = pytest.importorskip("bthome_ble.event", reason="bthome-ble is not installed")
description = pytest.importorskip("sensor_state_data.description", reason="bthome-ble's dependency")

THEIRS: dict[int, Any] = const.MEAS_TYPES

VARIABLE_FORMATS = {"string": ObjectKind.VARIABLE, "raw": ObjectKind.VARIABLE}
META_FORMATS = {"device_type_id", "firmware_version_3", "firmware_version_4"}


def test_the_same_object_ids():
    ours, theirs = set(OBJECTS), set(THEIRS)
    assert not theirs - ours, "ids bthome-ble knows and we do not: " + ", ".join(
        f"0x{i:02x}" for i in sorted(theirs - ours)
    )
    assert not ours - theirs, "ids we know and bthome-ble does not: " + ", ".join(
        f"0x{i:02x}" for i in sorted(ours - theirs)
    )


def _expected_kind(object_id: int, meas: Any) -> ObjectKind:
    if meas.data_format in VARIABLE_FORMATS:
        return VARIABLE_FORMATS[meas.data_format]
    if meas.data_format == "command":
        return ObjectKind.COMMAND
    if meas.data_format in META_FORMATS or object_id == 0x00:  # 0x00: the packet id
        return ObjectKind.META
    if isinstance(meas.meas_format, event.EventDeviceKeys):
        return ObjectKind.EVENT
    if isinstance(meas.meas_format, description.BaseBinarySensorDescription):
        return ObjectKind.BINARY
    return ObjectKind.SENSOR


@pytest.mark.parametrize("object_id", sorted(THEIRS), ids=lambda i: f"0x{i:02x}")
def test_each_object_has_their_length_sign_factor_and_kind(object_id: int):
    meas = THEIRS[object_id]
    ours = OBJECTS.get(object_id)
    assert ours is not None, f"object 0x{object_id:02x} is missing from drivers/ble/bthome.py"
    kind = _expected_kind(object_id, meas)
    assert ours.kind is kind, f"0x{object_id:02x}: kind {ours.kind}, bthome-ble says {kind}"
    if kind in (ObjectKind.VARIABLE, ObjectKind.COMMAND):
        assert ours.length == 0, f"0x{object_id:02x} has a length byte, not a fixed length"
        return
    got = (ours.length, ours.signed, ours.factor)
    want = (meas.data_length, meas.data_format == "signed_integer", float(meas.factor))
    assert got == want, f"0x{object_id:02x} (length, signed, factor): ours {got}, theirs {want}"


def test_the_command_length_byte_rule_is_theirs():
    # bthome.io's example: 3B 01 03 05 is "step up 5 steps"; the high 3 bits of the length
    # byte are reserved, so 0x21 still means one argument byte.
    for length_byte in (0x01, 0x21):
        advert = decode_bthome(bytes([0x40, 0x3B, length_byte, 0x03, 0x05, 0x65, 0x07]))
        assert [(s.metric, s.value) for s in advert.samples] == [
            ("command", 3.0),
            ("command_steps", 5.0),
            ("settings_revision", 7.0),
        ]
    assert event.COMMAND_EVENTS == COMMAND_OPCODES
