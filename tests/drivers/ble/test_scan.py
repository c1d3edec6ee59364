"""The BLE scan source end to end: simulated sensors -> bleak (fake backend) -> real Outbox.

The simulator's scanner backend replays real advertisement bytes (made by the gateway's own
encoders) through bleak's ``BleakScanner(backend=...)``; nothing in the driver is mocked.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers import build_sources
from drivers.ble.bthome import SERVICE_UUID16
from drivers.ble.common import BleBackends
from drivers.ble.scan import BleScanSource, Seen, is_repeat
from gateway.config.devices import BthomeDevice, RuuviDevice
from gateway.config.model import OutboxConfig, parse_config
from gateway.core.clock import SystemClock
from gateway.core.health import Health
from gateway.core.model import Reading
from gateway.store.outbox import Outbox
from gateway.uplink.envelope import encode_reading
from simulator.ble import (
    BleSimulator,
    SentPacket,
    SimBthome,
    SimRuuvi,
    ad_structures,
    parse_ad_structures,
)
from tests.support.waiting import until

KEY = bytes.fromhex("231d39c1d7cc1ab1aee224cd096db932")
OTHER_KEY = bytes.fromhex("814aac74c4f17b6c1581e1ab87816b99")


@asynccontextmanager
async def scanning(
    tmp_path: Path,
    sim: BleSimulator,
    devices: Sequence[BthomeDevice | RuuviDevice],
    **options: Any,
) -> AsyncIterator[tuple[BleScanSource, Outbox]]:
    """A real outbox and the scan source on the simulator's air, both running."""
    config = OutboxConfig(path=tmp_path / "outbox.db", commit_interval=0.01)
    async with Outbox(config) as outbox:
        options = {"retry_base": 0.02, "retry_cap": 0.05, **options}
        source = BleScanSource(
            devices, outbox.put_many, SystemClock(), sim.scanner_backend, **options
        )
        async with asyncio.TaskGroup() as tg:
            tasks = [
                tg.create_task(outbox.run(), name="outbox:commit"),
                tg.create_task(source.run(), name=source.task_name),
            ]
            try:
                yield source, outbox
            finally:
                for task in tasks:
                    task.cancel()


async def stored(outbox: Outbox) -> list[dict[str, Any]]:
    rows = await outbox.read_batch(0, outbox.last_seq, 1_000_000)
    return [json.loads(encode_reading(r)) for r in rows]


def expected_of(packets: Sequence[SentPacket]) -> list[tuple[str, str, float]]:
    return [
        (p.device, metric, value)
        for p in packets
        if not p.corrupted
        for metric, value in p.values.items()
    ]


def received(rows: list[dict[str, Any]], device: str) -> list[tuple[str, str, float]]:
    return [(r["device"], r["metric"], r["value"]) for r in rows if r["device"] == device]


async def started(source: BleScanSource) -> None:
    async with asyncio.timeout(3):
        await source.wait_scanning()


# -- the repeat rule, as a pure function ------------------------------------------------------


@pytest.mark.parametrize(
    ("seen", "key", "now", "repeat"),
    [
        (None, 5, 10.0, False),  # first advert of a device
        (Seen(5, 10.0), 5, 10.5, True),  # the same packet heard again
        (Seen(5, 10.0), 6, 10.5, False),  # the next packet
        (Seen(255, 10.0), 0, 10.5, False),  # an 8-bit packet id wrapped
        (Seen(200, 10.0), 3, 10.5, False),  # the sensor restarted: its counter went back
        (Seen(5, 10.0), 5, 40.0, False),  # same key after the window: stored again
        (Seen(b"\x40\x02", 10.0), b"\x40\x02", 10.5, True),  # no id: identical payload
        (Seen(b"\x40\x02", 10.0), b"\x40\x03", 10.5, False),
        (Seen(5, 10.0), b"\x05", 10.5, False),  # an id and a payload never match
    ],
)
def test_repeat_rule(seen: Seen | None, key: int | bytes, now: float, repeat: bool):
    assert is_repeat(seen, key, now, window=30.0) is repeat


# -- the simulator speaks the real on-air format ----------------------------------------------


