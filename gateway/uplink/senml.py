"""Readings as a SenML pack (RFC 8428, JSON), for ``mqtt.payload_format = "senml"``.

The store keeps typed readings (gateway/store/outbox.py); this module turns one message's
readings into one SenML pack when it is published. Mapping (also in
docs/mqtt.md):

- base name ``bn`` = ``"<gateway_id>:"`` on the first record; each record's name ``n`` =
  ``"<device>:<metric>"``, so the resolved name is ``<gateway_id>:<device>:<metric>``;
- base time ``bt`` = the first reading's time (Unix seconds, milliseconds kept); each record's
  ``t`` is its offset from ``bt`` in seconds (left out when 0);
- ``u`` = the reading's unit, already a SenML registry symbol (``V``, ``A``, ``W``, ``Cel``,
  ``%RH``; ``kWh`` is from the secondary-units registry, RFC 8798); left out when empty;
- ``v`` = the value (left out when the device returned a non-finite number);
- custom labels, none of them must-understand (no ``_`` suffix, RFC 8428 §4.4), so a plain
  SenML receiver still reads every value correctly: ``seq`` on every record and the
  outbox's ``epoch`` on the first, for the whole pack like ``bn`` (with the gateway id, the
  dedup key ``(gateway, epoch, seq)``, as in the streetgate format), ``historical: true`` on
  every record of a backlog message (left out on live ones), ``quality: "clock_unsynced"``
  when the reading's time is not to be trusted (left out when good).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from gateway.core.model import Quality, StoredRow

__all__ = ["build_pack"]


def build_pack(
    gateway_id: str, *, epoch: str, historical: bool, readings: Sequence[StoredRow]
) -> bytes:
    """One SenML pack for the stored ``readings`` (in seq order) of the outbox with epoch
    ``epoch``: rows, or :class:`~gateway.core.model.StoredReading` (a non-finite value is
    None in a row, NaN or infinite in a StoredReading)."""
    base_ms = readings[0][5]
    good = Quality.GOOD.value
    records: list[dict[str, Any]] = []
    for seq, device, metric, value, unit, ts_ms, quality in readings:
        record: dict[str, Any] = {}
        if not records:
            record["bn"] = f"{gateway_id}:"
            record["bt"] = base_ms / 1000
        record["n"] = f"{device}:{metric}"
        if unit:
            record["u"] = unit
        if value is not None and math.isfinite(value):
            record["v"] = value
        offset_ms = ts_ms - base_ms
        if offset_ms:
            record["t"] = offset_ms / 1000
        record["seq"] = seq
        if not records:
            record["epoch"] = epoch  # like bn, for the whole pack (+27 bytes, not per record)
        if historical:
            record["historical"] = True
        if quality != good:
            record["quality"] = str(quality)
        records.append(record)
    return json.dumps(records, separators=(",", ":"), allow_nan=False).encode()
