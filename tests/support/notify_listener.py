"""The service manager's end of sd_notify: a real Unix datagram socket that collects messages."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path
from types import TracebackType
from typing import Self


class NotifyListener:
    """Bound to a path in ``directory`` (or an abstract name); ``env`` is what systemd would set.

    ``async with NotifyListener(tmp_path) as listener: ... await listener.next()``
    """

    def __init__(self, directory: Path | None = None, *, abstract: str | None = None) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        if abstract is not None:
            self._sock.bind(b"\0" + abstract.encode())
            self.address = f"@{abstract}"
        else:
            assert directory is not None
            path = directory / "notify.sock"
            self._sock.bind(str(path))
            self.address = str(path)
        self.messages: list[dict[str, str]] = []

    def env(self, watchdog_usec: int | None = None, pid: int | None = None) -> dict[str, str]:
        env = {"NOTIFY_SOCKET": self.address}
        if watchdog_usec is not None:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        if pid is not None:
            env["WATCHDOG_PID"] = str(pid)
        return env

    async def next(self, timeout: float = 10.0) -> dict[str, str]:
        """The next message, as its ``KEY=VALUE`` fields."""
        loop = asyncio.get_running_loop()
        data = await asyncio.wait_for(loop.sock_recv(self._sock, 65536), timeout)
        fields = dict(line.split("=", 1) for line in data.decode().split("\n") if line)
        self.messages.append(fields)
        return fields

    async def until(self, key: str, timeout: float = 10.0) -> dict[str, str]:
        """Messages up to and including the first with ``key``."""
        async with asyncio.timeout(timeout):
            while True:
                fields = await self.next(timeout)
                if key in fields:
                    return fields

    def drain(self) -> list[dict[str, str]]:
        """Every message waiting now (without waiting for more)."""
        got: list[dict[str, str]] = []
        while True:
            try:
                data = self._sock.recv(65536)
            except BlockingIOError:
                return got
            got.append(dict(line.split("=", 1) for line in data.decode().split("\n") if line))

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()
        if not self.address.startswith("@"):
            with_path = Path(self.address)
            if with_path.exists():
                os.unlink(with_path)