def test_simulated_adverts_are_real_ad_structures():
    raw = ad_structures(service_data16={SERVICE_UUID16: bytes.fromhex("4002ca0903bf13")})
    assert raw.hex() == "020106" + "0a16d2fc4002ca0903bf13"  # the reference's on-air bytes
    service_data, manufacturer = parse_ad_structures(raw)
    assert service_data == {"0000fcd2-0000-1000-8000-00805f9b34fb": bytes.fromhex("4002ca0903bf13")}
    assert manufacturer == {}
    with pytest.raises(ValueError, match="legacy advert holds 31"):
        ad_structures(manufacturer_data={0x0499: bytes(27)})


def test_simulated_sensors_drift_count_and_repeat_on_their_own_schedule():
    sim = BleSimulator()
    sensor = SimBthome("th-1", "A4:C1:38:00:00:01", first_packet_id=254, repeats=4)
    tag = SimRuuvi("ruuvi-1", "CB:B8:33:4C:88:4F", repeats=2)
    sim.add(sensor)
    sim.add(tag)
    asyncio.run(sim.air(0.001, rounds=3))
    assert [p.key for p in sensor.sent] == [254, 255, 0]  # the 8-bit packet id wraps
    assert [p.key for p in tag.sent] == [0, 1, 2]
    assert sim.adverts_sent == 3 * 4 + 3 * 2
    for packet in sensor.sent:
        assert 0 < packet.values["battery"] <= 100
        assert -10 < packet.values["temperature"] < 40
        assert 0 <= packet.values["humidity"] <= 100


@settings(max_examples=40, deadline=None)
@given(st.lists(st.binary(max_size=27), min_size=1, max_size=20))
def test_any_payload_through_the_scanner_is_stored_repeated_or_counted_never_raised(
    payloads: list[bytes],
):
    sim = BleSimulator()
    sensor = SimBthome("th-1", "A4:C1:38:00:00:01")
    tag = SimRuuvi("ruuvi-1", "CB:B8:33:4C:88:4F")

    async def sink(readings: Sequence[Reading]) -> None:
        return None

    async def scenario() -> None:
        configs: list[BthomeDevice | RuuviDevice] = [
            sensor.gateway_config(),
            tag.gateway_config(),
        ]
        source = BleScanSource(configs, sink, SystemClock(), sim.scanner_backend)
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(source.run(), name=source.task_name)
            await started(source)
            for payload in payloads:
                sim.transmit(
                    sensor.mac,
                    None,
                    ad_structures(service_data16={SERVICE_UUID16: payload}, flags=None),
                )
                sim.transmit(
                    tag.mac, None, ad_structures(manufacturer_data={0x0499: payload}, flags=None)
                )
            task.cancel()
        for status in source.statuses.values():
            assert set(status.errors_by_kind) <= {"BadFrame"}
        # every advert was stored, recognised as a repeat, or counted as bad: none vanished
        repeats = source.stats().repeats
        heard = sum(s.polls_ok + s.errors_by_kind["BadFrame"] for s in source.statuses.values())
        assert heard + repeats == 2 * len(payloads)

    asyncio.run(scenario())


# -- end to end --------------------------------------------------------------------------------


def test_every_distinct_packet_is_stored_once_with_the_values_the_sensors_sent(tmp_path: Path):
    sim = BleSimulator()
    plain = SimBthome("th-plain", "A4:C1:38:00:00:01", repeats=5)
    sealed = SimBthome("th-sealed", "A4:C1:38:00:00:02", key=KEY, packet_id=False, repeats=3)
    weather = SimBthome("th-mac", "A4:C1:38:00:00:03", objects=(0x02, 0x03, 0x04), include_mac=True)
    ruuvi = SimRuuvi("ruuvi-1", "CB:B8:33:4C:88:4F", repeats=4)
    neighbour = SimBthome("neighbour", "A4:C1:38:99:99:99")  # in range, not ours
    for device in (plain, sealed, weather, ruuvi, neighbour):
        sim.add(device)
    configs: list[BthomeDevice | RuuviDevice] = [
        plain.gateway_config(mac=plain.mac.lower()),  # MACs match whatever their case
        sealed.gateway_config(),
        weather.gateway_config(),
        ruuvi.gateway_config(),
    ]

    async def scenario() -> None:
        async with scanning(tmp_path, sim, configs) as (source, outbox):
            await started(source)
            packets = sim.broadcast(rounds=30)
            mine = [p for p in packets if p.device != "neighbour"]
            total = len(expected_of(mine))
            await until(lambda: outbox.last_seq >= total)
            await asyncio.sleep(0.05)  # nothing more may arrive
            rows = await stored(outbox)
            assert len(rows) == total
            for device in ("th-plain", "th-sealed", "th-mac", "ruuvi-1"):
                want = expected_of([p for p in mine if p.device == device])
                assert received(rows, device) == want
            units = {(r["metric"], r["unit"]) for r in rows if r["device"] == "th-plain"}
            assert units == {("battery", "%"), ("temperature", "Cel"), ("humidity", "%RH")}
            stats = source.stats()
            assert stats.repeats == sum(p.adverts - 1 for p in mine)
            assert stats.foreign_adverts == 30 * neighbour.repeats
            assert stats.dropped_readings == 0
            for name, status in source.statuses.items():
                assert status.health is Health.OK, name
                assert status.polls_ok == 30
                assert status.polls_failed == 0
            scanner = sim.scanners[0]
            assert scanner.mode == "passive"
            assert {p[1] for p in scanner.or_patterns} == {0x16, 0xFF}

    asyncio.run(scenario())


