"""The one place pymodbus failures become streetgate errors, for the TCP and the RTU driver.

pymodbus reports failures through two channels (raised exceptions and ``isError()`` responses);
:class:`PymodbusErrors` translates the first, :func:`registers_of` the second, so no pymodbus
exception leaves ``drivers/``; :func:`connect` opens a client through it and closes what a failed
attempt left open.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING

from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from drivers.boundary import ErrorBoundary
from gateway.core.cancelling import raise_if_cancelled
from gateway.core.errors import (
    DeviceError,
    DeviceTimeout,
    DeviceUnreachable,
    ModbusExceptionCode,
    ModbusExceptionResponse,
    ProtocolError,
)

if TYPE_CHECKING:
    from pymodbus.client import ModbusBaseClient
    from pymodbus.pdu import ModbusPDU

    from drivers.modbus.codec import ReadBlock

__all__ = ["PymodbusErrors", "connect", "exception_code", "registers_of"]


class _DropTranslatedClientErrors(logging.Filter):
    """Drop pymodbus's own log lines for client failures the drivers raise as DeviceErrors.

    pymodbus logs a request timeout ("No response received ...", with a dump of the last 20
    frames), a refused connect, an RTU answer from the wrong unit ("request ask for id=...") and
    a late answer at WARNING/ERROR from inside the client; the pollers already log the exception
    we raise, so these would only be duplicates. Server-side lines (the simulator's) and
    anything else pymodbus logs are kept.
    """

    _CLIENT_CALLS = frozenset(
        {
            ("transaction", "execute"),
            ("transport", "connect"),
            ("base", "handleFrame"),
            # "received pdu without a corresponding request": the late answer to a request
            # that timed out or was cancelled (the gateway stopping), expected on RTU.
            ("transaction", "callback_data"),
        }
    )

    def filter(self, record: logging.LogRecord) -> bool:
        return (
            record.levelno < logging.WARNING
            or (record.module, record.funcName) not in self._CLIENT_CALLS
        )


def _install_log_filter() -> None:
    logger = logging.getLogger("pymodbus.logging")  # the one logger pymodbus's Log class uses
    if not any(isinstance(f, _DropTranslatedClientErrors) for f in logger.filters):
        logger.addFilter(_DropTranslatedClientErrors())


_install_log_filter()


def exception_code(code: int) -> ModbusExceptionCode:
    """The IntEnum member of a Modbus exception code (UNKNOWN for codes the spec does not name)."""
    try:
        return ModbusExceptionCode(code)
    except ValueError:
        return ModbusExceptionCode.UNKNOWN


class PymodbusErrors(ErrorBoundary):
    """Context manager: the one place pymodbus exceptions become streetgate's.

    The caller sets ``device`` (whose error it is) and ``doing`` (for the message) before each
    operation. ``unreachable`` is the error for a lost connection: :class:`DeviceUnreachable`
    for TCP, :class:`gateway.errors.PortUnavailable` for a serial port.

    It also gives back cancellations pymodbus swallowed: pymodbus waits for an answer with
    ``asyncio.wait_for``, which on Python 3.11 returns the result instead of raising
    ``CancelledError`` when the answer completes in the same loop iteration as the cancel. A
    poller cancelled at that moment would keep polling (and the gateway would never stop);
    a cancel request still pending on the task after a pymodbus call is raised here.
    """

    def __init__(
        self,
        device: str,
        connected: Callable[[], bool],
        abandon: Callable[[], None],
        unreachable: type[DeviceUnreachable] = DeviceUnreachable,
    ) -> None:
        self.device = device
        self._connected = connected
        self._abandon = abandon
        self._unreachable = unreachable
        self.doing = "connecting"

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            raise_if_cancelled()
            return
        super().__exit__(exc_type, exc, tb)

    def translate(self, exc: Exception) -> DeviceError | None:
        """The streetgate error for a pymodbus (or OS) exception; None for anything else."""
        device = self.device
        if isinstance(exc, ModbusIOException | TimeoutError):
            # pymodbus reports both a silent device and a connection that dropped while a
            # request was outstanding as a timeout; only the connection state tells them apart.
            if not self._connected():
                return self._unreachable(device, f"connection lost while {self.doing}")
            # The answer may still come, late; ``abandon`` makes sure it is never taken for the
            # answer to a later request (TCP closes the connection).
            self._abandon()
            return DeviceTimeout(device, f"no answer while {self.doing}")
        if isinstance(exc, ConnectionException | OSError):
            return self._unreachable(device, f"not connected while {self.doing}")
        if isinstance(exc, ModbusException):
            return ProtocolError(device, f"{self.doing}: {exc}")
        return None


async def connect(client: ModbusBaseClient, errors: PymodbusErrors) -> bool:
    """``client.connect()`` inside ``errors``; whether it connected. A client that did not
    (connect returned False, or raised) is closed again, so a failed attempt holds nothing."""
    try:
        with errors:
            connected = await client.connect()
    except BaseException:
        client.close()
        raise
    if not connected:
        client.close()
    return connected


def registers_of(response: ModbusPDU, device: str, block: ReadBlock) -> Sequence[int]:
    """The registers of a read's response; exception responses and short answers raise."""
    if response.isError():
        raise ModbusExceptionResponse(
            device, exception_code(response.exception_code), block.address, block.count
        )
    registers: Sequence[int] = response.registers
    if len(registers) != block.count:
        raise ProtocolError(
            device, f"asked for {block.count} registers at {block.address}, got {len(registers)}"
        )
    return registers
