"""BTHome v2 advertisements: a pure decoder and encoder, plain and encrypted (no I/O).

A BTHome v2 sensor broadcasts Service Data for the 16-bit UUID 0xFCD2 (bthome.io/format)::

    device info (1 byte) [MAC, 6 bytes reversed] objects...                      plain
    device info (1 byte) [MAC, 6 bytes reversed] ciphertext counter(4) MIC(4)     encrypted

Device info: bit 0 encrypted, bit 1 MAC included, bit 2 trigger-based (irregular sending),
bits 5-7 the version (2). Each object is ``<id><value, little-endian>``; the id fixes the
value's length, sign and factor. :data:`OBJECTS` is the complete table of bthome.io/format
(checked against the ``bthome-ble`` parser by tests/drivers/ble/test_bthome_table.py), so every
object a conforming device sends is read, and one the gateway cannot turn into a sample (text,
raw, device info) is skipped by its length. Only an id outside the table stops the decoder: the
format carries no lengths, so nothing after such an id can be found, and the advert is refused
with :class:`UnknownObjectError` (a :class:`gateway.core.errors.FrameError` naming the id, its
offset and why). Encrypted payloads are AES-128-CCM with a 4-byte MIC and
the nonce ``MAC (6) | UUID 0xFCD2 little-endian (2) | device info (1) | counter (4)``; a MIC that
does not match (wrong key, damaged advertisement) is a :class:`gateway.errors.ChecksumError`.

Object 0x00 (packet id) is returned as :attr:`BthomeAdvert.packet_id`, not as a sample: it
tells repeats of one measurement apart from new ones. Metric names and SenML-style units are in
:data:`OBJECTS`; binary sensors are 0.0/1.0 metrics named ``<what>_state`` (1 = on, open,
detected), events (button, dimmer) carry their event code.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from functools import cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from gateway.core.errors import ChecksumError, FrameError, UnknownObjectError
from gateway.core.model import Sample

__all__ = [
    "COMMAND_OPCODES",
    "INFO_ENCRYPTED",
    "INFO_MAC_INCLUDED",
    "INFO_TRIGGER_BASED",
    "OBJECTS",
    "SERVICE_UUID",
    "SERVICE_UUID16",
    "BthomeAdvert",
    "BthomeDecoder",
    "ObjectKind",
    "ObjectType",
    "UnknownObjectError",
    "decode_bthome",
    "encode_bthome",
    "mac_bytes",
]

SERVICE_UUID16 = 0xFCD2
SERVICE_UUID = (
    "0000fcd2-0000-1000-8000-00805f9b34fb"  # as bleak keys AdvertisementData.service_data
)

INFO_ENCRYPTED = 0x01
INFO_MAC_INCLUDED = 0x02
INFO_TRIGGER_BASED = 0x04
_VERSION = 2
_UUID_LE = SERVICE_UUID16.to_bytes(2, "little")
_MIC_LEN = 4
_COUNTER_LEN = 4
_KEY_LEN = 16


class ObjectKind(StrEnum):
    """What an object id carries."""

    SENSOR = "sensor"  # a measured value: a sample
    BINARY = "binary"  # 0/1 state: a sample
    EVENT = "event"  # button press, dimmer turn: a sample with the event code
    META = "meta"  # packet id, device type, firmware version: not a sample
    VARIABLE = "variable"  # text/raw with a length byte: skipped, not a sample
    COMMAND = "command"  # 0x3B: a length byte (low 5 bits: argument bytes), opcode, arguments


@dataclass(frozen=True, slots=True)
class ObjectType:
    """The wire shape of one BTHome object id and the metric it becomes."""

    object_id: int
    metric: str
    unit: str
    length: int  # value bytes after the id (0 for VARIABLE and COMMAND: a length byte follows)
    signed: bool = False
    factor: float = 1.0
    kind: ObjectKind = ObjectKind.SENSOR

    @property
    def ratio(self) -> tuple[int, int]:
        """The factor as an exact fraction (0.01 -> (1, 100), 0.35 -> (7, 20))."""
        return _ratio(self.factor)

    def to_value(self, raw: int) -> float:
        """Engineering value of a raw integer: the decimal the factor implies, exactly."""
        numerator, denominator = _ratio(self.factor)
        # One correctly rounded division: 2506 / 100 is the float nearest 25.06, i.e. 25.06.
        return raw * numerator / denominator

    def to_raw(self, value: float) -> int:
        """Raw integer of an engineering value (the inverse of :meth:`to_value`, rounded)."""
        scaled = value / self.factor
        raw = round(scaled) if math.isfinite(scaled) else None
        bits = 8 * self.length
        lo, hi = (
            (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if self.signed else (0, (1 << bits) - 1)
        )
        if raw is None or not lo <= raw <= hi:
            sign = "signed" if self.signed else "unsigned"
            raise ValueError(
                f"{self.metric} = {value!r} does not fit BTHome object 0x{self.object_id:02x} "
                f"({self.length}-byte {sign}, factor {self.factor:g}: "
                f"{self.to_value(lo):g}..{self.to_value(hi):g})"
            )
        return raw


@cache
def _ratio(factor: float) -> tuple[int, int]:
    numerator, denominator = Decimal(repr(factor)).as_integer_ratio()
    return numerator, denominator


#: The command object's standard opcodes (0x05-0xFF are reserved; arguments are
#: opcode- and manufacturer-specific).
COMMAND_OPCODES: dict[int, str] = {
    0x00: "off",
    0x01: "on",
    0x02: "toggle",
    0x03: "step_up",
    0x04: "step_down",
}
_STEP_OPCODES = (0x03, 0x04)
_COMMAND_ARGS_MASK = 0x1F  # low 5 bits of the command's length byte; the high 3 are reserved


def _objects(*types: ObjectType) -> dict[int, ObjectType]:
    return {t.object_id: t for t in types}


_S, _B, _E, _M = ObjectKind.SENSOR, ObjectKind.BINARY, ObjectKind.EVENT, ObjectKind.META

#: Every object id of BTHome v2 (bthome.io/format as of May 2026, settings revision 0x65 and
#: command 0x3B included; bthome-ble 3.25 ``const.py`` agrees: tests/drivers/ble/
#: test_bthome_table.py).
OBJECTS: dict[int, ObjectType] = _objects(
    ObjectType(0x00, "packet_id", "", 1, kind=_M),
    ObjectType(0x01, "battery", "%", 1),
    ObjectType(0x02, "temperature", "Cel", 2, signed=True, factor=0.01),
    ObjectType(0x03, "humidity", "%RH", 2, factor=0.01),
    ObjectType(0x04, "pressure", "hPa", 3, factor=0.01),
    ObjectType(0x05, "illuminance", "lx", 3, factor=0.01),
    ObjectType(0x06, "mass", "kg", 2, factor=0.01),
    ObjectType(0x07, "mass", "lb", 2, factor=0.01),
    ObjectType(0x08, "dew_point", "Cel", 2, signed=True, factor=0.01),
    ObjectType(0x09, "count", "", 1),
    ObjectType(0x0A, "energy", "kWh", 3, factor=0.001),
    ObjectType(0x0B, "power", "W", 3, factor=0.01),
    ObjectType(0x0C, "voltage", "V", 2, factor=0.001),
    ObjectType(0x0D, "pm25", "ug/m3", 2),
    ObjectType(0x0E, "pm10", "ug/m3", 2),
    ObjectType(0x0F, "generic_state", "", 1, kind=_B),
    ObjectType(0x10, "power_state", "", 1, kind=_B),
    ObjectType(0x11, "opening_state", "", 1, kind=_B),
    ObjectType(0x12, "co2", "ppm", 2),
    ObjectType(0x13, "tvoc", "ug/m3", 2),
    ObjectType(0x14, "moisture", "%", 2, factor=0.01),
    ObjectType(0x15, "battery_low_state", "", 1, kind=_B),
    ObjectType(0x16, "battery_charging_state", "", 1, kind=_B),
    ObjectType(0x17, "carbon_monoxide_state", "", 1, kind=_B),
    ObjectType(0x18, "cold_state", "", 1, kind=_B),
    ObjectType(0x19, "connectivity_state", "", 1, kind=_B),
    ObjectType(0x1A, "door_state", "", 1, kind=_B),
    ObjectType(0x1B, "garage_door_state", "", 1, kind=_B),
    ObjectType(0x1C, "gas_state", "", 1, kind=_B),
    ObjectType(0x1D, "heat_state", "", 1, kind=_B),
    ObjectType(0x1E, "light_state", "", 1, kind=_B),
    ObjectType(0x1F, "lock_state", "", 1, kind=_B),
    ObjectType(0x20, "moisture_state", "", 1, kind=_B),
    ObjectType(0x21, "motion_state", "", 1, kind=_B),
    ObjectType(0x22, "moving_state", "", 1, kind=_B),
    ObjectType(0x23, "occupancy_state", "", 1, kind=_B),
    ObjectType(0x24, "plug_state", "", 1, kind=_B),
    ObjectType(0x25, "presence_state", "", 1, kind=_B),
    ObjectType(0x26, "problem_state", "", 1, kind=_B),
    ObjectType(0x27, "running_state", "", 1, kind=_B),
    ObjectType(0x28, "safety_state", "", 1, kind=_B),
    ObjectType(0x29, "smoke_state", "", 1, kind=_B),
    ObjectType(0x2A, "sound_state", "", 1, kind=_B),
    ObjectType(0x2B, "tamper_state", "", 1, kind=_B),
    ObjectType(0x2C, "vibration_state", "", 1, kind=_B),
    ObjectType(0x2D, "window_state", "", 1, kind=_B),
    ObjectType(0x2E, "humidity", "%RH", 1),
    ObjectType(0x2F, "moisture", "%", 1),
    ObjectType(0x3A, "button", "", 1, kind=_E),
    ObjectType(0x3B, "command", "", 0, kind=ObjectKind.COMMAND),
    ObjectType(0x3C, "dimmer", "", 2, kind=_E),
    ObjectType(0x3D, "count", "", 2),
    ObjectType(0x3E, "count", "", 4),
    ObjectType(0x3F, "rotation", "deg", 2, signed=True, factor=0.1),
    ObjectType(0x40, "distance", "mm", 2),
    ObjectType(0x41, "distance", "m", 2, factor=0.1),
    ObjectType(0x42, "duration", "s", 3, factor=0.001),
    ObjectType(0x43, "current", "A", 2, factor=0.001),
    ObjectType(0x44, "speed", "m/s", 2, factor=0.01),
    ObjectType(0x45, "temperature", "Cel", 2, signed=True, factor=0.1),
    ObjectType(0x46, "uv_index", "", 1, factor=0.1),
    ObjectType(0x47, "volume", "l", 2, factor=0.1),
    ObjectType(0x48, "volume", "ml", 2),
    ObjectType(0x49, "volume_flow_rate", "m3/h", 2, factor=0.001),
    ObjectType(0x4A, "voltage", "V", 2, factor=0.1),
    ObjectType(0x4B, "gas", "m3", 3, factor=0.001),
    ObjectType(0x4C, "gas", "m3", 4, factor=0.001),
    ObjectType(0x4D, "energy", "kWh", 4, factor=0.001),
    ObjectType(0x4E, "volume", "l", 4, factor=0.001),
    ObjectType(0x4F, "water", "l", 4, factor=0.001),
    ObjectType(0x50, "timestamp", "s", 4),
    ObjectType(0x51, "acceleration", "m/s2", 2, factor=0.001),
    ObjectType(0x52, "gyroscope", "deg/s", 2, factor=0.001),
    ObjectType(0x53, "text", "", 0, kind=ObjectKind.VARIABLE),
    ObjectType(0x54, "raw", "", 0, kind=ObjectKind.VARIABLE),
    ObjectType(0x55, "volume_storage", "l", 4, factor=0.001),
    ObjectType(0x56, "conductivity", "uS/cm", 2),
    ObjectType(0x57, "temperature", "Cel", 1, signed=True),
    ObjectType(0x58, "temperature", "Cel", 1, signed=True, factor=0.35),
    ObjectType(0x59, "count", "", 1, signed=True),
    ObjectType(0x5A, "count", "", 2, signed=True),
    ObjectType(0x5B, "count", "", 4, signed=True),
    ObjectType(0x5C, "power", "W", 4, signed=True, factor=0.01),
    ObjectType(0x5D, "current", "A", 2, signed=True, factor=0.001),
    ObjectType(0x5E, "direction", "deg", 2, factor=0.01),
    ObjectType(0x5F, "precipitation", "mm", 2, factor=0.1),
    ObjectType(0x60, "channel", "", 1),
    ObjectType(0x61, "rotational_speed", "rpm", 2),
    ObjectType(0x62, "speed", "m/s", 4, signed=True, factor=0.000001),
    ObjectType(0x63, "acceleration", "m/s2", 4, signed=True, factor=0.000001),
    ObjectType(0x64, "light_level", "", 1),
    ObjectType(0x65, "settings_revision", "", 1),
    ObjectType(0xF0, "device_type_id", "", 2, kind=_M),
    ObjectType(0xF1, "firmware_version", "", 4, kind=_M),
    ObjectType(0xF2, "firmware_version", "", 3, kind=_M),
)

# Per id: (length, signed, numerator, denominator, metric, unit, kind) for the decode loop.
_WIRE = {
    t.object_id: (t.length, t.signed, *t.ratio, t.metric, t.unit, t.kind) for t in OBJECTS.values()
}


@dataclass(frozen=True, slots=True)
class BthomeAdvert:
    """One decoded BTHome v2 advertisement."""

    samples: list[Sample]
    packet_id: int | None  # object 0x00, if the device sends it
    encrypted: bool
    counter: int | None  # the encryption counter (encrypted adverts only)
    trigger_based: bool  # the device sends on events, not at a regular interval
    mac: str | None  # the MAC the payload carries (device info bit 1), as AA:BB:CC:DD:EE:FF


def mac_bytes(mac: str) -> bytes:
    """``"54:48:E6:8F:80:A5"`` -> its 6 bytes (ValueError for anything else)."""
    parts = mac.split(":")
    if len(parts) != 6 or not all(len(p) == 2 for p in parts):
        raise ValueError(f"expected a MAC address like 54:48:E6:8F:80:A5, got {mac!r}")
    try:
        return bytes.fromhex("".join(parts))
    except ValueError:
        raise ValueError(f"expected a MAC address like 54:48:E6:8F:80:A5, got {mac!r}") from None


def _mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02X}" for b in raw)


class BthomeDecoder:
    """Decodes the adverts of one device; holds its MAC and its AES-CCM key (if it encrypts).

    A device configured with a key must encrypt: its plain adverts are refused, since anyone
    can forge those (bthome-ble does the same).
    """

    __slots__ = ("_cipher", "_mac")

    def __init__(self, mac: str | None = None, key: bytes | None = None) -> None:
        if key is not None and len(key) != _KEY_LEN:
            raise ValueError(f"a BTHome key is {_KEY_LEN} bytes, got {len(key)}")
        self._mac = mac_bytes(mac) if mac is not None else None
        self._cipher = AESCCM(key, tag_length=_MIC_LEN) if key is not None else None

    def decode(self, data: bytes) -> BthomeAdvert:
        """Decode the service data bytes of one advertisement."""
        if not data:
            raise FrameError("empty BTHome service data (expected at least the device info byte)")
        info = data[0]
        version = info >> 5
        if version != _VERSION:
            raise FrameError(
                f"BTHome version {version} in device info byte 0x{info:02x}, expected {_VERSION}"
            )
        start = 1
        included_mac = None
        if info & INFO_MAC_INCLUDED:
            if len(data) < 7:
                raise FrameError(
                    f"BTHome device info 0x{info:02x} says a MAC follows, but only "
                    f"{len(data) - 1} bytes do (expected at least 6)"
                )
            included_mac = data[6:0:-1]
            start = 7
        counter = None
        if info & INFO_ENCRYPTED:
            payload, counter = self._decrypt(info, data[start:], included_mac)
        elif self._cipher is not None:
            raise FrameError(
                "unencrypted BTHome advertisement from a device configured with a key "
                "(refused: anyone can forge a plain advertisement)"
            )
        else:
            payload = data[start:]
        samples, packet_id = _parse_objects(payload)
        return BthomeAdvert(
            samples=samples,
            packet_id=packet_id,
            encrypted=counter is not None,
            counter=counter,
            trigger_based=bool(info & INFO_TRIGGER_BASED),
            mac=_mac_text(included_mac) if included_mac is not None else None,
        )

    def _decrypt(self, info: int, body: bytes, included_mac: bytes | None) -> tuple[bytes, int]:
        if self._cipher is None:
            raise FrameError("encrypted BTHome advertisement, but no key is configured for it")
        if len(body) < _COUNTER_LEN + _MIC_LEN:
            raise FrameError(
                f"encrypted BTHome payload of {len(body)} bytes; expected at least "
                f"{_COUNTER_LEN + _MIC_LEN} (data, 4-byte counter, 4-byte MIC)"
            )
        mac = included_mac if included_mac is not None else self._mac
        if mac is None:
            raise ValueError("decrypting a BTHome advertisement needs the device's MAC address")
        counter = body[-8:-4]
        nonce = mac + _UUID_LE + bytes((info,)) + counter
        try:
            payload = self._cipher.decrypt(nonce, body[:-8] + body[-4:], None)
        except InvalidTag:
            raise ChecksumError(
                "BTHome MIC does not match: wrong key, or a damaged advertisement"
            ) from None
        return payload, int.from_bytes(counter, "little")


def decode_bthome(data: bytes, mac: str | None = None, key: bytes | None = None) -> BthomeAdvert:
    """Decode one advertisement's service data (``mac`` and ``key`` for encrypted ones)."""
    return BthomeDecoder(mac, key).decode(data)


