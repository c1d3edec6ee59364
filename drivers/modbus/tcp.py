"""The Modbus TCP driver: one device's register map read over one pymodbus connection.

pymodbus failures become :class:`gateway.errors.DeviceError` instances through
:mod:`drivers.modbus_errors`, the translation this driver shares with the RTU driver.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Self

from pymodbus.client import AsyncModbusTcpClient

from drivers.modbus.codec import ReadBlock, decode_block, plan_reads
from drivers.modbus.errors import PymodbusErrors, connect, registers_of
from drivers.profile import Function
from gateway.core.errors import DeviceUnreachable

if TYPE_CHECKING:
    from pymodbus.pdu import ModbusPDU

    from drivers.modbus.config import ModbusTcpDevice
    from gateway.core.model import Sample

__all__ = ["ModbusTcpDriver"]

_Read = Callable[..., Awaitable["ModbusPDU"]]


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
        self._errors = PymodbusErrors(config.name, self._is_connected, self._abandon)

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
        self._errors.doing = f"connecting to {cfg.host}:{cfg.port}"
        if not await connect(client, self._errors):
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
        return registers_of(response, self.name, block)
