"""Retry policy: capped exponential backoff with jitter, as a pure function."""

from __future__ import annotations

import random


def next_delay(attempt: int, rng: random.Random, base: float, cap: float) -> float:
    """Seconds to wait before retry number ``attempt`` (0 for the first retry).

    The ceiling doubles per attempt from ``base`` up to ``cap``; the delay is drawn uniformly
    from the upper half of the ceiling ("equal jitter"), so retries never come in lockstep
    from a fleet of gateways (a thundering herd after a broker restart) and never drop to zero.
    """
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt}")
    if base <= 0 or cap < base:
        raise ValueError(f"need 0 < base <= cap, got base={base}, cap={cap}")
    ceiling = cap if attempt >= 63 else min(cap, base * (2.0**attempt))
    return ceiling / 2 + rng.uniform(0.0, ceiling / 2)
