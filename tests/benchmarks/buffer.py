"""Buffer tools benchmark: prints one JSON object with what `streetgate buffer` costs.

    python -m tests.benchmarks.buffer [--quick]

Figures, for an outbox holding ``readings`` readings (200,000 by default: about 3 hours of a
cabinet at 20 readings/s, or a day of a quieter one):
- status_s: ``buffer_status()`` (one read transaction, a count over the table);
- export_csv_readings_per_s, export_jsonl_readings_per_s: the export loop to /dev/null;
- purge_readings_per_s: purge of every reading, in chunks;
- commit_ms_{idle,export,purge}_{p50,max}: how long the gateway's group commits take (100
  readings every 20 ms, in this process) while nothing else, ``streetgate buffer export`` or
  ``streetgate buffer purge --yes`` runs in its own process: what a technician's command costs
  the running gateway. The gateway's own write lock wait is bounded by SQLite's 5 s busy
  timeout; purge holds the lock one chunk at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from gateway.cli.buffer import ExportFormat, write_rows
from gateway.config.model import OutboxConfig
from gateway.core.model import Reading
from gateway.store import reader as buffer_store
from gateway.store.outbox import Outbox


def synthetic(n: int, start: int) -> list[Reading]:
    now = int(time.time() * 1000)
    return [
        Reading(f"meter-{i % 50}", "active_power", 1000.0 + i % 997 * 0.5, "W", now + i)
        for i in range(start, start + n)
    ]


def outbox_config(path: Path) -> OutboxConfig:
    return OutboxConfig(path=path, max_bytes=2 * 1024**3)


async def fill(path: Path, total: int) -> None:
    async with Outbox(outbox_config(path)) as outbox:
        for start in range(0, total, 10_000):
            await outbox.put_many(synthetic(10_000, start))
            await outbox._flush()


def timed_export(path: Path, fmt: ExportFormat) -> float:
    start = time.perf_counter()
    with buffer_store.exporting(path) as rows, open(os.devnull, "w", encoding="utf-8") as out:
        count = write_rows(rows, fmt, out).readings
    return count / (time.perf_counter() - start)


async def commit_latencies(path: Path, command: list[str] | None, idle_s: float) -> list[float]:
    """Commit durations (ms) of a writing outbox while ``command`` runs (or for ``idle_s``)."""
    latencies: list[float] = []
    async with Outbox(outbox_config(path)) as outbox:
        seq = 0
        proc = None
        if command is not None:
            proc = await asyncio.create_subprocess_exec(
                *command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        end = time.monotonic() + idle_s
        while (proc is not None and proc.returncode is None) or (
            proc is None and time.monotonic() < end
        ):
            await outbox.put_many(synthetic(100, seq))
            seq += 100
            start = time.perf_counter()
            await outbox._flush()
            latencies.append((time.perf_counter() - start) * 1000)
            await asyncio.sleep(0.02)
        if proc is not None:
            code = await proc.wait()
            if code != 0:
                raise RuntimeError(f"{command} exited with {code}")
    return latencies


def _summary(name: str, latencies: list[float]) -> dict[str, float]:
    return {
        f"commit_ms_{name}_p50": round(statistics.median(latencies), 2),
        f"commit_ms_{name}_max": round(max(latencies), 2),
    }


async def main(quick: bool) -> dict[str, Any]:
    total = 20_000 if quick else 200_000
    results: dict[str, Any] = {"readings": total}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        path = workdir / "outbox.db"
        config = workdir / "gw.toml"
        config.write_text(
            'gateway_id = "bench"\n[mqtt]\nhost = "127.0.0.1"\n'
            f'[outbox]\npath = "{path}"\nmax_bytes = "2GiB"\n'
        )
        await fill(path, total)
        results["db_file_mb"] = round(path.stat().st_size / 1e6, 1)

        start = time.perf_counter()
        await asyncio.to_thread(buffer_store.buffer_status, path)
        results["status_s"] = round(time.perf_counter() - start, 3)
        for fmt in ExportFormat:
            rate = await asyncio.to_thread(timed_export, path, fmt)
            results[f"export_{fmt.value}_readings_per_s"] = round(rate)

        start = time.perf_counter()
        purged, _ = await asyncio.to_thread(buffer_store.purge, path, 10**12)
        results["purge_readings_per_s"] = round(purged / (time.perf_counter() - start))

        await fill(path, total)
        cli = [sys.executable, "-m", "gateway", "buffer"]
        results.update(_summary("idle", await commit_latencies(path, None, 3.0)))
        export = [*cli, "export", "-c", str(config), "-o", str(workdir / "out.csv")]
        results.update(_summary("export", await commit_latencies(path, export, 0)))
        purge = [*cli, "purge", "-c", str(config), "--yes"]
        results.update(_summary("purge", await commit_latencies(path, purge, 0)))
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs, for a smoke test")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.quick))))
