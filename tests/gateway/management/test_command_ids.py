"""Remembered command replies across restarts (gateway/management/command_ids.py), on real files."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

from gateway.management.command_ids import MAX_FILE, ReplyMemory, replies_path


def test_lasting_replies_survive_and_others_do_not(tmp_path: Path) -> None:
    path = replies_path(tmp_path / "outbox.db")
    now = [1000.0]

    async def scenario() -> None:
        first = ReplyMemory(path, 64, max_age=60, clock=lambda: now[0])
        await first.remember("r1", "restart", b'{"status":"accepted"}')
        await first.remember("p1", "ping", b'{"status":"ok"}')
        assert first.get("p1") == b'{"status":"ok"}'
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        again = ReplyMemory(path, 64, max_age=60, clock=lambda: now[0])
        await again.load()
        assert again.get("r1") == b'{"status":"accepted"}'
        assert again.get("p1") is None  # a ping may run again
        now[0] += 61
        assert again.get("r1") is None  # too old
        later = ReplyMemory(path, 64, max_age=60, clock=lambda: now[0])
        await later.load()
        assert len(later) == 0

    asyncio.run(scenario())


def test_a_file_that_is_not_ours_is_ignored_and_left_alone(tmp_path: Path) -> None:
    path = replies_path(tmp_path / "outbox.db")
    secret = tmp_path / "secret.key"
    secret.write_text(json.dumps({"format": 1, "replies": []}))

    async def scenario() -> None:
        path.symlink_to(secret)
        memory = ReplyMemory(path, 64)
        await memory.load()  # a symlink is not followed
        assert len(memory) == 0
        path.unlink()
        path.write_bytes(b" " * (MAX_FILE + 1))
        await memory.load()  # too large: refused unread
        path.unlink()
        path.write_text("not json")
        await memory.load()
        assert path.read_text() == "not json"
        assert len(memory) == 0

    asyncio.run(scenario())
