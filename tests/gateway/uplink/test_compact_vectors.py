"""tests/vectors/compact.json: the golden vectors of the compact payload decode as written, and
the encoder still makes the uncompressed ones byte for byte (a format change shows here)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from gateway.core.model import StoredRow
from gateway.uplink.compact import CompactEncoder, Compression
from gateway.uplink.decode import decode_metadata, decode_readings

VECTORS = json.loads(
    (Path(__file__).resolve().parents[2] / "vectors" / "compact.json").read_text("utf-8")
)["vectors"]


def value(written: Any) -> float | None:
    return -0.0 if written == "-0.0" else written


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_the_vector_decodes_as_written(vector: dict[str, Any]) -> None:
    meta = decode_metadata(json.dumps(vector["meta"], ensure_ascii=False).encode())
    readings = decode_readings(bytes.fromhex(vector["payload"]), [meta])
    expected = vector["readings"]
    assert [r._asdict() | {"value": None} for r in readings] == [
        e | {"value": None} for e in expected
    ]
    for got, want in zip(readings, expected, strict=True):
        wanted = value(want["value"])
        assert got.value == wanted
        if got.value is not None and wanted is not None:
            assert math.copysign(1, got.value) == math.copysign(1, wanted)


@pytest.mark.parametrize(
    "vector", [v for v in VECTORS if v["compression"] == "none"], ids=lambda v: v["name"]
)
def test_the_encoder_still_makes_the_vector(vector: dict[str, Any]) -> None:
    rows: list[StoredRow] = [
        (r["seq"], r["device"], r["metric"], value(r["value"]), r["unit"], r["ts_ms"], r["quality"])
        for r in vector["readings"]
    ]
    historical = vector["readings"][0]["historical"]
    encoder = CompactEncoder(vector["meta"]["gateway"], vector["meta"]["epoch"], Compression.NONE)
    meta, payload = encoder.encode(historical=historical, readings=rows)
    assert meta is not None
    assert json.loads(meta.to_json()) == vector["meta"]
    assert payload.hex() == vector["payload"]
