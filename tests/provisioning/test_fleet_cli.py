"""`streetgate fleet ...` through balena-sdk against a loopback stub of the balena API."""

from __future__ import annotations

import importlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from typer.testing import CliRunner, Result

from gateway.cli.exit_codes import ExitCode
from gateway.cli.main import app
from provisioning.fleet import FleetClient
from tests.support.balena_stub import FLEET_KEY, USER_KEY, BalenaStub
from tests.support.readme_examples import readme_commands

FLEET = "acme/streetfleet"
DEVICE = "d" * 32
RUNNING = "a" * 40
NEXT = "b" * 40


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> Iterator[BalenaStub]:
    api = BalenaStub().start()
    fleet = api.add_fleet(FLEET)
    running = api.add_release(fleet, RUNNING)
    api.add_release(fleet, NEXT)
    api.add_release(fleet, "f" * 40, status="failed")
    api.add_device(
        fleet,
        DEVICE,
        device_name="pole-17",
        is_online=True,
        last_connectivity_event="2026-11-27T08:00:00.000Z",
        overall_status="idle",
        is_running__release={"__id": running["id"]},
    )
    monkeypatch.setenv("BALENA_API_KEY", USER_KEY)
    monkeypatch.setenv("BALENA_API_URL", api.url)
    monkeypatch.delenv("BALENA_DEVICE_UUID", raising=False)
    yield api
    api.stop()


def fleet(*args: str, obj: object = None) -> Result:
    return CliRunner().invoke(app, ["fleet", *args], obj=obj)


def gateway_config(tmp_path: Path) -> Path:
    config = tmp_path / "gw.toml"
    config.write_text(
        'gateway_id = "pole-17"\n[mqtt]\nhost = "127.0.0.1"\n[outbox]\npath = "outbox.db"\n'
    )
    return config


# -- good paths -------------------------------------------------------------------------------


def test_enrol_registers_a_new_device_and_prints_its_uuid(stub: BalenaStub) -> None:
    result = fleet("enrol", "--fleet", FLEET)
    assert result.exit_code == 0, result.stderr
    uuid = result.stdout.strip()
    assert len(uuid) == 62
    assert int(uuid, 16) >= 0
    assert uuid in {d["uuid"] for d in stub.devices}
    (register,) = stub.seen("POST", "/device/register")
    assert register.body["uuid"] == uuid
    assert register.token is not None
    assert register.token.startswith("provisioning-")  # the SDK's own provisioning key
    assert "device-secret-key" not in result.stdout + result.stderr  # the device's API key
    assert "registered in acme/streetfleet" in result.stderr


def test_enrol_a_given_uuid_as_json(stub: BalenaStub) -> None:
    uuid = "e" * 32
    result = fleet("enrol", "--fleet", FLEET, "--uuid", uuid, "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {
        "schema": "streetgate.fleet.enrol/1",
        "uuid": uuid,
        "fleet": FLEET,
    }


def test_env_set_and_list(stub: BalenaStub, tmp_path: Path) -> None:
    config = gateway_config(tmp_path)
    result = fleet("env", "set", "-d", DEVICE, "-c", str(config), "SITE=kerb-17", "POLE=17")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "STREETGATE_GATEWAY_ID=pole-17\nSITE=kerb-17\nPOLE=17\n"
    again = fleet("env", "set", "-d", DEVICE, "POLE=18")  # exists: the SDK upserts (409, PATCH)
    assert again.exit_code == 0, again.stderr
    assert stub.seen("PATCH", "/v7/device_environment_variable")

    listed = fleet("env", "list", "-d", DEVICE)
    assert listed.exit_code == 0
    assert listed.stdout == "POLE=18\nSITE=kerb-17\nSTREETGATE_GATEWAY_ID=pole-17\n"
    as_json = fleet("env", "list", "-d", DEVICE, "--json")
    assert json.loads(as_json.stdout) == {
        "schema": "streetgate.fleet.env/1",
        "values": {"POLE": "18", "SITE": "kerb-17", "STREETGATE_GATEWAY_ID": "pole-17"},
    }


