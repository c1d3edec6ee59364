"""gateway/config/toml_write.py: ``edit`` keeps a person's file, ``dumps`` writes a new one."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config.change import edited_config, merge_patch
from gateway.config.toml_write import dumps, edit

EXAMPLE = (Path(__file__).resolve().parents[3] / "examples" / "street-pole.toml").read_text()


def test_the_same_document_gives_the_same_text() -> None:
    assert edit(EXAMPLE, tomllib.loads(EXAMPLE)) == EXAMPLE


def test_removing_a_device_takes_its_comment_and_keeps_the_next_ones() -> None:
    document = tomllib.loads(EXAMPLE)
    document["devices"] = [d for d in document["devices"] if d["name"] != "pole-climate"]
    text = edit(EXAMPLE, document)
    assert tomllib.loads(text) == document
    # its lines go, with the comment written above it; nothing else changes
    removed = [line for line in EXAMPLE.splitlines() if line not in text.splitlines()]
    assert removed == [
        "# Battery BLE sensors on the pole, heard passively.",
        'kind = "bthome"',
        'name = "pole-climate"',
        'mac = "A4:C1:38:8D:18:B2"',
        'key = "231d39c1d7cc1ab1aee224cd096db932"   # the sensor\'s bindkey (BTHome encryption)',
        'stale_after = "10m"',
    ]
    # the comments above the next devices stay right above them
    assert "the Environmental Sensing service.\n[[devices]]\nkind = " + '"ble_gatt"' in text
    assert 'e.g. "T=21.4 H=55 P=101325".\n[[devices]]\nkind = "line"' in text
    # the first device removed: the comment above it (the end of [outbox]) goes with it, and
    # the one above the next device moves up
    document["devices"] = document["devices"][1:]
    text = edit(EXAMPLE, document)
    assert tomllib.loads(text) == document
    assert "RS-485" not in text
    assert (
        'disk_reserve = "8MiB"\n\n# Particulate sensors on USB-UART adapters, found by USB '
        'identity (vendor:product:serial).\n[[devices]]\nkind = "sds011"'
    ) in text


def test_a_comment_above_an_array_after_plain_keys_moves_too() -> None:
    text = (
        'gateway_id = "gw"\n\n# first\n[[devices]]\nname = "a"\n\n# second\n'
        '[[devices]]\nname = "b"\n'
    )
    document = tomllib.loads(text)
    document["devices"] = document["devices"][1:]
    out = edit(text, document)
    assert tomllib.loads(out) == document
    assert out == 'gateway_id = "gw"\n\n# second\n[[devices]]\nname = "b"\n'


def test_devices_are_matched_by_name_when_reordered() -> None:
    document = tomllib.loads(EXAMPLE)
    document["devices"] = list(reversed(document["devices"]))
    text = edit(EXAMPLE, document)
    assert tomllib.loads(text) == document
    assert sorted(text.splitlines()) == sorted(EXAMPLE.splitlines())  # moved, not rewritten


def test_dotted_keys_inline_tables_and_a_missing_parent_table() -> None:
    text = (
        "# mine\n"
        'gateway_id = "gw"  # the id\n'
        'mqtt.host = "h"\n'
        "mqtt.port = 1883\n"
        'outbox = { path = "o.db", queue_size = 100 }  # inline\n'
        "[metrics.extra]\n"
        "a = 1\n"
    )
    document = tomllib.loads(text)
    document["mqtt"]["port"] = 1884
    document["mqtt"]["keepalive"] = "5s"
    document["outbox"]["queue_size"] = 200
    document["metrics"]["listen"] = "127.0.0.1:9464"
    out = edit(text, document)
    assert tomllib.loads(out) == document
    assert out.startswith('# mine\ngateway_id = "gw"  # the id\n')
    assert "}  # inline" in out


def test_a_value_that_toml_cannot_hold_is_refused() -> None:
    document = tomllib.loads(EXAMPLE)
    document["mqtt"]["port"] = float("nan")
    with pytest.raises(ValueError, match="nan"):
        edit(EXAMPLE, document)


def test_a_file_that_cannot_be_edited_is_written_anew() -> None:
    document = {"gateway_id": "gw", "mqtt": {"host": "h"}}
    assert edited_config(b"\xff not utf-8", document) == dumps(document).encode()
    assert edited_config(b"[broken", document) == dumps(document).encode()


# -- any change a merge patch can make reads back exactly ---------------------------------------

_scalars = st.one_of(
    st.integers(-(2**31), 2**31),
    st.booleans(),
    st.text(max_size=8),
    st.floats(allow_nan=False, allow_infinity=False),
)
_keys = st.sampled_from(["host", "port", "interval", "name", "x-y", "with space", "ünï"])


def _patches() -> st.SearchStrategy[dict[str, Any]]:
    leaf = st.one_of(st.none(), _scalars, st.lists(_scalars, max_size=3))
    table = st.dictionaries(_keys, leaf, max_size=3)
    return st.dictionaries(
        st.sampled_from(["gateway_id", "mqtt", "outbox", "metrics", "new"]),
        st.one_of(leaf, table),
        max_size=3,
    )


@settings(max_examples=150, deadline=None)
@given(patch=_patches(), drop=st.sets(st.integers(0, 9), max_size=3))
def test_any_patch_reads_back_as_the_document(patch: dict[str, Any], drop: set[int]) -> None:
    document = merge_patch(tomllib.loads(EXAMPLE), patch)
    if isinstance(document.get("devices"), list):
        document["devices"] = [d for i, d in enumerate(document["devices"]) if i not in drop]
    expected = copy.deepcopy(document)
    text = edit(EXAMPLE, document)
    assert tomllib.loads(text) == expected
    for line in EXAMPLE.splitlines()[:2]:  # the file's opening comment stays
        assert line in text
