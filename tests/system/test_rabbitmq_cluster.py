"""A real RabbitMQ cluster under a QoS 1 stream: stop the publisher's node, lose nothing.

The platform's subscriber holds a persistent session (clean_session=False, QoS 1) on node B;
a publisher sends sequence numbers with QoS 1 to node A, one PUBACK at a time. Node A is
stopped mid-stream; the publisher's tiny failover loop moves to node C and sends again from
the first unacknowledged number; node A comes back into the cluster. The subscriber must see
every number, in order; duplicates only of numbers already seen.

Then the same with the real gateway (issue 16): ``streetgate run`` with the three nodes as its
``mqtt.brokers``, under load from simulated Modbus devices, its node stopped and brought back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from simulator.modbus_server import ModbusSimulator
from tests.support.gateway_rig import device_lines, running_gateway
from tests.support.rabbitmq import RabbitCluster, RabbitNotInstalled, rabbitmq_version
from tests.support.subscriber import Subscriber
from tests.support.waiting import until
from tests.system.test_end_to_end import fleet, outbox_state, stop

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

TOPIC = "streetgate/cluster-test/seq"


@pytest.fixture(scope="module")
def rabbit_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitCluster]:
    """One cluster for every test of this module (a start takes ~35 s); each test leaves all
    three nodes running."""
    cluster = RabbitCluster(tmp_path_factory.mktemp("cluster"))
    try:
        cluster.start()
    except RabbitNotInstalled as exc:
        pytest.fail(f"the cluster tests need Debian's rabbitmq-server: {exc}")
    try:
        yield cluster
    finally:
        cluster.close()


@dataclass
class Received:
    """What the platform's subscriber saw, in arrival order."""

    seqs: list[int] = field(default_factory=list)
    seen: set[int] = field(default_factory=set)
    duplicates: int = 0
    misordered: int = 0  # a number seen for the first time after a larger one
    highest: int = -1

    def add(self, seq: int) -> None:
        self.seqs.append(seq)
        if seq in self.seen:
            self.duplicates += 1
            return
        if seq < self.highest:
            self.misordered += 1
        self.seen.add(seq)
        self.highest = max(self.highest, seq)

    def missing(self, total: int) -> list[int]:
        return sorted(set(range(total)) - self.seen)


@dataclass
class Publisher:
    """QoS 1 sequence numbers to the first reachable node of ``ports``, in order."""

    cluster: RabbitCluster
    ports: list[int]
    acked: int = 0  # numbers 0..acked-1 have a PUBACK
    failover_started: float | None = None  # when the connection was lost
    failover_done: float | None = None  # the first PUBACK after that
    connections: list[int] = field(default_factory=list)  # ports connected to, in order
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        attempt = 0
        while not self.stop.is_set():
            port = self.ports[attempt % len(self.ports)]
            attempt += 1
            try:
                await self._session(port)
            except* (aiomqtt.MqttError, TimeoutError):
                if self.failover_started is None:
                    self.failover_started = time.monotonic()
                await asyncio.sleep(0.1)

    async def _session(self, port: int) -> None:
        async with aiomqtt.Client(
            "127.0.0.1",
            port,
            identifier="cluster-test-gateway",
            username=self.cluster.username,
            password=self.cluster.password,
            clean_session=True,  # the gateway's outbox, not the broker, buffers
            keepalive=5,
            timeout=5,
        ) as client:
            self.connections.append(port)
            async with asyncio.TaskGroup() as tg:
                # A pending publish is not failed by a lost connection (aiomqtt 2.5): the
                # message iterator is what notices it at once.
                watch = tg.create_task(_until_disconnected(client), name="test:publisher-watch")
                while not self.stop.is_set():
                    await client.publish(TOPIC, str(self.acked).encode(), qos=1, timeout=5)
                    self.acked += 1
                    if self.failover_started is not None and self.failover_done is None:
                        self.failover_done = time.monotonic()
                watch.cancel()


async def _until_disconnected(client: aiomqtt.Client) -> None:
    async for _ in client.messages:
        pass


async def subscribe(port: int, cluster: RabbitCluster, received: Received) -> None:
    """The platform: a persistent QoS 1 session on one node, reconnecting if it drops."""
    subscribed = False
    while True:
        try:
            async with aiomqtt.Client(
                "127.0.0.1",
                port,
                identifier="cluster-test-platform",
                username=cluster.username,
                password=cluster.password,
                clean_session=False,
                keepalive=5,
            ) as client:
                if not subscribed:  # the session keeps the subscription across reconnects
                    await client.subscribe(TOPIC, qos=1)
                    subscribed = True
                async for message in client.messages:
                    assert isinstance(message.payload, bytes)
                    received.add(int(message.payload))
        except aiomqtt.MqttError:
            await asyncio.sleep(0.2)


