"""Readings stored as packed rows naming a series (migration 0005_series)."""

from __future__ import annotations

import asyncio
import math
import sqlite3
from pathlib import Path

import pytest

from gateway.core.errors import StoreError
from gateway.core.model import Quality, Reading, SeriesRows, StoredReading
from gateway.store import outbox as outbox_module
from gateway.store.outbox import MIGRATIONS, Outbox
from gateway.uplink.envelope import build_message, encode_reading
from tests.gateway.store.test_outbox import config, fill

STAMPED = [
    Reading("m-1", "voltage", 230.1, "V", 1_764_230_400_123, Quality.CLOCK_UNSYNCED),
    Reading("m-1", "voltage", 230.2, "V", 1_764_230_401_123),
    Reading("m-1", "x", float("nan"), "", 0),
    Reading("clé-2", "y", float("inf"), "W", 5),
    Reading("m-1", "voltage", 230.3, "V", 1_764_230_402_123),
]


def test_a_row_is_four_numbers_and_the_view_names_them(tmp_path: Path) -> None:
    async def scenario() -> tuple[list[StoredReading], SeriesRows]:
        async with Outbox(config(tmp_path)) as outbox:
            await fill(outbox, STAMPED)
            return (
                await outbox.read_batch(0, outbox.last_seq, 10),
                await outbox.fetch(0, outbox.last_seq, 10),
            )

    typed, packed = asyncio.run(scenario())
    conn = sqlite3.connect(tmp_path / "outbox.db")
    columns = [r[1] for r in conn.execute("PRAGMA table_info(readings)")]
    assert columns == ["seq", "series", "value", "ts_ms"]
    series = conn.execute("SELECT device, metric, unit, quality FROM series ORDER BY id").fetchall()
    assert series == [
        ("m-1", "voltage", "V", "clock_unsynced"),
        ("m-1", "voltage", "V", "good"),
        ("m-1", "x", "", "good"),
        ("clé-2", "y", "W", "good"),
    ]
    view = conn.execute("SELECT * FROM stored_readings ORDER BY seq").fetchall()
    assert [tuple(r) for r in view] == [
        (1, "m-1", "voltage", 230.1, "V", 1_764_230_400_123, "clock_unsynced"),
        (2, "m-1", "voltage", 230.2, "V", 1_764_230_401_123, "good"),
        (3, "m-1", "x", None, "", 0, "good"),
        (4, "clé-2", "y", float("inf"), "W", 5, "good"),
        (5, "m-1", "voltage", 230.3, "V", 1_764_230_402_123, "good"),
    ]
    # fetch: the same readings (None for NaN), made into rows on access
    assert len(packed) == 5
    assert list(packed) == view
    assert packed[-1] == view[-1]
    assert packed[1:3] == view[1:3]
    assert [r.seq for r in typed] == [1, 2, 3, 4, 5]
    assert math.isnan(typed[2].value)
    assert [encode_reading(r) for r in packed] == [encode_reading(r) for r in typed]


def test_series_keep_their_ids_across_restarts(tmp_path: Path) -> None:
    async def scenario() -> list[tuple[object, ...]]:
        async with Outbox(config(tmp_path)) as outbox:
            await fill(outbox, STAMPED[:2])
        async with Outbox(config(tmp_path)) as outbox:
            await fill(outbox, STAMPED)
            return list(await outbox.fetch(0, outbox.last_seq, 10))

    rows = asyncio.run(scenario())
    assert [r[1:3] + r[4:5] + r[6:] for r in rows] == [
        (r.device, r.metric, r.unit, r.quality) for r in STAMPED[:2] + STAMPED
    ]
    conn = sqlite3.connect(tmp_path / "outbox.db")
    assert conn.execute("SELECT count(*) FROM series").fetchone()[0] == 4