def test_bad_adverts_and_a_wrong_key_are_counted_on_their_device_only(tmp_path: Path):
    sim = BleSimulator()
    plain = SimBthome("th-plain", "A4:C1:38:00:00:01", repeats=2)
    sealed = SimBthome("th-sealed", "A4:C1:38:00:00:02", key=KEY, repeats=2)
    wrong = SimBthome("th-wrong-key", "A4:C1:38:00:00:03", key=KEY, repeats=2)
    ruuvi = SimRuuvi("ruuvi-1", "CB:B8:33:4C:88:4F", repeats=2)
    for device in (plain, sealed, wrong, ruuvi):
        sim.add(device)
    configs: list[BthomeDevice | RuuviDevice] = [
        plain.gateway_config(),
        sealed.gateway_config(),
        wrong.gateway_config(key=OTHER_KEY.hex()),
        ruuvi.gateway_config(),
    ]

    async def scenario() -> None:
        async with scanning(tmp_path, sim, configs) as (source, outbox):
            await started(source)
            plain.corrupt_next(3)
            ruuvi.corrupt_next(1)
            packets = sim.broadcast(rounds=6)
            good = [p for p in packets if p.device != "th-wrong-key"]
            await until(lambda: outbox.last_seq >= len(expected_of(good)))
            rows = await stored(outbox)
            assert received(rows, "th-wrong-key") == []
            for device in ("th-plain", "th-sealed", "ruuvi-1"):
                assert received(rows, device) == expected_of(
                    [p for p in good if p.device == device]
                )
            statuses = source.statuses
            assert statuses["th-plain"].errors_by_kind == {"BadFrame": 3 * 2}
            assert "needs 2 bytes" in (statuses["th-plain"].last_error or "")
            assert statuses["th-plain"].health is Health.OK  # good adverts followed
            assert statuses["ruuvi-1"].errors_by_kind == {"BadFrame": 2}
            wrong_status = statuses["th-wrong-key"]
            assert wrong_status.errors_by_kind == {"BadFrame": 6 * 2}
            assert "MIC does not match" in (wrong_status.last_error or "")
            assert wrong_status.health is Health.DOWN
            assert wrong_status.polls_ok == 0
            assert statuses["th-sealed"].errors_by_kind == {}
            assert statuses["th-sealed"].health is Health.OK

    asyncio.run(scenario())


def test_a_silent_device_goes_down_and_comes_back_with_whatever_packet_id_it_sends(
    tmp_path: Path,
):
    sim = BleSimulator()
    quiet = SimBthome("th-quiet", "A4:C1:38:00:00:01", repeats=2)
    chatty = SimRuuvi("ruuvi-chatty", "CB:B8:33:4C:88:4F", repeats=2)
    sim.add(quiet)
    sim.add(chatty)
    configs: list[BthomeDevice | RuuviDevice] = [
        quiet.gateway_config(stale_after=0.25),
        chatty.gateway_config(stale_after=60),
    ]

    async def scenario() -> None:
        async with scanning(tmp_path, sim, configs) as (source, _outbox):
            await started(source)
            sim.broadcast(rounds=3)
            await until(lambda: source.statuses["th-quiet"].polls_ok == 3)
            last_id = quiet.sent[-1].key
            quiet.silent = True
            status = source.statuses["th-quiet"]
            deadline = time.monotonic() + 3
            while status.health is not Health.DOWN:
                assert time.monotonic() < deadline, "the silent device never went down"
                sim.broadcast()  # the other device keeps talking
                await asyncio.sleep(0.02)
            assert status.errors_by_kind == {"DeviceTimeout": 1}
            assert "no advertisement for" in (status.last_error or "")
            assert source.statuses["ruuvi-chatty"].health is Health.OK
            assert source.stats().scanner_starts == 1  # others were heard: no restart
            # back, repeating the packet id it had stopped at: after being down it is new
            quiet.silent = False
            quiet.next_packet_id = last_id if last_id is not None else 0
            before = status.polls_ok
            sim.broadcast()
            await until(lambda: status.health is Health.OK)
            assert status.polls_ok == before + 1

    asyncio.run(scenario())


