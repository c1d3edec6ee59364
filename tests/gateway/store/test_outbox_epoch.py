"""The outbox epoch: made with the outbox, kept across restarts, new with every new outbox."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from pathlib import Path

from gateway.config.model import OutboxConfig
from gateway.core.model import Reading
from gateway.store.outbox import EPOCH_PATTERN, MIGRATIONS, Outbox


def _config(path: Path) -> OutboxConfig:
    return OutboxConfig.model_validate({"path": path, "disk_reserve": 0})


async def _epoch_and_last_seq(path: Path, add: int = 0) -> tuple[str, int]:
    async with Outbox(_config(path)) as outbox:
        if add:
            await outbox.put_many(
                [Reading("m-1", "voltage", 230.0, "V", 1_764_000_000_000 + i) for i in range(add)]
            )
            await outbox._flush()
        return outbox.epoch, outbox.last_seq


def test_the_epoch_is_random_printable_and_kept_across_restarts(tmp_path: Path) -> None:
    first, seq = asyncio.run(_epoch_and_last_seq(tmp_path / "a.db", add=3))
    assert re.fullmatch(EPOCH_PATTERN, first)
    again, seq_again = asyncio.run(_epoch_and_last_seq(tmp_path / "a.db", add=2))
    assert (again, seq, seq_again) == (first, 3, 5)
    others = {asyncio.run(_epoch_and_last_seq(tmp_path / f"o{i}.db"))[0] for i in range(20)}
    assert len(others) == 20
    assert first not in others


def test_an_outbox_from_before_epochs_gets_one_and_keeps_its_sequence(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for number, (_, sql) in enumerate(MIGRATIONS[:2], start=1):
        conn.executescript(f"BEGIN; {sql}; PRAGMA user_version={number}; COMMIT;")
    conn.execute("UPDATE meta SET value = 81 WHERE key = 'next_seq'")
    conn.close()
    epoch, last_seq = asyncio.run(_epoch_and_last_seq(path, add=1))
    assert re.fullmatch(EPOCH_PATTERN, epoch)
    assert last_seq == 81
    assert asyncio.run(_epoch_and_last_seq(path))[0] == epoch


def test_a_quarantined_outbox_is_replaced_by_one_with_a_new_epoch(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    old, _ = asyncio.run(_epoch_and_last_seq(path, add=4))
    with path.open("r+b") as f:  # keep the SQLite magic, damage the rest of the header
        f.seek(16)
        f.write(b"\xff" * 84)
    for side in ("-wal", "-shm"):
        path.with_name(path.name + side).unlink(missing_ok=True)
    new, last_seq = asyncio.run(_epoch_and_last_seq(path, add=1))
    assert list(tmp_path.glob("outbox.db.corrupt-*"))
    assert last_seq == 1  # seq restarts ...
    assert new != old  # ... under a new epoch, so (gateway, epoch, seq) stays unique
