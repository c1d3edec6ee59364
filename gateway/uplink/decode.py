"""The platform's decoders: every readings format the gateway publishes, back to typed readings.

Pure functions (no I/O), for a platform written in Python and for ``streetgate decode``:
:func:`decode_readings` takes a readings message in any format (streetgate JSON v2, SenML, or
compact, compressed or not; told apart by the first byte) and returns
:class:`DecodedReading`\\ s, the same for every format; compact messages also need their
metadata (:func:`decode_metadata` of the retained ``<prefix>/<gateway>/meta`` message).

Everything is hostile until checked: sizes are bounded before anything is buffered (the
compressed *and* the decompressed size: no decompression bomb), every field is type-checked,
and what does not fit raises :class:`~gateway.core.errors.PayloadError` saying what was
expected where.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import re
import zlib
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NamedTuple

import zstandard

from gateway.core.errors import PayloadError, UnknownMetadata
from gateway.uplink.cbor_body import read_body
from gateway.uplink.compact import (
    COMPACT_VERSION,
    HEADER_BASE,
    MAX_COVERS,
    MAX_META_ENTRIES,
    MAX_ZDICT_BYTES,
    QUALITY_CODES,
    Compression,
    Metadata,
)
from gateway.uplink.envelope import iso_time

__all__ = [
    "MAX_DECOMPRESSED_BYTES",
    "MAX_PAYLOAD_BYTES",
    "DecodedReading",
    "PayloadKind",
    "decode_metadata",
    "decode_readings",
    "payload_kind",
]

#: The largest readings or metadata message the decoders read (a message of 10,000 streetgate
#: JSON readings is about 1.5 MB).
MAX_PAYLOAD_BYTES = 8 * 1024 * 1024
#: The largest a compressed compact body may grow to when decompressed.
MAX_DECOMPRESSED_BYTES = 8 * 1024 * 1024

_QUALITY_NAMES = {code: name for name, code in QUALITY_CODES.items()}
_EPOCH = re.compile(r"[0-9a-f]{16}")
_META_ID = re.compile(r"[0-9a-f]{8}")


class PayloadKind(StrEnum):
    """What a readings payload is, by its first byte."""

    STREETGATE = "streetgate"  # '{'
    SENML = "senml"  # '['
    COMPACT = "compact"  # 0xC0 | compression


class DecodedReading(NamedTuple):
    """One reading as the platform sees it, whatever the format it came in."""

    gateway: str
    epoch: str
    seq: int
    device: str
    metric: str
    value: float | None  # None: the device returned a non-finite number
    unit: str
    ts_ms: int
    quality: str
    historical: bool

    def to_json(self) -> dict[str, Any]:
        """The reading as a JSON object (``streetgate decode`` prints one per line)."""
        fields = self._asdict()
        fields["ts"] = iso_time(self.ts_ms)
        return fields


def payload_kind(payload: bytes) -> PayloadKind:
    """The format of a readings message (PayloadError if it is none of them)."""
    head = payload.lstrip(b" \t\r\n")[:1]
    if head == b"{":
        return PayloadKind.STREETGATE
    if head == b"[":
        return PayloadKind.SENML
    if payload[:1] and payload[0] & 0xFC == HEADER_BASE and payload[0] & 0x03 <= 2:
        return PayloadKind.COMPACT
    first = f"0x{payload[0]:02x}" if payload else "nothing"
    raise PayloadError(
        f"not a readings message: it starts with {first}; expected '{{' (streetgate JSON), "
        "'[' (SenML) or 0xc0-0xc2 (compact)"
    )


def decode_readings(
    payload: bytes,
    metadata: Iterable[Metadata] | Mapping[str, Metadata] = (),
    *,
    max_bytes: int = MAX_PAYLOAD_BYTES,
) -> list[DecodedReading]:
    """The readings of one readings message, in the order published (seq order).

    ``metadata``: the metadata messages known (decoded), needed for compact messages; a
    message whose metadata is missing raises :class:`UnknownMetadata`.
    """
    _check_size(payload, max_bytes, "readings message")
    kind = payload_kind(payload)
    if kind is PayloadKind.STREETGATE:
        return _streetgate(_json(payload, "streetgate JSON readings message"))
    if kind is PayloadKind.SENML:
        return _senml(_json(payload, "SenML pack"))
    metas = metadata.values() if isinstance(metadata, Mapping) else metadata
    return _compact(payload, list(metas))


def decode_metadata(payload: bytes, *, max_bytes: int = MAX_PAYLOAD_BYTES) -> Metadata:
    """The compact format's metadata message (``<prefix>/<gateway>/meta``), checked whole: its
    id must be the hash of its contents."""
    _check_size(payload, max_bytes, "metadata message")
    doc = _json(payload, "metadata message")
    where = "metadata message"
    if not isinstance(doc, dict):
        raise PayloadError(f"{where}: expected a JSON object, got {_kind(doc)}")
    if doc.get("v") != COMPACT_VERSION:
        raise PayloadError(f"{where}: v: expected {COMPACT_VERSION}, got {doc.get('v')!r}")
    unknown = set(doc) - {"v", "id", "gateway", "epoch", "t0_ms", "entries", "covers", "zdict"}
    if unknown:
        raise PayloadError(f"{where}: unknown keys {sorted(unknown)}")
    meta_id = _text(doc, "id", where)
    gateway = _text(doc, "gateway", where)
    epoch = _text(doc, "epoch", where)
    if not _EPOCH.fullmatch(epoch):
        raise PayloadError(f"{where}: epoch: expected 16 lowercase hex digits, got {epoch!r}")
    t0_ms = _integer(doc.get("t0_ms"), f"{where}: t0_ms")
    entries = doc.get("entries")
    if not isinstance(entries, list) or len(entries) > MAX_META_ENTRIES:
        raise PayloadError(f"{where}: entries: expected a list of at most {MAX_META_ENTRIES}")
    table: list[tuple[str, str, str]] = []
    for i, entry in enumerate(entries):
        if not (
            isinstance(entry, list) and len(entry) == 3 and all(isinstance(x, str) for x in entry)
        ):
            raise PayloadError(f"{where}: entries[{i}]: expected [device, metric, unit] strings")
        table.append((entry[0], entry[1], entry[2]))
    covers = doc.get("covers", [])
    if (
        not isinstance(covers, list)
        or len(covers) > MAX_COVERS
        or not all(isinstance(c, str) and _META_ID.fullmatch(c) for c in covers)
    ):
        raise PayloadError(f"{where}: covers: expected at most {MAX_COVERS} ids of 8 hex digits")
    zdict = b""
    if "zdict" in doc:
        encoded = _text(doc, "zdict", where)
        try:
            zdict = base64.b64decode(encoded, validate=True)
        except binascii.Error as exc:
            raise PayloadError(f"{where}: zdict: expected base64 ({exc})") from exc
        if len(zdict) > MAX_ZDICT_BYTES:
            raise PayloadError(f"{where}: zdict: more than {MAX_ZDICT_BYTES} bytes")
    meta = Metadata(gateway, epoch, t0_ms, tuple(table), zdict, tuple(covers))
    if meta.id != meta_id:
        raise PayloadError(
            f"{where}: id {meta_id!r} is not the hash of its contents ({meta.id}): "
            "damaged or altered"
        )
    return meta


# --- shared checks ---------------------------------------------------------------------------


def _check_size(payload: bytes, limit: int, what: str) -> None:
    if not isinstance(payload, bytes | bytearray | memoryview):
        raise PayloadError(f"{what}: expected bytes, got {type(payload).__name__}")
    if len(payload) > limit:
        raise PayloadError(f"{what}: {len(payload)} bytes, more than the {limit} allowed")
    if not payload:
        raise PayloadError(f"{what}: empty")


def _refuse_constant(name: str) -> Any:
    raise PayloadError(f"{name} is not a JSON number (non-finite values are null)")


def _json(payload: bytes, what: str) -> Any:
    try:
        return json.loads(payload, parse_constant=_refuse_constant)
    except PayloadError as exc:
        raise PayloadError(f"{what}: {exc}") from exc
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise PayloadError(f"{what}: not UTF-8 JSON ({exc})") from exc


_KINDS: dict[type, str] = {
    dict: "an object",
    list: "an array",
    str: "a string",
    type(None): "nothing",
}


def _kind(value: object) -> str:
    return _KINDS.get(type(value), type(value).__name__)


def _text(doc: Mapping[str, Any], key: str, where: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str):
        raise PayloadError(f"{where}: {key}: expected a string, got {_kind(value)}")
    return value


def _integer(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PayloadError(f"{where}: expected an integer, got {_kind(value)}")
    return value


def _seq(value: object, where: str) -> int:
    seq = _integer(value, where)
    if seq < 1:
        raise PayloadError(f"{where}: expected a sequence number >= 1, got {seq}")
    return seq


def _number(value: object, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PayloadError(f"{where}: expected a number or null, got {_kind(value)}")
    try:
        number = float(value)
    except OverflowError as exc:
        raise PayloadError(f"{where}: {value} does not fit a float") from exc
    return number if math.isfinite(number) else None


def _quality(value: object, where: str) -> str:
    if value not in QUALITY_CODES:
        raise PayloadError(f"{where}: expected one of {sorted(QUALITY_CODES)}, got {value!r}")
    return str(value)


def _epoch(value: object, where: str) -> str:
    if not isinstance(value, str) or not _EPOCH.fullmatch(value):
        raise PayloadError(f"{where}: expected 16 lowercase hex digits, got {value!r}")
    return value


# --- streetgate JSON (v2) --------------------------------------------------------------------


def _iso_ms(value: object, where: str) -> int:
    if not isinstance(value, str):
        raise PayloadError(f"{where}: expected an ISO 8601 time, got {_kind(value)}")
    try:
        stamp = datetime.fromisoformat(value)
    except ValueError as exc:
        raise PayloadError(f"{where}: expected an ISO 8601 time, got {value!r}") from exc
    if stamp.tzinfo is None:
        raise PayloadError(f"{where}: expected a UTC time (with Z), got {value!r}")
    delta = stamp - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def _streetgate(doc: Any) -> list[DecodedReading]:
    where = "streetgate message"
    if not isinstance(doc, dict):
        raise PayloadError(f"{where}: expected a JSON object, got {_kind(doc)}")
    if doc.get("v") != 2:
        raise PayloadError(f"{where}: v: expected 2, got {doc.get('v')!r}")
    gateway = _text(doc, "gateway", where)
    epoch = _epoch(doc.get("epoch"), f"{where}: epoch")
    historical = doc.get("historical")
    if not isinstance(historical, bool):
        raise PayloadError(f"{where}: historical: expected true or false")
    readings = doc.get("readings")
    if not isinstance(readings, list) or not readings:
        raise PayloadError(f"{where}: readings: expected a non-empty array")
    out: list[DecodedReading] = []
    for i, item in enumerate(readings):
        at = f"{where}: readings[{i}]"
        if not isinstance(item, dict):
            raise PayloadError(f"{at}: expected an object, got {_kind(item)}")
        out.append(
            DecodedReading(
                gateway,
                epoch,
                _seq(item.get("seq"), f"{at}.seq"),
                _text(item, "device", at),
                _text(item, "metric", at),
                _number(item.get("value"), f"{at}.value"),
                _text(item, "unit", at),
                _iso_ms(item.get("ts"), f"{at}.ts"),
                _quality(item.get("quality"), f"{at}.quality"),
                historical,
            )
        )
    first = _seq(doc.get("first_seq"), f"{where}: first_seq")
    last = _seq(doc.get("last_seq"), f"{where}: last_seq")
    count = _integer(doc.get("count"), f"{where}: count")
    if (first, last, count) != (out[0].seq, out[-1].seq, len(out)):
        raise PayloadError(
            f"{where}: first_seq/last_seq/count ({first}/{last}/{count}) do not match the "
            f"readings ({out[0].seq}/{out[-1].seq}/{len(out)})"
        )
    return out


# --- SenML (RFC 8428, JSON) ------------------------------------------------------------------


def _senml(pack: Any) -> list[DecodedReading]:
    where = "SenML pack"
    if not isinstance(pack, list) or not pack:
        raise PayloadError(f"{where}: expected a non-empty JSON array of records")
    out: list[DecodedReading] = []
    base_name: str | None = None
    base_time: float | None = None
    epoch: str | None = None
    for i, record in enumerate(pack):
        at = f"{where}: record {i}"
        if not isinstance(record, dict):
            raise PayloadError(f"{at}: expected an object, got {_kind(record)}")
        if "bn" in record:
            base_name = _text(record, "bn", at)
        if "bt" in record:
            base_time = _number(record["bt"], f"{at}.bt")
        if "epoch" in record:
            epoch = _epoch(record["epoch"], f"{at}.epoch")
        if base_name is None or not base_name.endswith(":"):
            raise PayloadError(f"{at}: expected a base name 'bn' of the form '<gateway>:'")
        if base_time is None or epoch is None:
            raise PayloadError(f"{at}: expected 'bt' and 'epoch' on the first record")
        name = _text(record, "n", at)
        device, colon, metric = name.partition(":")
        if not colon:
            raise PayloadError(f"{at}.n: expected '<device>:<metric>', got {name!r}")
        offset = _number(record.get("t", 0), f"{at}.t") or 0.0
        historical = record.get("historical", False)
        if not isinstance(historical, bool):
            raise PayloadError(f"{at}.historical: expected true or false")
        out.append(
            DecodedReading(
                base_name[:-1],
                epoch,
                _seq(record.get("seq"), f"{at}.seq"),
                device,
                metric,
                _number(record.get("v"), f"{at}.v"),
                _text(record, "u", at) if "u" in record else "",
                round((base_time + offset) * 1000),
                _quality(record.get("quality", "good"), f"{at}.quality"),
                historical,
            )
        )
    return out


# --- compact ---------------------------------------------------------------------------------


def _find_metadata(meta_id: str, metas: list[Metadata], compressed: bool) -> Metadata:
    for meta in metas:
        if meta.id == meta_id:
            return meta
    if not compressed:  # a later table decodes an earlier one's messages
        for meta in metas:
            if meta_id in meta.covers:
                return meta
    raise UnknownMetadata(meta_id, tuple(meta.id for meta in metas))


def _decompress(compression: Compression, data: bytes, zdict: bytes, limit: int) -> bytes:
    where = f"compact message ({compression.label})"
    if compression is Compression.DEFLATE:
        unpacker = zlib.decompressobj(-15, **({"zdict": zdict} if zdict else {}))
        try:
            body = unpacker.decompress(data, limit + 1)
        except zlib.error as exc:
            raise PayloadError(f"{where}: not a deflate stream ({exc})") from exc
        if len(body) > limit:
            raise PayloadError(f"{where}: decompresses to more than {limit} bytes")
        if not unpacker.eof:
            raise PayloadError(f"{where}: truncated (the deflate stream does not end)")
        if unpacker.unused_data:
            raise PayloadError(f"{where}: {len(unpacker.unused_data)} bytes after the stream")
        return body
    dictionary = (
        zstandard.ZstdCompressionDict(zdict, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
        if zdict
        else None
    )
    reader = zstandard.ZstdDecompressor(dict_data=dictionary).stream_reader(
        io.BytesIO(data), read_across_frames=False
    )
    try:
        body = reader.read(limit + 1)
        if len(body) > limit:
            raise PayloadError(f"{where}: decompresses to more than {limit} bytes")
        if reader.read(1):  # pragma: no cover - a frame ends where its content ends
            raise PayloadError(f"{where}: decompresses to more than {limit} bytes")
    except zstandard.ZstdError as exc:
        raise PayloadError(f"{where}: not a zstd frame ({exc})") from exc
    if not body:
        raise PayloadError(f"{where}: truncated or empty zstd frame")
    return body


def _compact(payload: bytes, metas: list[Metadata]) -> list[DecodedReading]:
    compression = Compression(payload[0] & 0x03)
    if len(payload) < 6:
        raise PayloadError("compact message: truncated (expected a header byte, an id and a body)")
    meta = _find_metadata(payload[1:5].hex(), metas, compression is not Compression.NONE)
    body = bytes(payload[5:])
    if compression is not Compression.NONE:
        body = _decompress(compression, body, meta.zdict, MAX_DECOMPRESSED_BYTES)
    doc = read_body(body)
    where = "compact message"
    if not isinstance(doc, list) or len(doc) < 4:
        raise PayloadError(f"{where}: expected [version, flags, first_seq, group, ...]")
    if doc[0] != COMPACT_VERSION or isinstance(doc[0], bool):
        raise PayloadError(f"{where}: version: expected {COMPACT_VERSION}, got {doc[0]!r}")
    flags = _integer(doc[1], f"{where}: flags")
    historical = bool(flags & 1)
    seq = _seq(doc[2], f"{where}: first_seq")
    ts = meta.t0_ms
    entries = meta.entries
    out: list[DecodedReading] = []
    for i, item in enumerate(doc[3:], start=3):
        at = f"{where}: item {i}"
        if isinstance(item, int) and not isinstance(item, bool):
            if item < seq:
                raise PayloadError(f"{at}: seq {item} goes back (expected >= {seq})")
            seq = item
            continue
        if not isinstance(item, list) or len(item) < 3:
            raise PayloadError(f"{at}: expected a group [dt_ms, key, value, ...] or a seq")
        ts += _integer(item[0], f"{at}: dt_ms")
        key = _integer(item[1], f"{at}: key")
        quality = _QUALITY_NAMES.get(key & 3)
        if key < 0 or quality is None:
            raise PayloadError(f"{at}: key {key}: expected index * 4 + a quality code (0 or 1)")
        start = key >> 2
        if start + len(item) - 2 > len(entries):
            raise PayloadError(
                f"{at}: metadata indexes {start}..{start + len(item) - 3} out of range "
                f"(metadata {meta.id} has {len(entries)})"
            )
        for position, value in enumerate(item[2:], start=start):
            device, metric, unit = entries[position]
            out.append(
                DecodedReading(
                    meta.gateway,
                    meta.epoch,
                    seq,
                    device,
                    metric,
                    _number(value, f"{at}: value"),
                    unit,
                    ts,
                    quality,
                    historical,
                )
            )
            seq += 1
    if not out:
        raise PayloadError(f"{where}: no readings")
    return out
