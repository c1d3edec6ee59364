"""Failover and fleet benchmark on a real 3-node RabbitMQ cluster: prints one JSON object.

    python -m tests.benchmarks.failover [--rounds 3] [--gateways 5,10,20] [--seconds 30]

Figures (issue 16; targets on a 2-core x86 machine):
- failover_seconds (<= 5, with 0 readings missing): a forwarder with the three nodes as
  ``mqtt.brokers`` publishes ~2,000 readings/s; the node it is connected to is stopped
  (SIGTERM, a clean node shutdown); from the stop until the first PUBACK from another node.
  Per round, and the platform's count (a persistent QoS 1 subscriber on a node the gateway is
  not on) of missing, duplicated and misordered readings over the whole run. The node is
  started again after each round.
- fleet: for each N in ``--gateways``, N real gateway processes (``streetgate run``), each
  polling 20 ``holding10`` devices (10 registers) of one ``streetgate sim --fleet N``
  process every ``--interval``, spread over the three nodes (gateway k starts at node k mod
  3). Over ``--seconds`` after a warm-up: readings/s offered (the devices' schedule), polled
  (committed to the outboxes: less when the machine cannot keep up) and acknowledged by the
  cluster (the gateways' own counters, from their state files), the outboxes' backlog at the
  end, CPU per gateway (% of one core, mean and max) and the cluster's CPU (all three nodes,
  % of one core), and the simulator's (one process serving every device).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

from gateway.config.model import parse_config
from gateway.config.toml_write import dumps
from gateway.core.model import Reading
from gateway.core.units import parse_duration
from gateway.runtime.app import pipeline
from gateway.runtime.state_file import state_path
from tests.support.rabbitmq import RabbitCluster, rabbitmq_version
from tests.support.subscriber import Subscriber

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _group_cpu_seconds(pgid: int) -> float:
    """CPU seconds of every process in process group ``pgid`` (a RabbitMQ node's VM)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


# -- failover ------------------------------------------------------------------------------------


async def bench_failover(cluster: RabbitCluster, workdir: Path, rounds: int) -> dict[str, Any]:
    """Stop the forwarder's node ``rounds`` times under load; seconds to the next PUBACK."""
    a, b, c = cluster.nodes
    password = workdir / "password"
    password.write_text(cluster.password)
    password.chmod(0o600)
    config = parse_config(
        {
            "gateway_id": "bench-failover",
            "mqtt": {
                "brokers": [f"127.0.0.1:{n.mqtt_port}" for n in (a, c)],
                "username": cluster.username,
                "password_file": str(password),
                "keepalive": "5s",
                "reconnect_min": "200ms",
                "reconnect_max": "1s",
                "readings_per_message": 100,
            },
            "outbox": {"path": str(workdir / "failover.db"), "commit_interval": "50ms"},
        },
        "benchmark",
    )
    topic = "streetgate/bench-failover/readings"
    sub = Subscriber(
        "127.0.0.1",
        b.mqtt_port,
        topic,
        client_id="bench-failover-platform",
        username=cluster.username,
        password=cluster.password,
    )
    seconds: list[float] = []
    produced = 0
    async with asyncio.TaskGroup() as tg:
        platform = tg.create_task(sub.run(), name="bench:platform")
        await asyncio.wait_for(sub.subscribed.wait(), 10)
        async with pipeline(config) as (outbox, forwarder):
            await asyncio.wait_for(forwarder.connected.wait(), 10)
            done = asyncio.Event()

            async def load() -> None:
                nonlocal produced
                while not done.is_set():
                    now = int(time.time() * 1000)
                    await outbox.put_many(
                        [Reading("meter", "r", float(produced + i), "", now) for i in range(20)]
                    )
                    produced += 20
                    await asyncio.sleep(0.01)  # ~2,000 readings/s

            loading = tg.create_task(load(), name="bench:load")
            for _ in range(rounds):
                await asyncio.sleep(3)
                node = next(
                    n for n in cluster.nodes if forwarder.stats.broker == f"127.0.0.1:{n.mqtt_port}"
                )
                failovers = forwarder.stats.failovers
                stopped = time.monotonic()
                stopping = tg.create_task(
                    asyncio.to_thread(cluster.stop_node, node.index), name="bench:stop"
                )
                acked = forwarder.stats.readings_published
                while not (  # noqa: ASYNC110 - counters, polled every 2 ms
                    forwarder.stats.failovers > failovers
                    and forwarder.stats.readings_published > acked
                    and forwarder.stats.broker != f"127.0.0.1:{node.mqtt_port}"
                ):
                    await asyncio.sleep(0.002)
                seconds.append(round(time.monotonic() - stopped, 3))
                await stopping
                await asyncio.to_thread(cluster.start_node, node.index)
            done.set()
            await loading
            async with asyncio.timeout(60):
                while outbox.acked_seq < produced:  # noqa: ASYNC110 - a counter
                    await asyncio.sleep(0.05)
        await sub.wait_for(produced, 60)
        platform.cancel()
    report = sub.delivery.report()
    return {
        "failover_seconds": max(seconds),
        "failover_seconds_each": seconds,
        "failover_readings": produced,
        "failover_missing": report["missing"],
        "failover_duplicated": report["duplicated"],
        "failover_misordered": report["misordered"],
    }


# -- fleet throughput ----------------------------------------------------------------------------


def _gateway_config(path: Path, cluster: RabbitCluster, first: int, password: Path) -> None:
    """Point one ``sim --fleet`` config at the cluster: all three nodes, from node ``first``."""
    document = tomllib.loads(path.read_text())
    ports = [n.mqtt_port for n in cluster.nodes]
    order = ports[first:] + ports[:first]
    document["mqtt"] = {
        "brokers": [f"127.0.0.1:{p}" for p in order],
        "username": cluster.username,
        "password_file": str(password),
        "keepalive": "10s",
    }
    path.write_text(dumps(document))


def _published(outbox: Path) -> int:
    try:
        state = json.loads(state_path(outbox).read_text())
    except (OSError, ValueError):
        return 0
    return int(state.get("forwarder", {}).get("readings_published", 0))


def _outbox(outbox: Path, key: str) -> int:
    """``depth`` or ``last_seq`` of a gateway's outbox, from its state file."""
    try:
        state = json.loads(state_path(outbox).read_text())
    except (OSError, ValueError):
        return 0
    return int(state.get("outbox", {}).get(key) or 0)


def bench_fleet(
    cluster: RabbitCluster, workdir: Path, gateways: int, interval: str, seconds: float
) -> dict[str, Any]:
    """N gateway processes on the cluster; readings/s and CPU over ``seconds``."""
    folder = workdir / f"fleet-{gateways}"
    password = workdir / "password"
    password.write_text(cluster.password)
    password.chmod(0o600)
    sim_log = (workdir / f"sim-{gateways}.log").open("ab")
    sim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway",
            "sim",
            "--fleet",
            str(gateways),
            "--profile",
            "holding10",
            "--count",
            "20",
            "--interval",
            interval,
            "--base-port",
            "0",  # free ports, whatever else runs on this machine
            "--fleet-dir",
            str(folder),
        ],
        stdout=sim_log,
        stderr=sim_log,
        start_new_session=True,
    )
    procs: list[subprocess.Popen[bytes]] = []
    try:
        configs = [folder / f"fleet-{k:03d}.toml" for k in range(1, gateways + 1)]
        deadline = time.monotonic() + 60
        while not all(p.exists() for p in configs):
            if sim.poll() is not None or time.monotonic() > deadline:
                tail = Path(sim_log.name).read_text(errors="replace")[-1500:]
                raise RuntimeError(f"sim --fleet did not write its configs:\n{tail}")
            time.sleep(0.2)
        time.sleep(0.5)  # the last file is complete
        for k, path in enumerate(configs):
            _gateway_config(path, cluster, k % 3, password)
        outboxes = [folder / f"fleet-{k:03d}.db" for k in range(1, gateways + 1)]
        for path in configs:
            log = (folder / f"{path.stem}.log").open("ab")
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "gateway", "run", "-c", str(path)],
                    stdout=log,
                    stderr=log,
                    cwd=folder,
                )
            )
        # Warm-up: every gateway running (a busy 2-core machine starts 40 Python processes
        # slowly), then a few seconds to connect, poll and send the start's backlog.
        deadline = time.monotonic() + 300
        while not all(state_path(o).exists() for o in outboxes):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError("the gateways did not all start (see their logs)")
            time.sleep(0.5)
        time.sleep(5)
        pids = [p.pid for p in procs]
        nodes = [n.pid for n in cluster.nodes if n.pid is not None]
        cpu0 = [_cpu_seconds(pid) for pid in pids]
        broker0 = sum(_group_cpu_seconds(pgid) for pgid in nodes)
        sim0 = _cpu_seconds(sim.pid)
        acked0 = sum(_published(o) for o in outboxes)
        committed0 = sum(_outbox(o, "last_seq") for o in outboxes)
        began = time.monotonic()
        time.sleep(seconds)
        wall = time.monotonic() - began
        cpu = [(_cpu_seconds(pid) - c0) / wall * 100 for pid, c0 in zip(pids, cpu0, strict=True)]
        broker = (sum(_group_cpu_seconds(pgid) for pgid in nodes) - broker0) / wall * 100
        simulator = (_cpu_seconds(sim.pid) - sim0) / wall * 100
        acked = sum(_published(o) for o in outboxes) - acked0
        committed = sum(_outbox(o, "last_seq") for o in outboxes) - committed0
        backlog = sum(_outbox(o, "depth") for o in outboxes)
        failed = [p.args for p in procs if p.poll() is not None]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        sim.send_signal(signal.SIGTERM)
        try:
            sim.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(sim.pid, signal.SIGKILL)
            sim.wait()
        sim_log.close()
    per_poll = 20 * 10  # readings per gateway per interval
    return {
        "gateways": gateways,
        "offered_readings_per_s": round(gateways * per_poll / parse_duration(interval), 1),
        "polled_readings_per_s": round(committed / wall, 1),  # what the devices gave
        "acked_readings_per_s": round(acked / wall, 1),  # what the cluster took
        "backlog_readings_at_end": backlog,
        "gateway_cpu_percent_mean": round(sum(cpu) / len(cpu), 1),
        "gateway_cpu_percent_max": round(max(cpu), 1),
        "cluster_cpu_percent": round(broker, 1),
        "simulator_cpu_percent": round(simulator, 1),  # all devices, one process
        "gateways_exited": len(failed),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="failovers to measure")
    parser.add_argument("--gateways", default="5,10,20", help="fleet sizes, comma-separated")
    parser.add_argument("--interval", default="1s", help="poll interval of the fleet's devices")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured time per size")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="bench-failover-") as tmp,
        RabbitCluster(Path(tmp)) as cluster,
    ):
        work = Path(tmp)
        result: dict[str, Any] = {
            "rabbitmq": rabbitmq_version(),
            "cpus": os.cpu_count(),
            "cluster_start_seconds": round(cluster.startup_seconds or 0, 1),
        }
        result |= asyncio.run(bench_failover(cluster, work, args.rounds))
        print(json.dumps(result), file=sys.stderr)
        result["fleet"] = []
        for n in args.gateways.split(","):
            try:
                figures = bench_fleet(cluster, work, int(n), args.interval, args.seconds)
            except RuntimeError as exc:  # one size failing still prints the others
                figures = {"gateways": int(n), "error": str(exc)}
            result["fleet"].append(figures)
            print(json.dumps(figures), file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
