"""The SQLite outbox: sequence numbers, group commit, size bound, restart and corruption."""

from __future__ import annotations

import asyncio
import math
import os
import sqlite3
from pathlib import Path

import pytest

from gateway.config.model import OutboxConfig
from gateway.core.errors import OutboxForeign, OutboxLocked, StoreError
from gateway.core.model import Quality, Reading, StoredReading
from gateway.store import outbox as outbox_module
from gateway.store.outbox import APPLICATION_ID, MIGRATIONS, Outbox
from gateway.uplink.envelope import encode_reading


def readings(n: int, start: int = 0, device: str = "meter-1") -> list[Reading]:
    return [
        Reading(device, "voltage", 230.0 + (i % 10) / 10, "V", 1_764_000_000_000 + i)
        for i in range(start, start + n)
    ]


def config(tmp_path: Path, **overrides: object) -> OutboxConfig:
    return OutboxConfig.model_validate({"path": tmp_path / "outbox.db", **overrides})


async def fill(outbox: Outbox, items: list[Reading]) -> None:
    await outbox.put_many(items)
    await outbox._flush()


def test_sequence_is_contiguous_and_survives_deletes_and_restarts(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Outbox(config(tmp_path)) as outbox:
            await fill(outbox, readings(5))
            rows = await outbox.read_batch(0, outbox.last_seq, 100)
            assert [r.seq for r in rows] == [1, 2, 3, 4, 5]
            outbox.ack(5)
            await outbox._flush()
            assert (await outbox.stats()).depth == 0
        async with Outbox(config(tmp_path)) as outbox:
            assert outbox.last_seq == 5
            assert outbox.acked_seq == 5
            await fill(outbox, readings(3))
            rows = await outbox.read_batch(outbox.acked_seq, outbox.last_seq, 100)
            assert [r.seq for r in rows] == [6, 7, 8]

    asyncio.run(scenario())


def test_group_commit_uses_one_transaction_per_batch(tmp_path: Path) -> None:
    async def scenario() -> None:
        cfg = config(tmp_path, commit_interval="50ms", commit_max_readings=500)
        async with Outbox(cfg) as outbox:
            task = asyncio.create_task(outbox.run(), name="outbox:commit")
            for i in range(20):  # 2,000 readings in 20 puts
                await outbox.put_many(readings(100, start=i * 100))
            await outbox.wait_committed(1999)
            task.cancel()
            commits = outbox._commits
            assert outbox.last_seq == 2000
            assert 1 <= commits <= 8, commits  # far fewer transactions than readings

    asyncio.run(scenario())


def test_a_burst_is_committed_once_it_ends(tmp_path: Path) -> None:
    """A burst of answers is committed as soon as it is over, long before the interval."""

    async def scenario() -> None:
        cfg = config(tmp_path, commit_interval="1s", commit_max_readings=1000)
        async with Outbox(cfg) as outbox:
            task = asyncio.create_task(outbox.run(), name="outbox:commit")
            loop = asyncio.get_running_loop()
            start = loop.time()
            for _ in range(5):
                await outbox.put_many(readings(3))
            await outbox.wait_committed(0)
            elapsed = loop.time() - start
            await asyncio.sleep(0.05)
            task.cancel()
            assert elapsed < 0.9, elapsed
            assert outbox.last_seq == 15
            assert outbox._commits == 1  # one burst, one transaction

    asyncio.run(scenario())


def test_commit_interval_bounds_latency(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Readings that keep arriving (no pause ends the burst) wait at most the interval."""
    monkeypatch.setattr(outbox_module, "QUIET_COMMIT", 10.0)

    async def scenario() -> None:
        cfg = config(tmp_path, commit_interval="100ms", commit_max_readings=1000)
        async with Outbox(cfg) as outbox:
            task = asyncio.create_task(outbox.run(), name="outbox:commit")
            loop = asyncio.get_running_loop()
            start = loop.time()
            while outbox.last_seq == 0 and loop.time() - start < 5:
                await outbox.put_many(readings(1))
                await asyncio.sleep(0.01)
            elapsed = loop.time() - start
            task.cancel()
            assert 0.05 <= elapsed < 1.0, elapsed

    asyncio.run(scenario())


def test_clean_close_commits_pending_readings(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Outbox(config(tmp_path)) as outbox:
            await outbox.put_many(readings(7))
            assert outbox.last_seq == 0
        async with Outbox(config(tmp_path)) as outbox:
            assert outbox.last_seq == 7
            assert (await outbox.stats()).depth == 7

    asyncio.run(scenario())


def test_full_outbox_drops_oldest_and_counts_them(tmp_path: Path) -> None:
    async def scenario() -> None:
        cfg = config(tmp_path, max_bytes="256KiB")
        async with Outbox(cfg) as outbox:
            for i in range(40):
                await fill(outbox, readings(500, start=i * 500))
            stats = await outbox.stats()
            assert stats.used_bytes <= 256 * 1024
            assert stats.dropped > 0
            assert stats.first_seq == stats.dropped + 1  # exactly the oldest ones went
            assert stats.depth + stats.dropped == 20_000
            rows = await outbox.read_batch(outbox.acked_seq, outbox.last_seq, 10**6)
            assert [r.seq for r in rows] == list(range(stats.dropped + 1, 20_001))
        async with Outbox(cfg) as outbox:  # the counter survives a restart
            assert (await outbox.stats()).dropped == stats.dropped

    asyncio.run(scenario())


def test_put_waits_when_the_queue_is_full(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Outbox(config(tmp_path, queue_size=100)) as outbox:
            await outbox.put_many(readings(100))
            blocked = asyncio.create_task(outbox.put_many(readings(1)), name="blocked-put")
            await asyncio.sleep(0.05)
            assert not blocked.done()
            await outbox._flush()
            await asyncio.wait_for(blocked, 1)

    asyncio.run(scenario())


def test_corrupt_database_is_quarantined_not_deleted(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 5000)  # a SQLite header, then damage

    async def scenario() -> None:
        async with Outbox(config(tmp_path)) as outbox:
            await fill(outbox, readings(2))
            assert outbox.last_seq == 2

    asyncio.run(scenario())
    quarantined = list(tmp_path.glob("outbox.db.corrupt-*"))
    assert len(quarantined) == 1
    assert quarantined[0].read_bytes().startswith(b"SQLite format 3\x00\xff")
    assert quarantined[0].stat().st_mode & 0o777 == 0o600


def test_a_file_that_is_not_sqlite_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    data = b"this is not a database, but somebody's data" * 100
    path.write_bytes(data)

    async def scenario() -> None:
        async with Outbox(config(tmp_path)):
            pass

    with pytest.raises(OutboxForeign, match="not a SQLite database"):
        asyncio.run(scenario())
    assert path.read_bytes() == data
    assert not list(tmp_path.glob("outbox.db.corrupt-*"))


def test_a_sqlite_file_of_another_application_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    other = sqlite3.connect(path)
    other.execute("CREATE TABLE contacts (name TEXT)")
    other.commit()
    other.close()
    data = path.read_bytes()

    async def scenario() -> None:
        async with Outbox(config(tmp_path)):
            pass

    with pytest.raises(OutboxForeign, match=r"without streetgate's tables .its tables: .'contacts"):
        asyncio.run(scenario())
    assert path.read_bytes() == data


def test_new_outbox_is_marked_and_a_second_one_on_the_same_path_is_locked_out(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with Outbox(config(tmp_path)):
            with pytest.raises(OutboxLocked, match=f"in use by the gateway with pid {os.getpid()}"):
                async with Outbox(config(tmp_path)):
                    pass
        async with Outbox(config(tmp_path)):  # released at exit
            pass

    asyncio.run(scenario())
    conn = sqlite3.connect(tmp_path / "outbox.db")
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    conn.close()


def test_unwritable_location_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")

    async def scenario() -> None:
        async with Outbox(OutboxConfig(path=blocker / "sub" / "outbox.db")):
            pass

    with pytest.raises(StoreError, match="cannot create outbox folder"):
        asyncio.run(scenario())


def test_readings_are_stored_as_typed_rows(tmp_path: Path) -> None:
    stamped = [
        Reading("m-1", "voltage", 230.1, "V", 1_764_230_400_123, Quality.CLOCK_UNSYNCED),
        Reading("m-1", "x", float("nan"), "", 0),
        Reading("m-2", "y", float("inf"), "W", 5),
    ]

    async def scenario() -> list[StoredReading]:
        async with Outbox(config(tmp_path)) as outbox:
            await fill(outbox, stamped)
            return await outbox.read_batch(0, outbox.last_seq, 10)

    first, nan, inf = asyncio.run(scenario())
    assert first == StoredReading(
        1, "m-1", "voltage", 230.1, "V", 1_764_230_400_123, Quality.CLOCK_UNSYNCED
    )
    assert math.isnan(nan.value)  # SQLite keeps NaN as NULL
    assert nan[:3] == (2, "m-1", "x")
    assert inf.value == float("inf")
    conn = sqlite3.connect(tmp_path / "outbox.db")
    columns = [r[1] for r in conn.execute("PRAGMA table_info(stored_readings)")]
    assert columns == ["seq", "device", "metric", "value", "unit", "ts_ms", "quality"]


def test_an_outbox_of_the_previous_version_keeps_every_unsent_reading(tmp_path: Path) -> None:
    """Migration 0004_typed_readings turns each stored JSON body into a typed row."""
    path = tmp_path / "outbox.db"
    old = [
        StoredReading(7, "m-1", "voltage", 230.1, "V", 1_764_230_400_123, Quality.GOOD),
        StoredReading(8, "m-1", "energy", 1e21, "kWh", 1_764_230_400_123, Quality.GOOD),
        StoredReading(9, "clé-2", "t", -0.5, "", 1_764_230_401_000, Quality.CLOCK_UNSYNCED),
        StoredReading(10, "m-3", "x", math.nan, "Cel", 1_764_230_402_005, Quality.GOOD),
    ]
    # The previous version's schema and rows: (seq, ts_ms, device, JSON as published).
    conn = sqlite3.connect(path, isolation_level=None)
    for number, (_, sql) in enumerate(MIGRATIONS[:3], start=1):
        conn.executescript(f"BEGIN; {sql}; PRAGMA user_version={number}; COMMIT;")
    conn.executemany(
        "INSERT INTO readings (seq, ts_ms, device, body) VALUES (?, ?, ?, ?)",
        [(r.seq, r.ts_ms, r.device, encode_reading(r)) for r in old],
    )
    conn.execute("UPDATE meta SET value = 11 WHERE key = 'next_seq'")
    epoch = conn.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()[0]
    conn.close()

    async def scenario() -> tuple[list[StoredReading], str, int]:
        async with Outbox(config(tmp_path)) as outbox:
            return await outbox.read_batch(0, outbox.last_seq, 100), outbox.epoch, outbox.last_seq

    migrated, new_epoch, last = asyncio.run(scenario())
    assert (new_epoch, last) == (f"{epoch:016x}", 10)  # identity and numbering unchanged
    assert [r.seq for r in migrated] == [7, 8, 9, 10]
    assert migrated[:3] == old[:3]
    assert math.isnan(migrated[3].value)
    assert migrated[3]._replace(value=0.0) == old[3]._replace(value=0.0)
    # Published byte for byte as the previous version stored it.
    assert [encode_reading(r) for r in migrated] == [encode_reading(r) for r in old]
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


def test_wal_mode_and_schema_version(tmp_path: Path) -> None:
    asyncio.run(_open_close(tmp_path))
    conn = sqlite3.connect(tmp_path / "outbox.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


async def _open_close(tmp_path: Path) -> None:
    async with Outbox(config(tmp_path)):
        pass


def test_full_disk_drops_oldest_unsent_and_keeps_going(tiny_disk: Path) -> None:
    # max_bytes far above what the disk holds: the disk, not the limit, runs out
    cfg = OutboxConfig(
        path=tiny_disk / "outbox.db", max_bytes=100 * 1024 * 1024, disk_reserve=256 * 1024
    )

    async def scenario() -> tuple[int, int, bool]:
        async with Outbox(cfg) as outbox:
            for i in range(60):
                await outbox.put_many(readings(500, start=i * 500))
                await outbox._flush()
            stats = await outbox.stats()
            rows = await outbox.read_batch(0, outbox.last_seq, 10**6)
            seqs = [r.seq for r in rows]
            assert seqs == sorted(seqs)
            assert stats.depth == len(seqs)
            return stats.dropped, outbox.last_seq, outbox.disk_full

    dropped, last, full = asyncio.run(scenario())
    assert dropped > 0
    assert not full  # room was made each time
    assert last == 30_000  # every reading got its number; the oldest were dropped and counted
