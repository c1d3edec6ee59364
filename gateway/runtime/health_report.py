"""The gateway's health report: one snapshot of every counter, published retained over MQTT.

Published on ``<prefix>/<gateway_id>/health`` every ``mqtt.health_interval``, at once when any
device's health or the forwarder's state changes, and after every (re)connection, so the
platform always holds a fresh retained copy. The same snapshot serves local tools.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from gateway import __version__
from gateway.core.clock import SystemClock
from gateway.core.health import DeviceStatus
from gateway.store.outbox import Outbox
from gateway.uplink.forwarder import Forwarder

log = logging.getLogger(__name__)

#: How often changes in health are looked for (cheap: compares a few enums).
CHANGE_CHECK_INTERVAL = 1.0

#: With MQTT 5 a health report expires at the broker after this many health intervals.
HEALTH_EXPIRY_INTERVALS = 3


def device_report(status: DeviceStatus) -> dict[str, Any]:
    """One device's part of the report."""
    return {
        "health": status.health.value,
        "last_ok": _iso(status.last_ok_unix),
        "consecutive_failures": status.consecutive_failures,
        "polls_ok": status.polls_ok,
        "polls_failed": status.polls_failed,
        "overruns": status.overruns,
        "errors": dict(status.errors_by_kind),
        "dropped": dict(status.dropped),
        "suppressed": status.suppressed,
        "last_error": status.last_error,
    }


def _iso(unix: float | None) -> str | None:
    if unix is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(unix))


class HealthReporter:
    """Builds snapshots and publishes them; run ``run()`` as a task (``status:health``)."""

    def __init__(
        self,
        gateway_id: str,
        outbox: Outbox,
        forwarder: Forwarder,
        *,
        statuses: Iterable[Mapping[str, DeviceStatus]],
        topic: str,
        interval: float,
        clock: SystemClock,
        insecure: Sequence[str] = (),
        reload: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self._gateway_id = gateway_id
        self._outbox = outbox
        self._forwarder = forwarder
        self._statuses = list(statuses)
        self._topic = topic
        self._interval = interval
        self._clock = clock
        self._insecure = list(insecure)  # gateway/config/transport_security.py; empty: verified TLS
        self._reload = reload  # gateway/runtime/reload.py ReloadRecord.report
        self._started = time.monotonic()
        self.published = 0

    def devices(self) -> dict[str, DeviceStatus]:
        """Every device's live status by name."""
        return {name: s for group in self._statuses for name, s in group.items()}

    async def snapshot(self) -> dict[str, Any]:
        """Everything the platform (or a technician) wants to know, now."""
        stats = await self._outbox.stats()
        fwd = self._forwarder.stats
        now_ms = self._clock.now_ms()
        return {
            "gateway": self._gateway_id,
            "version": __version__,
            "ts": _iso(now_ms / 1000),
            "uptime_s": round(time.monotonic() - self._started, 1),
            "clock_synchronised": self._clock.synchronised(),
            "insecure": self._insecure,
            "forwarder": {
                "state": fwd.state.value,
                "broker": fwd.broker,
                "connected_since": _iso(fwd.connected_since),
                "failovers": fwd.failovers,
                "connects": fwd.connects,
                "connection_failures": fwd.connection_failures,
                "messages_published": fwd.messages_published,
                "readings_published": fwd.readings_published,
                "last_error": fwd.last_error,
                "incoming_dropped": dict(fwd.incoming_dropped),
            },
            "outbox": {
                "epoch": self._outbox.epoch,
                "depth": stats.depth,
                "bytes": stats.used_bytes,
                "max_bytes": stats.max_bytes,
                "oldest_age_s": None
                if stats.oldest_ts_ms is None
                else round(max(0, now_ms - stats.oldest_ts_ms) / 1000, 1),
                "dropped": stats.dropped,
                "purged": stats.purged,
                "disk_full": self._outbox.disk_full,
                "quarantined": None
                if self._outbox.quarantined is None
                else str(self._outbox.quarantined),
                "pending": stats.pending,
                "last_seq": stats.last_seq,
            },
            "devices": {name: device_report(s) for name, s in sorted(self.devices().items())},
            "reload": None if self._reload is None else self._reload(),
        }

    def _signature(self) -> tuple[object, ...]:
        devices = tuple(sorted((n, s.health) for n, s in self.devices().items()))
        fwd = self._forwarder.stats
        return (devices, fwd.state, fwd.connects, fwd.broker)

    async def publish(self) -> bool:
        """Publish one snapshot now (False when the uplink is down)."""
        payload = json.dumps(await self.snapshot(), separators=(",", ":")).encode()
        # MQTT 5: the broker forgets a report that was not renewed in three intervals, so a
        # retained health never looks current for a gateway gone quiet (its status says why).
        done = await self._forwarder.publish_retained(
            self._topic, payload, expires_after=HEALTH_EXPIRY_INTERVALS * self._interval
        )
        if done:
            self.published += 1
        return done

    async def run(self) -> None:
        """Publish periodically and on change, until cancelled."""
        last_signature: tuple[object, ...] | None = None
        last_published = -float("inf")
        while True:
            signature = self._signature()
            due = time.monotonic() - last_published >= self._interval
            if (signature != last_signature or due) and await self.publish():
                last_signature = signature
                last_published = time.monotonic()
            await asyncio.sleep(CHANGE_CHECK_INTERVAL)
