"""Remote management benchmark: prints one JSON object.

    python -m tests.benchmarks.management [--quick]

Figures:
- ping_round_trip_ms_p50 / _p99: a platform client publishes ``ping`` on the command topic of
  a gateway (supervised, as ``streetgate run`` runs it) through a local mosquitto and waits for
  the reply; one command at a time. Two bare aiomqtt clients, one echoing the other, take as
  long (88 ms here): the figure is Nagle's algorithm meeting delayed ACKs on the sockets, not
  the command path (with TCP_NODELAY on both clients the bare echo takes 44 ms);
- scrape_ms_p50 / _p99: ``GET /metrics`` on the same gateway (one simulated SDM630, 21 metrics);
- idle_cpu_percent: the gateway process's CPU (this process: the gateway, its commands task
  and metrics server, the simulated device polled every 5 s) over an idle spell with no
  commands and no scrapes;
- encode_streetgate_readings_per_s / encode_senml_readings_per_s: building readings messages
  of 500 stored readings (polls of a 21-metric meter) in each payload format: what publishing
  costs per format (SenML parses each stored reading's JSON again; streetgate's envelope only
  joins the stored text).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from drivers.profile import load_profile
from gateway.config.toml_write import dumps
from gateway.core.model import Reading, StoredReading
from gateway.runtime.app import Gateway
from gateway.runtime.supervisor import Supervisor
from gateway.uplink.envelope import build_message
from gateway.uplink.senml import build_pack
from simulator.broker import LocalMosquitto, free_port
from simulator.modbus_server import DeviceSpec, ModbusSimulator
from tests.support.platform_client import platform


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def scrape(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
    await writer.drain()
    body = await reader.read()
    writer.close()
    assert body.startswith(b"HTTP/1.1 200"), body[:80]


def encode_rates(rounds: int) -> dict[str, float]:
    profile_metrics = [f"metric_{i}" for i in range(21)]
    readings = [
        # One poll of a 21-metric meter per second: its readings share their time.
        Reading(
            "meter-1",
            profile_metrics[i % 21],
            230.0 + i / 10,
            "V",
            1_795_766_712_120 + i // 21 * 1000,
        )
        for i in range(500)
    ]
    rows = [StoredReading(seq, *r) for seq, r in enumerate(readings, start=1)]
    rates: dict[str, float] = {}
    for name, encode in (("streetgate", build_message), ("senml", build_pack)):
        start = time.perf_counter()
        for _ in range(rounds):
            encode("gw-1", epoch="0123456789abcdef", historical=False, readings=rows)
        rates[f"encode_{name}_readings_per_s"] = round(
            rounds * len(rows) / (time.perf_counter() - start)
        )
    return rates


async def measure(workdir: Path, pings: int, idle_s: float) -> dict[str, Any]:
    broker = LocalMosquitto(workdir)
    await asyncio.to_thread(broker.start)
    metrics_port = free_port()
    try:
        async with ModbusSimulator([DeviceSpec("meter-1", load_profile("sdm630"))]) as sim:
            config_path = workdir / "gw.toml"
            device = sim["meter-1"].gateway_config(interval=5.0).model_dump(mode="json")
            config_path.write_text(
                dumps(
                    {
                        "gateway_id": "bench-gw",
                        "mqtt": {"host": broker.host, "port": broker.port},
                        "outbox": {"path": "outbox.db"},
                        "metrics": {"listen": f"127.0.0.1:{metrics_port}"},
                        "devices": [device | {"profile": "sdm630"}],
                    }
                )
            )
            started: asyncio.Future[Gateway] = asyncio.get_running_loop().create_future()

            def on_started(gateway: Gateway) -> None:
                if not started.done():
                    started.set_result(gateway)

            supervisor = Supervisor(config_path, on_started=on_started)
            async with asyncio.TaskGroup() as tg:
                task = tg.create_task(supervisor.run(), name="bench:supervisor")
                gateway = await started
                await gateway.forwarder.connected.wait()
                assert gateway.metrics is not None
                await gateway.metrics.listening.wait()
                async with platform(broker.host, broker.port, "bench-gw") as plat:
                    await plat.call("ping")  # warm up
                    round_trips = []
                    for _ in range(pings):
                        start = time.perf_counter()
                        reply = await plat.call("ping")
                        round_trips.append((time.perf_counter() - start) * 1000)
                        assert reply["status"] == "ok"
                scrapes = []
                for _ in range(pings):
                    start = time.perf_counter()
                    await scrape(metrics_port)
                    scrapes.append((time.perf_counter() - start) * 1000)
                cpu_start, wall_start = time.process_time(), time.monotonic()
                await asyncio.sleep(idle_s)
                idle_cpu = (time.process_time() - cpu_start) / (time.monotonic() - wall_start)
                supervisor.shutdown()
                await task
    finally:
        await asyncio.to_thread(broker.stop)
    return {
        "pings": pings,
        "ping_round_trip_ms_p50": round(statistics.median(round_trips), 2),
        "ping_round_trip_ms_p99": round(percentile(round_trips, 0.99), 2),
        "scrape_ms_p50": round(statistics.median(scrapes), 2),
        "scrape_ms_p99": round(percentile(scrapes, 0.99), 2),
        "idle_s": idle_s,
        "idle_cpu_percent": round(idle_cpu * 100, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    quick = parser.parse_args().quick
    with tempfile.TemporaryDirectory() as tmp:
        figures = asyncio.run(measure(Path(tmp), 50 if quick else 300, 5.0 if quick else 30.0))
    figures |= encode_rates(20 if quick else 200)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
