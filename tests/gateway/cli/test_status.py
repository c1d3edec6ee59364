"""``streetgate status`` against a real ``streetgate run`` process, across a remote restart."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from gateway.cli.exit_codes import ExitCode
from gateway.cli.main import app
from gateway.cli.status import format_status
from gateway.runtime.state_file import GatewayView
from tests.support.gateway_rig import gateway_process
from tests.support.mosquitto import Mosquitto
from tests.support.platform_client import platform
from tests.support.readme_examples import readme_commands
from tests.support.snapshots import snapshot


def status(config: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["status", "-c", str(config), *args])


def wait_running(
    config: Path, predicate: Any = lambda s: True, timeout: float = 20
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        result = status(config, "--json")
        data: dict[str, Any] = json.loads(result.stdout)
        if result.exit_code == 0 and predicate(data["state"]):
            return data
        assert result.exit_code in {0, ExitCode.NOT_FOUND}, result.output
        assert time.monotonic() < deadline, f"never running: {data}"
        time.sleep(0.1)


def test_status_of_a_running_gateway_and_after_it_stops(
    tmp_path: Path, mosquitto: Mosquitto, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "gw.toml"
    config.write_text(
        "\n".join(
            [
                'gateway_id = "status-gw"',
                "[mqtt]",
                'host = "127.0.0.1"',
                f"port = {mosquitto.port}",
                "[outbox]",
                'path = "outbox.db"',
            ]
        )
        + "\n"
    )
    result = status(config)
    assert result.exit_code == ExitCode.NOT_FOUND
    assert "not running (no state file" in result.stdout

    with gateway_process(config) as proc:
        data = wait_running(config, lambda s: s["forwarder"]["state"] == "connected")
        assert data["running"] is True
        state = data["state"]
        assert state["pid"] == proc.pid
        assert state["gateway"] == "status-gw"
        assert state["version"]
        assert isinstance(state["clock_synchronised"], bool)
        assert state["outbox"]["depth"] == 0
        result = status(config)
        assert result.exit_code == 0
        assert f"running (pid {proc.pid})" in result.stdout
        assert "connected since" in result.stdout
        # The README's examples, as written (they name gw.toml in the current directory).
        monkeypatch.chdir(tmp_path)
        examples = readme_commands("Remote management and monitoring")
        assert [args[:2] for args in examples] == [["streetgate", "status"]] * 2
        for args in examples:
            result = CliRunner().invoke(app, args[1:])
            assert result.exit_code == 0, result.output
            assert "status-gw" in result.stdout

        # A remote restart happens in the same process: same PID, a new connection.
        async def restart() -> dict[str, Any]:
            async with platform(mosquitto.host, mosquitto.port, "status-gw") as plat:
                return await plat.call("restart")

        assert asyncio.run(restart())["status"] == "accepted"
        asked = time.monotonic()
        # Up for less time than since the restart was asked for: a new run (0.1 s: rounding).
        data = wait_running(
            config,
            lambda s: (
                s["uptime_s"] <= time.monotonic() - asked + 0.1
                and s["forwarder"]["state"] == "connected"
            ),
        )
        assert data["state"]["pid"] == proc.pid
        assert proc.poll() is None

    result = status(config, "--json")
    assert result.exit_code == ExitCode.NOT_FOUND
    data = json.loads(result.stdout)
    assert data["running"] is False
    assert "stopped cleanly" in data["view"]["reason"]
    assert data["state"]["gateway"] == "status-gw"  # the last known figures
    assert "last known" in status(config).stdout


def test_the_last_reload_is_shown_with_its_issues() -> None:
    view = GatewayView(running=True, reason="running (pid 42)")
    text = format_status(view, snapshot())
    line = next(line for line in text.splitlines() if line.startswith("reload"))
    assert "invalid at 2025-12-06T11:58:00Z" in line
    assert "still running on the previous config (mqtt.port: expected an integer)" in line
    state = snapshot()
    del state["reload"]  # a state file from before reloads, or none made: no line
    assert not any(line.startswith("reload") for line in format_status(view, state).splitlines())
