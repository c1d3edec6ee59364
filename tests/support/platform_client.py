"""The platform's side of the command topic, for tests: send commands, collect replies by id."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiomqtt


class Platform:
    """A connected client that publishes on ``<prefix>/<gw>/cmd`` and reads ``.../reply``."""

    def __init__(self, client: aiomqtt.Client, gateway_id: str, prefix: str = "streetgate"):
        self.client = client
        self.cmd_topic = f"{prefix}/{gateway_id}/cmd"
        self.reply_topic = f"{prefix}/{gateway_id}/reply"
        self.replies: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
        self.order: list[dict[str, Any]] = []  # every reply, in arrival order
        self._changed = asyncio.Event()

    async def _listen(self) -> None:
        async for message in self.client.messages:
            assert isinstance(message.payload, bytes)
            assert not message.retain, "replies are never retained"
            reply = json.loads(message.payload)
            self.replies[reply["id"]].append(reply)
            self.order.append(reply)
            self._changed.set()

    async def send(self, payload: dict[str, Any] | bytes, *, retain: bool = False) -> None:
        """Publish a command (a dict is sent as JSON) at QoS 1."""
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        await self.client.publish(self.cmd_topic, data, qos=1, retain=retain)

    async def reply(
        self, command_id: str | None, nth: int = 1, timeout: float = 20
    ) -> dict[str, Any]:
        """The ``nth`` reply with ``command_id`` (waits for it; ``timeout`` only guards a hang)."""
        async with asyncio.timeout(timeout):
            while len(self.replies[command_id]) < nth:
                self._changed.clear()
                await self._changed.wait()
        return self.replies[command_id][nth - 1]

    async def call(
        self, command: str, args: dict[str, Any] | None = None, **extra: Any
    ) -> dict[str, Any]:
        """Send ``command`` with a fresh id and return its first reply."""
        command_id = uuid.uuid4().hex
        body: dict[str, Any] = {"id": command_id, "command": command, **extra}
        if args is not None:
            body["args"] = args
        await self.send(body)
        return await self.reply(command_id)


@asynccontextmanager
async def platform(
    host: str, port: int, gateway_id: str, username: str | None = None
) -> AsyncIterator[Platform]:
    """A :class:`Platform` subscribed to the gateway's replies."""
    async with aiomqtt.Client(host, port, username=username) as client:
        me = Platform(client, gateway_id)
        await client.subscribe(me.reply_topic, qos=1)
        async with asyncio.TaskGroup() as tg:
            listener = tg.create_task(me._listen(), name="test:platform")
            try:
                yield me
            finally:
                listener.cancel()
