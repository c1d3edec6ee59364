"""Pipeline benchmark: prints one JSON object with the spine's performance figures.

    python -m tests.benchmarks.pipeline [--quick]

Figures (targets on a 2-core x86 machine with mosquitto on loopback, see issue 2):
- pipeline_readings_per_s (>= 150,000, issue 13): synthetic source at full speed -> outbox ->
  broker (QoS 1) -> subscriber in its own process;
- drain_readings_per_s (>= 300,000, issue 13): 1,000,000 readings already buffered, broker
  comes back; drain_cpu_us_per_reading: the gateway's CPU time (all its threads) per drained
  reading, which, unlike the rate, hardly depends on what else the machine runs;
- steady_cpu_percent (<= 5 % of one core) and rss_mb (<= 80) of the gateway process at
  2,000 readings/s from 200 simulated Modbus devices, measured for a fleet of SDM630 meters
  (the headline figure) and of SDM120 meters (``_sdm120`` keys). The CPU cost is dominated by
  pymodbus, about 90 us per request on such a machine, so it scales with requests/s, which
  the fleet's profile sets;
- poll_requests_per_s and poll_ratio_to_bare_client (>= 0.8): Modbus TCP requests the
  gateway's driver completes per second against the simulator, next to a bare pymodbus loop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiomqtt
from pymodbus.client import AsyncModbusTcpClient

from drivers.modbus.tcp import ModbusTcpDriver
from gateway.config.model import GatewayConfig, ModbusTcpDevice, load_config, parse_config
from gateway.core.model import Reading
from gateway.runtime.app import pipeline
from gateway.store.outbox import Outbox
from gateway.uplink.forwarder import readings_topic
from simulator.broker import LocalMosquitto
from tests.support.simcli import SimProcess


def gateway_config(workdir: Path, port: int, **outbox: Any) -> GatewayConfig:
    return parse_config(
        {
            "gateway_id": "bench",
            "mqtt": {"host": "127.0.0.1", "port": port},
            "outbox": {"path": str(workdir / "outbox.db"), "max_bytes": "2GiB", **outbox},
        },
        "benchmark",
    )


class SubscriberProcess:
    """The platform side, in its own process so it does not share the gateway's CPU."""

    def __init__(self, port: int, topic: str, last_seq: int) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tests.benchmarks.subscriber", str(port), topic, str(last_seq)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        if self._proc.stdout.readline().strip() != "ready":
            raise RuntimeError("benchmark subscriber did not start")

    async def result(self, timeout: float) -> dict[str, float]:
        assert self._proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(self._proc.stdout.readline), timeout)
        self._proc.wait()
        result: dict[str, float] = json.loads(line)
        return result


def synthetic(n: int, start: int) -> list[Reading]:
    now = int(time.time() * 1000)
    return [
        Reading(f"meter-{i % 200}", "active_power", 1000.0 + i % 997 * 0.5, "W", now)
        for i in range(start, start + n)
    ]


async def bench_pipeline(workdir: Path, broker: LocalMosquitto, total: int) -> float:
    """Readings per second from a full-speed source to the subscriber."""
    config = gateway_config(workdir / "pipeline", broker.port)
    (workdir / "pipeline").mkdir()
    chunks = [synthetic(1000, i) for i in range(0, total, 1000)]  # built before timing
    sub = SubscriberProcess(broker.port, readings_topic(config), total)
    async with pipeline(config) as (outbox, forwarder):
        await forwarder.connected.wait()
        start = time.time()
        for chunk in chunks:
            await outbox.put_many(chunk)
        result = await sub.result(timeout=120)
    return total / (result["last"] - start)


async def bench_drain(workdir: Path, broker: LocalMosquitto, total: int) -> tuple[float, float]:
    """Readings per second when a buffered backlog of ``total`` readings is forwarded, and the
    gateway's CPU microseconds per reading meanwhile."""
    (workdir / "drain").mkdir()
    config = gateway_config(
        workdir / "drain", broker.port, commit_max_readings=10_000, queue_size=20_000
    )
    async with Outbox(config.outbox) as outbox:  # fill while "offline"
        for i in range(0, total, 10_000):
            await outbox.put_many(synthetic(10_000, i))
            await outbox._flush()
    sub = SubscriberProcess(broker.port, readings_topic(config), total)
    start, cpu = time.time(), time.process_time()
    async with pipeline(config):
        result = await sub.result(timeout=300)
    cpu = time.process_time() - cpu
    return total / (result["last"] - start), cpu / total * 1e6


