"""`streetgate config schema`: a valid JSON Schema that accepts what the gateway accepts (the
shipped configs among them) and rejects unknown keys and malformed values, as an editor would."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from typer.testing import CliRunner

from gateway.cli.main import app
from gateway.config.model import parse_config
from gateway.config.schema import config_schema

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = sorted((ROOT / "examples").glob("*.toml"))

VALID = """\
gateway_id = "pole-7"

[mqtt]
host = "broker.example"
port = 8883
keepalive = 45
publish_timeout = "2m"
payload_format = "senml"
protocol = "5"

[mqtt.tls]
ca_file = "ca.crt"

[outbox]
path = "outbox.db"
max_bytes = "64MB"
disk_reserve = 0
commit_interval = "20ms"

[metrics]
listen = "127.0.0.1:9464"

[[devices]]
kind = "modbus_tcp"
name = "meter-1"
host = "192.0.2.10"
profile = "sdm120"
interval = "500ms"

[[devices]]
kind = "modbus_rtu"
name = "bus"
port = "/dev/ttyUSB0"
parity = "E"
[[devices.units]]
name = "inline"
unit_id = 2
profile = { name = "x", metrics = [{ name = "v", address = 0 }] }

[[devices]]
kind = "line"
name = "weather"
port = "usb:0403:6001"
pattern = 'T=(?P<temp>\\S+)'
[devices.fields.temp]
unit = "°C"

[[devices]]
kind = "ble_gatt"
name = "gatt"
mac = "A4:C1:38:00:00:02"
characteristics = [{ uuid = "00002a6e-0000-1000-8000-00805f9b34fb", metric = "t", scale = 0.01 }]

[[devices]]
kind = "bthome"
name = "door-1"
mac = "A4:C1:38:00:00:01"
key = "0123456789abcdef0123456789abcdef"
"""


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return config_schema()


def errors(schema: dict[str, Any], document: dict[str, Any]) -> list[str]:
    """Where the schema finds fault with ``document``: dotted paths, sorted."""
    validator = jsonschema.Draft7Validator(schema)
    return sorted(".".join(map(str, e.absolute_path)) for e in validator.iter_errors(document))


def test_it_is_a_valid_draft_7_schema_and_the_command_prints_it(schema: dict[str, Any]) -> None:
    jsonschema.Draft7Validator.check_schema(schema)
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    result = CliRunner().invoke(app, ["config", "schema"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == schema


def test_every_table_rejects_unknown_keys(schema: dict[str, Any]) -> None:
    objects = [schema, *schema["definitions"].values()]
    tables = [s for s in objects if s.get("type") == "object"]
    assert len(tables) > 10
    assert all(t.get("additionalProperties") is False for t in tables), [
        t.get("title") for t in tables if t.get("additionalProperties") is not False
    ]


def test_a_config_the_gateway_accepts_passes(schema: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "ca.crt").write_text("checked when connecting")
    document = tomllib.loads(VALID)
    parse_config(document, "VALID", tmp_path)  # the gateway takes it: so must the schema
    assert errors(schema, document) == []


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_the_examples_pass(schema: dict[str, Any], path: Path) -> None:
    assert errors(schema, tomllib.loads(path.read_text(encoding="utf-8"))) == []


def test_the_install_skeleton_is_flagged_until_filled_in(schema: dict[str, Any]) -> None:
    skeleton = tomllib.loads((ROOT / "deploy" / "config.toml").read_text(encoding="utf-8"))
    # Empty on purpose: an editor shows the technician what is left to fill in.
    assert "gateway_id" in errors(schema, skeleton)
    skeleton["gateway_id"] = "cabinet-0012"
    skeleton["mqtt"]["host"] = skeleton["mqtt"]["host"] or "mqtt.city.example"
    assert errors(schema, skeleton) == []


def test_the_balena_config_lacks_only_the_gateway_id(schema: dict[str, Any]) -> None:
    fleet = tomllib.loads((ROOT / "deploy" / "balena" / "config.toml").read_text("utf-8"))
    assert errors(schema, fleet) == [""]  # at the top: gateway_id comes from a variable
    fleet["gateway_id"] = "pole-1"
    assert errors(schema, fleet) == []


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda d: d.update(qos=1), ""),
        (lambda d: d["mqtt"].update(hostname="x"), "mqtt"),
        (lambda d: d["mqtt"]["tls"].update(verify=False), "mqtt.tls"),
        (lambda d: d["devices"][0].update(speed=9600), "devices.0"),
        # Inside a [[devices]] kind (a oneOf), the device is named.
        (lambda d: d["devices"][1]["units"][0].update(slave=1), "devices.1"),
        (lambda d: d["devices"][2]["fields"].update({"bad name": {}}), "devices.2"),
        (lambda d: d["devices"][0].update(kind="modbus"), "devices.0"),
        (lambda d: d["mqtt"].update(keepalive="soon"), "mqtt.keepalive"),
        (lambda d: d["mqtt"].update(keepalive=True), "mqtt.keepalive"),
        (lambda d: d["mqtt"].update(keepalive=0), "mqtt.keepalive"),
        (lambda d: d["outbox"].update(max_bytes="lots"), "outbox.max_bytes"),
        (lambda d: d["outbox"].update(synchronous="sometimes"), "outbox.synchronous"),
        (lambda d: d["mqtt"].update(port=70000), "mqtt.port"),
        (lambda d: d.update(gateway_id="pole 7"), "gateway_id"),
    ],
)
def test_what_the_gateway_refuses_the_schema_flags_too(
    schema: dict[str, Any], change: Any, where: str
) -> None:
    document = tomllib.loads(VALID)
    change(document)
    found = errors(schema, document)
    assert found, "the schema let it pass"
    assert all(e.startswith(where) for e in found), found


@pytest.mark.parametrize("value", [30, 0.5, "30s", "500ms", "2m", "1h", "1d", " 5 s "])
def test_durations_are_numbers_or_texts(schema: dict[str, Any], value: object) -> None:
    document = tomllib.loads(VALID)
    document["mqtt"]["keepalive"] = value
    assert errors(schema, document) == []


@pytest.mark.parametrize("value", [1000, "256MB", "64MiB", "1GiB", "512kB", "2048"])
def test_sizes_are_numbers_or_texts(schema: dict[str, Any], value: object) -> None:
    document = tomllib.loads(VALID)
    document["outbox"]["max_bytes"] = value
    assert errors(schema, document) == []
