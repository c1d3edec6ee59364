"""A new outbox must not make fresh readings look like duplicates (issue 12, item 5).

A new outbox (another path, a quarantined one replaced) restarts ``seq`` at 1. A platform that
deduplicated on ``(gateway, seq)`` dropped every fresh reading whose seq it had seen before:
real data lost without a trace. Here the platform deduplicates as docs/mqtt.md says, on
``(gateway, epoch, seq)`` (tests/support/subscriber.py), against a real mosquitto and the gateway
as its
own process; before the epoch existed the messages had no epoch and these tests fail.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

from simulator.modbus_server import ModbusSimulator
from tests.support.gateway_rig import running_gateway
from tests.support.mosquitto import Mosquitto
from tests.support.subscriber import Subscriber
from tests.system.test_end_to_end import fleet, platform, stop, write_config

#: Readings each run must deliver: a few polls of the simulated devices.
PER_RUN = 40


def _with_outbox(config: Path, outbox: str) -> None:
    text = config.read_text().replace('path = "outbox.db"', f'path = "{outbox}"')
    config.write_text(text)


async def _run_until(config: Path, sub: Subscriber, keys: int) -> None:
    """Run the gateway until the platform holds ``keys`` distinct readings; stop it cleanly."""
    async with running_gateway(config) as proc:
        await sub.wait_for(keys, 40)
        assert await stop(proc) == 0


def _fresh_readings_survive_dedup(sub: Subscriber, first_run: int) -> None:
    """The platform's view after two runs on two outboxes: nothing fresh was taken for a
    duplicate, although the second outbox reused the first one's sequence numbers."""
    delivery = sub.delivery
    epochs = delivery.epochs()
    assert len(epochs) == 2, epochs
    assert epochs[0][1] != epochs[1][1]
    before, after = delivery.keys[:first_run], delivery.keys[first_run:]
    old_seqs = {seq for _, epoch, seq in before if epoch == epochs[0][1]}
    new_seqs = [seq for _, epoch, seq in after if epoch == epochs[1][1]]
    assert min(new_seqs) == 1  # the new outbox restarted seq ...
    reused = old_seqs.intersection(new_seqs)
    assert len(reused) >= PER_RUN // 2  # ... so (gateway, seq) would have dropped these
    known = set(before)
    assert not [k for k in after if k[1] == epochs[1][1] and k in known]
    report = delivery.report()
    assert report["missing"] == 0
    assert report["misordered"] == 0


def test_switching_the_outbox_path_does_not_turn_fresh_readings_into_duplicates(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async def scenario() -> None:
        async with ModbusSimulator(fleet()) as sim, platform(mosquitto) as sub:
            config = write_config(tmp_path / "gw.toml", mosquitto, sim, interval="200ms")
            await _run_until(config, sub, PER_RUN)
            first_run = len(sub.delivery.keys)
            _with_outbox(config, "new-card/outbox.db")  # a new SD card, a re-install
            await _run_until(config, sub, len(sub.delivery.distinct_keys()) + PER_RUN)
            _fresh_readings_survive_dedup(sub, first_run)
            state = json.loads((tmp_path / "new-card" / "outbox.db.state.json").read_text())
            assert state["outbox"]["epoch"] == sub.delivery.epochs()[1][1]

    asyncio.run(asyncio.wait_for(scenario(), 100))


def _damage_the_readings_table(path: Path) -> None:
    """Overwrite the readings table's root page: still an SQLite file with streetgate's schema,
    but quick_check fails, so the gateway quarantines it (as after a bad SD card)."""
    with sqlite3.connect(path) as conn:
        (root,) = conn.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = 'readings'"
        ).fetchone()
        (page_size,) = conn.execute("PRAGMA page_size").fetchone()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    with path.open("r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(b"\xa5" * page_size)


def test_a_quarantined_outbox_is_replaced_by_one_whose_readings_are_not_duplicates(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async def scenario() -> None:
        async with ModbusSimulator(fleet()) as sim, platform(mosquitto) as sub:
            config = write_config(tmp_path / "gw.toml", mosquitto, sim, interval="200ms")
            await _run_until(config, sub, PER_RUN)
            first_run = len(sub.delivery.keys)
            await asyncio.to_thread(_damage_the_readings_table, tmp_path / "outbox.db")
            await _run_until(config, sub, len(sub.delivery.distinct_keys()) + PER_RUN)
            _fresh_readings_survive_dedup(sub, first_run)

    asyncio.run(asyncio.wait_for(scenario(), 100))
    assert list(tmp_path.glob("outbox.db.corrupt-*")), "the damaged outbox was kept"
