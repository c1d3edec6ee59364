"""Deadband benchmark: prints one JSON object with what report-on-change costs and saves.

    python -m tests.benchmarks.deadband [--quick]

Figures:
- filter_readings_per_s: readings through DeadbandFilter.admit (gateway/core/deadband.py) in
  batches of one poll (21 metrics of an SDM630), every metric with a rule, about 95 % held back;
- filter_unbanded_readings_per_s: the same batches for devices without rules (the cost a gateway
  pays for the filter when other devices have deadbands);
- per profile (sdm630, sdm120, xy-md02), polled every 10 s for a simulated day with the
  simulator's values (simulator/values.py: drifting supply, load, climate) and the rule
  ``deadband_percent = 1, max_silence = "15m"`` on every metric (0.2 absolute for climate):
  stored_fraction_<profile> (readings stored / polled) and readings_per_day_<profile> stored,
  against polled_per_day_<profile>.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from drivers.profile import load_profile
from gateway.core.deadband import DeadbandFilter, DeadbandRule, DeviceDeadbands
from gateway.core.model import Quality, Reading
from simulator.values import DeviceValues

DAY = 86_400
INTERVAL = 10


def _stored_fraction(profile_name: str, seconds: int) -> dict[str, Any]:
    profile = load_profile(profile_name)
    values = DeviceValues(profile, seed="bench")
    climate = profile_name == "xy-md02"
    rule = (
        DeadbandRule(max_silence_ms=900_000, absolute=0.2)
        if climate
        else DeadbandRule(max_silence_ms=900_000, percent=1.0)
    )
    dead = DeadbandFilter({"dev": DeviceDeadbands(default=rule)})
    polled = stored = 0
    for t in range(0, seconds, INTERVAL):
        batch = [
            Reading("dev", m.name, values.encode(m, float(t))[1], m.unit, t * 1000, Quality.GOOD)
            for m in profile.metrics
        ]
        polled += len(batch)
        stored += len(dead.admit(batch))
    scale = DAY / seconds
    return {
        f"stored_fraction_{profile_name}": round(stored / polled, 4),
        f"readings_per_day_{profile_name}": round(stored * scale),
        f"polled_per_day_{profile_name}": round(polled * scale),
    }


def _throughput(banded: bool, polls: int) -> float:
    profile = load_profile("sdm630")
    devices = 200
    rules = {
        f"dev-{i}": DeviceDeadbands(default=DeadbandRule(900_000, percent=1.0))
        for i in range(devices)
    }
    dead = DeadbandFilter(rules if banded else {"other": rules["dev-0"]})
    values = DeviceValues(profile, seed="bench")
    series = [
        [(m.name, values.encode(m, float(t))[1], m.unit) for m in profile.metrics]
        for t in range(0, polls * INTERVAL, INTERVAL)
    ]
    batches = [
        [
            Reading(f"dev-{d}", name, value, unit, k * 10_000, Quality.GOOD)
            for name, value, unit in polled
        ]
        for k, polled in enumerate(series)
        for d in range(devices)
    ]
    admit = dead.admit
    start = time.perf_counter()
    for batch in batches:
        admit(batch)
    elapsed = time.perf_counter() - start
    return sum(len(b) for b in batches) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a simulated hour, fewer polls")
    args = parser.parse_args()
    seconds = 3600 if args.quick else DAY
    polls = 20 if args.quick else 100
    result: dict[str, Any] = {
        "filter_readings_per_s": round(_throughput(True, polls)),
        "filter_unbanded_readings_per_s": round(_throughput(False, polls)),
        "simulated_seconds": seconds,
        "interval_s": INTERVAL,
    }
    for profile in ("sdm630", "sdm120", "xy-md02"):
        result |= _stored_fraction(profile, seconds)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