def test_qos1_stream_survives_stopping_the_publishers_node(
    rabbit_cluster: RabbitCluster,
) -> None:
    cluster = rabbit_cluster
    node_a, node_b, node_c = cluster.nodes
    print(f"RabbitMQ {rabbitmq_version()}: 3-node start-up took {cluster.startup_seconds:.1f} s")

    async def scenario() -> None:
        received = Received()
        publisher = Publisher(cluster, [node_a.mqtt_port, node_c.mqtt_port])
        async with asyncio.TaskGroup() as tg:
            platform = tg.create_task(
                subscribe(node_b.mqtt_port, cluster, received), name="test:platform"
            )
            # The session's queue exists before anything is published.
            async with asyncio.timeout(30):
                while not await asyncio.to_thread(_queue_exists, cluster):  # noqa: ASYNC110
                    await asyncio.sleep(0.2)
            publishing = tg.create_task(publisher.run(), name="test:publisher")
            await until(lambda: publisher.acked >= 300, 30)

            stopped_at = time.monotonic()
            acked_before = publisher.acked
            await asyncio.to_thread(cluster.stop_node, node_a.index)
            await until(lambda: publisher.failover_done is not None, 20)
            assert publisher.failover_done is not None
            failover = publisher.failover_done - stopped_at
            await until(lambda: publisher.acked >= acked_before + 300, 30)

            restart_began = time.monotonic()
            await asyncio.to_thread(cluster.start_node, node_a.index)
            restart = time.monotonic() - restart_began
            marker = publisher.acked
            await until(lambda: publisher.acked >= marker + 300, 30)
            publisher.stop.set()
            await publishing
            total = publisher.acked
            await until(lambda: len(received.seen) >= total, 30)
            platform.cancel()

        print(
            f"published {total} (QoS 1, one in flight) via ports {publisher.connections}; "
            f"failover {failover:.2f} s (node stopped -> PUBACK on another node); "
            f"node A back in the cluster in {restart:.1f} s; "
            f"received {len(received.seqs)}: {received.duplicates} duplicate(s), "
            f"{received.misordered} misordered, {len(received.missing(total))} missing"
        )
        assert publisher.connections[:2] == [node_a.mqtt_port, node_c.mqtt_port]
        assert received.missing(total) == []
        assert received.misordered == 0
        assert received.highest == total - 1  # nothing beyond what was acknowledged
        assert received.duplicates <= 1  # at most the one message whose PUBACK was lost
        assert failover <= 5.0, f"failover took {failover:.2f} s"
        assert cluster.running_nodes() == sorted(n.name for n in cluster.nodes)

    asyncio.run(scenario())


def _queue_exists(cluster: RabbitCluster) -> bool:
    """Whether the platform's session queue (a quorum queue) exists yet."""
    out = cluster.ctl(cluster.nodes[1], "list_queues", "name", "type", "--formatter", "json")
    return any(
        q["name"].startswith("mqtt-subscription-cluster-test-platform") and q["type"] == "quorum"
        for q in json.loads(out)
    )


def _processes_under(folder: Path) -> list[int]:
    """PIDs of processes whose environment names ``folder`` (a node's or epmd's)."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if str(folder).encode() in environ.read_bytes():
                found.append(int(environ.parent.name))
        except OSError:  # gone, or not ours to read
            continue
    return found


def test_a_start_that_times_out_leaves_nothing_running(tmp_path: Path) -> None:
    cluster = RabbitCluster(tmp_path, start_timeout=3.0)
    with pytest.raises(RuntimeError, match="in time"):
        cluster.start()
    assert all(node.proc is None for node in cluster.nodes)
    assert _processes_under(cluster.workdir) == []
    with pytest.raises(ConnectionRefusedError):  # no epmd listens any more
        socket.create_connection(("127.0.0.1", cluster.epmd_port), timeout=1).close()


# -- the gateway on the cluster ------------------------------------------------------------------

GATEWAY = "cluster-gw"


def write_gateway_config(
    folder: Path, cluster: RabbitCluster, order: list[int], sim: ModbusSimulator
) -> Path:
    """A gateway config naming the cluster's nodes ``order`` as its broker list."""
    password = folder / "mqtt-password"
    password.write_text(cluster.password)
    password.chmod(0o600)
    brokers = ", ".join(f'"127.0.0.1:{cluster.nodes[i].mqtt_port}"' for i in order)
    lines = [
        f'gateway_id = "{GATEWAY}"',
        "[mqtt]",
        f"brokers = [{brokers}]",
        f'username = "{cluster.username}"',
        'password_file = "mqtt-password"',
        'keepalive = "5s"',
        'reconnect_min = "200ms"',
        'reconnect_max = "1s"',
        'health_interval = "5s"',
        "[outbox]",
        'path = "outbox.db"',
        'commit_interval = "100ms"',
    ]
    for device in sim:
        lines += device_lines(device, "200ms")
    path = folder / "gw.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


