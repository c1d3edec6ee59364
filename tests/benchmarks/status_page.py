"""Status page benchmark: prints one JSON object.

    python -m tests.benchmarks.status_page [--seconds 20]

Figures:
- idle_cpu_percent_without_page / _with_page: the gateway process's CPU (utime + stime from
  /proc, in % of one core) over ``--seconds``, polling 6 simulated Modbus TCP devices every 2 s
  and forwarding to a local mosquitto; first with nobody looking, then with the page open in
  headless Chromium (polling /api/status every 2 s, /api/history every 30 s);
- page_cpu_ms_per_status_poll: the difference, per /api/status request;
- asset_bytes: HTML, CSS, JS and icon as served (uncompressed);
- history_bytes_per_metric / history_bytes_cabinet: the charts' memory per metric (measured with
  sys.getsizeof) and for the benchmark's cabinet (its metrics after the run, measured the same
  way in this process with as many series).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from drivers.profile import load_profile
from gateway.core.model import Reading
from gateway.runtime.history import History
from gateway.runtime.status_page import asset_bytes
from simulator.broker import LocalMosquitto, free_port
from simulator.modbus_server import DeviceSpec
from tests.support.browser import chromium
from tests.support.gateway_rig import gateway_process, simulator_thread, write_config


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _cpu_percent(pid: int, seconds: float) -> float:
    cpu0, t0 = _cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return 100 * (_cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    profiles = ["sdm120", "sdm630", "xy-md02"] * 2
    specs = [DeviceSpec(f"{p}-{i}", load_profile(p), unit_id=i + 1) for i, p in enumerate(profiles)]
    metrics = sum(len(s.profile.metrics) for s in specs)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        broker = LocalMosquitto(work)
        broker.start()
        try:
            port = free_port()
            with simulator_thread(specs) as rig:
                config = write_config(work / "gw.toml", broker.port, rig.sim, port, "2s")
                with gateway_process(config) as proc:
                    time.sleep(5)  # started, connected, first polls done
                    without = _cpu_percent(proc.pid, args.seconds)
                    with chromium(work / "chromium") as driver:
                        driver.get(f"http://127.0.0.1:{port}/")
                        time.sleep(3)
                        with_page = _cpu_percent(proc.pid, args.seconds)
        finally:
            broker.stop()
    history = History()
    history.record([Reading("d", f"m{i}", 1.0, "kWh", 0) for i in range(metrics)])
    per_metric = history.nbytes() / metrics
    polls = args.seconds / 2
    print(
        json.dumps(
            {
                "seconds": args.seconds,
                "devices": len(specs),
                "metrics": metrics,
                "idle_cpu_percent_without_page": round(without, 2),
                "idle_cpu_percent_with_page": round(with_page, 2),
                "page_cpu_ms_per_status_poll": round(
                    (with_page - without) / 100 * args.seconds / polls * 1000, 2
                ),
                "asset_bytes": asset_bytes(),
                "history_bytes_per_metric": round(per_metric),
                "history_bytes_cabinet": history.nbytes(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
