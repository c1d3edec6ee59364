"""``streetgate healthcheck``: judged from the heartbeat a real watchdog writes."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from gateway.cli.exit_codes import ExitCode
from gateway.cli.main import app
from gateway.runtime.notify import Notifier
from gateway.runtime.watchdog import Probe, Watchdog, heartbeat_path
from tests.support.readme_examples import readme_commands

CONFIG = """\
gateway_id = "pole-17"
[mqtt]
host = "127.0.0.1"
[outbox]
path = "outbox.db"
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "gw.toml"
    path.write_text(CONFIG)
    return path


def healthcheck(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, ["healthcheck", *args], env=env)


def beat(config: Path, stalled_marker: bool) -> None:
    """One round of a real watchdog in this process, with one probe, stalled or not."""
    clock = iter([0.0, 1000.0])
    probe = Probe("outbox:commit", 60.0, lambda: 1 if stalled_marker else None)
    dog = Watchdog(
        Notifier(None),
        [probe],
        heartbeat=heartbeat_path(config.parent / "outbox.db"),
        clock=lambda: next(clock),
    )

    async def twice() -> None:
        await dog.beat()
        await dog.beat()

    asyncio.run(twice())


def test_healthy_while_the_watchdog_sees_progress(config: Path) -> None:
    beat(config, stalled_marker=False)
    result = healthcheck("-c", str(config))
    assert result.exit_code == ExitCode.OK, result.output
    assert result.stdout.startswith("healthy (pid ")


def test_unhealthy_when_a_loop_is_stalled(config: Path) -> None:
    beat(config, stalled_marker=True)
    result = healthcheck("-c", str(config), "--json")
    assert result.exit_code == ExitCode.FAILURE
    data = json.loads(result.stdout)
    assert data["healthy"] is False
    assert data["reason"] == "stalled: outbox:commit: no progress for 1000s"
    assert data["heartbeat"] == str(config.parent / "outbox.db.heartbeat.json")


def test_unhealthy_when_the_heartbeat_is_old_or_missing(config: Path) -> None:
    result = healthcheck("-c", str(config))
    assert result.exit_code == ExitCode.FAILURE
    assert result.stdout == "unhealthy: no heartbeat: the gateway has not started (yet)\n"
    beat(config, stalled_marker=False)
    path = heartbeat_path(config.parent / "outbox.db")
    data = json.loads(path.read_text())
    data["updated_unix"] = time.time() - 3600  # the event loop stopped writing an hour ago
    path.write_text(json.dumps(data))
    result = healthcheck("-c", str(config))
    assert result.exit_code == ExitCode.FAILURE
    assert "the gateway's event loop is stuck" in result.stdout
    path.write_text("{")
    assert "is not JSON" in healthcheck("-c", str(config)).stdout


def test_the_config_may_come_from_streetgate_config(config: Path) -> None:
    beat(config, stalled_marker=False)
    result = healthcheck(env={"STREETGATE_CONFIG": str(config)})
    assert result.exit_code == ExitCode.OK, result.output


def test_an_invalid_config_is_exit_3(config: Path) -> None:
    result = healthcheck("-c", str(config), env={"STREETGATE_MQTT_PORT": "none"})
    assert result.exit_code == ExitCode.CONFIG
    assert "STREETGATE_MQTT_PORT (sets mqtt.port)" in result.output


def test_the_readme_examples_run_as_written(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    commands = readme_commands("Running as a service: systemd and balena")
    assert [c[:2] for c in commands] == [["streetgate", "healthcheck"]] * 2
    monkeypatch.chdir(config.parent)
    beat(config, stalled_marker=False)
    plain, as_json = (healthcheck(*c[2:]) for c in commands)
    assert plain.exit_code == ExitCode.OK, plain.output
    assert plain.stdout.startswith("healthy (pid ")
    assert set(json.loads(as_json.stdout)) == {"healthy", "reason", "heartbeat"}
