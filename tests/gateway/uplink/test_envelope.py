"""The wire formats from typed readings: docs/mqtt.md's examples, byte for byte."""

from __future__ import annotations

import json
import re
from pathlib import Path

from gateway.core.model import Quality, SeriesName, SeriesRows, SeriesTable, StoredReading
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


def test_packed_rows_encode_as_the_rows_they_stand_for() -> None:
    """The store's packed rows (SeriesRows) take the encoder's fast path: same bytes."""
    table = SeriesTable(
        {
            3: SeriesName("lighting-meter", "l1_voltage", "V", "good"),
            9: SeriesName('clé "2"', "t%s", "", "clock_unsynced"),
        }
    )
    packed = [
        (80121, 3, 230.1, 1_795_765_512_120),
        (80122, 9, None, 1_795_765_512_120),
        (80123, 9, float("inf"), 5),
        (80124, 3, -0.5, 1_795_765_513_000),
    ]
    rows = SeriesRows(packed, table)
    plain = list(rows)
    assert plain[1] == (80122, 'clé "2"', "t%s", None, "", 1_795_765_512_120, "clock_unsynced")
    for historical in (True, False):
        fast = build_message("gw", epoch="0123456789abcdef", historical=historical, readings=rows)
        slow = build_message("gw", epoch="0123456789abcdef", historical=historical, readings=plain)
        assert fast == slow
        assert build_pack("gw", epoch="e", historical=historical, readings=rows) == build_pack(
            "gw", epoch="e", historical=historical, readings=plain
        )
    assert json.loads(fast)["readings"][2]["value"] is None
    # Another table (another outbox) with the same ids: its own names.
    other = SeriesRows(packed[:1], SeriesTable({3: SeriesName("m", "p", "W", "good")}))
    assert b'"device":"m","metric":"p"' in build_message(
        "gw", epoch="e", historical=False, readings=other
    )
