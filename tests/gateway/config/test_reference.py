"""docs/config.md and docs/config.schema.json are what the config models give, and every key
has a description, a type, a default and its remote rule."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import pytest
from typer.testing import CliRunner

from gateway.cli.main import app
from gateway.cli.reference import REGENERATE, reference_markdown, schema_json, write_docs
from gateway.config.devices import DeviceConfig
from gateway.config.reference import tables
from gateway.management.remote_scope import REMOTE_DEVICE_KEYS, REMOTE_TABLES, remote_rule

DOCS = Path(__file__).resolve().parents[3] / "docs"


@pytest.mark.parametrize(
    ("name", "expected"),
    [("config.md", reference_markdown), ("config.schema.json", schema_json)],
)
def test_the_docs_are_what_the_models_give(name: str, expected: object) -> None:
    assert callable(expected)
    shown = (DOCS / name).read_text(encoding="utf-8")
    assert shown == expected(), (
        f"docs/{name} differs from the config models: regenerate it with `{REGENERATE}`"
        " (in the checkout) and commit it"
    )


def test_the_generator_writes_both_files(tmp_path: Path) -> None:
    written = write_docs(tmp_path)
    assert [p.name for p in written] == ["config.md", "config.schema.json"]
    assert (tmp_path / "config.md").read_text(encoding="utf-8") == reference_markdown()


def test_every_key_is_described() -> None:
    undescribed = [
        f"{t.key or '(top)'}.{name}"
        for t in tables()
        for name, info in t.model.model_fields.items()
        if not info.description and name != "kind"
    ]
    assert undescribed == [], "add Field(description=...) to these config keys"


def test_every_device_kind_has_its_table() -> None:
    members = get_args(get_args(DeviceConfig)[0])
    headings = {t.heading for t in tables()}
    for model in members:
        kind = get_args(model.model_fields["kind"].annotation)[0]
        assert f'[[devices]] kind = "{kind}"' in headings
        assert f'### `[[devices]] kind = "{kind}"`' in reference_markdown()


def test_the_remote_column_follows_the_allowlist() -> None:
    for table, keys in REMOTE_TABLES.items():
        for key in keys:
            assert (remote_rule(f"{table}.{key}") or "").startswith("yes"), key
    assert remote_rule("mqtt.max_inflight") == "yes: 1 to 100"
    assert remote_rule("outbox.synchronous") == "yes: 'normal' or 'full'"
    for local in ("gateway_id", "mqtt.host", "mqtt.tls.ca_file", "outbox.path", "metrics.listen"):
        assert remote_rule(local) is None, local
    for key in REMOTE_DEVICE_KEYS:
        assert remote_rule(f"devices.{key}") is not None
    assert remote_rule("devices.key") is None  # a BTHome bindkey is deployed on site
    assert remote_rule("devices.units.interval") == "yes"
    assert remote_rule("devices.characteristics.uuid") == "yes, as part of characteristics"
    text = reference_markdown()
    assert "| `host` | string | required | not empty | local-only |" in text
    assert "| `max_inflight` | integer | `16` | ≥ 1, ≤ 1000 | yes: 1 to 100 |" in text


def test_units_and_defaults_are_shown() -> None:
    text = reference_markdown()
    assert '| `keepalive` | duration (s) | `"30s"` | > 0s |' in text
    assert "| `max_bytes` | size (bytes) | `268435456` (256 MiB) | > 0 |" in text
    assert '| `max_clock_skew` | duration (s) | `"300s"` | > 0s, ≤ 3600s |' in text
    assert "/etc/streetgate/config.toml" in text  # where the file is looked for
    assert "#:schema" in text  # how to use the schema in an editor


def test_config_reference_prints_it() -> None:
    result = CliRunner().invoke(app, ["config", "reference"])
    assert result.exit_code == 0
    assert result.stdout == reference_markdown()
