"""The two shapes of a driver: a polled ``Driver`` and a self-scheduling ``Source``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Protocol, Self

from gateway.core.health import DeviceStatus
from gateway.core.model import Reading, Sample


class Driver(Protocol):
    """A connection to one device.

    ``__aenter__`` connects (raising :class:`gateway.errors.DeviceUnreachable` when it cannot),
    ``poll()`` reads every metric of the device's profile once, ``__aexit__`` closes. After a
    failure the scheduler leaves the context and enters the same object again to reconnect.
    Every error a driver raises is a :class:`gateway.errors.DeviceError`.
    """

    @property
    def name(self) -> str:
        """The device name from the config."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def poll(self) -> list[Sample]:
        """Read the device once and return its decoded samples."""
        ...


#: Where readings go (the outbox's ``put_many``).
Sink = Callable[[Sequence[Reading]], Awaitable[None]]


class Source(Protocol):
    """Something that schedules itself and delivers readings of one or more devices.

    ``run()`` runs until cancelled and must survive device failures itself (a failing device
    changes its status, never ends ``run()``); ``statuses`` has one entry per device name.
    """

    @property
    def task_name(self) -> str:
        """Name of the task running it, e.g. ``poll:modbus_rtu:cabinet-bus``."""
        ...

    @property
    def statuses(self) -> Mapping[str, DeviceStatus]:
        """Health and counters per device."""
        ...

    async def run(self) -> None:
        """Deliver readings until cancelled."""
        ...