def sim_fleet(
    workdir: Path, count: int, interval: str, broker_port: int, profile: str = "sdm120"
) -> SimProcess:
    """``count`` simulated Modbus TCP devices, and ``workdir/gw.toml`` to poll them."""
    return SimProcess(
        workdir / "gw.toml",
        *("--profile", profile, "--count", str(count), "--base-port", "0"),
        *("--interval", interval, "--broker-port", str(broker_port), "--gateway-id", "bench"),
    )


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


#: Fleets of 200 devices giving 2,000 readings/s: (profile, poll interval, Modbus requests/s).
STEADY_FLEETS = {
    "sdm630": ("2100ms", 200 * 4 / 2.1),  # 21 metrics in 4 requests, every 2.1 s
    "sdm120": ("1100ms", 200 * 3 / 1.1),  # 11 metrics in 3 requests, every 1.1 s
}


async def bench_steady(
    workdir: Path, broker: LocalMosquitto, seconds: float, profile: str
) -> dict[str, float]:
    """CPU and memory of the gateway process at 2,000 readings/s from 200 Modbus devices."""
    folder = workdir / f"steady-{profile}"
    folder.mkdir()
    interval, _ = STEADY_FLEETS[profile]
    sim = sim_fleet(folder, 200, interval, broker.port, profile)
    received = 0

    async def count() -> None:
        nonlocal received
        async with aiomqtt.Client("127.0.0.1", broker.port) as client:
            await client.subscribe("streetgate/bench/readings", qos=1)
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                received += json.loads(message.payload)["count"]

    gateway = subprocess.Popen(  # noqa: ASYNC220 - fixed argv; started once
        [sys.executable, "-m", "gateway", "run", "-c", str(sim.config), "--log-level", "warning"],
    )
    try:
        async with asyncio.TaskGroup() as tg:
            counter = tg.create_task(count(), name="bench:count")
            await asyncio.sleep(10)  # connect to 200 devices, reach steady state
            cpu0, got0, t0 = _cpu_seconds(gateway.pid), received, time.monotonic()
            rss = 0.0
            while time.monotonic() - t0 < seconds:
                await asyncio.sleep(1)
                rss = max(rss, _rss_mb(gateway.pid))
            elapsed = time.monotonic() - t0
            cpu = _cpu_seconds(gateway.pid) - cpu0
            counter.cancel()
    finally:
        gateway.terminate()
        gateway.wait(15)
        sim.stop()
    return {
        "steady_readings_per_s": round((received - got0) / elapsed),
        "steady_cpu_percent": round(100 * cpu / elapsed, 1),
        "rss_mb": round(rss, 1),
    }


async def bench_poll(workdir: Path, seconds: float) -> dict[str, float]:
    """Modbus requests/s: the gateway's driver vs a bare pymodbus loop, same simulator."""
    (workdir / "poll").mkdir()
    sim = sim_fleet(workdir / "poll", 1, "1s", 1883)
    try:
        device = load_config(sim.config).devices[0]
        assert isinstance(device, ModbusTcpDevice)
        driver = ModbusTcpDriver(device)
        requests_per_poll = len(driver.plan)
        async with driver:
            polls = 0
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                await driver.poll()
                polls += 1
        gateway_rate = polls * requests_per_poll / seconds

        client = AsyncModbusTcpClient(device.host, port=device.port, timeout=1, retries=0)
        await client.connect()
        blocks = [(b.address, b.count) for b in driver.plan]
        done = 0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for address, count in blocks:
                reply = await client.read_input_registers(address, count=count, device_id=1)
                assert not reply.isError()
                done += 1
        client.close()
        bare_rate = done / seconds
    finally:
        sim.stop()
    return {
        "poll_requests_per_s": round(gateway_rate),
        "bare_client_requests_per_s": round(bare_rate),
        "poll_ratio_to_bare_client": round(gateway_rate / bare_rate, 3),
    }


async def main(quick: bool) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        broker = LocalMosquitto(workdir)
        broker.start()
        try:
            results["pipeline_readings_per_s"] = round(
                await bench_pipeline(workdir, broker, 100_000 if quick else 500_000)
            )
            drain_total = 100_000 if quick else 1_000_000
            results["drain_readings"] = drain_total
            rate, cpu = await bench_drain(workdir, broker, drain_total)
            results["drain_readings_per_s"] = round(rate)
            results["drain_cpu_us_per_reading"] = round(cpu, 2)
            for profile, (_, requests) in STEADY_FLEETS.items():
                steady = await bench_steady(workdir, broker, 10 if quick else 30, profile)
                suffix = "" if profile == "sdm630" else f"_{profile}"
                results[f"steady_fleet{suffix}"] = f"200 x {profile}, {requests:.0f} requests/s"
                results.update({f"{key}{suffix}": value for key, value in steady.items()})
            results.update(await bench_poll(workdir, 3 if quick else 10))
        finally:
            broker.stop()
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs, for a smoke test")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.quick))))