def test_series_no_reading_names_are_forgotten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past MAX_SERIES, the series of delivered readings go; rows read before keep theirs."""
    monkeypatch.setattr(outbox_module, "MAX_SERIES", 3)
    many = [Reading("m", f"metric-{i}", float(i), "V", 1000 + i) for i in range(6)]

    async def scenario() -> tuple[bytes, bytes, int]:
        async with Outbox(config(tmp_path)) as outbox:
            await fill(outbox, many)
            before = await outbox.fetch(0, outbox.last_seq, 10)
            expected = build_message("g", epoch="e", historical=False, readings=list(before))
            outbox.ack(5)  # only metric-5 stays stored
            await outbox._flush()
            await fill(outbox, [Reading("m", "fresh", 1.5, "A", 2000)])
            after = await outbox.fetch(5, outbox.last_seq, 10)
            assert list(after) == [
                (6, "m", "metric-5", 5.0, "V", 1005, "good"),
                (7, "m", "fresh", 1.5, "A", 2000, "good"),
            ]
            got = build_message("g", epoch="e", historical=False, readings=before)
            assert got == expected  # the old rows still encode with their own series
            again = build_message("g", epoch="e", historical=False, readings=after)
            return got, again, outbox.last_seq

    _, again, last = asyncio.run(scenario())
    assert last == 7
    assert b'"metric":"fresh"' in again
    conn = sqlite3.connect(tmp_path / "outbox.db")
    names = [r[0] for r in conn.execute("SELECT metric FROM series ORDER BY id")]
    assert names == ["metric-5", "fresh"]


def test_a_failed_commit_takes_its_new_series_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_commit = Outbox._commit
    failures: list[sqlite3.Error] = []

    def failing_commit(self: Outbox, *args: object) -> None:
        if failures:
            raise failures.pop()
        real_commit(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(Outbox, "_commit", failing_commit)

    async def scenario() -> list[tuple[object, ...]]:
        async with Outbox(config(tmp_path)) as outbox:
            await fill(outbox, STAMPED[:1])
            failures.append(sqlite3.DatabaseError("disk I/O error"))
            with pytest.raises(StoreError, match="disk I/O error"):
                await fill(outbox, STAMPED[2:3])
            await fill(outbox, STAMPED[3:4])
            return list(await outbox.fetch(0, outbox.last_seq, 10))

    rows = asyncio.run(scenario())
    assert [r[2] for r in rows] == ["voltage", "y"]
    conn = sqlite3.connect(tmp_path / "outbox.db")
    assert conn.execute("SELECT id, metric FROM series ORDER BY id").fetchall() == [
        (1, "voltage"),
        (2, "y"),
    ]


def test_an_outbox_of_version_4_keeps_every_reading(tmp_path: Path) -> None:
    """Migration 0005_series packs the typed rows of 0004 without losing or changing one."""
    path = tmp_path / "outbox.db"
    old = [
        (7, "m-1", "voltage", 230.1, "V", 1_764_230_400_123, "good"),
        (8, "m-1", "energy", 1e21, "kWh", 1_764_230_400_123, "good"),
        (9, "clé-2", "t", -0.5, "", 1_764_230_401_000, "clock_unsynced"),
        (10, "m-3", "x", None, "Cel", 1_764_230_402_005, "good"),
        (11, "m-1", "voltage", 230.4, "V", 1_764_230_403_123, "good"),
    ]
    conn = sqlite3.connect(path, isolation_level=None)
    version = next(n for n, (name, _) in enumerate(MIGRATIONS, 1) if name == "0004_typed_readings")
    for number, (_, sql) in enumerate(MIGRATIONS[:version], start=1):
        conn.executescript(f"BEGIN; {sql}; PRAGMA user_version={number}; COMMIT;")
    conn.executemany("INSERT INTO readings VALUES (?, ?, ?, ?, ?, ?, ?)", old)
    conn.execute("UPDATE meta SET value = 12 WHERE key = 'next_seq'")
    conn.close()

    async def scenario() -> tuple[list[tuple[object, ...]], int]:
        async with Outbox(config(tmp_path)) as outbox:
            await fill(outbox, [Reading("m-1", "voltage", 1.0, "V", 5)])
            return list(await outbox.fetch(0, outbox.last_seq, 100)), outbox.last_seq

    rows, last = asyncio.run(scenario())
    assert last == 12
    assert rows == [*old, (12, "m-1", "voltage", 1.0, "V", 5, "good")]
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert conn.execute("SELECT count(*) FROM series").fetchone()[0] == 4
