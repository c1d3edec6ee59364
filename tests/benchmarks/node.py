"""Sensor-node firmware benchmark: prints one JSON object.

    python -m tests.benchmarks.node [--quick]

- Modbus: the firmware's main.py runs in the MicroPython unix port (64 KB heap) on a pty; the
  gateway's RTU driver reads the streetgate-node profile (one request of 10 registers) as fast
  as it can through a pty pair. ``node_modbus_reads_per_s`` and ``node_modbus_read_ms_median``
  / ``_p95``. Ptys ignore the baud rate, so this is the driver's t3.5 wait before each request
  (4 ms at 9600 baud) plus processing on both sides; on a real 9600-baud wire the 8 + 25 bytes
  add about 34 ms.
- Memory: ``tests/firmware/micropython/mem_hour.py`` (a simulated hour in 64 KB), its figures
prefixed
  ``mem_``.
- Encryption: microseconds to build one encrypted BTHome advert with cryptolib's AES and with
  the pure-Python fallback (x86 figures; an ESP32 at 240 MHz is roughly 50-100x slower).
Every read is checked (all metrics decoded), so a fast but wrong run cannot post a figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from drivers.modbus.rtu import ModbusRtuBusDriver
from tests.firmware.test_node import (
    MP_TESTS,
    PROFILE,
    _micropython,
    node_json,
    null_modem,
    rtu_bus,
    running_node,
)


async def modbus(reads: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="sgnode-bench-") as tmp:
        workdir = Path(tmp)
        async with (
            null_modem() as (node_port, gateway_port),
            running_node(workdir, node_json(1), node_port) as node,
        ):
            await node.wait_for("sample ")
            bus = await asyncio.to_thread(rtu_bus, gateway_port, ("node", 1, "streetgate-node"))
            times = []
            async with ModbusRtuBusDriver(bus) as driver:
                unit = bus.units[0]
                for _ in range(reads):
                    start = time.perf_counter()
                    samples = await driver.read_unit(unit)
                    times.append(time.perf_counter() - start)
                    if len(samples) != len(PROFILE.metrics):
                        raise AssertionError(f"a read decoded {len(samples)} metrics")
    times.sort()
    return {
        "node_modbus_reads": reads,
        "node_modbus_reads_per_s": round(reads / sum(times), 1),
        "node_modbus_read_ms_median": round(statistics.median(times) * 1000, 3),
        "node_modbus_read_ms_p95": round(times[int(len(times) * 0.95) - 1] * 1000, 3),
    }


def micropython_json(*args: str, heap: str) -> dict[str, Any]:
    result = subprocess.run(
        [_micropython(), "-X", f"heapsize={heap}", *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    figures: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return figures


def main(quick: bool) -> dict[str, Any]:
    figures = asyncio.run(modbus(100 if quick else 1000))
    with tempfile.TemporaryDirectory(prefix="sgnode-bench-") as tmp:
        mem = subprocess.run(
            [_micropython(), "-X", "heapsize=64k", str(MP_TESTS / "mem_hour.py")],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
            env={"SGNODE_STATE": tmp, "PATH": "/usr/bin:/bin"},
        )
    figures.update(
        {f"mem_{k}": v for k, v in json.loads(mem.stdout.strip().splitlines()[-1]).items()}
    )
    figures.update(
        micropython_json(str(MP_TESTS / "bench_aes.py"), "50" if quick else "200", heap="256k")
    )
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer reads, for a smoke run")
    args = parser.parse_args()
    print(json.dumps(main(args.quick)))
