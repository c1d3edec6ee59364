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

from gateway.core.model import StoredReading

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
    return f',"unit":{_json_str(unit)},"ts":"{iso_time(ts_ms)}","quality":"{quality}"}}'


def encode_reading(reading: StoredReading) -> str:
    """The JSON object of one reading, as published (see docs/mqtt.md).

    Built from cached pieces: at drain rates (hundreds of thousands a second) formatting each
    field anew would cost more than the rest of the uplink.
    """
    seq, device, metric, value, unit, ts_ms, quality = reading
    value_text = repr(value) if math.isfinite(value) else "null"
    return (
        f'{{"seq":{seq}{_middle(device, metric)}{value_text}'
        f"{_after_value(unit, ts_ms, quality.value)}"
    )


def build_message(
    gateway_id: str, *, epoch: str, historical: bool, readings: Sequence[StoredReading]
) -> bytes:
    """One readings message: the envelope around the JSON of each reading, in seq order.

    ``epoch`` is the outbox's (gateway/store/outbox.py): the dedup key is (gateway, epoch, seq).
    """
    flag = "true" if historical else "false"
    head = (
        f'{{"v":2,"gateway":{json.dumps(gateway_id)},"epoch":{json.dumps(epoch)},'
        f'"historical":{flag},'
        f'"first_seq":{readings[0].seq},"last_seq":{readings[-1].seq},"count":{len(readings)},'
        '"readings":['
    )
    return (head + ",".join(map(encode_reading, readings)) + "]}").encode()
