"""Attack tests for doctor's look at the broker's port: what answers there is hostile."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from gateway.diagnostics.port_probe import BANNER_SHOWN, AnswerKind, probe


@contextlib.asynccontextmanager
async def flooding_server(chunk: bytes, total: int) -> AsyncIterator[tuple[int, list[int]]]:
    """A port that answers any connection with ``total`` bytes; reports how many it got out."""
    sent: list[int] = []

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        count = 0
        try:
            while count < total:
                writer.write(chunk)
                await writer.drain()
                count += len(chunk)
        except OSError:
            pass
        finally:
            sent.append(count)
            writer.close()

    server = await asyncio.start_server(client, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1], sent


def test_a_flood_is_read_bounded_and_shown_short_and_printable() -> None:
    async def scenario() -> None:
        chunk = b"\x1b[2J\x07" + b"A" * 4092  # terminal escapes, a bell, no line end
        async with flooding_server(chunk, 64 * 1024 * 1024) as (port, _):
            answer = await probe("127.0.0.1", port, 2.0)
        assert answer is not None
        assert answer.kind is AnswerKind.OTHER
        assert len(answer.banner) <= BANNER_SHOWN
        assert "\x1b" not in answer.banner
        assert "\x07" not in answer.banner

    asyncio.run(scenario())


def test_a_fake_connack_with_a_long_tail_is_judged_by_its_first_bytes() -> None:
    async def scenario() -> None:
        async with flooding_server(b"\x20\x02\x00\x04" + b"\xff" * 1000, 1004) as (port, _):
            answer = await probe("127.0.0.1", port, 2.0, username="u", password="p")
        assert answer is not None
        assert answer.kind is AnswerKind.CONNACK
        assert answer.code == 4
        assert answer.refused_credentials

    asyncio.run(scenario())
