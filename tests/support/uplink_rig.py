"""Configs and readings for tests that run the pipeline (outbox and forwarder) against brokers."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

from gateway.config.model import GatewayConfig, parse_config
from gateway.core.model import Reading

__all__ = ["meter_readings", "pipeline_config"]


def pipeline_config(
    tmp_path: Path, gateway_id: str, broker: Mapping[str, object], **mqtt: object
) -> GatewayConfig:
    """A config without devices, reconnecting within a second, its outbox in ``tmp_path``.

    ``broker`` is the ``[mqtt]`` keys naming the broker(s) (``host``/``port`` or ``brokers``);
    ``mqtt`` adds or overrides any other ``[mqtt]`` key.
    """
    return parse_config(
        {
            "gateway_id": gateway_id,
            "mqtt": {
                **broker,
                "keepalive": "5s",
                "reconnect_min": "100ms",
                "reconnect_max": "1s",
                **mqtt,
            },
            "outbox": {"path": str(tmp_path / "outbox.db"), "commit_interval": "50ms"},
        },
        "test",
    )


def meter_readings(n: int, start: int) -> list[Reading]:
    """``n`` energy readings of meter-1, valued ``start``, ``start + 1``, ... (taken now)."""
    now = int(time.time() * 1000)
    return [Reading("meter-1", "energy", float(i), "kWh", now) for i in range(start, start + n)]
