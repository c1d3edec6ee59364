"""The compact readings format (``mqtt.payload_format = "compact"``, docs/mqtt.md): encoder side.

A compact message is one header byte (``0xC0 | compression``), the 4-byte id of its metadata
(big-endian), and a CBOR array (RFC 8949), compressed as the header byte says:

    [1, flags, first_seq, item, item, ...]

- the metadata id (:attr:`Metadata.id`): names the metadata message, retained on
  ``<prefix>/<gateway>/meta``, that maps indexes to ``(device, metric, unit)`` and carries the
  gateway id, the outbox epoch, the time base ``t0_ms`` and the compression dictionary;
- ``flags``: bit 0 = historical;
- a **group** ``[dt_ms, key, value, value, ...]`` is readings of one device with one time and
  quality: reading *i* has metadata index ``key // 4 + i`` and quality ``key % 4`` (0 good,
  1 clock_unsynced); its time is the previous group's time (``t0_ms`` for the first) plus
  ``dt_ms``; its seq is the previous reading's seq + 1 (``first_seq`` for the first);
- a bare integer sets the seq of the next reading (a gap inside a message: dropped or purged
  readings); a message never needs one otherwise;
- a value is ``null`` (the device returned a non-finite number), an integer (an integral
  value, sent as the shortest CBOR integer; it stands for the float), or a float: half and
  double precision exact, single precision standing for the shortest decimal that rounds to
  it, as Modbus float32 registers are reported (gateway/uplink/cbor_body.py).

The metadata table grows as new ``(device, metric, unit)`` triples appear, and only grows
while the gateway runs, so a newer metadata message decodes every message of an older one it
``covers``. The encoder tells the forwarder when a new metadata message must be published:
it is published (retained, QoS 1) and acknowledged before the first readings that use it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from functools import cached_property
from typing import Any

import zstandard

from gateway.core.model import Quality, StoredRow
from gateway.uplink.cbor_body import Item, body_value, write_body

__all__ = [
    "COMPACT_VERSION",
    "HEADER_BASE",
    "MAX_COVERS",
    "MAX_META_ENTRIES",
    "MAX_ZDICT_BYTES",
    "QUALITY_CODES",
    "CompactEncoder",
    "Compression",
    "ContentType",
    "Metadata",
]

#: The version of the compact body (its first element) and of the metadata message (``"v"``).
COMPACT_VERSION = 1
#: The header byte is ``HEADER_BASE | Compression``: 0xC0 none, 0xC1 deflate, 0xC2 zstd. JSON
#: payloads start with ``{`` (streetgate) or ``[`` (SenML), so the first byte tells them apart.
HEADER_BASE = 0xC0
#: Quality codes in a group's key (``key % 4``); 2 and 3 are reserved.
QUALITY_CODES: dict[str, int] = {Quality.GOOD.value: 0, Quality.CLOCK_UNSYNCED.value: 1}
#: A metadata table holds at most this many triples; past it the encoder starts a new table.
MAX_META_ENTRIES = 65_536
#: A metadata message names at most this many earlier ones it covers.
MAX_COVERS = 16
#: The compression dictionary (a sample body) is at most this long.
MAX_ZDICT_BYTES = 16_384
_DEFLATE_LEVEL = 9  # compression costs microseconds per message; bytes cost the city money
_ZSTD_LEVEL = 19


class Compression(IntEnum):
    """How a compact body is compressed: the low bits of the header byte."""

    NONE = 0
    DEFLATE = 1  # raw deflate (RFC 1951) with the metadata's dictionary (zlib zdict)
    ZSTD = 2  # a zstd frame (RFC 8878) with the metadata's dictionary as raw content

    @property
    def label(self) -> str:
        """The name in ``mqtt.compression`` and in content types."""
        return self.name.lower()


class ContentType(StrEnum):
    """The MQTT 5 content type of each payload kind (docs/mqtt.md)."""

    STREETGATE = "application/json"
    SENML = "application/senml+json"
    COMPACT = "application/vnd.streetgate.compact+cbor"
    COMPACT_DEFLATE = "application/vnd.streetgate.compact+cbor; compression=deflate"
    COMPACT_ZSTD = "application/vnd.streetgate.compact+cbor; compression=zstd"
    META = "application/vnd.streetgate.meta+json"

    @classmethod
    def compact(cls, compression: Compression) -> ContentType:
        """The content type of compact readings compressed with ``compression``."""
        return (cls.COMPACT, cls.COMPACT_DEFLATE, cls.COMPACT_ZSTD)[compression]


Triple = tuple[str, str, str]  # (device, metric, unit)


@dataclass(frozen=True)
class Metadata:
    """What compact readings leave out: the index → (device, metric, unit) table, the gateway
    id and outbox epoch (with seq, the dedup key), the time base and the dictionary."""

    gateway: str
    epoch: str
    t0_ms: int
    entries: tuple[Triple, ...]
    zdict: bytes = b""
    #: Ids of the earlier metadata messages this one extends (their tables are its prefixes).
    covers: tuple[str, ...] = field(default=(), compare=False)

    @cached_property
    def id(self) -> str:
        """8 hex digits: the first 32 bits of the SHA-256 of what decoding depends on."""
        return hashlib.sha256(self._identity()).hexdigest()[:8]

    def _identity(self) -> bytes:
        return json.dumps(
            [self.gateway, self.epoch, self.t0_ms, self.entries, self.zdict.hex()],
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode()

    def to_json(self) -> bytes:
        """The retained metadata message (docs/mqtt.md, "Compact payload")."""
        body: dict[str, Any] = {
            "v": COMPACT_VERSION,
            "id": self.id,
            "gateway": self.gateway,
            "epoch": self.epoch,
            "t0_ms": self.t0_ms,
            "entries": [list(entry) for entry in self.entries],
        }
        if self.covers:
            body["covers"] = list(self.covers)
        if self.zdict:
            body["zdict"] = base64.b64encode(self.zdict).decode()
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


class CompactEncoder:
    """Turns batches of stored rows into compact messages, learning the metadata table.

    Stateful (the table), so one per forwarder; the encoding of a batch is otherwise pure.
    """

    def __init__(
        self,
        gateway_id: str,
        epoch: str,
        compression: Compression = Compression.NONE,
        *,
        max_entries: int = MAX_META_ENTRIES,
    ) -> None:
        self._gateway = gateway_id
        self._epoch = epoch
        self._compression = compression
        self._max_entries = max_entries
        self._index: dict[Triple, int] = {}
        self.metadata: Metadata | None = None
        self._compress: Callable[[bytes], bytes] | None = None

    @property
    def epoch(self) -> str:
        """The outbox epoch every message of this encoder belongs to."""
        return self._epoch

    @property
    def content_type(self) -> str:
        """The MQTT 5 content type of the readings messages this encoder makes."""
        return ContentType.compact(self._compression).value

    def encode(
        self, *, historical: bool, readings: Sequence[StoredRow]
    ) -> tuple[Metadata | None, bytes]:
        """The compact message for ``readings`` (in seq order) and, when the table had to grow
        for them, the new metadata, which must reach the broker before the message."""
        new = self._learn(readings)
        if new is not None:
            self._set_metadata(new, readings, historical)
        assert self.metadata is not None
        meta = self.metadata
        body = self._body(meta.t0_ms, historical, readings)
        if self._compress is not None:
            body = self._compress(body)
        announce = meta if new is not None else None
        return announce, bytes((HEADER_BASE | self._compression,)) + bytes.fromhex(meta.id) + body

    def _learn(self, readings: Sequence[StoredRow]) -> list[Triple] | None:
        """The new table when ``readings`` hold triples it lacks, else None."""
        index = self._index
        missing: dict[Triple, None] = {}
        for row in readings:
            triple = (row[1], row[2], row[4])
            if triple not in index:
                missing[triple] = None
        if not missing and self.metadata is not None:
            return None
        known = list(index)
        if len(known) + len(missing) > self._max_entries:
            known = []  # start a fresh table: the old one does not cover the new one
        return known + list(missing)

    def _set_metadata(
        self, entries: list[Triple], readings: Sequence[StoredRow], historical: bool
    ) -> None:
        old = self.metadata
        extends = old is not None and list(old.entries) == entries[: len(old.entries)]
        self._index = {triple: i for i, triple in enumerate(entries)}
        # The time base: the first reading's time (a message's first group is its time minus
        # t0_ms: small while the table lasts, and CBOR writes small integers short).
        t0_ms = old.t0_ms if old is not None and extends else readings[0][5]
        zdict = b""
        if self._compression is not Compression.NONE:
            # A body like the ones to come, as the dictionary: a poll of the same devices
            # shares most of its bytes with it (indexes, times, the values' leading bytes).
            zdict = self._body(t0_ms, historical, readings)[:MAX_ZDICT_BYTES]
        # Same time base and dictionary, and a longer table: it decodes the old one's messages.
        covers: tuple[str, ...] = ()
        if old is not None and extends and old.zdict == zdict:
            covers = (old.id, *old.covers)[:MAX_COVERS]
        self.metadata = Metadata(self._gateway, self._epoch, t0_ms, tuple(entries), zdict, covers)
        self._compress = _compressor(self._compression, zdict)

    def _body(self, t0_ms: int, historical: bool, readings: Sequence[StoredRow]) -> bytes:
        index = self._index
        codes = QUALITY_CODES
        items: list[Item] = []
        last_ts = t0_ms
        expected_seq = readings[0][0]
        values: list[bytes] = []
        group_key = (-1, -1, "")  # (next index, ts_ms, quality) the open group continues with
        for seq, device, metric, value, unit, ts_ms, quality in readings:
            position = index[device, metric, unit]
            jump = seq != expected_seq
            if jump:
                items.append(seq)
            expected_seq = seq + 1
            if jump or group_key != (position, ts_ms, quality):
                values = []
                items.append((ts_ms - last_ts, position * 4 + codes[quality], values))
                last_ts = ts_ms
            values.append(body_value(value))
            group_key = (position + 1, ts_ms, quality)
        return write_body((COMPACT_VERSION, 1 if historical else 0, readings[0][0]), items)


def _compressor(compression: Compression, zdict: bytes) -> Callable[[bytes], bytes] | None:
    if compression is Compression.DEFLATE:

        def deflate(body: bytes) -> bytes:
            packer = (
                zlib.compressobj(_DEFLATE_LEVEL, zlib.DEFLATED, -15, 9, zdict=zdict)
                if zdict
                else zlib.compressobj(_DEFLATE_LEVEL, zlib.DEFLATED, -15, 9)
            )
            return packer.compress(body) + packer.flush()

        return deflate
    if compression is Compression.ZSTD:
        dictionary = (
            zstandard.ZstdCompressionDict(zdict, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
            if zdict
            else None
        )
        packer = zstandard.ZstdCompressor(
            level=_ZSTD_LEVEL, dict_data=dictionary, write_checksum=False, write_dict_id=False
        )
        return packer.compress
    return None