def _parse_objects(payload: bytes) -> tuple[list[Sample], int | None]:
    samples: list[Sample] = []
    packet_id = None
    i = 0
    end = len(payload)
    wire = _WIRE
    while i < end:
        object_id = payload[i]
        shape = wire.get(object_id)
        if shape is None:
            raise UnknownObjectError(object_id, i)
        length, signed, numerator, denominator, metric, unit, kind = shape
        at = i  # where the object starts, for messages
        i += 1
        if kind is ObjectKind.VARIABLE or kind is ObjectKind.COMMAND:
            if i >= end:
                raise FrameError(f"BTHome object 0x{object_id:02x} lacks its length byte")
            # a command's length byte counts its arguments; the opcode comes first
            if kind is ObjectKind.VARIABLE:
                length = payload[i]
            else:
                length = 1 + (payload[i] & _COMMAND_ARGS_MASK)
            i += 1
        if i + length > end:
            raise FrameError(
                f"BTHome object 0x{object_id:02x} at byte {at} needs {length} bytes, "
                f"only {end - i} left"
            )
        if kind is ObjectKind.SENSOR or kind is ObjectKind.BINARY:
            raw = int.from_bytes(payload[i : i + length], "little", signed=signed)
            samples.append(Sample(metric, raw * numerator / denominator, unit))
        elif kind is ObjectKind.EVENT:
            samples.append(Sample(metric, _event_value(object_id, payload[i : i + length]), unit))
        elif kind is ObjectKind.COMMAND:
            samples.extend(_command_samples(payload[i : i + length]))
        elif object_id == 0x00:
            packet_id = payload[i]
        i += length
    if len(samples) > 1:
        _number_repeated_metrics(samples)
    return samples, packet_id