def test_tag_set_and_list(stub: BalenaStub, tmp_path: Path) -> None:
    config = gateway_config(tmp_path)
    result = fleet("tag", "set", "-d", DEVICE, "-c", str(config), "site=kerb-17", "pole=17")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "gateway_id=pole-17\nsite=kerb-17\npole=17\n"
    listed = fleet("tag", "list", "-d", DEVICE, "--json")
    assert json.loads(listed.stdout)["values"] == {
        "gateway_id": "pole-17",
        "pole": "17",
        "site": "kerb-17",
    }
    assert fleet("tag", "list", "-d", DEVICE).stdout == (
        "gateway_id=pole-17\npole=17\nsite=kerb-17\n"
    )


def test_pin_to_a_release(stub: BalenaStub) -> None:
    result = fleet("pin", "-d", DEVICE, "--release", NEXT)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"{NEXT}\n"
    (patch,) = stub.seen("PATCH", "/v7/device")
    release = next(r for r in stub.releases if r["commit"] == NEXT)
    assert patch.body == {"is_pinned_on__release": release["id"]}
    status = json.loads(fleet("status", "-d", DEVICE, "--json").stdout)
    assert status["pinned_release"] == NEXT
    as_json = fleet("pin", "-d", DEVICE, "--release", NEXT, "--json")
    assert json.loads(as_json.stdout)["pinned"] == NEXT


def test_status(stub: BalenaStub) -> None:
    result = fleet("status", "-d", DEVICE, "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {
        "schema": "streetgate.fleet.status/1",
        "uuid": DEVICE,
        "name": "pole-17",
        "fleet": FLEET,
        "online": True,
        "last_seen": "2026-11-27T08:00:00.000Z",
        "status": "idle",
        "release": RUNNING,
        "pinned_release": None,
        "os_version": "balenaOS 6.0.13",
    }
    text = fleet("status", "-d", DEVICE)
    assert text.exit_code == 0
    assert "online     yes" in text.stdout
    assert f"release    {RUNNING}" in text.stdout
    assert "pinned     no (tracks the fleet)" in text.stdout


def test_every_request_carries_the_token(stub: BalenaStub) -> None:
    assert fleet("status", "-d", DEVICE).exit_code == 0
    assert stub.requests
    assert {r.token for r in stub.requests} == {USER_KEY}


