"""The streetgate JSON readings message (docs/mqtt.md), made from typed readings at publish time.

The store keeps typed rows (gateway/store/outbox.py); this module is the one place the
streetgate format is written, when a message is published. ``build_message`` and
``senml.build_pack`` have the same signature, so the forwarder picks one by
``mqtt.payload_format``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import lru_cache
from weakref import WeakKeyDictionary

from gateway.core.model import SeriesName, SeriesRows, SeriesTable, StoredRow

__all__ = ["build_message", "encode_reading", "iso_time"]


@lru_cache(maxsize=4096)  # device, metric and unit names repeat in every message
def _json_str(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


@lru_cache(maxsize=256)  # the readings of one poll share their time
def iso_time(ts_ms: int) -> str:
    """``ts_ms`` as the ISO 8601 UTC time of the wire format, milliseconds kept."""
    stamp = datetime.fromtimestamp(ts_ms / 1000, UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts_ms % 1000:03d}Z"


@lru_cache(maxsize=4096)
def _middle(device: str, metric: str) -> str:
    return f',"device":{_json_str(device)},"metric":{_json_str(metric)},"value":'


@lru_cache(maxsize=1024)
def _after_value(unit: str, ts_ms: int, quality: str) -> str:
    # A Quality (a StrEnum) formats as its text, and equals it: both share a cache entry.
    return f',"unit":{_json_str(unit)},"ts":"{iso_time(ts_ms)}","quality":"{quality}"}}'


def encode_reading(reading: StoredRow) -> str:
    """The JSON object of one reading, as published (see docs/mqtt.md)."""
    return _encode_all((reading,))[0]


class _Pieces(dict[int, tuple[str, str, str]]):
    """Per series id of one :class:`SeriesTable`: the JSON before a reading's value, between
    the value and its time, and after its time."""

    def __init__(self, table: SeriesTable) -> None:
        super().__init__()
        self._names = table.names

    def __missing__(self, series: int) -> tuple[str, str, str]:
        pieces = self[series] = _series_pieces(self._names[series])
        return pieces


def _series_pieces(name: SeriesName) -> tuple[str, str, str]:
    return (
        _middle(name.device, name.metric),
        f',"unit":{_json_str(name.unit)},"ts":"',
        f'","quality":"{name.quality}"}}',
    )


#: Pieces by series, per table (a table's ids keep their meaning while it lives).
_PIECES: WeakKeyDictionary[SeriesTable, _Pieces] = WeakKeyDictionary()


def _encode_packed(readings: SeriesRows) -> list[str]:
    # Packed rows name their series by a number: the JSON around each series' value is made
    # once per series, and a reading costs a few dict lookups and one f-string.
    table = readings.table
    pieces = _PIECES.get(table)
    if pieces is None:
        pieces = _PIECES[table] = _Pieces(table)
    isfinite, iso = math.isfinite, iso_time
    return [
        f'{{"seq":{seq}{p[0]}'
        f"{'null' if value is None or not isfinite(value) else repr(value)}"
        f"{p[1]}{iso(ts_ms)}{p[2]}"
        for seq, series, value, ts_ms in readings.packed
        for p in (pieces[series],)
    ]


def _encode_all(readings: Sequence[StoredRow]) -> list[str]:
    if isinstance(readings, SeriesRows):
        return _encode_packed(readings)
    # Built from cached pieces, in one comprehension without a call per reading: at drain
    # rates (hundreds of thousands a second) this is most of the uplink's CPU time. A
    # non-finite value is None in a stored row, NaN or infinite in a StoredReading.
    isfinite, middle, after_value = math.isfinite, _middle, _after_value
    return [
        f'{{"seq":{seq}{middle(device, metric)}'
        f"{'null' if value is None or not isfinite(value) else repr(value)}"
        f"{after_value(unit, ts_ms, quality)}"
        for seq, device, metric, value, unit, ts_ms, quality in readings
    ]


def build_message(
    gateway_id: str, *, epoch: str, historical: bool, readings: Sequence[StoredRow]
) -> bytes:
    """One readings message: the envelope around the JSON of each reading, in seq order.

    ``epoch`` is the outbox's (gateway/store/outbox.py): the dedup key is (gateway, epoch, seq).
    """
    flag = "true" if historical else "false"
    head = (
        f'{{"v":2,"gateway":{json.dumps(gateway_id)},"epoch":{json.dumps(epoch)},'
        f'"historical":{flag},'
        f'"first_seq":{readings[0][0]},"last_seq":{readings[-1][0]},"count":{len(readings)},'
        '"readings":['
    )
    return (head + ",".join(_encode_all(readings)) + "]}").encode()
