"""Config from STREETGATE_* variables over the file: applied, validated, and named when wrong."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.cli.common import config_error_lines
from gateway.cli.exit_codes import ExitCode
from gateway.cli.main import app
from gateway.config.environment import COMMAND_VARIABLES, overlay, variables
from gateway.config.model import GatewayConfig, Synchronous, load_config
from gateway.core.errors import ConfigError

FILE = """\
gateway_id = "cabinet-0012"

[mqtt]
host = "mqtt.city.example"
port = 1883

[outbox]
path = "outbox.db"

[[devices]]
kind = "modbus_tcp"
name = "meter-1"
host = "192.0.2.10"
profile = "sdm120"
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "gw.toml"
    path.write_text(FILE)
    return path


def issues(exc: pytest.ExceptionInfo[ConfigError]) -> dict[str, str]:
    return {i.location: i.message for i in exc.value.issues}


def test_without_variables_the_file_is_the_config(config_file: Path) -> None:
    config = load_config(config_file, {"PATH": "/usr/bin", "BALENA_DEVICE_UUID": "abc"})
    assert config.gateway_id == "cabinet-0012"
    assert config.mqtt.port == 1883


def test_variables_override_and_add_keys_through_the_same_models(
    config_file: Path, tmp_path: Path
) -> None:
    env = {
        "STREETGATE_GATEWAY_ID": "pole-17",
        "STREETGATE_MQTT_PORT": "8883",
        "STREETGATE_MQTT_KEEPALIVE": "45s",
        "STREETGATE_MQTT_TLS_CA_FILE": "certs/ca.crt",  # a table the file does not have
        "STREETGATE_MQTT_TLS_INSECURE_SKIP_VERIFY": "false",
        "STREETGATE_OUTBOX_MAX_BYTES": "64MB",
        "STREETGATE_OUTBOX_SYNCHRONOUS": "full",
        "STREETGATE_CONFIG": str(config_file),  # the commands' own: not a config key
        "STREETGATE_LOG_LEVEL": "debug",
    }
    config = load_config(config_file, env)
    assert config.gateway_id == "pole-17"
    assert config.mqtt.host == "mqtt.city.example"  # from the file
    assert config.mqtt.port == 8883
    assert config.mqtt.keepalive == 45.0
    assert config.mqtt.tls is not None
    assert config.mqtt.tls.ca_file == tmp_path / "certs" / "ca.crt"  # relative to the file
    assert config.mqtt.tls.insecure_skip_verify is False
    assert config.outbox.max_bytes == 64 * 1000 * 1000
    assert config.outbox.synchronous is Synchronous.FULL
    assert [d.name for d in config.devices] == ["meter-1"]


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("STREETGATE_MQTT_PORT", "eighty", "valid integer"),
        ("STREETGATE_MQTT_PORT", "70000", "less than or equal to 65535"),
        ("STREETGATE_GATEWAY_ID", "pole 17", "expected a name of letters, digits"),
        ("STREETGATE_MQTT_KEEPALIVE", "soon", "duration"),
        ("STREETGATE_MQTT_TLS_INSECURE_SKIP_VERIFY", "maybe", "valid boolean"),
        ("STREETGATE_OUTBOX_SYNCHRONOUS", "always", "'off', 'normal' or 'full'"),
        ("STREETGATE_OUTBOX_COMMIT_INTERVAL", "5s", "commit_interval above 1s"),
    ],
)
def test_a_bad_value_is_reported_under_the_variable_name(
    config_file: Path, name: str, value: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(config_file, {name: value})
    key = ".".join(variables(GatewayConfig)[name])
    assert f"{name} (sets {key})" in issues(exc)
    assert expected in issues(exc)[f"{name} (sets {key})"]
    assert str(exc.value).startswith(f"invalid configuration in {config_file} with {name}:")


def test_an_unknown_streetgate_variable_is_an_error_with_a_suggestion(config_file: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(config_file, {"STREETGATE_MQTT_HOSTNAME": "x", "STREETGATE_COLOUR": "red"})
    found = issues(exc)
    assert set(found) == {"STREETGATE_MQTT_HOSTNAME", "STREETGATE_COLOUR"}
    assert "did you mean STREETGATE_MQTT_HOST?" in found["STREETGATE_MQTT_HOSTNAME"]
    assert "did you mean" not in found["STREETGATE_COLOUR"]
    assert "docs/deploy.md" in found["STREETGATE_COLOUR"]


def test_devices_come_only_from_the_file(config_file: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(config_file, {"STREETGATE_DEVICES": "[]"})
    assert "unknown streetgate variable" in issues(exc)["STREETGATE_DEVICES"]


def test_an_empty_value_is_an_error_not_a_blank(config_file: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(config_file, {"STREETGATE_MQTT_USERNAME": ""})
    assert "empty" in issues(exc)["STREETGATE_MQTT_USERNAME"]


def test_variable_and_file_errors_are_reported_together(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text(FILE.replace("port = 1883", "port = 1883\nhots = 'typo'"))
    with pytest.raises(ConfigError) as exc:
        load_config(path, {"STREETGATE_MQTT_PORT": "0", "STREETGATE_NOPE": "1"})
    assert set(issues(exc)) == {
        "STREETGATE_NOPE",
        "STREETGATE_MQTT_PORT (sets mqtt.port)",
        "mqtt.hots",
    }


def test_a_file_section_that_is_no_table_is_named(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text('gateway_id = "g"\nmqtt = "oops"\n[outbox]\npath = "o.db"\n')
    with pytest.raises(ConfigError) as exc:
        load_config(path, {"STREETGATE_MQTT_HOST": "h"})
    assert issues(exc)["STREETGATE_MQTT_HOST"] == "mqtt in the file is not a table"


def test_the_overlay_leaves_the_parsed_file_alone() -> None:
    data = {"gateway_id": "g", "mqtt": {"host": "a"}}
    result = overlay(data, {"STREETGATE_MQTT_HOST": "b"}, GatewayConfig)
    assert result.data["mqtt"]["host"] == "b"
    assert data == {"gateway_id": "g", "mqtt": {"host": "a"}}
    assert result.origins == {"mqtt.host": "STREETGATE_MQTT_HOST"}


def test_variable_names_are_unique_and_acceptable_to_balena() -> None:
    names = variables(GatewayConfig)
    assert len(set(names.values())) == len(names)
    assert not set(names) & set(COMMAND_VARIABLES)
    for name, path in names.items():
        assert re.fullmatch(r"STREETGATE_[A-Z0-9_]+", name), name
        assert name == "STREETGATE_" + "_".join(path).upper()
    assert names["STREETGATE_MQTT_TLS_CA_FILE"] == ("mqtt", "tls", "ca_file")
    assert not any(path[0] == "devices" for path in names.values())


def test_config_validate_names_the_variable(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STREETGATE_MQTT_PORT", "eighty")
    result = CliRunner().invoke(app, ["config", "validate", str(config_file)])
    assert result.exit_code == ExitCode.CONFIG
    assert "STREETGATE_MQTT_PORT (sets mqtt.port): Input should be a valid integer" in result.output
    monkeypatch.setenv("STREETGATE_MQTT_PORT", "8883")
    result = CliRunner().invoke(app, ["config", "validate", str(config_file)])
    assert result.exit_code == ExitCode.OK, result.output
    assert "broker mqtt.city.example:8883" in result.output


def test_a_missing_key_names_its_variable_too(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text('[mqtt]\nhost = "h"\n[outbox]\npath = "o.db"\n')
    with pytest.raises(ConfigError) as exc:
        load_config(path, {})
    assert issues(exc) == {
        "gateway_id": "required key is missing (in the file, or as STREETGATE_GATEWAY_ID)"
    }
    assert load_config(path, {"STREETGATE_GATEWAY_ID": "pole-17"}).gateway_id == "pole-17"


def test_docs_deploy_lists_every_variable() -> None:
    docs = (Path(__file__).resolve().parents[3] / "docs" / "deploy.md").read_text()
    rows = re.findall(r"^\| `(STREETGATE_[A-Z0-9_]+)` \| `([a-z_.]+)` \|$", docs, re.MULTILINE)
    assert dict(rows) == {n: ".".join(p) for n, p in variables(GatewayConfig).items()}
    for name in COMMAND_VARIABLES:
        assert f"`{name}`" in docs


def test_the_error_shown_in_docs_deploy_is_the_real_one(tmp_path: Path) -> None:
    docs = (Path(__file__).resolve().parents[3] / "docs" / "deploy.md").read_text()
    shown = re.search(r"```\n(error: run: .*?)```", docs, re.DOTALL)
    assert shown is not None
    etc = tmp_path / "etc" / "streetgate"
    etc.mkdir(parents=True)
    (etc / "config.toml").write_text(FILE)
    with pytest.raises(ConfigError) as exc:
        load_config(etc / "config.toml", {"STREETGATE_MQTT_PORT": "eighty"})
    lines = config_error_lines("run", exc.value)  # as `streetgate run` prints it
    assert "".join(f"{line}\n" for line in lines).replace(str(tmp_path), "") == shown.group(1)