def test_the_device_uuid_from_the_environment(
    stub: BalenaStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BALENA_DEVICE_UUID", DEVICE)
    result = fleet("status", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["uuid"] == DEVICE


# -- the token ----------------------------------------------------------------------------------


def test_token_from_a_file(
    stub: BalenaStub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BALENA_API_KEY")
    token = tmp_path / "balena.token"
    token.write_text(USER_KEY + "\n")
    token.chmod(0o600)
    assert fleet("status", "-d", DEVICE, "--token-file", str(token)).exit_code == 0
    token.chmod(0o644)
    result = fleet("status", "-d", DEVICE, "--token-file", str(token))
    assert result.exit_code == ExitCode.PERMISSION
    assert f"chmod 600 {token}" in result.stderr
    missing = fleet("status", "-d", DEVICE, "--token-file", str(tmp_path / "nope"))
    assert missing.exit_code == ExitCode.NOT_FOUND


def test_no_token(stub: BalenaStub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BALENA_API_KEY")
    result = fleet("status", "-d", DEVICE)
    assert result.exit_code == ExitCode.USAGE
    assert "set BALENA_API_KEY or give --token-file" in result.stderr
    assert stub.requests == []


def test_a_refused_token(stub: BalenaStub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BALENA_API_KEY", "wrong")
    result = fleet("status", "-d", DEVICE)
    assert result.exit_code == ExitCode.FAILURE
    assert "the balena API did not accept the token" in result.stderr


def test_enrol_needs_a_user_key(stub: BalenaStub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BALENA_API_KEY", FLEET_KEY)
    result = fleet("enrol", "--fleet", FLEET)
    assert result.exit_code == ExitCode.FAILURE
    assert "not of a user" in result.stderr
    assert stub.seen("POST", "/device/register") == []


# -- what the SDK hides, and refusals -----------------------------------------------------------


def test_enrol_when_register_is_refused(stub: BalenaStub) -> None:
    stub.refuse("POST", "/device/register", 500, "database on fire")
    result = fleet("enrol", "--fleet", FLEET)
    assert result.exit_code == ExitCode.FAILURE
    assert "the balena API did not register it" in result.stderr
    assert "database on fire" in result.stderr
    assert result.stdout == ""


def test_enrol_when_the_device_does_not_appear(stub: BalenaStub) -> None:
    stub.drop_writes = True  # register answers with a device, but none exists afterwards
    result = fleet("enrol", "--fleet", FLEET)
    assert result.exit_code == ExitCode.NOT_FOUND
    assert "registering device" in result.stderr
    assert result.stdout == ""


def test_unknown_fleet(stub: BalenaStub) -> None:
    result = fleet("enrol", "--fleet", "acme/nope")
    assert result.exit_code == ExitCode.NOT_FOUND
    assert "acme/nope" in result.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["status"],
        ["env", "list"],
        ["env", "set", "SITE=x"],
        ["tag", "list"],
        ["tag", "set", "site=x"],
        ["pin", "--release", NEXT],
    ],
)
def test_unknown_device(stub: BalenaStub, command: list[str]) -> None:
    result = fleet(*command, "-d", "0" * 32)
    assert result.exit_code == ExitCode.NOT_FOUND, result.stderr
    assert "0" * 32 in result.stderr
    assert result.stdout == ""


def test_pin_to_an_unknown_or_failed_release(stub: BalenaStub) -> None:
    for commit in ("c" * 40, "f" * 40):
        result = fleet("pin", "-d", DEVICE, "--release", commit)
        assert result.exit_code == ExitCode.NOT_FOUND, result.stderr
        assert commit in result.stderr
    assert stub.seen("PATCH", "/v7/device") == []


def test_writes_the_api_accepts_but_drops_are_caught(stub: BalenaStub) -> None:
    stub.drop_writes = True
    env = fleet("env", "set", "-d", DEVICE, "SITE=kerb-17")
    assert env.exit_code == ExitCode.FAILURE
    assert "accepted but did not store environment variable(s) SITE" in env.stderr
    tag = fleet("tag", "set", "-d", DEVICE, "site=kerb-17")
    assert tag.exit_code == ExitCode.FAILURE
    assert "did not store tag(s) site" in tag.stderr
    pin = fleet("pin", "-d", DEVICE, "--release", NEXT)
    assert pin.exit_code == ExitCode.FAILURE
    assert "the device is pinned to no release" in pin.stderr
    assert env.stdout == tag.stdout == pin.stdout == ""


@pytest.mark.parametrize("status", [400, 403, 500, 503])
def test_api_refusals(stub: BalenaStub, status: int) -> None:
    stub.refuse("POST", "/v7/device_environment_variable", status, "nope: not today")
    result = fleet("env", "set", "-d", DEVICE, "SITE=kerb-17")
    assert result.exit_code == ExitCode.FAILURE
    assert f"the balena API refused it (HTTP {status}): nope: not today" in result.stderr
    assert result.stdout == ""  # the SDK prints 5xx errors to stdout; not through us


def test_bad_variable_names_and_pairs(stub: BalenaStub) -> None:
    for pair in ("1SITE=x", "BALENA_HOST_CONFIG_x=1", "SITE", "=x"):
        result = fleet("env", "set", "-d", DEVICE, pair)
        assert result.exit_code == ExitCode.USAGE, pair
    assert fleet("env", "set", "-d", DEVICE).exit_code == ExitCode.USAGE
    assert stub.seen("POST", "/v7/device_environment_variable") == []


@pytest.mark.parametrize(
    "command",
    [
        ["enrol", "--fleet", FLEET],
        ["status", "-d", DEVICE],
        ["env", "list", "-d", DEVICE],
        ["env", "set", "-d", DEVICE, "SITE=x"],
        ["tag", "list", "-d", DEVICE],
        ["tag", "set", "-d", DEVICE, "site=x"],
        ["pin", "-d", DEVICE, "--release", NEXT],
    ],
)
def test_api_down_is_unreachable(stub: BalenaStub, command: list[str]) -> None:
    url = stub.url
    stub.stop()
    result = fleet(*command)
    assert result.exit_code == ExitCode.UNREACHABLE, result.stderr
    assert f"cannot reach the balena API at {url}" in result.stderr
    assert result.stdout == ""


def test_connection_dropped_in_the_middle_of_enrolment(stub: BalenaStub) -> None:
    """The SDK turns a dropped connection on /device/register into NotLoggedIn."""
    stub.refuse("POST", "/device/register", 0)  # 0: close the connection without an answer
    result = fleet("enrol", "--fleet", FLEET)
    assert result.exit_code == ExitCode.UNREACHABLE, result.stderr
    assert "registering a device in fleet acme/streetfleet: cannot reach" in result.stderr


# -- the optional extra -------------------------------------------------------------------------


def test_without_balena_sdk_the_command_says_what_to_install(stub: BalenaStub) -> None:
    def no_balena(name: str) -> ModuleType:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    result = fleet("status", "-d", DEVICE, obj={"importer": no_balena})
    assert result.exit_code == ExitCode.FAILURE
    assert "install streetgate[fleet]" in result.stderr
    assert stub.requests == []


def test_the_cli_does_not_import_balena_until_a_fleet_command_runs() -> None:
    code = "import sys; import gateway.cli.main; print('balena' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False"


def test_the_sdk_still_has_the_settings_the_api_url_relies_on(stub: BalenaStub) -> None:
    """balena-sdk 17.3.0 internals: ``pine.api_prefix`` and the ``api_endpoint`` setting."""
    balena = importlib.import_module("balena")  # untyped; the optional extra
    sdk = balena.Balena({"data_directory": False})
    assert sdk.pine.api_prefix == "https://api.balena-cloud.com/v7/"
    assert sdk.settings.get("api_endpoint") == "https://api.balena-cloud.com/"
    client = FleetClient(USER_KEY, stub.url)
    assert client._sdk.pine.api_prefix == f"{stub.url}v7/"


def test_the_readme_examples_run(
    stub: BalenaStub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    commands = [c for c in readme_commands("Credentials and fleet enrolment") if c[1] == "fleet"]
    assert [c[2] for c in commands] == ["enrol", "env", "env", "tag", "tag", "pin", "status"]
    example_uuid = commands[1][commands[1].index("-d") + 1]
    example_release = commands[5][commands[5].index("--release") + 1]
    fleet_record = stub.fleets[0]
    stub.add_device(fleet_record, example_uuid)
    stub.add_release(fleet_record, example_release)
    monkeypatch.delenv("BALENA_API_KEY")  # the examples use the token file
    gateway_config(tmp_path)
    token = tmp_path / "balena.token"
    token.write_text(USER_KEY)
    token.chmod(0o600)
    monkeypatch.chdir(tmp_path)
    for command in commands:
        result = CliRunner().invoke(app, command[1:])
        assert result.exit_code == 0, (command, result.stderr)
    status = json.loads(result.stdout)
    assert (status["uuid"], status["pinned_release"]) == (example_uuid, example_release)
    device = next(d for d in stub.devices if d["uuid"] == example_uuid)
    env = {v["name"]: v["value"] for v in stub.env if v["device"]["__id"] == device["id"]}
    assert env == {"STREETGATE_GATEWAY_ID": "pole-17", "SITE": "kerb-17", "POLE": "17"}


def test_help_names_the_extra() -> None:
    result = CliRunner().invoke(app, ["fleet", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "streetgate[fleet]" in result.stdout


@pytest.mark.parametrize(
    "command",
    [["enrol", "--fleet", FLEET], ["status", "-d", DEVICE], ["env", "set", "-d", DEVICE, "A=1"]],
)
def test_an_api_that_never_answers_is_unreachable_after_the_timeout(
    stub: BalenaStub, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    """balena-sdk waits for ever on a black-holed uplink; the CLI gives up after --timeout."""
    with socket.socket() as black_hole:
        black_hole.bind(("127.0.0.1", 0))
        black_hole.listen(8)  # connections complete in the backlog; nothing is ever answered
        url = f"http://127.0.0.1:{black_hole.getsockname()[1]}/"
        monkeypatch.setenv("BALENA_API_URL", url)
        started = time.monotonic()
        result = fleet(*command, "--timeout", "0.3")
        assert time.monotonic() - started < 2
    assert result.exit_code == ExitCode.UNREACHABLE, result.stderr
    assert f"no answer from the balena API at {url} within 0.3 s" in result.stderr
    assert result.stdout == ""
