"""The Modbus TCP driver: one device's register map read over one pymodbus connection.

pymodbus reports failures through two channels (raised exceptions and ``isError()`` responses);
:class:`_PymodbusErrors` and :meth:`ModbusTcpDriver._read` turn both into the
:class:`gateway.errors.DeviceError` tree, so no pymodbus exception leaves this module.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Self

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from drivers.modbus_codec import ReadBlock, decode_block, plan_reads
from drivers.profile import Function
from gateway.errors import (
    DeviceError,
    DeviceTimeout,
    DeviceUnreachable,
    ModbusExceptionCode,
    ModbusExceptionResponse,
    ProtocolError,
)

if TYPE_CHECKING:
    from pymodbus.pdu import ModbusPDU

    from gateway.config import ModbusTcpDevice
    from gateway.model import Sample

__all__ = ["ModbusTcpDriver"]

_Read = Callable[..., Awaitable["ModbusPDU"]]


class _DropTranslatedClientErrors(logging.Filter):
    """Drop pymodbus's own log lines for client failures this module raises as DeviceErrors.

    pymodbus logs a request timeout ("No response received ...", with a dump of the last 20
    frames) and a refused connect at WARNING/ERROR from inside the client; the scheduler already
    logs the exception we raise, so these would only be duplicates. Server-side lines (the
    simulator's) and anything else pymodbus logs are kept.
    """

    _CLIENT_CALLS = frozenset({("transaction", "execute"), ("transport", "connect")})

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


def _exception_code(code: int) -> ModbusExceptionCode:
    try:
        return ModbusExceptionCode(code)
    except ValueError:
        return ModbusExceptionCode.UNKNOWN


class _PymodbusErrors:
    """Context manager: the one place pymodbus exceptions become streetgate's.

    Reusable and allocation-free, so the poll loop can enter it once per request.
    """

    def __init__(
        self, device: str, connected: Callable[[], bool], abandon: Callable[[], None]
    ) -> None:
        self._device = device
        self._connected = connected
        self._abandon = abandon
        self.doing = "connecting"  # set by the caller before each operation, for the message

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None or isinstance(exc, DeviceError):
            return
        device = self._device
        if isinstance(exc, ModbusIOException | TimeoutError):
            # pymodbus reports both a silent device and a connection that dropped while a
            # request was outstanding as a timeout; only the connection state tells them apart.
            if not self._connected():
                raise DeviceUnreachable(device, f"connection lost while {self.doing}") from exc
            # The answer may still come, late; closing makes sure it is never taken for the
            # answer to a later request on this connection.
            self._abandon()
            raise DeviceTimeout(device, f"no answer while {self.doing}") from exc
        if isinstance(exc, ConnectionException | OSError):
            raise DeviceUnreachable(device, f"not connected while {self.doing}") from exc
        if isinstance(exc, ModbusException):
            raise ProtocolError(device, f"{self.doing}: {exc}") from exc


class ModbusTcpDriver:
    """A Modbus TCP device: ``async with ModbusTcpDriver(cfg) as dev: await dev.poll()``.

    One TCP connection per ``async with``; pymodbus's own retries and reconnects are off, because
    the scheduler owns both. Leaving the context closes the connection; entering the same object
    again opens a new one. After a timeout the connection is closed too, so every later poll
    raises :class:`DeviceUnreachable` until the context is left and entered again.
    """

    def __init__(self, config: ModbusTcpDevice) -> None:
        self._config = config
        profile = config.profile
        self._plan: tuple[ReadBlock, ...] = tuple(
            plan_reads(profile.metrics, profile.max_registers_per_request, profile.max_gap)
        )
        self._doing = tuple(
            f"reading {b.count} {b.function.value} registers at {b.address}" for b in self._plan
        )
        self._client: AsyncModbusTcpClient | None = None
        self._reads: tuple[tuple[ReadBlock, _Read, str], ...] = ()
        self._errors = _PymodbusErrors(config.name, self._is_connected, self._abandon)

    @property
    def name(self) -> str:
        """The device name from the config."""
        return self._config.name

    @property
    def plan(self) -> tuple[ReadBlock, ...]:
        """The read requests one :meth:`poll` makes, in order."""
        return self._plan

    def _is_connected(self) -> bool:
        return self._client is not None and self._client.connected

    def _abandon(self) -> None:
        if self._client is not None:
            self._client.close()

    async def __aenter__(self) -> Self:
        if self._client is not None:
            raise RuntimeError(f"{self.name}: driver entered twice without leaving")
        cfg = self._config
        client = AsyncModbusTcpClient(
            cfg.host,
            port=cfg.port,
            name=cfg.name,
            timeout=cfg.timeout,
            retries=0,
            reconnect_delay=0,  # 0 turns pymodbus's background reconnect off
        )
        errors = self._errors
        errors.doing = f"connecting to {cfg.host}:{cfg.port}"
        try:
            with errors:
                connected = await client.connect()
        except BaseException:
            client.close()
            raise
        if not connected:
            client.close()
            raise DeviceUnreachable(cfg.name, f"cannot connect to {cfg.host}:{cfg.port}")
        self._client = client
        self._reads = tuple(
            (
                block,
                client.read_input_registers
                if block.function is Function.INPUT
                else client.read_holding_registers,
                doing,
            )
            for block, doing in zip(self._plan, self._doing, strict=True)
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        client, self._client, self._reads = self._client, None, ()
        if client is not None:
            client.close()

    async def poll(self) -> list[Sample]:
        """Read every metric of the profile once: one request per block of the read plan."""
        if self._client is None:
            raise RuntimeError(f"{self.name}: poll() outside 'async with'")
        samples: list[Sample] = []
        for block, read, doing in self._reads:
            samples += decode_block(block, await self._read(block, read, doing))
        return samples

    async def _read(self, block: ReadBlock, read: _Read, doing: str) -> Sequence[int]:
        """One request; exception responses and short answers become exceptions too."""
        errors = self._errors
        errors.doing = doing
        with errors:
            response = await read(block.address, count=block.count, device_id=self._config.unit_id)
        if response.isError():
            raise ModbusExceptionResponse(
                self.name, _exception_code(response.exception_code), block.address, block.count
            )
        registers = response.registers
        if len(registers) != block.count:
            raise ProtocolError(
                self.name,
                f"asked for {block.count} registers at {block.address}, got {len(registers)}",
            )
        return registers
