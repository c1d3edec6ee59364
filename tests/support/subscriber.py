"""A platform-side test subscriber: collects every reading the gateway publishes and checks them."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiomqtt

#: A reading's identity at the platform (docs/mqtt.md): gateway id, outbox epoch, seq.
Key = tuple[str, str, int]


def message_keys(payload: dict[str, Any] | list[dict[str, Any]]) -> list[Key]:
    """The dedup key of every reading in one message, streetgate envelope or SenML pack.

    A message without an epoch (contract version 1) counts as epoch ``""``.
    """
    if isinstance(payload, list):  # SenML: the gateway id is the base name, "<gateway_id>:"
        gateway = str(payload[0]["bn"]).removesuffix(":")
        epoch = payload[0].get("epoch", "")  # once per pack, on the first record
        return [(gateway, epoch, r["seq"]) for r in payload]
    epoch = payload.get("epoch", "")
    return [(payload["gateway"], epoch, r["seq"]) for r in payload["readings"]]


@dataclass
class Delivery:
    """What the platform saw. It deduplicates as a platform must: on (gateway, epoch, seq)."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    readings: list[dict[str, Any]] = field(default_factory=list)
    keys: list[Key] = field(default_factory=list)  # one per reading, in arrival order

    def add(self, payload: dict[str, Any]) -> None:
        """Take one streetgate readings message."""
        self.messages.append(payload)
        self.readings.extend(payload.get("readings", []))
        self.keys.extend(message_keys(payload))

    def epochs(self) -> list[tuple[str, str]]:
        """Every (gateway, epoch) seen, in order of first arrival."""
        return list(dict.fromkeys((gateway, epoch) for gateway, epoch, _ in self.keys))

    @property
    def seqs(self) -> list[int]:
        self._one_epoch()
        return [seq for _, _, seq in self.keys]

    def distinct(self) -> set[int]:
        """Distinct seqs, for a test with one gateway and one outbox (asserted)."""
        return set(self.seqs)

    def distinct_keys(self) -> set[Key]:
        return set(self.keys)

    def _one_epoch(self) -> None:
        epochs = self.epochs()
        assert len(epochs) <= 1, f"readings of several outboxes {epochs}: compare keys, not seqs"

    def report(self) -> dict[str, int]:
        """Missing (gaps from 1 to the highest seen, per epoch), duplicated and misordered
        readings, under the key (gateway, epoch, seq); ``highest`` is the newest epoch's."""
        seen: set[Key] = set()
        highest: dict[tuple[str, str], int] = {}
        misordered = 0
        for key in self.keys:
            stream, seq = key[:2], key[2]
            if key not in seen and seq < highest.get(stream, 0):
                misordered += 1  # a new reading arrived after a later one of its epoch
            seen.add(key)
            highest[stream] = max(highest.get(stream, 0), seq)
        counts = Counter(self.keys)
        epochs = self.epochs()
        return {
            "received": len(self.keys),
            "distinct": len(seen),
            "missing": sum(highest.values()) - len(seen),
            "duplicated": sum(c - 1 for c in counts.values()),
            "misordered": misordered,
            "highest": highest[epochs[-1]] if epochs else 0,
        }

    def per_device(self) -> dict[str, dict[str, int]]:
        """Per device: readings received, distinct, duplicated and misordered.

        Sequence numbers are gateway-wide, so a gap cannot be attributed to a device; missing
        readings are counted globally by :meth:`report`.
        """
        result: dict[str, dict[str, int]] = {}
        seen: dict[str, set[Key]] = {}
        highest: dict[tuple[str, str, str], int] = {}
        for reading, key in zip(self.readings, self.keys, strict=True):
            device, seq = reading["device"], key[2]
            stream = (device, key[0], key[1])
            counts = result.setdefault(
                device, {"received": 0, "distinct": 0, "duplicated": 0, "misordered": 0}
            )
            counts["received"] += 1
            mine = seen.setdefault(device, set())
            if key in mine:
                counts["duplicated"] += 1
                continue
            if seq < highest.get(stream, 0):
                counts["misordered"] += 1
            mine.add(key)
            counts["distinct"] += 1
            highest[stream] = max(highest.get(stream, 0), seq)
        return result


class Subscriber:
    """Subscribes with a persistent session (QoS 1) and reconnects after broker restarts."""

    def __init__(
        self,
        host: str,
        port: int,
        topic: str,
        client_id: str = "test-platform",
        *,
        username: str | None = None,
        password: str | None = None,
    ):
        self._host, self._port, self._topic, self._id = host, port, topic, client_id
        self._username, self._password = username, password
        self.delivery = Delivery()
        self.subscribed = asyncio.Event()
        self._changed = asyncio.Event()

    async def run(self) -> None:
        while True:
            with contextlib.suppress(aiomqtt.MqttError):
                async with aiomqtt.Client(
                    self._host,
                    self._port,
                    identifier=self._id,
                    clean_session=False,
                    username=self._username,
                    password=self._password,
                ) as client:
                    await client.subscribe(self._topic, qos=1)
                    self.subscribed.set()
                    async for message in client.messages:
                        assert isinstance(message.payload, bytes)
                        self.delivery.add(json.loads(message.payload))
                        self._changed.set()
            await asyncio.sleep(0.2)

    async def wait_for(self, distinct: int, timeout: float) -> None:
        """Wait until at least ``distinct`` different readings (keys) have arrived."""
        async with asyncio.timeout(timeout):
            while len(self.delivery.distinct_keys()) < distinct:
                self._changed.clear()
                await self._changed.wait()
