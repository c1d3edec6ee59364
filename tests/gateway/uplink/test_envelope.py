"""The wire formats from typed readings: docs/mqtt.md's examples, byte for byte."""

from __future__ import annotations

import json
import re
from pathlib import Path

from gateway.core.model import Quality, StoredReading
from gateway.uplink.envelope import build_message
from gateway.uplink.senml import build_pack

DOCS = Path(__file__).resolve().parents[3] / "docs" / "mqtt.md"

#: The two readings of docs/mqtt.md's examples.
EXAMPLE = [
    StoredReading(
        80121, "lighting-meter", "l1_voltage", 230.1, "V", 1_795_765_512_120, Quality.GOOD
    ),
    StoredReading(
        80122,
        "lighting-meter",
        "import_active_energy",
        1234.5,
        "kWh",
        1_795_765_512_120,
        Quality.GOOD,
    ),
]


def documented(heading: str) -> bytes:
    """The first JSON example after ``heading`` in docs/mqtt.md, compacted."""
    text = DOCS.read_text(encoding="utf-8")
    after = text[text.index(heading) :]
    block = re.search(r"```json\n(.*?)```", after, re.DOTALL)
    assert block is not None
    return json.dumps(json.loads(block.group(1)), separators=(",", ":")).encode()


def test_the_streetgate_message_is_the_documented_one() -> None:
    payload = build_message(
        "cabinet-0012", epoch="5d0c3a9e1f27b640", historical=False, readings=EXAMPLE
    )
    assert payload == documented("## Readings message")


def test_the_senml_pack_is_the_documented_one() -> None:
    payload = build_pack(
        "cabinet-0012", epoch="5d0c3a9e1f27b640", historical=False, readings=EXAMPLE
    )
    assert payload == documented("### SenML payload")
