"""Config reload benchmark (``systemctl reload``, SIGHUP): prints one JSON object.

    python -m tests.benchmarks.reload [--quick]

A real gateway process (``python -m gateway run``) with one simulated SDM120 polled every
100 ms, a local mosquitto, systemd's end of the notify socket. Each round rewrites the config
(the interval toggles between 100 and 110 ms, so every reload is a real change) and sends
SIGHUP. Figures:

- sighup_to_reloading_ms / sighup_to_ready_ms (p50, max): how long systemd sees the service
  ``reloading``; the in-process restart commits pending readings and starts every part again;
- poll_gap_ms_max: the longest gap between two consecutive readings' timestamps of the device
  across all reloads (the poll interval is 100 ms: the rest is what a reload costs the data);
- steady_gap_ms_max: the same outside reloads, for comparison;
- readings_missing / seq_reused: from the platform's side (must be 0);
- invalid_sighup_to_ready_ms: a reload of an invalid file (nothing restarts);
- edit_ms: toml_write.edit of examples/street-pole.toml changing one key (a config-set's write).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import signal
import statistics
import sys
import tempfile
import time
import timeit
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any

from drivers.profile import load_profile
from gateway.config.change import merge_patch
from gateway.config.toml_write import edit
from simulator.broker import LocalMosquitto
from simulator.modbus_server import DeviceSpec, ModbusSimulator
from tests.support.notify_listener import NotifyListener
from tests.support.subscriber import Subscriber

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "street-pole.toml"


def config_text(broker: LocalMosquitto, port: int, interval_ms: int) -> str:
    return (
        'gateway_id = "bench-gw"\n[mqtt]\nhost = "127.0.0.1"\n'
        f'port = {broker.port}\nreconnect_min = "100ms"\n'
        '[outbox]\npath = "outbox.db"\ncommit_interval = "50ms"\n'
        f'[[devices]]\nkind = "modbus_tcp"\nname = "meter"\nhost = "127.0.0.1"\nport = {port}\n'
        f'unit_id = 1\nprofile = "sdm120"\ninterval = "{interval_ms}ms"\ntimeout = "500ms"\n'
    )


async def run(rounds: int, workdir: Path) -> dict[str, Any]:
    broker = LocalMosquitto(workdir)
    broker.start()
    try:
        spec = DeviceSpec("meter", load_profile("sdm120"), unit_id=1)
        async with ModbusSimulator([spec]) as sim, NotifyListener(workdir) as listener:
            port = sim["meter"].port
            config = workdir / "gw.toml"
            config.write_text(config_text(broker, port, 100))
            sub = Subscriber(broker.host, broker.port, "streetgate/bench-gw/readings", "bench")
            listening = asyncio.create_task(sub.run(), name="bench:platform")
            await asyncio.wait_for(sub.subscribed.wait(), 10)
            log = (workdir / "gateway.log").open("ab")
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                *("-m", "gateway", "run", "-c", str(config)),
                stdout=log,
                stderr=log,
                env={**os.environ, **listener.env()},
            )
            to_reloading, to_ready, windows = [], [], []
            try:
                await listener.until("READY", 30)
                await sub.wait_for(20, 20)
                for i in range(rounds):
                    config.write_text(config_text(broker, port, 110 if i % 2 == 0 else 100))
                    await asyncio.sleep(1.0)
                    start_wall = time.time()
                    start = time.perf_counter()
                    proc.send_signal(signal.SIGHUP)
                    await listener.until("RELOADING", 20)
                    to_reloading.append((time.perf_counter() - start) * 1000)
                    await listener.until("READY", 20)
                    to_ready.append((time.perf_counter() - start) * 1000)
                    windows.append((start_wall - 0.5, time.time() + 0.5))
                await asyncio.sleep(1.5)
                config.write_text(config_text(broker, port, 100).replace('"100ms"', '"soon"', 1))
                start = time.perf_counter()
                proc.send_signal(signal.SIGHUP)
                await listener.until("READY", 20)
                invalid_ms = (time.perf_counter() - start) * 1000
                await asyncio.sleep(1.0)
                proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(proc.wait(), 20)
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
                log.close()
                listening.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listening
    finally:
        broker.stop()

    # one poll: one timestamp (ISO 8601 with milliseconds)
    stamps = sorted({_unix_ms(r["ts"]) for r in sub.delivery.readings})
    gaps = [(b - a, a / 1000) for a, b in itertools.pairwise(stamps)]
    in_reload = [g for g, at in gaps if any(lo <= at <= hi for lo, hi in windows)]
    steady = [g for g, at in gaps if not any(lo <= at <= hi for lo, hi in windows)]
    by_seq: dict[int, tuple[Any, ...]] = {}
    reused = 0
    for reading, key in zip(sub.delivery.readings, sub.delivery.keys, strict=True):
        what = (reading["metric"], reading["ts"])
        reused += by_seq.setdefault(key[2], what) != what
    text = EXAMPLE.read_text()
    patched = merge_patch(tomllib.loads(text), {"mqtt": {"health_interval": "30s"}})
    return {
        "reloads": rounds,
        "sighup_to_reloading_ms_p50": round(statistics.median(to_reloading), 1),
        "sighup_to_ready_ms_p50": round(statistics.median(to_ready), 1),
        "sighup_to_ready_ms_max": round(max(to_ready), 1),
        "poll_gap_ms_max": max(in_reload, default=0),
        "steady_gap_ms_max": max(steady, default=0),
        "readings_missing": sub.delivery.report()["missing"],
        "seq_reused": reused,
        "invalid_sighup_to_ready_ms": round(invalid_ms, 1),
        "edit_ms": round(timeit.timeit(lambda: edit(text, patched), number=20) / 20 * 1000, 1),
    }


def _unix_ms(iso: str) -> int:
    return round(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 reloads instead of 10")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        figures = asyncio.run(run(3 if args.quick else 10, Path(tmp)))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
