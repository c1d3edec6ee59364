"""Poll bookkeeping shared by the scheduler and self-scheduling drivers: slots, stamps, health.

Kept in the core (not in gateway.runtime.scheduler) so drivers that schedule themselves (an
RS-485 bus, a BLE scanner) use the same rules without importing the runtime above them.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence

from gateway.core.errors import DeviceError
from gateway.core.health import DeviceStatus, health_after
from gateway.core.model import Quality, Reading, Sample

__all__ = ["BACKOFF_CAP", "next_slot", "record_failure", "record_success", "stamp"]

# The scheduler's logger: device health changes were always logged under it, and operators
# filter journal output by that name.
log = logging.getLogger("gateway.runtime.scheduler")

#: Longest wait between attempts while a device is down.
BACKOFF_CAP = 300.0


def next_slot(start: float, interval: float, now: float) -> float:
    """The first poll slot ``start + k × interval`` (k ≥ 1) that lies after ``now``."""
    k = max(1, math.floor((now - start) / interval) + 1)
    return start + k * interval


def stamp(device: str, samples: Sequence[Sample], ts_ms: int, quality: Quality) -> list[Reading]:
    """Readings for one poll: every sample gets the same timestamp and quality."""
    return [Reading(device, s.metric, s.value, s.unit, ts_ms, quality) for s in samples]


def record_success(status: DeviceStatus) -> None:
    """Count a successful poll: health back to OK (logged when it changes)."""
    if status.health is not health_after(0):
        log.info("device %s: %s -> ok", status.name, status.health.value)
    status.consecutive_failures = 0
    status.health = health_after(0)
    status.polls_ok += 1
    status.last_ok_unix = time.time()


def record_failure(status: DeviceStatus, exc: DeviceError) -> None:
    """Count a failed poll: error counters, health by :func:`health_after` (logged on change)."""
    status.consecutive_failures += 1
    status.polls_failed += 1
    status.errors_by_kind[type(exc).__name__] += 1
    status.last_error = str(exc)
    health = health_after(status.consecutive_failures)
    if health is not status.health:
        log.warning("device %s: %s -> %s: %s", status.name, status.health.value, health.value, exc)
    status.health = health
