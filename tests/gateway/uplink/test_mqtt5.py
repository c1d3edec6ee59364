"""MQTT 5 options against a real mosquitto: session expiry keeps the command subscription
across an outage; message expiry lets a retained health report lapse."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import aiomqtt

from gateway.config.model import GatewayConfig
from gateway.runtime.app import pipeline
from gateway.uplink.forwarder import command_topic, health_topic
from tests.support.mosquitto import Mosquitto
from tests.support.uplink_rig import pipeline_config


def make_config(tmp_path: Path, port: int, **mqtt: object) -> GatewayConfig:
    broker = {"host": "127.0.0.1", "port": port, "protocol": "5"}
    return pipeline_config(tmp_path, "gw-v5", broker, **mqtt)


async def commands_after_an_outage(config: GatewayConfig, broker: Mosquitto) -> list[bytes]:
    """Connect (subscribing to commands), go away, have the platform send a command while
    the gateway is away, come back: the commands the gateway then receives."""
    received: list[bytes] = []

    async def handler(payload: bytes, retain: bool) -> None:
        received.append(payload)

    async with pipeline(config) as (_, forwarder):
        forwarder.subscribe(command_topic(config), handler)
        await asyncio.wait_for(forwarder.connected.wait(), 5)
    # The gateway is away (stopped: it said DISCONNECT); the platform sends a command.
    async with aiomqtt.Client(broker.host, broker.port, identifier="platform") as platform:
        await platform.publish(command_topic(config), b'{"id":"1"}', qos=1)
    async with pipeline(config) as (_, forwarder):
        forwarder.subscribe(command_topic(config), handler)
        await asyncio.wait_for(forwarder.connected.wait(), 5)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                while not received:  # noqa: ASYNC110 - a list filled by the handler
                    await asyncio.sleep(0.02)
    return received


def test_session_expiry_keeps_the_command_subscription_across_an_outage(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    config = make_config(tmp_path, mosquitto.port, session_expiry="1m")
    assert asyncio.run(commands_after_an_outage(config, mosquitto)) == [b'{"id":"1"}']


def test_without_session_expiry_a_command_sent_while_away_is_not_delivered(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    config = make_config(tmp_path, mosquitto.port, session_expiry="0")
    assert asyncio.run(commands_after_an_outage(config, mosquitto)) == []


async def retained_health(broker: Mosquitto, topic: str) -> dict[str, object] | None:
    async with aiomqtt.Client(
        broker.host, broker.port, protocol=aiomqtt.ProtocolVersion.V5
    ) as client:
        await client.subscribe(topic, qos=1)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1):
                async for message in client.messages:
                    assert isinstance(message.payload, bytes)
                    result: dict[str, object] = json.loads(message.payload)
                    return result
    return None


def test_a_retained_health_report_expires_after_three_intervals(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    config = make_config(tmp_path, mosquitto.port, health_interval="1s")
    topic = health_topic(config)

    async def scenario() -> None:
        async with pipeline(config) as (_, forwarder):
            await asyncio.wait_for(forwarder.connected.wait(), 5)
            assert await forwarder.publish_retained(topic, b'{"gateway":"gw-v5"}', expires_after=3)
            assert await forwarder.publish_retained(f"{topic}/kept", b'{"kept":1}')
        assert await retained_health(mosquitto, topic) == {"gateway": "gw-v5"}
        await asyncio.sleep(3.5)
        assert await retained_health(mosquitto, topic) is None  # lapsed at the broker
        assert await retained_health(mosquitto, f"{topic}/kept") == {"kept": 1}

    asyncio.run(scenario())
