"""Ruuvi's published test vectors (tests/vectors/ble.json) and the encoder input each describes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from drivers.ble.ruuvi_air import RuuviAirFields

__all__ = ["VECTORS", "air_fields"]

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[1] / "vectors" / "ble.json").read_text(encoding="utf-8")
)


def air_fields(vector: dict[str, Any], data_format: int) -> RuuviAirFields:
    """What a format 6 or E1 vector says, as the fields the simulator and encoder take."""
    samples = dict(vector["samples"])
    calibrating = bool(samples.pop("calibration_state"))
    for index in ("voc_index", "nox_index"):
        if index in samples:
            samples[index] = int(samples[index])
    mac = vector["mac"]
    if data_format == 6:  # format 6 carries the MAC's low 3 bytes: give them back
        low = bytes.fromhex(vector["manufacturer_data"])[17:]
        mac = None if low == b"\xff" * 3 else "00:00:00:" + low.hex(":").upper()
    return RuuviAirFields(**samples, calibrating=calibrating, sequence=vector["sequence"], mac=mac)
