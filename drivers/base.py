"""The shape every driver has: an ``async with`` object with a ``poll()``."""

from __future__ import annotations

from types import TracebackType
from typing import Protocol, Self

from gateway.model import Sample


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
