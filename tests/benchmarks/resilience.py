"""Resilience benchmark: prints one JSON object.

    python -m tests.benchmarks.resilience [--quick]

Figures (issue 4; targets on a 2-core x86 machine):
- recovery_seconds (<= 10): the gateway process holds a backlog of 1,000,000 readings while the
  broker is down; from the broker's start until the broker has acknowledged every reading
  (the outbox is empty). Includes finding the broker again (reconnect backoff, 5 s at most).
- kill_loss_readings (<= 200): readings the devices served but the outbox never committed,
  per SIGKILL of the gateway process, at about 2,000 readings/s (mean and max of 10 kills at
  random phases of the poll cycle).
- write_bytes_per_reading and fsyncs_per_minute at a steady 2,000 readings/s for a minute,
  from the gateway process's own I/O counters (/proc/PID/io write_bytes) and strace's count of
  fsync/fdatasync calls (null when strace is not installed), with the default durability
  settings (commit every 100 ms, synchronous=NORMAL).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from gateway.config.model import parse_config
from gateway.core.model import Reading
from gateway.store.outbox import Outbox
from simulator.broker import LocalMosquitto, free_port
from tests.support.faults.harness import Stage, outbox_counts, stage


def _stored(path: Path) -> int:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as conn:
        return int(conn.execute("SELECT count(*) FROM readings").fetchone()[0])


async def bench_recovery(workdir: Path, total: int) -> float:
    """Seconds from the broker's return until it has acknowledged a backlog of ``total``."""
    port = free_port()
    outbox_path = workdir / "recovery.db"
    config = parse_config(
        {
            "gateway_id": "bench-recovery",
            "mqtt": {"host": "127.0.0.1", "port": port},
            "outbox": {"path": str(outbox_path), "max_bytes": "2GiB"},
        },
        "benchmark",
    )
    now = int(time.time() * 1000)
    async with Outbox(config.outbox) as outbox:
        for i in range(0, total, 10_000):
            await outbox.put_many(
                [Reading(f"m-{j % 200}", "power", float(j), "W", now) for j in range(i, i + 10_000)]
            )
            await outbox._flush()
    (workdir / "recovery.toml").write_text(
        f'gateway_id = "bench-recovery"\n[mqtt]\nhost = "127.0.0.1"\nport = {port}\n'
        f'[outbox]\npath = "{outbox_path}"\nmax_bytes = "2GiB"\n'
    )
    gateway = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "run",
        "-c",
        str(workdir / "recovery.toml"),
        "--log-level",
        "warning",
        stderr=subprocess.DEVNULL,
    )
    try:
        await asyncio.sleep(12)  # the broker is down long enough for backoff to reach its cap
        broker = LocalMosquitto(workdir, port)
        start = time.monotonic()
        await asyncio.to_thread(broker.start)
        try:
            # Polls another process's database: there is no event to wait on.
            while await asyncio.to_thread(_stored, outbox_path) > 0:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            return time.monotonic() - start
        finally:
            await asyncio.to_thread(broker.stop)
    finally:
        gateway.send_signal(signal.SIGTERM)
        await gateway.wait()


@asynccontextmanager
async def steady_stage(folder: Path) -> AsyncIterator[Stage]:
    """The fault suite's stage at about 2,000 readings/s (20 SDM120 every 110 ms), with a
    broker of its own, all in ``folder``."""
    await asyncio.to_thread(folder.mkdir)
    broker = LocalMosquitto(folder)
    broker.start()
    try:
        async with stage(folder, broker, devices=20, interval="110ms") as s:
            yield s
    finally:
        broker.stop()


async def bench_kill_loss(workdir: Path, kills: int) -> dict[str, float]:
    """Readings lost per SIGKILL at about 2,000 readings/s."""
    async with steady_stage(workdir / "kill") as s:
        await asyncio.sleep(3)
        # jitter over two poll periods (110 ms): kills at random phases of the poll cycle
        losses = await s.kill_repeatedly(kills, pause=2, jitter=0.25, seed=kills)
    return {
        "kill_loss_readings": round(sum(losses) / len(losses), 1),
        "kill_loss_readings_max": max(losses),
    }


def _io_write_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0


async def bench_write_cost(workdir: Path, seconds: float) -> dict[str, Any]:
    """Bytes written and fsyncs at a steady ~2,000 readings/s."""
    async with steady_stage(workdir / "io") as s:
        await asyncio.sleep(5)
        assert s.gateway is not None
        pid = s.gateway.pid
        strace = None
        if shutil.which("strace"):
            strace = await asyncio.create_subprocess_exec(
                "strace",
                "-f",
                "-c",
                "-e",
                "trace=fsync,fdatasync",
                "-p",
                str(pid),
                stderr=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
            )
            await asyncio.sleep(0.5)
        bytes0 = _io_write_bytes(pid)
        seq0 = (await asyncio.to_thread(outbox_counts, s.outbox))["last_seq"]
        await asyncio.sleep(seconds)
        written = _io_write_bytes(pid) - bytes0
        readings = (await asyncio.to_thread(outbox_counts, s.outbox))["last_seq"] - seq0
        fsyncs: int | None = None
        if strace is not None:
            strace.send_signal(signal.SIGINT)
            _, err = await strace.communicate()
            fsyncs = sum(
                int(line.split()[3])
                for line in err.decode().splitlines()
                if line.strip().endswith(("fsync", "fdatasync")) and len(line.split()) >= 5
            )
    return {
        "steady_readings_per_s": round(readings / seconds),
        "write_bytes_per_reading": round(written / max(1, readings), 1),
        "fsyncs_per_minute": None if fsyncs is None else round(fsyncs * 60 / seconds, 1),
    }


async def main(quick: bool) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        total = 200_000 if quick else 1_000_000
        results["recovery_backlog"] = total
        results["recovery_seconds"] = round(await bench_recovery(workdir, total), 2)
        results.update(await bench_kill_loss(workdir, 3 if quick else 10))
        results.update(await bench_write_cost(workdir, 15 if quick else 60))
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs, for a smoke test")
    args = parser.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    print(json.dumps(asyncio.run(main(args.quick))))
