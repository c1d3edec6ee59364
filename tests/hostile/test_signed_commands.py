"""A hostile publisher on ``<prefix>/<gw>/cmd`` against a gateway that requires signed commands.

The gateway runs as its own process (``streetgate run``) with ``[management] require_signed``,
behind a real mosquitto. The attacker can publish anything on the command topic and has
captured signed commands the platform sent (to this gateway and to others), but does not hold
the platform's private key.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.management.auth import nonces_path
from gateway.management.signing import sign_command
from tests.support.gateway_rig import running_gateway
from tests.support.mosquitto import Mosquitto
from tests.support.platform_client import Platform, platform
from tests.system.test_end_to_end import stop

GW = "signed-gw"


async def bounded(scenario: Coroutine[Any, Any, None], seconds: float = 90) -> None:
    async with asyncio.timeout(seconds):
        await scenario


def setup(tmp_path: Path, broker: Mosquitto) -> tuple[Path, Ed25519PrivateKey]:
    key = Ed25519PrivateKey.generate()
    (tmp_path / "command-key.pub").write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    config = tmp_path / "gw.toml"
    config.write_text(
        f'gateway_id = "{GW}"\n'
        "[mqtt]\n"
        f'host = "{broker.host}"\nport = {broker.port}\n'
        'reconnect_min = "200ms"\nreconnect_max = "1s"\n'
        "[outbox]\n"
        'path = "outbox.db"\n'
        "[management]\n"
        "require_signed = true\n"
        'command_key_file = "command-key.pub"\n'
        'max_clock_skew = "5m"\n'
    )
    return config, key


def signed(key: Ed25519PrivateKey, command: str, gateway: str = GW, **kw: Any) -> bytes:
    body = {"id": uuid.uuid4().hex, "command": command, **kw}
    return sign_command(key, body, gateway)


async def send(plat: Platform, payload: bytes, nth: int = 1) -> dict[str, Any]:
    await plat.send(payload)
    return await plat.reply(json.loads(payload)["id"], nth)


async def online(plat: Platform, key: Ed25519PrivateKey) -> dict[str, Any]:
    """A signed ping's reply, once the gateway answers (commands sent while it is away are lost)."""
    while True:
        payload = signed(key, "ping")
        await plat.send(payload)
        try:
            return await plat.reply(json.loads(payload)["id"], timeout=1.0)
        except TimeoutError:
            continue


def test_only_signed_fresh_commands_for_this_gateway_run(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    config, key = setup(tmp_path, mosquitto)

    async def scenario() -> None:
        async with (
            platform(mosquitto.host, mosquitto.port, GW) as plat,
            running_gateway(config) as proc,
        ):
            pong = await online(plat, key)
            assert pong["status"] == "ok", pong
            assert pong["result"]["pong"] is True

            attacker = Ed25519PrivateKey.generate()
            now = time.time()
            attempts = {
                "unsigned": json.dumps({"id": "a1", "command": "restart"}).encode(),
                "bad_signature": signed(attacker, "restart"),
                "wrong_gateway": signed(key, "restart", gateway="other-gw"),
            }
            # a captured command with one field changed
            tampered = json.loads(signed(key, "ping"))
            tampered["command"] = "restart"
            attempts["bad_signature "] = json.dumps(tampered).encode()
            old = sign_command(key, {"id": "a2", "command": "restart"}, GW, now=now - 600)
            future = sign_command(key, {"id": "a3", "command": "restart"}, GW, now=now + 600)
            attempts |= {"stale": old, "stale ": future}
            for expected, payload in attempts.items():
                reply = await send(plat, payload)
                assert reply["status"] == "error", (expected, reply)
                assert reply["error"]["code"] == expected.strip(), reply
                assert reply["command"] == json.loads(payload)["command"]

            # none of those restarts ran: the gateway has been up since the first ping
            later = await send(plat, signed(key, "ping"))
            assert later["result"]["uptime_s"] >= pong["result"]["uptime_s"]
            assert proc.returncode is None
            assert await stop(proc) == 0
        log = (tmp_path / "gateway.log").read_text()
        assert "command refused: unsigned command refused" in log
        assert "signature does not verify" in log

    asyncio.run(bounded(scenario()))


def test_a_captured_signed_command_runs_once_also_across_a_restart(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    config, key = setup(tmp_path, mosquitto)
    captured = signed(key, "restart")
    command_id = json.loads(captured)["id"]

    async def scenario() -> None:
        async with platform(mosquitto.host, mosquitto.port, GW) as plat:
            async with running_gateway(config) as proc:
                await online(plat, key)
                first = await send(plat, captured)
                assert first["status"] == "accepted", first
                await online(plat, key)  # back after the in-process restart
                up = (await send(plat, signed(key, "ping")))["result"]["uptime_s"]

                again = await send(plat, captured, nth=2)
                assert again["status"] == "error"
                assert again["error"]["code"] == "replayed", again
                pong = await send(plat, signed(key, "ping"))
                assert pong["result"]["uptime_s"] >= up  # it did not restart again
                assert await stop(proc) == 0

            assert nonces_path(tmp_path / "outbox.db").stat().st_mode & 0o777 == 0o600
            async with running_gateway(config) as proc:  # a new process, within the window
                await online(plat, key)
                third = await send(plat, captured, nth=3)
                assert third["error"]["code"] == "replayed", third
                assert await stop(proc) == 0
        assert len(plat.replies[command_id]) == 3

    asyncio.run(bounded(scenario()))
