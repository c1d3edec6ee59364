"""Limits on what arrives from the broker (commands): size, rate and queue, checked before queueing.

aiomqtt hands every incoming message to its queue with ``put_nowait``; :class:`Inbound` gives
it a queue class that checks the message first and drops, counting by reason, what it refuses:

- ``oversize``: a payload over ``max_bytes``, before anything decodes or copies it (with
  MQTT 5 the broker already drops it, see ``MAX_INCOMING_PACKET`` in gateway/uplink/forwarder.py);
- ``rate_limited``: more than ``rate`` messages a second, beyond a burst of ``burst``
  (:class:`TokenBucket`). Dropped unanswered: a reply each would let whoever floods the
  command topic make the gateway publish at the flood's rate;
- ``queue_full``: ``queue`` messages already wait for their handler (the newest is dropped).

So at most ``queue`` payloads of at most ``max_bytes`` wait in memory, whatever the broker sends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiomqtt

log = logging.getLogger(__name__)

__all__ = ["MAX_COMMAND_BYTES", "Inbound", "InboundLimits", "TokenBucket"]

#: Larger command payloads are refused unread (a config-set of a big config is a few kB); the
#: uplink checks it on arrival, gateway.management.protocol again when it parses.
MAX_COMMAND_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class InboundLimits:
    """How much may arrive: bytes per message, messages per second (and burst), queued."""

    max_bytes: int = MAX_COMMAND_BYTES
    rate: float = 5.0
    burst: int = 20
    queue: int = 16


class TokenBucket:
    """``rate`` tokens a second up to ``burst``; :meth:`take` spends one if there is one."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._at = now

    def take(self, now: float) -> bool:
        """Whether a token was there at ``now`` (monotonic seconds); spends it if so."""
        elapsed = max(0.0, now - self._at)
        self._tokens = min(self._burst, self._tokens + elapsed * self._rate)
        self._at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


class Inbound:
    """Checks incoming messages against ``limits``; counts refusals in ``dropped`` by reason.

    One per forwarder, kept across connections (a reconnect does not refill the bucket);
    pass :attr:`queue_type` to each ``aiomqtt.Client``.
    """

    def __init__(
        self,
        limits: InboundLimits,
        dropped: dict[str, int],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits
        self.dropped = dropped
        self._clock = clock
        self._bucket = TokenBucket(limits.rate, limits.burst, clock())
        inbound = self

        class CheckedQueue(asyncio.Queue[aiomqtt.Message]):
            def put_nowait(self, item: aiomqtt.Message) -> None:
                if inbound.admit(_size(item.payload), waiting=self.qsize()):
                    super().put_nowait(item)

        self.queue_type: type[asyncio.Queue[aiomqtt.Message]] = CheckedQueue

    def admit(self, size: int, *, waiting: int) -> bool:
        """Whether a message of ``size`` bytes may join the ``waiting`` ones; counts refusals."""
        if size > self.limits.max_bytes:
            reason = "oversize"
        elif not self._bucket.take(self._clock()):
            reason = "rate_limited"
        elif waiting >= self.limits.queue:
            reason = "queue_full"
        else:
            return True
        count = self.dropped.get(reason, 0) + 1
        self.dropped[reason] = count
        if count == 1 or count % 100 == 0:
            log.warning(
                "incoming message dropped (%s; %d so far): %s",
                reason,
                count,
                _why(reason, size, self.limits),
            )
        return False


def _size(payload: object) -> int:
    # paho hands payloads over as bytes; len() reads the size without copying anything
    return len(payload) if isinstance(payload, bytes | bytearray | str) else 0


def _why(reason: str, size: int, limits: InboundLimits) -> str:
    if reason == "oversize":
        return f"{size} bytes; at most {limits.max_bytes}"
    if reason == "rate_limited":
        return f"more than {limits.rate:g} a second (burst {limits.burst})"
    return f"{limits.queue} messages already wait"