def _event_value(object_id: int, value: bytes) -> float:
    if object_id == 0x3C:  # dimmer: event (1 rotate left, 2 rotate right), steps
        event, steps = value[0], value[1]
        return float(-steps if event == 1 else steps if event == 2 else 0)
    return float(value[0])  # button: 0 none, 1 press, 2 double press, ... (bthome.io)


def _command_samples(value: bytes) -> list[Sample]:
    """A command: its opcode as ``command``; a step up/down's one-byte step count as
    ``command_steps`` (bthome.io: "step up 5 steps" is ``3B 01 03 05``). Other arguments are
    manufacturer-specific and not turned into numbers."""
    opcode, args = value[0], value[1:]
    samples = [Sample("command", float(opcode), "")]
    if opcode in _STEP_OPCODES and len(args) == 1:
        samples.append(Sample("command_steps", float(args[0]), ""))
    return samples


def _number_repeated_metrics(samples: list[Sample]) -> None:
    """Two objects of one metric in an advert become ``<metric>_1``, ``<metric>_2`` (bthome-ble)."""
    names = [s.metric for s in samples]
    if len(set(names)) == len(names):
        return
    seen: dict[str, int] = {}
    for index, sample in enumerate(samples):
        if names.count(sample.metric) > 1:
            seen[sample.metric] = seen.get(sample.metric, 0) + 1
            samples[index] = Sample(
                f"{sample.metric}_{seen[sample.metric]}", sample.value, sample.unit
            )


