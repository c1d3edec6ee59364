"""An in-memory ReadingSource (gateway/uplink/source.py): the forwarder without an outbox."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence

from gateway.core.model import Backlog, StoredReading


class MemorySource:
    """Readings in a list; ``acked`` is how far the forwarder acknowledged them."""

    def __init__(self, readings: Iterable[StoredReading] = (), epoch: str = "0123456789abcdef"):
        self.readings = list(readings)
        self.epoch = epoch
        self.acked = 0
        self._added = asyncio.Condition()

    async def add(self, readings: Iterable[StoredReading]) -> None:
        """Readings committed now (a live source)."""
        async with self._added:
            self.readings.extend(readings)
            self._added.notify_all()

    def backlog(self) -> Backlog:
        return Backlog(self.acked, self.readings[-1].seq if self.readings else self.acked)

    async def fetch(self, after_seq: int, upto_seq: int, limit: int) -> Sequence[StoredReading]:
        return [r for r in self.readings if after_seq < r.seq <= upto_seq][:limit]

    def ack(self, upto_seq: int) -> None:
        self.acked = max(self.acked, upto_seq)

    async def wait_committed(self, after_seq: int) -> None:
        async with self._added:
            await self._added.wait_for(lambda: self.backlog().last_seq > after_seq)
