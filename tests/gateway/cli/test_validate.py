"""`streetgate validate FILE`: "ok" and a summary, or every error on stderr and ExitCode.CONFIG."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

from gateway.cli.exit_codes import ExitCode
from gateway.cli.main import app

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"

GOOD = """\
gateway_id = "pole-42"

[mqtt]
host = "broker.example"
port = 1883

[outbox]
path = "state/outbox.db"

[[devices]]
kind = "modbus_tcp"
name = "pole-42-meter"
host = "192.0.2.42"
port = 5020
unit_id = 7
profile = "sdm120"
interval = "500ms"
"""

BAD = """\
gateway_id = "pole 42"

[mqtt]
host = "broker.example"
port = 70000
qos = 1

[outbox]
path = "outbox.db"
max_bytes = "lots"

[[devices]]
kind = "modbus_tcp"
name = "meter"
host = "192.0.2.42"
profile = "sdm120"
interval = "soon"
"""


def validate(*args: str) -> Result:
    """Run ``streetgate validate ARGS`` against ``gateway.cli.main.app``.

    The root app is built at import with every command group; a one-command app would run
    ``validate`` without its name, so the name is given only when the app is a group.
    """
    command = typer.main.get_command(app)
    argv = ["validate", *args] if isinstance(command, typer.core.TyperGroup) else list(args)
    return CliRunner().invoke(app, argv)


def test_validate_is_a_command() -> None:
    names = [c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands]
    assert "validate" in names


def test_good_file_prints_ok_and_summary(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(GOOD, encoding="utf-8")
    result = validate(str(path))
    assert result.exit_code == 0, result.stderr
    assert result.stderr.startswith(  # no [mqtt.tls]: said, but still valid
        "warning: validate: plaintext MQTT (no [mqtt.tls]) to the broker broker.example:1883"
    )
    assert result.stdout.splitlines() == [
        f"ok: {path}",
        "gateway pole-42: broker broker.example:1883 (plain TCP), outbox "
        f"{tmp_path / 'state' / 'outbox.db'}",
        "1 device(s):",
        "  pole-42-meter: modbus_tcp 192.0.2.42:5020 unit 7, profile sdm120 (11 metrics),"
        " every 0.5s",
    ]


def test_cabinet_example(tmp_path: Path) -> None:
    path = shutil.copy(EXAMPLES / "cabinet.toml", tmp_path / "cabinet.toml")
    result = validate(str(path))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"ok: {path}",
        "gateway cabinet-0012: broker mqtt.city.example:8883 (TLS), outbox "
        "/var/lib/streetgate/outbox.db",
        "2 device(s):",
        "  lighting-meter: modbus_tcp 192.0.2.10:502 unit 1, profile sdm630 (21 metrics),"
        " every 10s",
        "  cabinet-climate: modbus_tcp 192.0.2.10:502 unit 3, profile xy-md02 (2 metrics),"
        " every 30s, deadbands on every measurement",
    ]


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.toml")))
def test_shipped_examples_validate(name: str) -> None:
    result = validate(str(EXAMPLES / name))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(f"ok: {EXAMPLES / name}\n")


def test_bad_file_lists_every_error_on_stderr(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(BAD, encoding="utf-8")
    result = validate(str(path))
    assert result.exit_code == ExitCode.CONFIG
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert all(line.startswith(f"error: validate: {path}: ") for line in lines)
    located = [line.removeprefix(f"error: validate: {path}: ") for line in lines]
    assert [line.split(": ", 1)[0] for line in located] == [
        "gateway_id",
        "mqtt.port",
        "mqtt.qos",
        "outbox.max_bytes",
        "devices[0].interval",
    ]
    assert "less than or equal to 65535 (got 70000)" in located[1]
    assert "unknown key" in located[2]
    assert "expected a size such as '64MB'" in located[3]
    assert "expected a duration such as '250ms'" in located[4]


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.toml"
    result = validate(str(path))
    assert result.exit_code == ExitCode.CONFIG
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"error: validate: {path}: cannot read file: No such file or directory",
    ]


def test_toml_syntax_error(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text('gateway_id = "gw"\n[mqtt\n', encoding="utf-8")
    result = validate(str(path))
    assert result.exit_code == ExitCode.CONFIG
    assert f"error: validate: {path}: not valid TOML: " in result.stderr
    assert "line 2" in result.stderr


def test_bad_custom_profile_names_the_profile_file(tmp_path: Path) -> None:
    (tmp_path / "weather.toml").write_text(
        'name = "weather"\n[[metrics]]\nname = "wind"\naddress = 0x1F4\nscale = 0\n',
        encoding="utf-8",
    )
    path = tmp_path / "gateway.toml"
    path.write_text(GOOD.replace('"sdm120"', '"weather.toml"'), encoding="utf-8")
    result = validate(str(path))
    assert result.exit_code == ExitCode.CONFIG
    assert f"{path}: devices[0].profile: metrics[0].scale: scale must not be 0" in result.stderr
    assert str(tmp_path / "weather.toml") in result.stderr
