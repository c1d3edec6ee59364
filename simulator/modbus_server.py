"""Simulated devices speaking real Modbus TCP: one pymodbus server per device, on loopback.

Usage::

    specs = [DeviceSpec("meter-1", load_profile("sdm120")), DeviceSpec("th-1", xy_md02)]
    async with ModbusSimulator(specs) as sim:  # port 0: the OS picks free ports
        port = sim["meter-1"].port
        ...
        assert sim["meter-1"].was_served("voltage", reading.value)

Every register a profile's read plan touches is readable (gap registers read as 0); values are
computed when a request arrives (pymodbus's ``SimDevice(action=...)`` hook fills them from a
:class:`simulator.registers.RegisterMap`), so every read sees fresh numbers. Each device
remembers the last ``history`` values it served per metric, exactly as a gateway decodes them,
and has fault switches for tests: :meth:`SimulatedDevice.fail_with`,
:meth:`SimulatedDevice.slow_down`, :meth:`SimulatedDevice.stop` / :meth:`SimulatedDevice.start`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Self, cast

from drivers.modbus.codec import ReadBlock
from drivers.profile import Function, Profile
from gateway.config.model import ModbusTcpDevice
from gateway.core.errors import ModbusExceptionCode
from simulator.registers import RegisterMap
from simulator.values import Clock

# pymodbus (and pyserial with it) is imported where a device is built or served, not here:
# the ``streetgate`` CLI imports this module for DeviceSpec, and should start without it.
if TYPE_CHECKING:
    from pymodbus.constants import ExcCodes
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import SimData

__all__ = ["DeviceSpec", "ModbusSimulator", "SimulatedDevice"]


class _DropAnswersToGoneClients(logging.Filter):
    """A client that hung up before a delayed answer is expected here, not an error worth a log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.levelno >= logging.ERROR
            and record.module == "transport"
            and record.funcName == "send"
        )


def _install_log_filter() -> None:
    logger = logging.getLogger("pymodbus.logging")
    if not any(isinstance(f, _DropAnswersToGoneClients) for f in logger.filters):
        logger.addFilter(_DropAnswersToGoneClients())


_install_log_filter()


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """What to simulate: a named device with a profile, answering as ``unit_id``."""

    name: str
    profile: Profile
    unit_id: int = 1
    seed: int | str | None = None  # None: derived from the name, so values are stable per name


def _register_blocks(plan: Sequence[ReadBlock], function: Function) -> list[SimData]:
    from pymodbus.simulator import DataType, SimData  # noqa: PLC0415 - see the imports

    blocks = [
        SimData(b.address, count=b.count, datatype=DataType.REGISTERS)
        for b in plan
        if b.function is function
    ]
    # pymodbus needs at least one entry per table; a single invalid register answers
    # ILLEGAL_DATA_ADDRESS like a real device without that table.
    return blocks or [SimData(0, datatype=DataType.INVALID)]


async def _absent_unit(  # noqa: PLR0917 - pymodbus's SimAction signature
    function_code: int,
    start_address: int,
    address: int,
    count: int,
    registers: list[int],
    set_values: list[int] | list[bool] | None,
) -> ExcCodes:
    from pymodbus.constants import ExcCodes  # noqa: PLC0415 - see the imports

    return ExcCodes.GATEWAY_NO_RESPONSE


