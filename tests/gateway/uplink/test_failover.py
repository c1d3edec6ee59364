"""Failover across ``mqtt.brokers``: the rotation policy, and two real mosquittos, one stopped
under load (nothing lost, nothing misordered, duplicates only of seen seqs, within seconds)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.config.model import BrokerAddress, GatewayConfig
from gateway.runtime.app import pipeline
from gateway.uplink.forwarder import BrokerRotation, ForwarderState
from tests.support.faults.proxy import FaultProxy
from tests.support.mosquitto import Mosquitto
from tests.support.subscriber import Subscriber
from tests.support.uplink_rig import meter_readings, pipeline_config
from tests.support.waiting import until

TOPIC = "streetgate/gw-failover/readings"


def brokers(*ports: int) -> list[BrokerAddress]:
    return [BrokerAddress(host="127.0.0.1", port=p) for p in ports]


# -- the policy --------------------------------------------------------------------------------


def test_a_failure_moves_to_the_next_broker_at_once_and_a_full_round_backs_off() -> None:
    rotation = BrokerRotation(brokers(1, 2, 3))
    assert rotation.current.port == 1
    assert rotation.ended(connected=False) is False  # 1 refused: try 2 at once
    assert rotation.current.port == 2
    assert rotation.ended(connected=False) is False
    assert rotation.current.port == 3
    assert rotation.ended(connected=False) is True  # all three refused: back off
    rng = random.Random(1)
    first = rotation.delay(rng, 0.5, 8.0)
    assert 0.25 <= first <= 0.5
    assert rotation.current.port == 1  # the next round starts where the list starts
    for _ in range(3):
        done = rotation.ended(connected=False)
    assert done
    assert 0.5 <= rotation.delay(rng, 0.5, 8.0) <= 1.0  # the backoff grows per failed round


def test_sticky_a_working_broker_is_kept_and_its_loss_tries_the_others_first() -> None:
    rotation = BrokerRotation(brokers(1, 2, 3))
    rotation.ended(connected=False)  # 1 is down
    assert rotation.current.port == 2
    # Connected to 2 for a long time; it goes away: 3 and then 1 are tried before any wait.
    assert rotation.ended(connected=True) is False
    assert rotation.current.port == 3
    assert rotation.ended(connected=False) is False
    assert rotation.current.port == 1
    assert rotation.ended(connected=False) is True
    rng = random.Random(2)
    rotation.delay(rng, 0.5, 8.0)
    rotation.attempt = 5  # many failed rounds ...
    rotation.ended(connected=True)  # ... then a connection: the backoff starts at the bottom
    rotation.ended(connected=False)
    rotation.ended(connected=False)
    assert rotation.delay(rng, 0.5, 8.0) <= 0.5


def test_one_broker_backs_off_after_every_session_as_before() -> None:
    rotation = BrokerRotation(brokers(1))
    assert rotation.ended(connected=True) is True
    assert rotation.ended(connected=False) is True
    assert rotation.current.port == 1


def test_a_rotation_needs_a_broker() -> None:
    with pytest.raises(ValueError, match="at least one broker"):
        BrokerRotation([])


# -- two real brokers --------------------------------------------------------------------------


def make_config(tmp_path: Path, *ports: int, **mqtt: object) -> GatewayConfig:
    brokers = [f"127.0.0.1:{p}" for p in ports]
    return pipeline_config(tmp_path, "gw-failover", {"brokers": brokers}, **mqtt)


async def platforms(
    tg: asyncio.TaskGroup, a: Mosquitto, b: Mosquitto
) -> tuple[Subscriber, Subscriber, list[asyncio.Task[None]]]:
    """The platform's subscribers on brokers A and B, run in ``tg`` and subscribed; their tasks,
    for the test to cancel."""
    sub_a = Subscriber(a.host, a.port, TOPIC, client_id="platform-a")
    sub_b = Subscriber(b.host, b.port, TOPIC, client_id="platform-b")
    subs = [
        tg.create_task(sub_a.run(), name="test:platform-a"),
        tg.create_task(sub_b.run(), name="test:platform-b"),
    ]
    await asyncio.wait_for(sub_a.subscribed.wait(), 5)
    await asyncio.wait_for(sub_b.subscribed.wait(), 5)
    return sub_a, sub_b, subs


@pytest.fixture
def second_mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    (tmp_path / "b").mkdir()
    broker = Mosquitto(tmp_path / "b")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def test_stopping_the_broker_under_load_fails_over_within_seconds_losing_nothing(
    tmp_path: Path, mosquitto: Mosquitto, second_mosquitto: Mosquitto
) -> None:
    a, b = mosquitto, second_mosquitto
    # publish_timeout far above the target: the drop itself must end the session.
    config = make_config(tmp_path, a.port, b.port, readings_per_message=50, publish_timeout="60s")

    async def scenario() -> None:
        async with asyncio.TaskGroup() as tg:
            sub_a, sub_b, subs = await platforms(tg, a, b)
            async with pipeline(config) as (outbox, forwarder):
                await asyncio.wait_for(forwarder.connected.wait(), 5)
                assert forwarder.stats.broker == f"127.0.0.1:{a.port}"
                produced = 0
                stop_load = asyncio.Event()

                async def load() -> None:
                    nonlocal produced
                    while not stop_load.is_set():
                        await outbox.put_many(meter_readings(20, produced))
                        produced += 20
                        await asyncio.sleep(0.01)  # about 2,000 readings/s

                loading = tg.create_task(load(), name="test:load")
                await sub_a.wait_for(1000, 20)
                stopped = time.monotonic()
                acked_before = forwarder.stats.readings_published
                await asyncio.to_thread(a.stop)
                await until(
                    lambda: (
                        forwarder.stats.readings_published > acked_before
                        and forwarder.stats.failovers == 1
                    ),
                    10,
                )
                failover_s = time.monotonic() - stopped
                assert forwarder.stats.broker == f"127.0.0.1:{b.port}"
                assert forwarder.stats.state is ForwarderState.CONNECTED
                await asyncio.sleep(1.0)
                stop_load.set()
                await loading
                await until(lambda: outbox.acked_seq >= produced, 20)
                # Sticky: B works, so the gateway stays on B when A is back.
                await asyncio.to_thread(a.start)
                await asyncio.sleep(1.0)
                assert forwarder.stats.broker == f"127.0.0.1:{b.port}"
                assert forwarder.stats.failovers == 1
            # A's persistent session holds what A acknowledged before it stopped.
            await until(
                lambda: len(sub_a.delivery.distinct() | sub_b.delivery.distinct()) >= produced,
                10,
            )
            for task in subs:
                task.cancel()

        print(f"failover (broker stopped -> first PUBACK from the other): {failover_s:.2f} s")
        assert failover_s <= 5.0
        seqs_a = [k[2] for k in sub_a.delivery.keys]
        seqs_b = [k[2] for k in sub_b.delivery.keys]
        assert sub_a.delivery.report()["misordered"] == 0
        assert sub_b.delivery.report()["misordered"] == 0
        assert set(seqs_a) | set(seqs_b) == set(range(1, produced + 1)), "nothing missing"
        # B starts at the first reading A did not acknowledge: a duplicate only ever repeats
        # a seq A had, and nothing on A comes after B's first.
        assert min(seqs_b) <= max(seqs_a) + 1
        assert all(s <= max(seqs_a) for s in set(seqs_a) & set(seqs_b))

    asyncio.run(scenario())


def test_the_health_snapshot_names_the_broker_and_the_failovers(
    tmp_path: Path, second_mosquitto: Mosquitto
) -> None:
    # The first broker is not there at all: the gateway goes on to the second at once.
    from simulator.broker import free_port  # noqa: PLC0415

    config = make_config(tmp_path, free_port(), second_mosquitto.port)

    async def scenario() -> None:
        async with pipeline(config) as (_, forwarder):
            began = time.monotonic()
            await asyncio.wait_for(forwarder.connected.wait(), 5)
            assert time.monotonic() - began < 2.0, "no backoff before the second broker"
            assert forwarder.stats.broker == f"127.0.0.1:{second_mosquitto.port}"
            assert forwarder.stats.connection_failures == 1
            assert forwarder.stats.failovers == 0  # the first connection made is no failover

    asyncio.run(scenario())


def test_a_silently_dead_link_fails_over_after_publish_timeout_losing_nothing(
    tmp_path: Path, mosquitto: Mosquitto, second_mosquitto: Mosquitto
) -> None:
    """No FIN, no RST: the link to A swallows every byte. The pending publish is given up
    after ``publish_timeout`` (not the keepalive's 2 x 30 s) and B takes over."""
    a, b = mosquitto, second_mosquitto

    async def scenario() -> None:
        async with FaultProxy(a.port) as proxy:
            config = make_config(
                tmp_path,
                proxy.port,
                b.port,
                readings_per_message=50,
                publish_timeout="2s",
                keepalive="30s",
            )
            async with asyncio.TaskGroup() as tg:
                sub_a, sub_b, subs = await platforms(tg, a, b)
                async with pipeline(config) as (outbox, forwarder):
                    await asyncio.wait_for(forwarder.connected.wait(), 5)
                    produced = 0
                    for _ in range(50):
                        await outbox.put_many(meter_readings(20, produced))
                        produced += 20
                        await asyncio.sleep(0.01)
                    await sub_a.wait_for(produced, 10)
                    proxy.set_mode("blackhole")
                    cut = time.monotonic()
                    for _ in range(100):  # 2 s more of load into the dead link
                        await outbox.put_many(meter_readings(20, produced))
                        produced += 20
                        await asyncio.sleep(0.02)
                    await until(lambda: forwarder.stats.failovers == 1, 10)
                    failover_s = time.monotonic() - cut
                    await until(lambda: outbox.acked_seq >= produced, 20)
                    await sub_b.wait_for(1, 5)
                await until(
                    lambda: len(sub_a.delivery.distinct() | sub_b.delivery.distinct()) >= produced,
                    10,
                )
                for task in subs:
                    task.cancel()
        print(f"failover after a silent link death: {failover_s:.2f} s (publish_timeout 2 s)")
        assert failover_s <= 2.0 + 1.5
        assert sub_a.delivery.report()["misordered"] == 0
        assert sub_b.delivery.report()["misordered"] == 0
        everything = sub_a.delivery.distinct() | sub_b.delivery.distinct()
        assert everything == set(range(1, produced + 1))

    asyncio.run(scenario())
