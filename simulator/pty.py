"""A virtual serial port: a pseudo-terminal whose far end a simulated device drives.

The simulator owns the master side; the gateway opens :attr:`VirtualSerialPort.path` (the slave
side, e.g. ``/dev/pts/7``) with pyserial exactly as it would open ``/dev/ttyUSB0``. A pty
delivers bytes instantly whatever the baud rate, so :meth:`VirtualSerialPort.write` can hold
each write back for the time the bytes would take on a real wire at ``baudrate``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from types import TracebackType
from typing import Self


def bits_per_char(parity: str = "N", stopbits: int = 1) -> int:
    """Bits one byte occupies on the wire: start, 8 data, parity if any, stop bits."""
    return 1 + 8 + (0 if parity == "N" else 1) + stopbits


def wire_time(nbytes: int, baudrate: int, parity: str = "N", stopbits: int = 1) -> float:
    """Seconds ``nbytes`` take on the wire."""
    return nbytes * bits_per_char(parity, stopbits) / baudrate


class VirtualSerialPort:
    """``async with VirtualSerialPort() as port``: ``port.path`` for the client, read/write here."""

    def __init__(self, baudrate: int | None = None, parity: str = "N", stopbits: int = 1) -> None:
        self.baudrate = baudrate  # None: no wire-time emulation
        self.parity = parity
        self.stopbits = stopbits
        self._master = -1
        self._slave = -1
        self.path = ""
        self._buffer = bytearray()
        self._readable = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._write_lock = asyncio.Lock()
        self.bytes_written = 0
        self.bytes_read = 0

    async def __aenter__(self) -> Self:
        self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def is_open(self) -> bool:
        """Whether the port exists (a closed port is an unplugged USB adapter)."""
        return self._master >= 0

    def open(self) -> None:
        """Create the pty; keeps a slave descriptor so a client closing it is not a hang-up."""
        if self.is_open:
            return
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.path = os.ttyname(self._slave)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._master, self._on_readable)

    def close(self) -> None:
        """Remove the port (the client sees an error, as when a USB adapter is pulled)."""
        if not self.is_open:
            return
        if self._loop is not None:
            self._loop.remove_reader(self._master)
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._master = self._slave = -1
        self._readable.set()  # wake a reader so it sees the port is gone

    def _on_readable(self) -> None:
        try:
            data = os.read(self._master, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self._buffer += data
            self.bytes_read += len(data)
            self._readable.set()

    async def read(self, max_bytes: int = 65536) -> bytes:
        """Bytes the client wrote; waits for at least one. Empty once the port is closed."""
        while not self._buffer:
            if not self.is_open:
                return b""
            self._readable.clear()
            await self._readable.wait()
        data = bytes(self._buffer[:max_bytes])
        del self._buffer[:max_bytes]
        return data

    def discard_input(self) -> None:
        """Forget bytes received and not read yet."""
        self._buffer.clear()

    async def write(self, data: bytes) -> None:
        """Send ``data`` to the client, taking the wire time at ``baudrate`` when set.

        Writes are serialised: two writes never overlap on the wire.
        """
        async with self._write_lock:
            if self.baudrate:
                await asyncio.sleep(wire_time(len(data), self.baudrate, self.parity, self.stopbits))
            if not self.is_open:
                return
            view = memoryview(data)
            while view:
                try:
                    written = os.write(self._master, view)
                except BlockingIOError:
                    await asyncio.sleep(0.001)  # the client is not reading; its buffer is full
                    continue
                view = view[written:]
                self.bytes_written += written