class SimulatedDevice:
    """One simulated device: its server, what it served, and its fault switches."""

    def __init__(self, spec: DeviceSpec, host: str, port: int, clock: Clock, history: int) -> None:
        self.name = spec.name
        self.profile = spec.profile
        self.unit_id = spec.unit_id
        self.host = host
        self.registers = RegisterMap(
            spec.profile, spec.name if spec.seed is None else spec.seed, clock, history
        )
        self.plan: tuple[ReadBlock, ...] = self.registers.plan
        self.values = self.registers.values
        self.requests = 0  # read/write requests that reached the register map
        self.connections = 0  # client connections accepted
        self._port = port
        from pymodbus.simulator import SimDevice  # noqa: PLC0415 - see the imports

        self._simdevices = [SimDevice(spec.unit_id, self._tables(), action=self._action)]
        if spec.unit_id != 0:
            # Any other unit id: answer like a Modbus TCP gateway whose target is silent. Without
            # this, pymodbus 3.16 answers DEVICE_FAILURE and logs a KeyError traceback.
            self._simdevices.append(SimDevice(0, self._tables(), action=_absent_unit))
        self._server: ModbusTcpServer | None = None
        self._exception: ExcCodes | None = None
        self._delay = 0.0
        self._stopping = asyncio.Event()

    def _tables(self) -> tuple[list[SimData], list[SimData], list[SimData], list[SimData]]:
        from pymodbus.simulator import DataType, SimData  # noqa: PLC0415 - see the imports

        bits = [SimData(0, values=False, datatype=DataType.BITS)]  # coils/discrete: unused
        return (
            bits,
            list(bits),
            _register_blocks(self.plan, Function.HOLDING),
            _register_blocks(self.plan, Function.INPUT),
        )

    @property
    def port(self) -> int:
        """The TCP port the device listens on (the bound one when started with port 0)."""
        return self._port

    @property
    def running(self) -> bool:
        """Whether the device accepts connections now."""
        return self._server is not None

    def gateway_config(self, timeout: float = 1.0, interval: float = 1.0) -> ModbusTcpDevice:
        """The gateway's config entry for polling this device."""
        return ModbusTcpDevice(
            kind="modbus_tcp",
            name=self.name,
            host=self.host,
            port=self.port,
            unit_id=self.unit_id,
            profile=self.profile,
            timeout=timeout,
            interval=interval,
        )

    def served(self, metric: str) -> tuple[float, ...]:
        """The last values of ``metric`` on the wire, oldest first, as a gateway decodes them."""
        return self.registers.served(metric)

    def was_served(self, metric: str, value: float) -> bool:
        """Whether ``value`` is one of the last values of ``metric`` this device served."""
        return self.registers.was_served(metric, value)

    def fail_with(self, code: ModbusExceptionCode | None) -> None:
        """Answer every request with this Modbus exception code (None: answer normally)."""
        if code is ModbusExceptionCode.UNKNOWN:
            raise ValueError("UNKNOWN is not a code a device can send")
        from pymodbus.constants import ExcCodes  # noqa: PLC0415 - see the imports

        self._exception = None if code is None else ExcCodes(int(code))

    def slow_down(self, delay: float) -> None:
        """Hold every answer for ``delay`` seconds (0: answer at once)."""
        if delay < 0:
            raise ValueError(f"delay must be >= 0, got {delay}")
        self._delay = delay

    def heal(self) -> None:
        """Clear injected exception codes and delays."""
        self._exception = None
        self._delay = 0.0

    async def start(self) -> None:
        """Listen (again) on the device's port; returns once connections are accepted."""
        if self._server is not None:
            return
        self._stopping = asyncio.Event()
        from pymodbus.server import ModbusTcpServer  # noqa: PLC0415 - see the imports

        server = ModbusTcpServer(
            self._simdevices, address=(self.host, self._port), trace_connect=self._connected
        )
        try:
            await server.serve_forever(background=True)
        except RuntimeError as exc:  # pymodbus: "Could not start listen"
            raise OSError(f"{self.name}: cannot listen on {self.host}:{self._port}") from exc
        listener = cast(asyncio.Server, server.transport)
        sock = listener.sockets[0]
        if hasattr(socket, "SO_ACCEPTCONN") and not sock.getsockopt(
            socket.SOL_SOCKET, socket.SO_ACCEPTCONN
        ):
            await server.shutdown()  # type: ignore[no-untyped-call]
            raise OSError(f"{self.name}: {self.host}:{self._port} is bound but not listening")
        self._port = sock.getsockname()[1]
        self._server = server

    async def stop(self) -> None:
        """Close the listener and every connection: clients see the device go away."""
        server, self._server = self._server, None
        self._stopping.set()  # wake answers held by slow_down()
        if server is not None:
            await server.shutdown()  # type: ignore[no-untyped-call]

    def _connected(self, connected: bool) -> None:
        if connected:
            self.connections += 1

    async def _action(  # noqa: PLR0917 - pymodbus's SimAction signature
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """Called by pymodbus for every request to a valid address; fills in fresh values."""
        self.requests += 1
        if self._delay > 0:
            try:
                async with asyncio.timeout(self._delay):
                    await self._stopping.wait()
            except TimeoutError:
                pass
        if self._exception is not None:
            return self._exception
        if set_values is not None:
            return None  # a write: pymodbus stores it; the next read overwrites it
        self.registers.fill(function_code, start_address, address, count, registers)
        return None


class ModbusSimulator:
    """A fleet of simulated Modbus TCP devices, one port each; ``async with`` runs it."""

    def __init__(
        self,
        devices: Iterable[DeviceSpec],
        *,
        host: str = "127.0.0.1",
        base_port: int = 0,
        clock: Clock = time.monotonic,
        history: int = 64,
    ) -> None:
        specs = list(devices)
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"device names must be unique: {names}")
        if base_port and base_port + len(specs) - 1 > 65535:
            raise ValueError(f"{len(specs)} devices from port {base_port} run past port 65535")
        self.host = host
        self._devices = {
            spec.name: SimulatedDevice(
                spec, host, base_port + i if base_port else 0, clock, history
            )
            for i, spec in enumerate(specs)
        }

    def __getitem__(self, name: str) -> SimulatedDevice:
        return self._devices[name]

    def __iter__(self) -> Iterator[SimulatedDevice]:
        return iter(self._devices.values())

    def __len__(self) -> int:
        return len(self._devices)

    @property
    def ports(self) -> dict[str, int]:
        """Device name -> bound port."""
        return {d.name: d.port for d in self}

    async def __aenter__(self) -> Self:
        try:
            for device in self:
                await device.start()
        except BaseException:
            await self._stop_all()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stop_all()

    async def _stop_all(self) -> None:
        for device in self:
            await device.stop()
