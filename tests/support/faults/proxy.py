"""A controllable TCP proxy on loopback, between the gateway and the broker.

Modes:
- ``pass``: bytes flow both ways;
- ``blackhole``: connections stay open but every byte is dropped (new ones are accepted and
  starved too): the dead link that a QoS 1 client only notices when its keepalive expires.
  Leaving it aborts the connections that lost bytes, as their streams are broken;
- ``slow``: every chunk is delayed by ``delay`` seconds;
``reset()`` aborts every open connection with a TCP RST.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from types import TracebackType
from typing import Literal, Self

Mode = Literal["pass", "blackhole", "slow"]


class FaultProxy:
    """``async with FaultProxy(target_port) as proxy``: point the gateway at ``proxy.port``."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self._target = (target_host, target_port)
        self.mode: Mode = "pass"
        self.delay = 0.0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._damaged: set[asyncio.StreamWriter] = set()
        self.port = 0
        self.connections = 0

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        self.reset()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def set_mode(self, mode: Mode, delay: float = 0.0) -> None:
        """Switch mode; leaving ``blackhole`` lets held-back bytes flow again."""
        self.mode = mode
        self.delay = delay
        if mode != "blackhole":
            for writer in list(self._damaged):
                writer.transport.abort()
            self._damaged.clear()

    def reset(self) -> None:
        """Abort every open connection with RST (SO_LINGER 0), as a crashed NAT box would."""
        for writer in list(self._writers):
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer), name="proxy:up"),
            asyncio.create_task(self._pump(up_reader, writer), name="proxy:down"),
        ]
        self._tasks.update(pumps)
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for task in pumps:
            task.cancel()
            self._tasks.discard(task)
        for w in (writer, up_writer):
            self._writers.discard(w)
            w.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                if self.mode == "blackhole":
                    self._damaged.add(writer)
                    continue  # dropped: the socket stays open, nothing arrives
                if self.mode == "slow" and self.delay:
                    await asyncio.sleep(self.delay)
                writer.write(data)
                await writer.drain()
