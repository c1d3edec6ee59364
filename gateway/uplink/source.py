"""The seam between the store and the uplink: what the forwarder needs from wherever readings wait.

The outbox (gateway/store/outbox.py) is the real source; a test fake is a list and a few lines
(tests/support/reading_source.py), the way httpx's ``MockTransport`` stands in for the network.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from gateway.core.model import Backlog, StoredRow

__all__ = ["Backlog", "ReadingSource"]


class ReadingSource(Protocol):
    """Committed readings in sequence order, fetched by the uplink and acknowledged back."""

    @property
    def epoch(self) -> str:
        """The source's epoch: with the gateway id and ``seq``, a reading's identity."""
        ...

    def backlog(self) -> Backlog:
        """The acknowledged and the last committed sequence number, now."""
        ...

    async def fetch(self, after_seq: int, upto_seq: int, limit: int) -> Sequence[StoredRow]:
        """Up to ``limit`` readings with ``after_seq < seq <= upto_seq``, in order, as rows
        (a :class:`~gateway.core.model.StoredReading` is one). They are about to be
        published: from now on the source must not drop them unacknowledged."""
        ...

    def ack(self, upto_seq: int) -> None:
        """The broker has every reading up to ``upto_seq``: the source may delete them."""
        ...

    async def wait_committed(self, after_seq: int) -> None:
        """Return once a reading with a sequence number above ``after_seq`` is committed."""
        ...