def test_a_sensor_that_restarts_or_repeats_its_counter_is_not_ignored_forever(tmp_path: Path):
    sim = BleSimulator()
    sensor = SimBthome("th-1", "A4:C1:38:00:00:01", first_packet_id=40, repeats=3)
    sim.add(sensor)

    async def scenario() -> None:
        async with scanning(tmp_path, sim, [sensor.gateway_config()], repeat_window=0.2) as (
            source,
            outbox,
        ):
            await started(source)
            status = source.statuses["th-1"]
            sim.broadcast(rounds=3)  # packet ids 40, 41, 42
            sensor.next_packet_id = 0  # power cycle: the counter starts again
            sim.broadcast(rounds=2)  # 0, 1
            await until(lambda: status.polls_ok == 5)
            # a stuck counter: the same id over and over is stored once per repeat_window
            sensor.next_packet_id = 1
            sim.broadcast()  # id 1 again, within the window: a repeat
            await asyncio.sleep(0.01)
            assert status.polls_ok == 5
            await asyncio.sleep(0.25)
            sensor.next_packet_id = 1
            sim.broadcast()  # id 1 again, after the window: stored
            await until(lambda: status.polls_ok == 6)
            await until(lambda: outbox.last_seq == 6 * 3)

    asyncio.run(scenario())


@pytest.mark.parametrize("fault", ["not_found", "no_bluetooth", "no_dbus", "not_ready"])
def test_adapter_missing_at_start_is_retried_until_it_appears(tmp_path: Path, fault: Any):
    sim = BleSimulator()
    sensor = SimBthome("th-1", "A4:C1:38:00:00:01")
    tag = SimRuuvi("ruuvi-1", "CB:B8:33:4C:88:4F")
    sim.add(sensor)
    sim.add(tag)
    sim.remove_adapter(fault)

    async def scenario() -> None:
        configs: list[BthomeDevice | RuuviDevice] = [sensor.gateway_config(), tag.gateway_config()]
        async with scanning(tmp_path, sim, configs) as (source, outbox):
            await until(lambda: source.stats().adapter_failures >= 3)
            for status in source.statuses.values():
                assert status.health is Health.DOWN
                assert status.errors_by_kind["AdapterUnavailable"] >= 3
                assert (status.last_error or "").startswith("default adapter:")
            sim.restore_adapter()
            await started(source)
            packets = sim.broadcast(rounds=2)
            await until(lambda: outbox.last_seq >= len(expected_of(packets)))
            assert all(s.health is Health.OK for s in source.statuses.values())

    asyncio.run(scenario())


def test_adapter_vanishing_mid_scan_takes_every_device_down_until_it_returns(tmp_path: Path):
    sim = BleSimulator()
    sensor = SimBthome("th-1", "A4:C1:38:00:00:01")
    tag = SimRuuvi("ruuvi-1", "CB:B8:33:4C:88:4F")
    sim.add(sensor)
    sim.add(tag)
    configs: list[BthomeDevice | RuuviDevice] = [
        sensor.gateway_config(stale_after=0.2),
        tag.gateway_config(stale_after=0.3),
    ]

    async def scenario() -> None:
        async with scanning(tmp_path, sim, configs) as (source, outbox):
            await started(source)
            first = sim.broadcast(rounds=2)
            await until(lambda: outbox.last_seq >= len(expected_of(first)))
            sim.remove_adapter()  # unplugged: adverts still fly, nobody hears them
            deadline = time.monotonic() + 3
            while source.stats().adapter_failures < 2:
                assert time.monotonic() < deadline, "the scanner never noticed"
                sim.broadcast()
                await asyncio.sleep(0.02)
            for status in source.statuses.values():
                assert status.health is Health.DOWN
                assert status.errors_by_kind["AdapterUnavailable"] >= 1
            # th-1 fell silent first (0.2 s), which restarted the scan before ruuvi-1's 0.3 s
            assert source.statuses["th-1"].errors_by_kind["DeviceTimeout"] == 1
            stored_before = outbox.last_seq
            sim.restore_adapter()
            await started(source)
            second = sim.broadcast(rounds=2)
            await until(lambda: outbox.last_seq >= stored_before + len(expected_of(second)))
            assert all(s.health is Health.OK for s in source.statuses.values())
            assert source.stats().scanner_starts == 2

    asyncio.run(scenario())


