"""A serial port on the event loop: pyserial opened in a thread, read and written when ready.

pyserial's calls block, so :class:`SerialLink` never makes a blocking one on the loop: the port
is opened and closed in a worker thread; once open its descriptor is non-blocking (pyserial
opens POSIX ports with ``O_NONBLOCK``, socket URLs switch to non-blocking), reads wait for
``loop.add_reader`` and writes for ``loop.add_writer``, and pyserial is called with
``timeout=0``/``write_timeout=0`` so it only ever moves what is ready. This covers device paths
(``/dev/ttyUSB0``, a ``by-id`` or other symlink, ``usb:VID:PID`` resolved by
:mod:`drivers.serial_port`) and ``socket://host:port``; pyserial's ``rfc2217://`` client reads
through a thread of its own and has no descriptor to wait on, so it is refused with a clear
error.

:class:`_SerialErrors` is the one place where pyserial's ``SerialException`` and ``OSError``
become :class:`gateway.errors.PortUnavailable`.
"""

from __future__ import annotations

import asyncio
import io
import logging
from typing import TYPE_CHECKING

import serial  # type: ignore[import-untyped]

from drivers.boundary import ErrorBoundary
from drivers.serial.port import resolve_port_async
from gateway.core.errors import DeviceError, PortUnavailable

if TYPE_CHECKING:
    from drivers.serial.config import SerialLine

__all__ = ["SerialLink"]

log = logging.getLogger(__name__)

READ_SIZE = 4096  # a kernel tty buffer holds 4 KiB: one read takes all of it


class _SerialErrors(ErrorBoundary):
    """Context manager: pyserial and OS errors become PortUnavailable for ``device``.

    ``doing`` names the operation for the message ("opening /dev/ttyUSB0").
    """

    def __init__(self, device: str) -> None:
        self.device = device
        self.doing = "opening the serial port"

    def translate(self, exc: Exception) -> DeviceError | None:
        """PortUnavailable for a pyserial or OS error; None for anything else."""
        if isinstance(exc, serial.SerialException | OSError):
            # SerialException's text already says what failed, e.g. "could not open port
            # /dev/ttyUSB0: [Errno 2] No such file or directory", or "device reports readiness
            # to read but returned no data" for an adapter that was pulled out.
            return PortUnavailable(self.device, f"{self.doing}: {exc}")
        return None


def _close_quietly(port: serial.SerialBase) -> None:
    try:
        port.close()
    except (serial.SerialException, OSError) as exc:  # an unplugged adapter: already gone
        log.debug("closing %s: %s", port.port, exc)


class SerialLink:
    """One open serial port: ``await link.open()``, ``read()``, ``write()``, ``close()``.

    ``device`` names the device in errors; ``line`` gives port, baud rate, parity and stop
    bits (8 data bits). The port is opened exclusively (``flock``), so a second process
    cannot silently share it. Every failure raises :class:`PortUnavailable`.
    """

    def __init__(self, device: str, line: SerialLine) -> None:
        self._device = device
        self._line = line
        self._serial: serial.SerialBase | None = None
        self._fd = -1
        self._errors = _SerialErrors(device)
        self._write_lock = asyncio.Lock()
        self.port = line.port  # what was opened: the resolved path once open() resolved it

    @property
    def is_open(self) -> bool:
        """Whether the port is open (a failed read does not close it; :meth:`close` does)."""
        return self._serial is not None

    async def open(self) -> None:
        """Resolve and open the port without blocking the event loop."""
        if self._serial is not None:
            raise RuntimeError(f"{self._device}: serial port opened twice")
        line = self._line
        if line.port.startswith("rfc2217://"):
            raise PortUnavailable(
                self._device,
                f"serial port {line.port}: rfc2217:// is not supported for this device, expected "
                "a device path or socket://host:port (e.g. ser2net in raw mode)",
            )
        self.port = port = await resolve_port_async(line.port, self._device)
        errors = self._errors
        errors.doing = f"opening serial port {port}"
        with errors:
            try:
                ser = serial.serial_for_url(
                    port,
                    do_not_open=True,
                    baudrate=line.baudrate,
                    bytesize=serial.EIGHTBITS,
                    parity=line.parity,
                    stopbits=line.stopbits,
                    timeout=0,
                    write_timeout=0,
                    exclusive=True,
                )
            except ValueError as exc:  # a URL scheme or setting pyserial does not know
                raise PortUnavailable(self._device, f"{errors.doing}: {exc}") from exc
            await self._in_thread_or_close(ser)
        try:
            fd = ser.fileno()
        except io.UnsupportedOperation as exc:
            await asyncio.to_thread(_close_quietly, ser)
            raise PortUnavailable(
                self._device,
                f"serial port {port}: not supported, expected a device path or socket://host:port"
                " (the port has no file descriptor the event loop can wait on)",
            ) from exc
        self._serial, self._fd = ser, fd

    @staticmethod
    async def _in_thread_or_close(ser: serial.SerialBase) -> None:
        """``ser.open()`` in a thread; if we are cancelled meanwhile, the port is closed again."""
        loop = asyncio.get_running_loop()
        opening = loop.run_in_executor(None, ser.open)
        try:
            await asyncio.shield(opening)
        except asyncio.CancelledError:

            def close_if_opened(done: asyncio.Future[None]) -> None:
                if not done.cancelled() and done.exception() is None:
                    loop.run_in_executor(None, _close_quietly, ser)

            opening.add_done_callback(close_if_opened)
            raise

    async def close(self) -> None:
        """Close the port (in a thread: closing a tty can wait for output to drain)."""
        ser, self._serial, self._fd = self._serial, None, -1
        if ser is not None:
            await asyncio.shield(
                asyncio.get_running_loop().run_in_executor(None, _close_quietly, ser)
            )

    def _port(self) -> serial.SerialBase:
        if self._serial is None:
            raise PortUnavailable(self._device, f"serial port {self.port} is not open")
        return self._serial

    async def read(self, max_bytes: int = READ_SIZE) -> bytes:
        """The bytes received so far (at least one; waits for them)."""
        errors = self._errors
        while True:
            ser = self._port()
            errors.doing = f"reading serial port {self.port}"
            with errors:
                data: bytes = ser.read(max_bytes)  # non-blocking: what is there, maybe nothing
            if data:
                return data
            await self._ready(readable=True)

    async def write(self, data: bytes) -> None:
        """Send all of ``data``; concurrent writes do not interleave."""
        errors = self._errors
        async with self._write_lock:
            view = memoryview(data)
            while view:
                await self._ready(readable=False)
                ser = self._port()
                errors.doing = f"writing to serial port {self.port}"
                with errors:
                    written: int | None = ser.write(view)
                view = view[written or 0 :]

    async def _ready(self, *, readable: bool) -> None:
        """Wait until the port's descriptor is readable (or writable)."""
        loop = asyncio.get_running_loop()
        fd = self._fd
        if fd < 0:
            raise PortUnavailable(self._device, f"serial port {self.port} is not open")
        ready: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        if readable:
            loop.add_reader(fd, wake)
        else:
            loop.add_writer(fd, wake)
        try:
            await ready
        finally:
            if readable:
                loop.remove_reader(fd)
            else:
                loop.remove_writer(fd)