async def watch_health(
    port: int, cluster: RabbitCluster, reports: list[tuple[float, dict[str, Any]]]
) -> None:
    """The platform's view of the gateway's health reports (live, on its own node), each with
    the monotonic time it arrived."""
    while True:
        with contextlib.suppress(aiomqtt.MqttError):
            async with aiomqtt.Client(
                "127.0.0.1",
                port,
                identifier="cluster-test-health",
                username=cluster.username,
                password=cluster.password,
            ) as client:
                await client.subscribe(f"streetgate/{GATEWAY}/health", qos=1)
                async for message in client.messages:
                    assert isinstance(message.payload, bytes)
                    reports.append((time.monotonic(), json.loads(message.payload)))
        await asyncio.sleep(0.2)


def test_the_gateway_fails_over_across_the_cluster_losing_nothing(
    rabbit_cluster: RabbitCluster, tmp_path: Path
) -> None:
    cluster = rabbit_cluster
    node_a, node_b, node_c = cluster.nodes
    # The gateway tries A, then C, then B; the platform reads on B, a node the gateway is
    # never on while A or C serve.
    order = [node_a.index, node_c.index, node_b.index]

    async def scenario() -> None:
        sub = Subscriber(
            "127.0.0.1",
            node_b.mqtt_port,
            f"streetgate/{GATEWAY}/readings",
            client_id="cluster-test-gw-platform",
            username=cluster.username,
            password=cluster.password,
        )
        reports: list[tuple[float, dict[str, Any]]] = []
        async with (
            ModbusSimulator(fleet(4)) as sim,  # 12 devices every 200 ms: ~800 readings/s
            asyncio.TaskGroup() as tg,
        ):
            platform = tg.create_task(sub.run(), name="test:platform")
            health = tg.create_task(
                watch_health(node_b.mqtt_port, cluster, reports), name="test:health"
            )
            await asyncio.wait_for(sub.subscribed.wait(), 10)
            config = write_gateway_config(tmp_path, cluster, order, sim)
            async with running_gateway(config) as proc:
                await sub.wait_for(3000, 30)
                first = reports[-1][1]["forwarder"]
                assert first["broker"] == f"127.0.0.1:{node_a.mqtt_port}"

                highest_before = sub.delivery.report()["highest"]
                stopped = time.monotonic()
                stopping = tg.create_task(
                    asyncio.to_thread(cluster.stop_node, node_a.index), name="test:stop-a"
                )
                # Nothing is missing, so the next distinct reading is one past all before.
                await sub.wait_for(highest_before + 1, 20)
                gap = time.monotonic() - stopped
                await stopping
                await sub.wait_for(sub.delivery.report()["highest"] + 3000, 30)

                restarted = time.monotonic()
                await asyncio.to_thread(cluster.start_node, node_a.index)
                restart = time.monotonic() - restarted
                await sub.wait_for(sub.delivery.report()["highest"] + 2000, 30)
                assert await stop(proc) == 0
            last, stored = outbox_state(tmp_path / "outbox.db")
            await sub.wait_for(last - len(stored), 20)
            platform.cancel()
            health.cancel()

        report = sub.delivery.report()
        after = [r["forwarder"] for _, r in reports if r["forwarder"]["failovers"] >= 1]
        # Health is published within a second (its change check) of a new connection.
        told = next((t for t, r in reports if r["forwarder"]["failovers"] >= 1), None)
        failover = None if told is None else told - stopped
        print(
            f"gateway on the cluster: {report}; first new reading at the platform {gap:.2f} s "
            f"after node A was told to stop, the health report naming the new broker after "
            f"{failover} s; A back in {restart:.1f} s; outbox last seq {last}, "
            f"{len(stored)} left in it; health after failover: "
            f"{after[0] if after else None}"
        )
        assert report["missing"] == 0
        assert report["misordered"] == 0
        # Duplicates are resends of what the platform had: every seq seen is committed.
        assert sub.delivery.distinct() <= set(range(1, last + 1))
        assert sub.delivery.distinct() | set(stored) == set(range(1, last + 1))
        assert gap <= 5.0, f"readings stopped for {gap:.2f} s"
        assert failover is not None
        assert failover <= 5.0 + 1.0, f"failover reported after {failover:.2f} s"
        # The health report names the new broker (C: next in the list), and stays there
        # (sticky) when A is back.
        assert after, "no health report after the failover"
        assert after[0]["broker"] == f"127.0.0.1:{node_c.mqtt_port}"
        assert after[-1]["broker"] == f"127.0.0.1:{node_c.mqtt_port}"
        assert after[-1]["failovers"] == 1
        assert cluster.running_nodes() == sorted(n.name for n in cluster.nodes)

    asyncio.run(scenario())
