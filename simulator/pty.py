"""A virtual serial port: a pseudo-terminal whose far end a simulated device drives.

The simulator owns the master side; the gateway opens :attr:`VirtualSerialPort.path` (the slave
side, e.g. ``/dev/pts/7``) with pyserial exactly as it would open ``/dev/ttyUSB0``. A pty
delivers bytes instantly whatever the baud rate, so :meth:`VirtualSerialPort.write` can hold
each write back for the time the bytes would take on a real wire at ``baudrate``.

A pty cannot come back at the same path (``/dev/pts/N`` is chosen by the kernel), so a device
that can be unplugged and plugged back in is a :class:`PluggableDevice`: the gateway opens
its :attr:`~PluggableDevice.path`, a symlink that always points at the current pty, like a udev
``/dev/serial/by-id/...`` link.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import tty
from pathlib import Path
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


class PluggableDevice:
    """A simulated device on a virtual serial port that can be unplugged and plugged back in.

    ``async with`` plugs it in: :meth:`replug` opens a new :class:`VirtualSerialPort`
    (``baudrate``, ``parity``, ``stopbits``), powers the device up (:meth:`_on_plug`), points
    :attr:`path` at the new pty and starts :meth:`_serve` on it as the task ``task_name``;
    :meth:`unplug` cancels that task, closes the pty and removes the link; leaving does both
    and waits for the task. ``link``: where the symlink goes (refused if something that is not
    a symlink is there); None: ``link_name`` in a temporary directory (``temp_prefix``) that
    lives as long as the ``async with`` block.
    """

    def __init__(
        self,
        *,
        task_name: str,
        link: Path | None = None,
        link_name: str = "tty",
        temp_prefix: str = "streetgate-",
        baudrate: int | None = None,
        parity: str = "N",
        stopbits: int = 1,
    ) -> None:
        if link is not None and os.path.lexists(link) and not link.is_symlink():
            raise FileExistsError(f"{link} exists and is not a symlink (the simulator's link)")
        self.task_name = task_name
        self.baudrate = baudrate  # None: bytes arrive at once (no wire time)
        self.parity = parity
        self.stopbits = stopbits
        self._link = link
        self._link_name = link_name
        self._temp_prefix = temp_prefix
        self._own_dir: Path | None = None
        self._port: VirtualSerialPort | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # one per plug-in, cancelled at unplug

    @property
    def path(self) -> str:
        """The stable path the gateway opens (a symlink to the current pty)."""
        if self._link is None:
            raise RuntimeError(f"{self.task_name}: not running (use it in 'async with')")
        return str(self._link)

    @property
    def pty_path(self) -> str:
        """The pty behind :attr:`path` right now (changes at every replug); empty if unplugged."""
        return self._port.path if self._port is not None and self._port.is_open else ""

    @property
    def plugged(self) -> bool:
        """Whether the port exists (False between :meth:`unplug` and :meth:`replug`)."""
        return self._port is not None and self._port.is_open

    async def __aenter__(self) -> Self:
        if self._link is None:
            self._own_dir = Path(tempfile.mkdtemp(prefix=self._temp_prefix))
            self._link = self._own_dir / self._link_name
        try:
            self.replug()
        except BaseException:
            await self._close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close()

    async def _close(self) -> None:
        self.unplug()
        tasks, self._tasks = self._tasks, set()
        for task in list(tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._own_dir is not None:
            shutil.rmtree(self._own_dir, ignore_errors=True)
            self._own_dir = None
            self._link = None

    def unplug(self) -> None:
        """Pull the adapter: the device stops, the pty goes away and so does the link to it."""
        port, self._port = self._port, None
        if port is not None:
            port.close()
        for task in self._tasks:
            task.cancel()
        if self._link is not None and self._link.is_symlink():
            self._link.unlink()

    def replug(self) -> None:
        """Plug the adapter (back) in: a new pty, the device powered up and serving on it, the
        link pointing at it."""
        if self.plugged or self._link is None:
            return
        port = VirtualSerialPort(self.baudrate, self.parity, self.stopbits)
        port.open()
        self._port = port
        self._on_plug()
        fresh = self._link.with_name(f".{self._link.name}.{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            fresh.unlink()
        fresh.symlink_to(port.path)
        fresh.replace(self._link)  # atomic: the gateway never sees a half-made link
        task = asyncio.get_running_loop().create_task(self._serve(port), name=self.task_name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- what each device adds ------------------------------------------------------------

    def _on_plug(self) -> None:
        """State after power-up (at every plug-in), before :meth:`_serve` starts."""

    async def _serve(self, port: VirtualSerialPort) -> None:
        """Be the device on ``port`` until it is closed (or this task cancelled)."""
        raise NotImplementedError
