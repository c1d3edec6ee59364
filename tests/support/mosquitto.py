"""The tests' broker: LocalMosquitto, failing the test clearly when mosquitto is missing."""

from __future__ import annotations

import pytest

from gateway.core.errors import BrokerNotInstalled
from simulator.broker import LocalMosquitto, free_port

__all__ = ["Mosquitto", "free_port"]


class Mosquitto(LocalMosquitto):
    """LocalMosquitto whose start fails the test (not errors it) when mosquitto is missing."""

    def start(self, timeout: float = 10.0) -> None:
        try:
            super().start(timeout)
        except BrokerNotInstalled as exc:
            pytest.fail(f"the tests need a real MQTT broker: {exc}")