def test_passive_scanning_refused_falls_back_to_active(tmp_path: Path):
    sim = BleSimulator()
    sim.passive_supported = False
    sensor = SimBthome("th-1", "A4:C1:38:00:00:01", repeats=1)
    sim.add(sensor)

    async def scenario() -> None:
        async with scanning(tmp_path, sim, [sensor.gateway_config()]) as (source, outbox):
            await started(source)
            assert source.stats().scanning == "active"
            # an active scan hears everything: other kinds of adverts are ignored, not errors
            sim.transmit("11:22:33:44:55:66", "phone", ad_structures(manufacturer_data={76: b"x"}))
            packets = sim.broadcast(rounds=2)
            await until(lambda: outbox.last_seq >= len(expected_of(packets)))
            assert source.stats().foreign_adverts == 1
            assert source.statuses["th-1"].errors_by_kind == {}

    asyncio.run(scenario())


def test_when_the_sink_falls_behind_the_oldest_queued_readings_are_dropped_and_counted():
    sim = BleSimulator()
    sensor = SimBthome("th-1", "A4:C1:38:00:00:01", repeats=1)
    sim.add(sensor)
    delivered: list[Reading] = []
    gate = asyncio.Event()

    async def slow_sink(readings: Sequence[Reading]) -> None:
        await gate.wait()
        delivered.extend(readings)

    async def scenario() -> None:
        source = BleScanSource(
            [sensor.gateway_config()], slow_sink, SystemClock(), sim.scanner_backend, queue_size=3
        )
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(source.run(), name=source.task_name)
            await started(source)
            packets = sim.broadcast(rounds=10)  # 10 adverts before the sink runs once
            assert source.stats().queue_depth == 3
            assert source.stats().dropped_readings == 7 * 3
            gate.set()
            await until(lambda: len(delivered) == 3 * 3)
            assert [(r.metric, r.value) for r in delivered] == [
                item[1:] for item in expected_of(packets[-3:])
            ]
            task.cancel()

    asyncio.run(scenario())


def test_build_sources_groups_every_passive_ble_device_into_one_scanner(tmp_path: Path):
    sim = BleSimulator()
    config = parse_config(
        {
            "gateway_id": "gw",
            "mqtt": {"host": "127.0.0.1"},
            "outbox": {"path": str(tmp_path / "outbox.db")},
            "devices": [
                {"kind": "bthome", "name": "th-1", "mac": "A4:C1:38:00:00:01"},
                {"kind": "ruuvi", "name": "ruuvi-1", "mac": "CB:B8:33:4C:88:4F"},
                {"kind": "bthome", "name": "th-2", "mac": "A4:C1:38:00:00:02", "key": KEY.hex()},
            ],
        },
        "test",
    )

    async def sink(readings: Sequence[Reading]) -> None:
        return None

    sources = build_sources(
        config.devices, sink, SystemClock(), ble=BleBackends(scanner=sim.scanner_backend)
    )
    assert len(sources) == 1
    assert sources[0].task_name == "scan:ble"
    assert set(sources[0].statuses) == {"th-1", "ruuvi-1", "th-2"}
    assert build_sources(config.devices[:0], sink, SystemClock()) == []


def test_constructor_rejects_what_cannot_work():
    sensor = SimBthome("th-1", "A4:C1:38:00:00:01")

    async def sink(readings: Sequence[Reading]) -> None:
        return None

    with pytest.raises(ValueError, match="already used by th-1"):
        BleScanSource(
            [sensor.gateway_config(), sensor.gateway_config(name="th-2", mac="a4:c1:38:00:00:01")],
            sink,
            SystemClock(),
        )
    with pytest.raises(ValueError, match="at least one device"):
        BleScanSource([], sink, SystemClock())
