"""`streetgate config validate|show`, `validate --json`, and the CLI's conventions."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from gateway.cli.exit_codes import ExitCode
from gateway.cli.main import EXIT_CODE_MEANINGS, app
from gateway.config.effective import MASK
from gateway.config.model import parse_config

KEY = "0123456789abcdef0123456789abcdef"

CONFIG = f"""\
gateway_id = "pole-7"

[mqtt]
host = "broker.example"
port = 8883
username = "pole-7"
password_file = "secrets/mqtt-password"

[mqtt.tls]
ca_file = "ca.crt"
cert_file = "gw.crt"
key_file = "gw.key"

[outbox]
path = "outbox.db"
max_bytes = "64MB"

[[devices]]
kind = "modbus_tcp"
name = "meter-1"
host = "192.0.2.10"
profile = "sdm120"
interval = "500ms"

[[devices]]
kind = "modbus_tcp"
name = "weather-station"
host = "192.0.2.11"
profile = "weather.toml"

[[devices]]
kind = "bthome"
name = "door-1"
mac = "A4:C1:38:00:00:01"
key = "{KEY}"

[[devices]]
kind = "line"
name = "weather"
port = "/dev/ttyUSB1"
pattern = 'T=(?P<temp>\\S+) H=(?P<humidity>\\S+)'
[devices.fields.temp]
unit = "°C"
[devices.fields.humidity]
unit = "%"
scale = 0.1
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    (tmp_path / "weather.toml").write_text(
        'name = "weather"\n[[metrics]]\nname = "wind"\naddress = 0x1F4\ntype = "float32"\n'
        'unit = "m/s"\n',
        encoding="utf-8",
    )
    path = tmp_path / "gw.toml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


def cli(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def test_show_prints_the_effective_config_with_secrets_masked(config: Path) -> None:
    result = cli("config", "show", "-c", str(config))
    assert result.exit_code == 0, result.stderr
    assert KEY not in result.stdout
    shown = tomllib.loads(result.stdout)
    assert shown["devices"][2]["key"] == MASK
    assert shown["mqtt"]["password_file"] == str(config.parent / "secrets" / "mqtt-password")
    assert shown["mqtt"]["tls"]["key_file"] == str(config.parent / "gw.key")  # a path: shown
    assert shown["mqtt"]["keepalive"] == 30.0  # defaults filled in
    assert shown["outbox"]["max_bytes"] == 64 * 1000 * 1000
    assert shown["devices"][0] == {
        "kind": "modbus_tcp",
        "name": "meter-1",
        "host": "192.0.2.10",
        "port": 502,
        "unit_id": 1,
        "profile": "sdm120",
        "interval": 0.5,
        "timeout": 1.0,
        "deadbands": {},  # none: every reading is stored
    }
    assert shown["devices"][1]["profile"]["metrics"] == [  # a profile file, in full
        {
            "name": "wind",
            "address": 500,
            "function": "holding",
            "type": "float32",
            "word_order": "big",
            "byte_order": "big",
            "scale": 1.0,
            "offset": 0.0,
            "unit": "m/s",
        }
    ]


def test_show_no_redact_round_trips(config: Path) -> None:
    """Unredacted, the output is itself a config that loads to the same settings."""
    result = cli("config", "show", "-c", str(config), "--no-redact")
    assert result.exit_code == 0, result.stderr
    assert f'key = "{KEY}"' in result.stdout
    original = parse_config(tomllib.loads(CONFIG), "original", config.parent)
    assert parse_config(tomllib.loads(result.stdout), "shown", config.parent) == original


def test_show_json_parses_and_masks(config: Path) -> None:
    result = cli("config", "show", "-c", str(config), "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["devices"][2]["key"] == MASK
    assert data["devices"][3]["fields"]["humidity"] == {"unit": "%", "scale": 0.1, "offset": 0.0}
    unmasked = json.loads(cli("config", "show", "-c", str(config), "--json", "--no-redact").stdout)
    assert unmasked["devices"][2]["key"] == KEY


def test_anything_named_like_a_secret_is_masked() -> None:
    from gateway.config.effective import _plain  # noqa: PLC0415

    data = {"api_token": "t0k", "password": "pw", "key_file": "/k.pem", "keepalive": "x"}
    assert _plain(data, "", redact=True) == {
        "api_token": MASK,
        "password": MASK,
        "key_file": "/k.pem",
        "keepalive": "x",
    }


@pytest.mark.parametrize("command", [["config", "validate"], ["validate"]])
def test_validate_and_its_alias(config: Path, command: list[str]) -> None:
    result = cli(*command, str(config))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(f"ok: {config}\ngateway pole-7: broker broker.example:8883")
    result = cli(*command, str(config), "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["valid"] is True
    assert data["devices"] == [
        {"name": "meter-1", "kind": "modbus_tcp"},
        {"name": "weather-station", "kind": "modbus_tcp"},
        {"name": "door-1", "kind": "bthome"},
        {"name": "weather", "kind": "line"},
    ]


@pytest.mark.parametrize(
    "command", [["config", "validate"], ["validate"], ["config", "show", "-c"]]
)
def test_config_errors_exit_3(tmp_path: Path, command: list[str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('gateway_id = "bad id"\n')
    result = cli(*command, str(path))
    assert result.exit_code == 3  # ExitCode.CONFIG, as scripts see it
    what = command[0]  # errors name the command group: "config" or "validate"
    assert result.stderr.splitlines() == [
        f"error: {what}: {path}: gateway_id: expected a name of letters, digits, '_', '.' or '-',"
        " starting with a letter or digit (got 'bad id')",
        f"error: {what}: {path}: mqtt: required key is missing",
        f"error: {what}: {path}: outbox: required key is missing",
    ]
    assert result.stdout == ""
    result = cli(*command, str(path), "--json")
    assert result.exit_code == ExitCode.CONFIG
    if command[-1] != "-c":
        data = json.loads(result.stdout)
        assert data["valid"] is False
        assert {i["location"] for i in data["issues"]} == {"gateway_id", "mqtt", "outbox"}


def test_version_help_epilog_and_completion() -> None:
    result = cli("--version")
    assert result.exit_code == 0
    assert result.stdout.startswith("streetgate ")
    result = cli("--help")
    assert result.exit_code == 0
    help_text = " ".join(result.stdout.split())
    assert "Exit codes: 0 ok, 1 failure, 2 usage, 3 config, 4 unreachable" in help_text
    assert "--install-completion" in help_text
    for name in ("init", "config", "validate", "buffer", "run"):
        assert name in help_text
    assert list(EXIT_CODE_MEANINGS) == list(ExitCode)


def test_the_readme_exit_code_table_is_the_exit_code_enum() -> None:
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    section = readme.split("### Exit codes\n", 1)[1].split("\n#", 1)[0]
    rows = [line.split("|")[1:3] for line in section.splitlines() if line.startswith("| ")]
    table = {int(code.strip()): meaning.strip() for code, meaning in rows[1:]}
    assert table == {int(c): EXIT_CODE_MEANINGS[c] for c in ExitCode}


def test_shell_completion_completes_commands() -> None:
    result = CliRunner().invoke(app, ["--show-completion", "bash"], prog_name="streetgate")
    assert result.exit_code == 0
    assert "_STREETGATE_COMPLETE=complete_bash" in result.stdout
    completing = CliRunner(
        env={
            "_STREETGATE_COMPLETE": "complete_bash",
            "COMP_WORDS": "streetgate con",
            "COMP_CWORD": "1",
        }
    )
    result = completing.invoke(app, [], prog_name="streetgate")
    assert result.stdout.split() == ["config"]
