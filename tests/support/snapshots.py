"""A realistic health snapshot, as gateway/runtime/health_report.py builds it, without a gateway."""

from __future__ import annotations

from collections import Counter
from typing import Any

from gateway import __version__
from gateway.core.health import DeviceStatus, Health
from gateway.runtime.health_report import device_report

__all__ = ["snapshot"]


def snapshot() -> dict[str, Any]:
    """A gateway with three devices (ok, degraded, down), connected, with a small backlog."""
    meter = DeviceStatus("meter-1", Health.OK, 0, 120, 2, 1, 1_765_000_000.0, None)
    meter.errors_by_kind = Counter({"DeviceTimeout": 2})
    climate = DeviceStatus("climate-1", Health.DEGRADED, 1, 50, 1, 0, 1_765_000_000.0, "timeout")
    climate.errors_by_kind = Counter({"DeviceTimeout": 1})
    door = DeviceStatus("door-1", Health.DOWN, 5, 0, 5, 0, None, "no answer")
    door.errors_by_kind = Counter({"DeviceUnreachable": 4, "ProtocolError": 1})
    door.dropped = Counter({"replay": 3})
    return {
        "gateway": "cabinet-12",
        "version": __version__,
        "ts": "2025-12-06T12:00:00Z",
        "uptime_s": 3600.5,
        "clock_synchronised": True,
        "insecure": [],
        "forwarder": {
            "state": "connected",
            "connects": 2,
            "connection_failures": 1,
            "messages_published": 40,
            "readings_published": 400,
            "last_error": "connection lost",
            "incoming_dropped": {},
        },
        "outbox": {
            "epoch": "e1",
            "depth": 12,
            "bytes": 65536,
            "max_bytes": 64_000_000,
            "oldest_age_s": 4.5,
            "dropped": 0,
            "purged": 0,
            "disk_full": False,
            "quarantined": None,
            "pending": 0,
            "last_seq": 412,
        },
        "devices": {s.name: device_report(s) for s in (climate, door, meter)},
        "reload": {
            "counts": {"applied": 1, "invalid": 1, "refused": 0, "rolled_back": 0},
            "last": {
                "result": "invalid",
                "at": "2025-12-06T11:58:00Z",
                "message": "/etc/streetgate/config.toml not reloaded: 1 issue(s) in the file; "
                "still running on the previous config",
                "issues": [{"key": "mqtt.port", "message": "expected an integer"}],
            },
        },
    }
