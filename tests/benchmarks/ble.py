"""BLE benchmark: prints one JSON object with the passive-scan path's throughput.

    python -m tests.benchmarks.ble [--quick]

Figures:
- ble_adverts_per_s (target >= 50,000): adverts through bleak's detection-callback dispatch
  into BleScanSource (device lookup, decode, repeat check, stamp, queue) and on into a real
  Outbox, timed until every reading is committed. The fleet is 200 simulated sensors (150
  BTHome plain, 25 BTHome encrypted, 25 RuuviTag), real advert bytes from the simulator, each
  measurement heard 3 times as real sensors send it (so a third of the adverts are stored);
- ble_distinct_adverts_per_s: the same with every advert a new measurement (all stored);
- scan_path_only_distinct_adverts_per_s: distinct adverts through the same path into a sink
  that keeps nothing (what the scan source costs without the outbox);
- decode_only_adverts_per_s: the decoders alone over the same adverts (no bleak, no outbox),
  and per format: decode_bthome_per_s, decode_bthome_encrypted_per_s, decode_ruuvi_per_s.
The producer waits while more than 1,000 adverts are queued, so what is measured is what the
path sustains; dropped_readings must stay 0.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from drivers.ble.bthome import SERVICE_UUID, BthomeDecoder
from drivers.ble.ruuvi import MANUFACTURER_ID, decode_ruuvi
from drivers.ble.scan import BleScanSource
from gateway.config.devices import BthomeDevice, RuuviDevice
from gateway.config.model import OutboxConfig
from gateway.core.clock import SystemClock
from gateway.core.model import Reading
from gateway.store.outbox import Outbox
from simulator.ble import BleSimulator, SimBthome, SimRuuvi, parse_ad_structures

KEY = bytes.fromhex("231d39c1d7cc1ab1aee224cd096db932")
Advert = tuple[BLEDevice, AdvertisementData]


async def until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll ``condition`` every millisecond until it holds (RuntimeError after ``timeout``)."""
    for _ in range(int(timeout * 1000)):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise RuntimeError("benchmark stalled")


def fleet(repeats: int) -> tuple[BleSimulator, list[SimBthome | SimRuuvi]]:
    sim = BleSimulator()
    devices: list[SimBthome | SimRuuvi] = []
    for i in range(200):
        mac = f"A4:C1:38:00:{i // 256:02X}:{i % 256:02X}"
        if i < 150:
            devices.append(SimBthome(f"th-{i}", mac, repeats=repeats, seed=i))
        elif i < 175:
            devices.append(SimBthome(f"th-enc-{i}", mac, key=KEY, repeats=repeats, seed=i))
        else:
            devices.append(SimRuuvi(f"ruuvi-{i}", mac, repeats=repeats, seed=i))
    for device in devices:
        sim.add(device)
    return sim, devices


def adverts(devices: list[SimBthome | SimRuuvi], rounds: int) -> tuple[list[Advert], int]:
    """The adverts of ``rounds`` measurements per device, as bleak hands them over, and how
    many readings they carry once repeats are dropped."""
    out: list[Advert] = []
    readings = 0
    for r in range(rounds):
        for device in devices:
            packet = device.measure(float(r))
            readings += len(packet.values)
            service_data, manufacturer_data = parse_ad_structures(device.advertising_data(packet))
            adv = AdvertisementData(
                local_name=device.name,
                manufacturer_data=manufacturer_data,
                service_data=service_data,
                service_uuids=list(service_data),
                tx_power=None,
                rssi=-70,
                platform_data=(),
            )
            ble_device = BLEDevice(device.mac, device.name, None)
            out += [(ble_device, adv)] * device.repeats
    return out, readings


def configs(devices: list[SimBthome | SimRuuvi]) -> list[BthomeDevice | RuuviDevice]:
    return [d.gateway_config() for d in devices]


