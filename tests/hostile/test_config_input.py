"""Config input that must be refused or spoken about (issue 12, item 7).

- A config file that is not UTF-8 was a traceback and exit 1 (systemd restarts that forever);
  it must be exit 3 (the config-error code) naming the file and the byte offset.
- ``mqtt.topic_prefix`` took NUL, newlines and ``$SYS/...``: topics nobody may publish under, or
  that a broker reads as its own; it must follow MQTT's topic rules.
- Plaintext MQTT and ``insecure_skip_verify`` ran without a word, and ``validate`` said
  "(TLS)" for the latter: both are now said at start, by validate and doctor, and in the
  health report.

The gateway runs as its own process (``python -m gateway``) against a real mosquitto.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import aiomqtt
import pytest

from gateway.cli.exit_codes import ExitCode
from tests.support.gateway_rig import running_gateway
from tests.support.mosquitto import Mosquitto

GOOD = """\
gateway_id = "pole-7"

[mqtt]
host = "{host}"
port = {port}
reconnect_min = "200ms"
reconnect_max = "1s"
health_interval = "1s"
{extra}
[outbox]
path = "outbox.db"
"""


def cli(
    *args: str, env: dict[str, str] | dict[bytes, bytes] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def config_file(
    tmp_path: Path, *, host: str = "127.0.0.1", port: int = 1883, extra: str = ""
) -> Path:
    path = tmp_path / "gw.toml"
    path.write_text(GOOD.format(host=host, port=port, extra=extra), encoding="utf-8")
    return path


# -- a config that is not UTF-8 ------------------------------------------------------------


@pytest.mark.parametrize("command", ["run", "validate"])
def test_a_config_that_is_not_utf8_is_exit_3_naming_file_and_offset(
    tmp_path: Path, command: str
) -> None:
    path = config_file(tmp_path)
    good = path.read_bytes()
    offset = good.index(b"pole-7")
    path.write_bytes(good[:offset] + b"p\xf6le-7" + good[offset + 6 :])  # Latin-1, not UTF-8
    args = ["run", "-c", str(path)] if command == "run" else ["validate", str(path)]
    result = cli(*args)
    assert result.returncode == ExitCode.CONFIG, result.stderr
    assert "Traceback" not in result.stderr
    assert str(path) in result.stderr
    assert f"byte 0xf6 at offset {offset + 1} (line 1)" in result.stderr
    assert not (tmp_path / "outbox.db").exists()  # nothing started


# -- topic_prefix ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        (r"city\u0000x", "control characters (found U+0000)"),
        (r"city\nstreetgate", "control characters (found U+000A)"),
        ("$SYS/broker", "must not start with '$'"),
        ("city/#", "wildcards"),
        ("city/+/x", "wildcards"),
        ("/city", "empty topic level"),
        ("city/", "empty topic level"),
        ("c" * 129, "at most 128 bytes"),
        ("", "must not be empty"),
    ],
)
def test_a_topic_prefix_breaking_mqtt_topic_rules_is_a_config_error(
    tmp_path: Path, prefix: str, expected: str
) -> None:
    path = config_file(tmp_path, extra=f'topic_prefix = "{prefix}"')
    for args in (["validate", str(path)], ["run", "-c", str(path)]):
        result = cli(*args)
        assert result.returncode == ExitCode.CONFIG, result.stderr
        assert "mqtt.topic_prefix" in result.stderr
        assert expected in result.stderr
    assert not (tmp_path / "outbox.db").exists()


def test_a_topic_prefix_from_a_non_utf8_environment_variable_is_refused(tmp_path: Path) -> None:
    path = config_file(tmp_path)
    env = {os.fsencode(k): os.fsencode(v) for k, v in os.environ.items()}
    env[b"STREETGATE_MQTT_TOPIC_PREFIX"] = b"city\xff"
    result = cli("validate", str(path), env=env)
    assert result.returncode == ExitCode.CONFIG, result.stderr
    assert "STREETGATE_MQTT_TOPIC_PREFIX" in result.stderr
    assert "valid UTF-8" in result.stderr


def test_a_good_topic_prefix_with_levels_and_unicode_is_accepted(tmp_path: Path) -> None:
    path = config_file(tmp_path, extra='topic_prefix = "city/straße/lights"')
    result = cli("validate", str(path))
    assert result.returncode == 0, result.stderr


# -- insecure transport ---------------------------------------------------------------------


def test_validate_says_plaintext_and_unverified_tls(tmp_path: Path) -> None:
    plain = cli("validate", str(config_file(tmp_path, host="mqtt.city.example")))
    assert plain.returncode == 0
    assert "(plain TCP)" in plain.stdout
    assert plain.stderr.startswith("warning: validate: plaintext MQTT (no [mqtt.tls])")
    (tmp_path / "ca.crt").write_text("not checked by validate")
    extra = '[mqtt.tls]\nca_file = "ca.crt"\ninsecure_skip_verify = true'
    unverified = config_file(tmp_path, host="mqtt.city.example", port=8883, extra=extra)
    result = cli("validate", str(unverified))
    assert result.returncode == 0
    assert "(TLS)" not in result.stdout
    assert "(TLS, certificate NOT verified)" in result.stdout
    assert "warning: validate: mqtt.tls.insecure_skip_verify = true" in result.stderr
    data = json.loads(cli("validate", "--json", str(unverified)).stdout)
    assert data["insecure"] == ["tls_unverified"]


def test_plaintext_to_a_remote_broker_is_warned_at_start_and_flagged_in_status(
    tmp_path: Path,
) -> None:
    # 192.0.2.1 (TEST-NET-1) is not on this machine and never answers: the gateway keeps
    # trying to connect, in clear, which is what it must say.
    config = config_file(tmp_path, host="192.0.2.1", extra="")

    async def scenario() -> dict[str, object]:
        async with running_gateway(config):
            state = tmp_path / "outbox.db.state.json"
            async with asyncio.timeout(20):
                while not state.exists():  # noqa: ASYNC110 - another process writes it
                    await asyncio.sleep(0.1)
            result = await asyncio.to_thread(cli, "status", "--json", "-c", str(config))
            status: dict[str, object] = json.loads(result.stdout)
            text = await asyncio.to_thread(cli, "status", "-c", str(config))
            assert "NOT secure: plaintext" in text.stdout
            return status

    status = asyncio.run(scenario())
    state = status["state"]
    assert isinstance(state, dict)
    assert state["insecure"] == ["plaintext"]
    log = (tmp_path / "gateway.log").read_text()
    assert "WARNING" in log
    assert "plaintext MQTT (no [mqtt.tls]) to the broker 192.0.2.1:1883" in log


def test_the_published_health_report_flags_plaintext_on_loopback(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    config = config_file(tmp_path, host=mosquitto.host, port=mosquitto.port)

    async def scenario() -> dict[str, object]:
        async with running_gateway(config):
            async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
                await client.subscribe("streetgate/pole-7/health", qos=1)
                async with asyncio.timeout(20):
                    async for message in client.messages:
                        assert isinstance(message.payload, bytes)
                        report: dict[str, object] = json.loads(message.payload)
                        return report
        raise AssertionError("no health report")

    report = asyncio.run(scenario())
    assert report["insecure"] == ["plaintext_loopback"]
    outbox = report["outbox"]
    assert isinstance(outbox, dict)
    assert len(str(outbox["epoch"])) == 16
