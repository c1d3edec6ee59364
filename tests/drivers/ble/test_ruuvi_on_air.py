"""Ruuvi formats 3, 6 and E1 on the simulated air, and a Ruuvi Air stored once per measurement.

The simulator sends Ruuvi's published vectors (tests/vectors/ble.json) as real adverts, legacy
or BLE 5 extended, and the gateway's scan source must store exactly the vector's values. A Ruuvi
Air sends each measurement as format 6 and as E1: the gateway keeps E1 and stores each
measurement once (issue 15 leftover), whichever format it hears first.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from drivers.ble.ruuvi import MANUFACTURER_ID, RuuviFields
from gateway.config.devices import RuuviDevice
from simulator.ble import (
    MAX_LEGACY_AD,
    BleSimulator,
    SimRuuvi,
    SimRuuviAir,
    ad_structures,
    parse_ad_structures,
)
from tests.drivers.ble.test_scan import scanning, started, stored
from tests.support.ruuvi_vectors import VECTORS, air_fields
from tests.support.waiting import until

G = 9.80665
MAC = "CB:B8:33:4C:88:4F"
FLAGS_OFFSET = {6: 16, 0xE1: 28}
DOCUMENTED_FLAG_BITS = 0xC1  # calibration, VOC and NOx bit 0; the simulator writes others as 0


def v3_fields(vector: dict[str, Any]) -> RuuviFields:
    samples = dict(vector["samples"])
    ax, ay, az = (g * 1000 * 0.00980665 for g in samples.pop("acceleration_g"))
    return RuuviFields(**samples, acceleration_x=ax, acceleration_y=ay, acceleration_z=az)


def on_air(sim: BleSimulator, mac: str) -> list[bytes]:
    """The manufacturer data of every advert sent from ``mac``, in order (a recording scanner)."""
    heard: list[bytes] = []

    class Ear:
        def hear(self, address: str, name: str | None, raw: bytes) -> None:
            if address == mac:
                heard.append(parse_ad_structures(raw)[1][MANUFACTURER_ID])

    sim.scanners.append(Ear())  # type: ignore[arg-type]
    return heard


def stored_values(rows: list[dict[str, Any]]) -> dict[str, float]:
    return {r["metric"]: r["value"] for r in rows}


# -- the simulator sends Ruuvi's vectors, and the gateway decodes them ---------------------------


def run_one(tmp_path: Path, sim: BleSimulator, config: RuuviDevice) -> list[dict[str, Any]]:
    async def scenario() -> list[dict[str, Any]]:
        async with scanning(tmp_path, sim, [config]) as (source, outbox):
            await started(source)
            sim.broadcast()
            await until(lambda: outbox.last_seq > 0)
            await asyncio.sleep(0.05)  # nothing more may arrive
            return await stored(outbox)

    return asyncio.run(scenario())


@pytest.mark.parametrize("vector", VECTORS["ruuvi_v3"], ids=lambda v: v["name"])
def test_format_3_vectors_go_on_air_and_are_decoded(tmp_path: Path, vector: dict[str, Any]):
    sim = BleSimulator()
    tag = SimRuuvi("tag", MAC, data_format=3, repeats=2)
    sim.add(tag)
    tag.next_fields = v3_fields(vector)
    heard = on_air(sim, MAC)
    rows = run_one(tmp_path, sim, tag.gateway_config())
    assert heard == [bytes.fromhex(vector["manufacturer_data"])] * 2
    got = stored_values(rows)
    want = dict(vector["samples"])
    assert [round(got.pop(f"acceleration_{a}") / G, 6) for a in "xyz"] == want.pop("acceleration_g")
    assert got == want
    assert len(rows) == len(got) + 3  # stored once, the repeat recognised by its bytes


AIR = [(6, v) for v in VECTORS["ruuvi_v6"]] + [(0xE1, v) for v in VECTORS["ruuvi_e1"]]


@pytest.mark.parametrize(("data_format", "vector"), AIR, ids=[f"{f:X}-{v['name']}" for f, v in AIR])
def test_air_vectors_go_on_air_and_are_decoded(
    tmp_path: Path, data_format: int, vector: dict[str, Any]
):
    sim = BleSimulator()
    air = SimRuuviAir("air", MAC, formats=(data_format,), repeats=2)
    sim.add(air)
    air.next_fields = air_fields(vector, data_format)
    heard = on_air(sim, MAC)
    rows = run_one(tmp_path, sim, air.gateway_config())
    official = bytearray.fromhex(vector["manufacturer_data"])
    official[FLAGS_OFFSET[data_format]] &= DOCUMENTED_FLAG_BITS
    assert heard == [bytes(official)] * 2
    assert stored_values(rows) == vector["samples"]
    assert len(rows) == len(vector["samples"])


def test_e1_needs_an_extended_advert_and_6_fits_a_legacy_one():
    sim = BleSimulator()
    air = SimRuuviAir("air", MAC)
    packet = air.measure(0.0)
    e1, six = air.adverts(packet)
    assert len(six) <= MAX_LEGACY_AD < len(e1)
    assert parse_ad_structures(e1)[1][MANUFACTURER_ID] == packet.payloads[0xE1]
    with pytest.raises(ValueError, match="legacy advert holds 31"):
        ad_structures(manufacturer_data={MANUFACTURER_ID: packet.payloads[0xE1]})
    with pytest.raises(ValueError, match="extended advert holds 254"):
        ad_structures(manufacturer_data={MANUFACTURER_ID: bytes(252)}, extended=True)
    sim.add(air)


def test_the_simulators_own_values_are_what_the_gateway_stores(tmp_path: Path):
    clock = [0.0]
    sim = BleSimulator(clock=lambda: clock[0])
    sensors: list[SimRuuvi | SimRuuviAir] = [
        SimRuuvi("tag-3", "CB:B8:33:4C:88:03", data_format=3),
        SimRuuvi("tag-5", "CB:B8:33:4C:88:05"),
        SimRuuviAir("air-6", "CB:B8:33:4C:88:06", formats=(6,)),
        SimRuuviAir("air-e1", "CB:B8:33:4C:88:E1", formats=(0xE1,)),
    ]
    for sensor in sensors:
        sim.add(sensor)

    async def scenario() -> None:
        configs = [s.gateway_config() for s in sensors]
        async with scanning(tmp_path, sim, configs) as (source, outbox):
            await started(source)
            packets = []
            for _ in range(5):
                clock[0] += 100.0  # values drift between rounds
                packets += sim.broadcast()
            total = sum(len(p.values) for p in packets)
            await until(lambda: outbox.last_seq >= total)
            rows = await stored(outbox)
            assert len(rows) == total
            for sensor in sensors:
                want = [
                    (m, v) for p in packets if p.device == sensor.name for m, v in p.values.items()
                ]
                got = [(r["metric"], r["value"]) for r in rows if r["device"] == sensor.name]
                assert got == want, sensor.name

    asyncio.run(scenario())


# -- a Ruuvi Air sends 6 and E1: stored once ----------------------------------------------------


@pytest.mark.parametrize("order", [(0xE1, 6), (6, 0xE1)], ids=["E1-first", "6-first"])
def test_a_ruuvi_air_is_stored_once_per_measurement_from_e1(tmp_path: Path, order: tuple[int, ...]):
    sim = BleSimulator()
    air = SimRuuviAir("air", MAC, formats=order, repeats=3, first_sequence=70_000)
    sim.add(air)
    six_first = order[0] == 6

    async def scenario() -> None:
        async with scanning(tmp_path, sim, [air.gateway_config()]) as (source, outbox):
            await started(source)
            packets = sim.broadcast(rounds=20)
            e1_metrics = list(packets[0].values)
            first = [m for m in e1_metrics if m not in {"pm1", "pm4", "pm10"}]
            total = 20 * len(e1_metrics) - (3 if six_first else 0)
            await until(lambda: outbox.last_seq >= total)
            await asyncio.sleep(0.05)  # nothing more may arrive
            rows = [(r["metric"], r["value"]) for r in await stored(outbox)]
            assert len(rows) == total
            assert sum(1 for m, _ in rows if m == "temperature") == 20  # once per measurement
            later = [(m, v) for p in packets[1:] for m, v in p.values.items()]
            if six_first:
                # Heard before any E1, the first measurement is stored from its format 6 copy
                # (no PM1/4/10); its E1 is then a repeat, and every later 6 is superseded.
                assert [m for m, _ in rows[: len(first)]] == first
                assert rows[len(first) :] == later
            else:
                assert rows == list(packets[0].values.items()) + later
            stats = source.stats()
            assert stats.superseded == 20 * 3 - (1 if six_first else 0)
            assert source.statuses["air"].polls_ok == 20

    asyncio.run(scenario())


def test_a_receiver_without_e1_keeps_format_6_and_gets_it_back_when_e1_stops(tmp_path: Path):
    sim = BleSimulator()
    air = SimRuuviAir("air", MAC, repeats=1)
    sim.add(air)

    async def scenario() -> None:
        options = {"repeat_window": 0.3}
        async with scanning(tmp_path, sim, [air.gateway_config()], **options) as (source, outbox):
            await started(source)
            both = sim.broadcast(rounds=2)  # E1 and 6: two measurements, stored from E1
            await until(lambda: source.stats().superseded == 2)
            air.formats = (6,)  # E1 no longer heard (another adapter, say)
            sim.broadcast()  # within the window: still taken for a copy of an E1
            assert source.stats().superseded == 3
            await asyncio.sleep(0.35)
            alone = sim.broadcast(rounds=2)  # E1 silent for longer than the window
            total = sum(len(p.values) for p in both + alone)
            await until(lambda: outbox.last_seq >= total)
            await asyncio.sleep(0.05)
            rows = [(r["metric"], r["value"]) for r in await stored(outbox)]
            want = [(m, v) for p in both + alone for m, v in p.values.items()]
            assert rows == want
            assert "pm1" not in {m for m, _ in rows[-len(alone[0].values) :]}  # from format 6

    asyncio.run(scenario())


def test_ruuvi_metrics_are_every_metric_the_decoders_give():
    from drivers.ble.config import RUUVI_METRICS  # noqa: PLC0415
    from drivers.ble.ruuvi import decode_ruuvi  # noqa: PLC0415

    decoded = {
        sample.metric
        for key in ("ruuvi", "ruuvi_v3", "ruuvi_v6", "ruuvi_e1")
        for vector in VECTORS[key]
        for sample in decode_ruuvi(bytes.fromhex(vector["manufacturer_data"])).samples
    }
    assert decoded == set(RUUVI_METRICS)