async def through_outbox(repeats: int, rounds: int, workdir: Path) -> dict[str, float]:
    sim, devices = fleet(repeats)
    feed, expected = adverts(devices, rounds)
    gc.freeze()  # the prepared adverts are the benchmark's, not the gateway's, garbage
    config = OutboxConfig(path=workdir / f"outbox-{repeats}.db", max_bytes=2 * 1024**3)
    async with Outbox(config) as outbox:
        source = BleScanSource(
            configs(devices), outbox.put_many, SystemClock(), sim.scanner_backend
        )
        async with asyncio.TaskGroup() as tg:
            tasks = [
                tg.create_task(outbox.run(), name="outbox:commit"),
                tg.create_task(source.run(), name=source.task_name),
            ]
            await until(lambda: bool(sim.scanners))
            dispatch = sim.scanners[0].call_detection_callbacks  # bleak's own dispatch
            start = time.perf_counter()
            for i in range(0, len(feed), 500):
                for ble_device, adv in feed[i : i + 500]:
                    dispatch(ble_device, adv)
                await asyncio.sleep(0)
                await until(lambda: source.stats().queue_depth <= 1000)
            await outbox.wait_committed(expected - 1)
            elapsed = time.perf_counter() - start
            stats = source.stats()
            for task in tasks:
                task.cancel()
    if outbox.last_seq != expected or stats.dropped_readings:
        raise RuntimeError(
            f"stored {outbox.last_seq} readings of {expected}, dropped {stats.dropped_readings}"
        )
    return {
        "adverts": len(feed),
        "adverts_per_s": len(feed) / elapsed,
        "readings_per_s": expected / elapsed,
        "repeats": stats.repeats,
        "dropped_readings": stats.dropped_readings,
    }


async def without_outbox(rounds: int) -> float:
    """Distinct adverts per second through the scan path into a sink that keeps nothing."""
    sim, devices = fleet(1)
    feed, expected = adverts(devices, rounds)
    gc.freeze()
    taken = 0
    all_taken = asyncio.Event()

    async def discard(readings: Sequence[Reading]) -> None:
        nonlocal taken
        taken += len(readings)
        if taken >= expected:
            all_taken.set()

    source = BleScanSource(configs(devices), discard, SystemClock(), sim.scanner_backend)
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(source.run(), name=source.task_name)
        await until(lambda: bool(sim.scanners))
        dispatch = sim.scanners[0].call_detection_callbacks
        start = time.perf_counter()
        for i in range(0, len(feed), 500):
            for ble_device, adv in feed[i : i + 500]:
                dispatch(ble_device, adv)
            await asyncio.sleep(0)
        await all_taken.wait()
        elapsed = time.perf_counter() - start
        task.cancel()
    return len(feed) / elapsed


def decode_only(rounds: int) -> dict[str, float]:
    _, devices = fleet(1)
    feed, _ = adverts(devices, rounds)
    gc.freeze()
    by_mac = {d.mac: d for d in devices}
    decoders = {d.mac: BthomeDecoder(d.mac, d.key) for d in devices if isinstance(d, SimBthome)}
    plain: list[tuple[BthomeDecoder, bytes]] = []
    sealed: list[tuple[BthomeDecoder, bytes]] = []
    ruuvi: list[bytes] = []
    for ble_device, adv in feed:
        device = by_mac[ble_device.address]
        if isinstance(device, SimRuuvi):
            ruuvi.append(adv.manufacturer_data[MANUFACTURER_ID])
        else:
            bucket = sealed if device.key is not None else plain
            bucket.append((decoders[device.mac], adv.service_data[SERVICE_UUID]))
    results: dict[str, float] = {}
    total_time = 0.0
    jobs: list[tuple[str, Callable[[], int]]] = [
        ("decode_bthome_per_s", lambda: len([dec.decode(data) for dec, data in plain])),
        ("decode_bthome_encrypted_per_s", lambda: len([dec.decode(data) for dec, data in sealed])),
        ("decode_ruuvi_per_s", lambda: len([decode_ruuvi(data) for data in ruuvi])),
    ]
    for name, job in jobs:
        best = math.inf
        for _ in range(3):
            start = time.perf_counter()
            count = job()
            best = min(best, time.perf_counter() - start)
        total_time += best
        results[name] = count / best
    results["decode_only_adverts_per_s"] = (len(plain) + len(sealed) + len(ruuvi)) / total_time
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smaller run (about 5x fewer)")
    args = parser.parse_args()
    rounds = 100 if args.quick else 500
    with tempfile.TemporaryDirectory() as tmp:
        repeated = asyncio.run(through_outbox(3, rounds, Path(tmp)))
        distinct = asyncio.run(through_outbox(1, rounds, Path(tmp)))
    scan_path = asyncio.run(without_outbox(rounds))
    result: dict[str, Any] = {
        "ble_adverts_per_s": round(repeated["adverts_per_s"]),
        "ble_readings_stored_per_s": round(repeated["readings_per_s"]),
        "ble_distinct_adverts_per_s": round(distinct["adverts_per_s"]),
        "ble_distinct_readings_stored_per_s": round(distinct["readings_per_s"]),
        "scan_path_only_distinct_adverts_per_s": round(scan_path),
        "adverts": repeated["adverts"],
        "repeats_dropped": repeated["repeats"],
        "dropped_readings": repeated["dropped_readings"] + distinct["dropped_readings"],
    }
    result.update({k: round(v) for k, v in decode_only(rounds).items()})
    print(json.dumps(result))


if __name__ == "__main__":
    main()
