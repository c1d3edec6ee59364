"""Outbox → forwarder → real mosquitto: order, acks, outage, historical flag, birth and will."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiomqtt
import pytest

from gateway.config.model import GatewayConfig
from gateway.core.model import Quality, StoredReading
from gateway.runtime.app import pipeline
from gateway.store.outbox import Outbox
from gateway.uplink.envelope import build_message
from gateway.uplink.forwarder import Forwarder, status_topic
from tests.support.mosquitto import Mosquitto
from tests.support.reading_source import MemorySource
from tests.support.subscriber import Subscriber
from tests.support.uplink_rig import meter_readings, pipeline_config
from tests.support.waiting import until


def make_config(tmp_path: Path, port: int, **mqtt: object) -> GatewayConfig:
    return pipeline_config(tmp_path, "gw-test", {"host": "127.0.0.1", "port": port}, **mqtt)


@asynccontextmanager
async def subscribed(broker: Mosquitto, topic: str) -> AsyncIterator[Subscriber]:
    sub = Subscriber(broker.host, broker.port, topic)
    task = asyncio.create_task(sub.run(), name="test:subscriber")
    await asyncio.wait_for(sub.subscribed.wait(), 5)
    try:
        yield sub
    finally:
        task.cancel()


def test_readings_arrive_in_order_and_are_deleted_after_puback(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    config = make_config(tmp_path, mosquitto.port, readings_per_message=100)

    async def scenario() -> None:
        async with subscribed(mosquitto, "streetgate/gw-test/readings") as sub:
            async with pipeline(config) as (outbox, forwarder):
                await asyncio.wait_for(forwarder.connected.wait(), 5)
                for i in range(10):
                    await outbox.put_many(meter_readings(250, i * 250))
                await sub.wait_for(2500, 20)
                await asyncio.sleep(0.3)  # the ack of the last message is committed
                assert (await outbox.stats()).depth == 0
        report = sub.delivery.report()
        assert report == {
            "received": 2500,
            "distinct": 2500,
            "missing": 0,
            "duplicated": 0,
            "misordered": 0,
            "highest": 2500,
        }
        values = [r["value"] for r in sub.delivery.readings]
        assert values == [float(i) for i in range(2500)]
        assert all(len(m["readings"]) <= 100 for m in sub.delivery.messages)
        assert all(m["historical"] is False for m in sub.delivery.messages)

    asyncio.run(scenario())


def test_backlog_is_sent_first_and_flagged_historical(tmp_path: Path, mosquitto: Mosquitto) -> None:
    config = make_config(tmp_path, mosquitto.port)

    async def scenario() -> None:
        async with Outbox(config.outbox) as outbox:  # readings buffered while offline
            await outbox.put_many(meter_readings(1200, 0))
        async with subscribed(mosquitto, "streetgate/gw-test/readings") as sub:
            async with pipeline(config) as (outbox, forwarder):
                await asyncio.wait_for(forwarder.connected.wait(), 5)
                await outbox.put_many(meter_readings(300, 1200))
                await sub.wait_for(1500, 20)
        messages = sub.delivery.messages
        historical = [m for m in messages if m["historical"]]
        live = [m for m in messages if not m["historical"]]
        assert sum(m["count"] for m in historical) == 1200
        assert historical[-1]["last_seq"] == 1200
        assert live[0]["first_seq"] == 1201
        assert messages.index(historical[-1]) < messages.index(live[0])
        assert sub.delivery.report()["missing"] == 0

    asyncio.run(scenario())


def test_broker_outage_under_load_loses_and_reorders_nothing(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    config = make_config(tmp_path, mosquitto.port, readings_per_message=50)

    async def scenario() -> None:
        async with subscribed(mosquitto, "streetgate/gw-test/readings") as sub:
            async with pipeline(config) as (outbox, forwarder):
                await asyncio.wait_for(forwarder.connected.wait(), 5)
                produced = 0

                async def load(seconds: float) -> None:
                    nonlocal produced
                    end = time.monotonic() + seconds
                    while time.monotonic() < end:
                        await outbox.put_many(meter_readings(20, produced))
                        produced += 20
                        await asyncio.sleep(0.01)  # about 2,000 readings/s

                await load(1.0)
                mosquitto.stop()
                await load(3.0)  # broker down: everything goes to the outbox
                assert forwarder.stats.connection_failures >= 1
                mosquitto.start()
                await load(1.0)
                await sub.wait_for(produced, 30)
        report = sub.delivery.report()
        assert report["missing"] == 0
        assert report["misordered"] == 0
        assert report["distinct"] == produced
        # A duplicate is a resend of a sequence number already seen, never a new number.
        assert sub.delivery.distinct() == set(range(1, produced + 1))

    asyncio.run(scenario())


def test_birth_is_retained_and_the_will_reports_a_lost_link(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    config = make_config(tmp_path, mosquitto.port)
    topic = status_topic(config)

    async def retained() -> dict[str, object]:
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
            await client.subscribe(topic, qos=1)
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                result: dict[str, object] = json.loads(message.payload)
                return result
        raise AssertionError("no status")

    async def scenario() -> None:
        async with pipeline(config) as (_, forwarder):
            await asyncio.wait_for(forwarder.connected.wait(), 5)
            assert (await asyncio.wait_for(retained(), 5))["state"] == "online"
        # a clean stop replaces the retained birth
        assert (await asyncio.wait_for(retained(), 5))["state"] == "offline"

    asyncio.run(scenario())


def test_message_envelope() -> None:
    readings = [
        StoredReading(7, "m-1", "voltage", 230.1, "V", 1_764_230_400_123, Quality.GOOD),
        StoredReading(8, "m-1", "x", float("nan"), "", 1_764_230_400_123, Quality.CLOCK_UNSYNCED),
    ]
    payload = build_message("gw-1", epoch="00ff00ff00ff00ff", historical=True, readings=readings)
    assert payload == (
        b'{"v":2,"gateway":"gw-1","epoch":"00ff00ff00ff00ff","historical":true,'
        b'"first_seq":7,"last_seq":8,"count":2,"readings":['
        b'{"seq":7,"device":"m-1","metric":"voltage","value":230.1,"unit":"V",'
        b'"ts":"2025-11-27T08:00:00.123Z","quality":"good"},'
        b'{"seq":8,"device":"m-1","metric":"x","value":null,"unit":"",'
        b'"ts":"2025-11-27T08:00:00.123Z","quality":"clock_unsynced"}]}'
    )


def test_a_stop_while_connecting_ends_the_forwarder_even_if_the_client_swallows_it(
    tmp_path: Path, mosquitto: Mosquitto, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On Python 3.11 aiomqtt's wait_for can return a finished connect instead of raising the
    cancel that arrived with it; the gateway then hung at shutdown (a CI run caught it after a
    remote restart). A connect that swallows the cancel stands in for that race here."""
    entered = asyncio.Event()
    real_aenter = aiomqtt.Client.__aenter__

    async def swallowing_aenter(self: aiomqtt.Client) -> aiomqtt.Client:
        client = await real_aenter(self)
        entered.set()
        with contextlib.suppress(asyncio.CancelledError):  # swallowed, as wait_for can
            await asyncio.sleep(0.5)
        return client

    monkeypatch.setattr(aiomqtt.Client, "__aenter__", swallowing_aenter)

    async def scenario() -> None:
        config = make_config(tmp_path, mosquitto.port)
        async with pipeline(config) as (_, forwarder):
            await asyncio.wait_for(entered.wait(), 10)
        # leaving pipeline() cancels the forwarder and waits for it: it must end, not drain on
        assert forwarder.connected.is_set() is False

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_the_forwarder_publishes_any_reading_source(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """Through the ReadingSource seam, without an outbox: backlog first, then live readings,
    each message encoded at publish time, everything acknowledged back to the source."""
    config = make_config(tmp_path, mosquitto.port, readings_per_message=2)
    stored = [
        StoredReading(seq, "m-1", "energy", seq / 2, "kWh", 1_764_230_400_000 + seq, Quality.GOOD)
        for seq in range(1, 7)
    ]
    source = MemorySource(stored[:3], epoch="00000000000000aa")

    async def scenario() -> list[bytes]:
        payloads: list[bytes] = []
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
            await client.subscribe("streetgate/gw-test/readings", qos=1)
            forwarder = Forwarder(config, source)
            task = asyncio.create_task(forwarder.run(), name="test:forward")
            await asyncio.wait_for(forwarder.connected.wait(), 5)
            await source.add(stored[3:])
            async with asyncio.timeout(10):
                async for message in client.messages:
                    assert isinstance(message.payload, bytes)
                    payloads.append(message.payload)
                    if json.loads(message.payload)["last_seq"] == 6:
                        break
            await until(lambda: source.acked == 6)  # every PUBACK reached the source
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return payloads

    payloads = asyncio.run(scenario())
    encode = functools.partial(build_message, "gw-test", epoch="00000000000000aa")
    assert (
        payloads[:2]
        == [  # the backlog: two messages of at most two readings
            encode(historical=True, readings=stored[0:2]),
            encode(historical=True, readings=stored[2:3]),
        ]
    )
    live = [r for p in payloads[2:] for r in json.loads(p)["readings"]]
    assert [r["seq"] for r in live] == [4, 5, 6]
    assert all(json.loads(p)["historical"] is False for p in payloads[2:])


def test_a_backlog_drain_logs_no_warning_per_message(
    tmp_path: Path, mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    """max_inflight publishes awaiting their PUBACK is the plan, not a concern for aiomqtt."""
    config = make_config(tmp_path, mosquitto.port, readings_per_message=10, max_inflight=16)

    async def scenario() -> None:
        async with Outbox(config.outbox) as outbox:
            await outbox.put_many(meter_readings(2000, 0))
        async with subscribed(mosquitto, "streetgate/gw-test/readings") as sub:
            async with pipeline(config):
                await sub.wait_for(2000, 20)

    with caplog.at_level("WARNING"):
        asyncio.run(scenario())
    assert not [r for r in caplog.records if "pending publish calls" in r.getMessage()]
