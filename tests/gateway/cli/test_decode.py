"""``streetgate decode``: the README's examples, as written, on messages the encoders made."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.cli.main import app
from gateway.uplink.compact import CompactEncoder, Compression
from gateway.uplink.senml import build_pack
from tests.support.readme_examples import readme_commands

EPOCH = "5d0c3a9e1f27b640"
ROWS = [
    (7 + i, "lighting-meter", metric, value, unit, 1_795_765_512_120, "good")
    for i, (metric, value, unit) in enumerate(
        [("l1_voltage", 230.1, "V"), ("import_active_energy", 1234.5, "kWh"), ("pf", None, "")]
    )
]


def test_the_readme_examples_run_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    meta, payload = CompactEncoder("cab-12", EPOCH, Compression.ZSTD).encode(
        historical=True, readings=ROWS
    )
    assert meta is not None
    (tmp_path / "msg.bin").write_bytes(payload)
    (tmp_path / "meta.json").write_bytes(meta.to_json())
    (tmp_path / "msg.json").write_bytes(
        build_pack("cab-12", epoch=EPOCH, historical=True, readings=ROWS)
    )
    monkeypatch.chdir(tmp_path)
    examples = readme_commands("What the platform receives")
    assert [args[:2] for args in examples] == [["streetgate", "decode"]] * 2
    for args in examples:
        result = CliRunner().invoke(app, args[1:])
        assert result.exit_code == 0, result.output
        lines = [json.loads(line) for line in result.stdout.splitlines()]
        assert [(r["seq"], r["metric"], r["value"], r["unit"]) for r in lines] == [
            (7, "l1_voltage", 230.1, "V"),
            (8, "import_active_energy", 1234.5, "kWh"),
            (9, "pf", None, ""),
        ]
        assert {(r["gateway"], r["epoch"], r["historical"]) for r in lines} == {
            ("cab-12", EPOCH, True)
        }
        assert lines[0]["ts"] == "2026-11-27T07:45:12.120Z"


def test_a_path_that_is_not_a_saved_message_is_named_for_what_it_is(tmp_path: Path) -> None:
    missing = CliRunner().invoke(app, ["decode", str(tmp_path / "nope.bin")])
    assert missing.exit_code == 6  # ExitCode.NOT_FOUND
    assert f"error: decode: message {tmp_path / 'nope.bin'}: no such file" in missing.stderr
    folder = CliRunner().invoke(app, ["decode", str(tmp_path)])
    assert folder.exit_code == 2
    assert "not a regular file (give a saved message, or - for stdin)" in folder.stderr
