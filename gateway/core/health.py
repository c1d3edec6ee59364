"""Per-device health: an enum and the pure transition rule, plus the counters the status shows."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum

#: Consecutive failed polls after which a device counts as down (and backoff grows).
DOWN_AFTER = 3


class Health(StrEnum):
    """How a device is doing, as the scheduler sees it."""

    STARTING = "starting"  # not polled successfully yet, no failure either
    OK = "ok"  # last poll succeeded
    DEGRADED = "degraded"  # the last 1..DOWN_AFTER-1 polls failed
    DOWN = "down"  # DOWN_AFTER or more polls in a row failed; retried with backoff


def health_after(consecutive_failures: int) -> Health:
    """Health implied by the number of consecutive failed polls (0 = last poll succeeded)."""
    if consecutive_failures == 0:
        return Health.OK
    if consecutive_failures < DOWN_AFTER:
        return Health.DEGRADED
    return Health.DOWN


@dataclass
class DeviceStatus:
    """Live counters for one device; owned and mutated by its poll task only."""

    name: str
    health: Health = Health.STARTING
    consecutive_failures: int = 0
    polls_ok: int = 0
    polls_failed: int = 0
    overruns: int = 0  # poll slots skipped because a poll took longer than the interval
    last_ok_unix: float | None = None
    last_error: str | None = None
    errors_by_kind: Counter[str] = field(default_factory=Counter)
    # Input refused without counting as a failed poll, by reason ("replay": an encrypted BLE
    # advert whose counter is not newer than the last accepted one).
    dropped: Counter[str] = field(default_factory=Counter)
    # Readings held back by the device's deadbands (gateway/core/deadband.py): not stored.
    suppressed: int = 0
