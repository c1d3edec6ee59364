"""A platform-side test subscriber: collects every reading the gateway publishes and checks them."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiomqtt


@dataclass
class Delivery:
    """What the platform saw."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    readings: list[dict[str, Any]] = field(default_factory=list)

    @property
    def seqs(self) -> list[int]:
        return [r["seq"] for r in self.readings]

    def distinct(self) -> set[int]:
        return set(self.seqs)

    def report(self) -> dict[str, int]:
        """Missing (gaps from 1 to the highest seen), duplicated and misordered readings."""
        seqs = self.seqs
        seen: set[int] = set()
        highest = 0
        misordered = 0
        for seq in seqs:
            if seq not in seen and seq < highest:
                misordered += 1  # a new reading arrived after a later one
            seen.add(seq)
            highest = max(highest, seq)
        counts = Counter(seqs)
        return {
            "received": len(seqs),
            "distinct": len(seen),
            "missing": (highest - len(seen)) if seen else 0,
            "duplicated": sum(c - 1 for c in counts.values()),
            "misordered": misordered,
            "highest": highest,
        }

    def per_device(self) -> dict[str, dict[str, int]]:
        """Per device: readings received, distinct, duplicated and misordered.

        Sequence numbers are gateway-wide, so a gap cannot be attributed to a device; missing
        readings are counted globally by :meth:`report`.
        """
        result: dict[str, dict[str, int]] = {}
        seen: dict[str, set[int]] = {}
        highest: dict[str, int] = {}
        for reading in self.readings:
            device, seq = reading["device"], reading["seq"]
            counts = result.setdefault(
                device, {"received": 0, "distinct": 0, "duplicated": 0, "misordered": 0}
            )
            counts["received"] += 1
            mine = seen.setdefault(device, set())
            if seq in mine:
                counts["duplicated"] += 1
                continue
            if seq < highest.get(device, 0):
                counts["misordered"] += 1
            mine.add(seq)
            counts["distinct"] += 1
            highest[device] = max(highest.get(device, 0), seq)
        return result


class Subscriber:
    """Subscribes with a persistent session (QoS 1) and reconnects after broker restarts."""

    def __init__(self, host: str, port: int, topic: str, client_id: str = "test-platform"):
        self._host, self._port, self._topic, self._id = host, port, topic, client_id
        self.delivery = Delivery()
        self.subscribed = asyncio.Event()
        self._changed = asyncio.Event()

    async def run(self) -> None:
        while True:
            with contextlib.suppress(aiomqtt.MqttError):
                async with aiomqtt.Client(
                    self._host, self._port, identifier=self._id, clean_session=False
                ) as client:
                    await client.subscribe(self._topic, qos=1)
                    self.subscribed.set()
                    async for message in client.messages:
                        assert isinstance(message.payload, bytes)
                        payload = json.loads(message.payload)
                        self.delivery.messages.append(payload)
                        self.delivery.readings.extend(payload.get("readings", []))
                        self._changed.set()
            await asyncio.sleep(0.2)

    async def wait_for(self, distinct: int, timeout: float) -> None:
        """Wait until at least ``distinct`` different sequence numbers have arrived."""
        async with asyncio.timeout(timeout):
            while len(self.delivery.distinct()) < distinct:
                self._changed.clear()
                await self._changed.wait()