def encode_bthome(
    objects: Iterable[tuple[int, float]],
    *,
    packet_id: int | None = None,
    trigger_based: bool = False,
    key: bytes | None = None,
    mac: str | None = None,
    counter: int = 0,
    include_mac: bool = False,
) -> bytes:
    """The service data of one advertisement: ``objects`` as (object id, engineering value).

    Objects are written in ascending id order (as the format asks), the packet id first. With
    ``key`` the objects are encrypted for ``mac`` with ``counter``. Values that do not fit their
    object raise ValueError, as do ids that are unknown or carry no number (text, raw).
    """
    info = (_VERSION << 5) | (INFO_TRIGGER_BASED if trigger_based else 0)
    body = bytearray()
    if packet_id is not None:
        if not 0 <= packet_id <= 0xFF:
            raise ValueError(f"packet id {packet_id} is outside 0..255")
        body += bytes((0x00, packet_id))
    for object_id, value in sorted(objects, key=lambda item: item[0]):
        body += _encode_object(object_id, value)
    raw_mac = mac_bytes(mac) if mac is not None else None
    head = bytearray()
    if include_mac:
        if raw_mac is None:
            raise ValueError("include_mac needs the device's mac")
        info |= INFO_MAC_INCLUDED
        head += raw_mac[::-1]
    if key is None:
        return bytes((info,)) + bytes(head) + bytes(body)
    if raw_mac is None:
        raise ValueError("encrypting a BTHome advertisement needs the device's mac")
    if len(key) != _KEY_LEN:
        raise ValueError(f"a BTHome key is {_KEY_LEN} bytes, got {len(key)}")
    if not 0 <= counter <= 0xFFFFFFFF:
        raise ValueError(f"encryption counter {counter} is outside 0..2**32-1")
    info |= INFO_ENCRYPTED
    counter_le = counter.to_bytes(4, "little")
    nonce = raw_mac + _UUID_LE + bytes((info,)) + counter_le
    sealed = AESCCM(key, tag_length=_MIC_LEN).encrypt(nonce, bytes(body), None)
    return bytes((info,)) + bytes(head) + sealed[:-_MIC_LEN] + counter_le + sealed[-_MIC_LEN:]


def _encode_object(object_id: int, value: float) -> bytes:
    shape = OBJECTS.get(object_id)
    if shape is None or shape.kind in (ObjectKind.META, ObjectKind.VARIABLE):
        raise ValueError(f"cannot encode BTHome object id 0x{object_id:02x} as a number")
    if shape.kind is ObjectKind.COMMAND:  # the opcode, without arguments
        if value not in COMMAND_OPCODES:
            raise ValueError(
                f"BTHome command opcode {value!r} is not one of {sorted(COMMAND_OPCODES)}"
            )
        return bytes((object_id, 0, int(value)))
    if shape.kind is ObjectKind.EVENT and object_id == 0x3C:
        if not math.isfinite(value) or not -255 <= (steps := round(value)) <= 255:
            raise ValueError(f"dimmer steps {value!r} are outside -255..255")
        event = 0 if steps == 0 else 1 if steps < 0 else 2
        return bytes((object_id, event, abs(steps)))
    raw = shape.to_raw(value)
    return bytes((object_id,)) + raw.to_bytes(shape.length, "little", signed=shape.signed)
