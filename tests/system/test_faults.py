"""The fault suite: under continuous load, every committed reading arrives, in order, deduplicable.

Each scenario runs the real gateway process against simulated devices, with the uplink
through a controllable proxy to a real mosquitto, and checks what the platform received:
zero missing (beyond what the gateway itself reports as dropped), zero misordered per device,
and duplicates only ever with an already seen sequence number.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from tests.support.faults.harness import Stage, outbox_counts, stage
from tests.support.mosquitto import Mosquitto

pytestmark = pytest.mark.slow


async def retained(broker: Mosquitto, topic: str) -> dict[str, Any]:
    """The retained message on ``topic`` (waits for it to exist)."""
    async with asyncio.timeout(20), aiomqtt.Client(broker.host, broker.port) as client:
        await client.subscribe(topic, qos=1)
        async for message in client.messages:
            assert isinstance(message.payload, bytes)
            result: dict[str, Any] = json.loads(message.payload)
            return result
    raise AssertionError(f"nothing retained on {topic}")


def assert_complete(the_stage: Stage, counts: dict[str, int]) -> dict[str, int]:
    """Nothing missing but the reported drops, nothing misordered, duplicates are resends."""
    delivery = the_stage.platform.delivery
    report = delivery.report()
    assert report["highest"] == counts["last_seq"], (report, counts)
    assert report["missing"] == counts["dropped"], (report, counts)
    assert report["misordered"] == 0, report
    for device, figures in delivery.per_device().items():
        assert figures["misordered"] == 0, (device, figures)
    # every duplicate is a sequence number that had already arrived
    assert report["received"] - report["distinct"] == report["duplicated"]
    return report


def test_broker_restarted_many_times(tmp_path: Path, mosquitto: Mosquitto) -> None:
    async def scenario() -> None:
        async with stage(tmp_path, mosquitto) as s:
            await s.platform.wait_for(500, 15)
            for _ in range(5):
                await asyncio.to_thread(mosquitto.stop)
                await asyncio.sleep(1.5)
                await asyncio.to_thread(mosquitto.start)
                await asyncio.sleep(1.5)
            counts = await s.settle()
            report = assert_complete(s, counts)
            assert counts["dropped"] == 0
            assert report["distinct"] > 5000

    asyncio.run(scenario())


def test_uplink_black_holed_longer_than_keepalive(tmp_path: Path, mosquitto: Mosquitto) -> None:
    async def scenario() -> None:
        async with stage(tmp_path, mosquitto) as s:
            await s.platform.wait_for(500, 15)
            s.proxy.set_mode("blackhole")
            before = s.platform.delivery.report()["highest"]
            await asyncio.sleep(8)  # keepalive is 2 s: the gateway must notice by itself
            during = s.platform.delivery.report()["highest"]
            s.proxy.set_mode("pass")
            counts = await s.settle()
            assert_complete(s, counts)
            assert during - before < 1500  # the hole really held traffic back
            assert counts["last_seq"] > during + 5000

    asyncio.run(scenario())


def test_connections_reset_and_slow_link(tmp_path: Path, mosquitto: Mosquitto) -> None:
    async def scenario() -> None:
        async with stage(tmp_path, mosquitto) as s:
            await s.platform.wait_for(500, 15)
            for _ in range(5):
                s.proxy.reset()
                await asyncio.sleep(0.7)
            s.proxy.set_mode("slow", delay=0.05)
            await asyncio.sleep(3)
            s.proxy.set_mode("pass")
            counts = await s.settle()
            assert_complete(s, counts)
            assert s.proxy.connections >= 6

    asyncio.run(scenario())


def test_gateway_killed_repeatedly_loses_at_most_the_commit_window(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async def scenario() -> None:
        async with stage(tmp_path, mosquitto) as s:
            await s.platform.wait_for(300, 15)
            losses = await s.kill_repeatedly(5, pause=1.0)
            counts = await s.settle()
            report = assert_complete(s, counts)
        # about 1,100 readings/s and a 100 ms commit window: at most ~110, plus one poll each
        assert max(losses) <= 250, losses
        assert report["distinct"] == counts["last_seq"]
        print(f"kill losses: {losses}")

    asyncio.run(scenario())


def test_full_outbox_drops_exactly_what_the_platform_misses(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async def scenario() -> None:
        async with stage(tmp_path, mosquitto, max_bytes="400KiB") as s:
            await s.platform.wait_for(300, 15)
            s.proxy.set_mode("blackhole")
            s.proxy.reset()  # the uplink is gone: everything accumulates
            for _ in range(60):
                await asyncio.sleep(0.5)
                if (await asyncio.to_thread(outbox_counts, s.outbox))["dropped"] > 1000:
                    break
            s.proxy.set_mode("pass")
            counts = await s.settle()
            report = assert_complete(s, counts)
            assert counts["dropped"] > 1000
            assert report["missing"] == counts["dropped"]

    asyncio.run(scenario())


def test_corrupt_database_at_start_is_quarantined(tmp_path: Path, mosquitto: Mosquitto) -> None:
    (tmp_path / "outbox.db").write_bytes(b"SQLite format 3\x00" + b"\xff" * 5000)

    async def scenario() -> None:
        async with stage(tmp_path, mosquitto) as s:
            health = await retained(mosquitto, "streetgate/fault-gw/health")
            assert health["outbox"]["quarantined"].startswith(str(tmp_path / "outbox.db.corrupt-"))
            await s.platform.wait_for(500, 20)
            counts = await s.settle()
            assert_complete(s, counts)

    asyncio.run(scenario())
    quarantined = list(tmp_path.glob("outbox.db.corrupt-*"))
    assert len(quarantined) == 1
    assert quarantined[0].read_bytes().startswith(b"SQLite format 3\x00\xff")
    log = (tmp_path / "gateway.log").read_text()
    assert "is damaged" in log
    assert str(quarantined[0]) in log


def test_disk_full_drops_exactly_what_the_platform_misses(
    tmp_path: Path, mosquitto: Mosquitto, tiny_disk: Path
) -> None:
    async def scenario() -> None:
        # a 1 MiB filesystem, far below max_bytes: the disk runs out, not the limit
        async with stage(tmp_path, mosquitto, outbox_dir=tiny_disk, disk_reserve="256KiB") as s:
            await s.platform.wait_for(300, 15)
            s.proxy.set_mode("blackhole")
            s.proxy.reset()
            for _ in range(60):
                await asyncio.sleep(0.5)
                if (await asyncio.to_thread(outbox_counts, s.outbox))["dropped"] > 2000:
                    break
            assert s.gateway is not None
            assert s.gateway.returncode is None  # still running
            s.proxy.set_mode("pass")
            counts = await s.settle()
            report = assert_complete(s, counts)
            assert counts["dropped"] > 2000
            assert report["missing"] == counts["dropped"]

    asyncio.run(scenario())
    assert "the disk is full" in (tmp_path / "gateway.log").read_text()


def libfaketime() -> str:
    found = sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))
    if not found:
        pytest.fail("the clock-jump scenario needs libfaketime (apt-get install faketime)")
    return str(found[0])


def test_wall_clock_jumps_reorder_and_drop_nothing(tmp_path: Path, mosquitto: Mosquitto) -> None:
    offset = tmp_path / "clock-offset"
    offset.write_text("+0\n")
    env = {
        "LD_PRELOAD": libfaketime(),
        "FAKETIME_TIMESTAMP_FILE": str(offset),
        "FAKETIME_NO_CACHE": "1",  # pick up every change at once
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",  # only the wall clock jumps, as with NTP
    }

    async def scenario() -> None:
        async with stage(tmp_path, mosquitto, env=env) as s:
            await s.platform.wait_for(500, 15)
            for jump in ("-2h", "+1d", "-30s", "+0"):
                await asyncio.to_thread(offset.write_text, f"{jump}\n")
                await asyncio.sleep(2)
            counts = await s.settle()
            assert_complete(s, counts)
            stamps = [datetime.fromisoformat(r["ts"]) for r in s.platform.delivery.readings]
            # the wall clock really went back and forth, while seq order held
            assert any(b < a for a, b in itertools.pairwise(stamps))
            assert max(stamps) - min(stamps) > timedelta(hours=25)

    asyncio.run(scenario())
