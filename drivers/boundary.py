"""The shape of a driver's error boundary: one context manager where a library's errors end.

Each library the drivers use has one subclass (:class:`drivers.modbus_errors.PymodbusErrors`,
:class:`drivers.ble_common.BleakErrors`, the serial link's), which says only how that library's
exceptions map to :class:`gateway.errors.DeviceError` subclasses.
"""

from __future__ import annotations

from types import TracebackType

from gateway.core.errors import DeviceError

__all__ = ["ErrorBoundary"]


class ErrorBoundary:
    """Context manager: an exception leaving the block becomes ``self.translate(exc)``.

    Reusable and allocation-free, so a loop can enter it once per operation: set ``doing``
    (for the message, "reading 2 registers at 342") before each one. DeviceErrors (already
    translated) and BaseExceptions that are not Exceptions (cancellation, KeyboardInterrupt)
    pass through, and so does anything ``translate`` returns None for: a bug, not a device
    failure. The translated error is raised ``from`` the original, which keeps the cause.
    """

    doing: str

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None or isinstance(exc, DeviceError) or not isinstance(exc, Exception):
            return
        translated = self.translate(exc)
        if translated is not None:
            raise translated from exc

    def translate(self, exc: Exception) -> DeviceError | None:
        """The streetgate error for ``exc``; None to let it through unchanged."""
        raise NotImplementedError
