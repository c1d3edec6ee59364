"""The error boundary every driver's library translation is built on."""

from __future__ import annotations

import asyncio

import pytest

from drivers.boundary import ErrorBoundary
from gateway.core.errors import DeviceError, DeviceTimeout, DeviceUnreachable


class KeyErrors(ErrorBoundary):
    """Translates KeyError only, as a library boundary translates its own exceptions only."""

    def __init__(self) -> None:
        self.doing = "looking up"
        self.seen: list[Exception] = []

    def translate(self, exc: Exception) -> DeviceError | None:
        self.seen.append(exc)
        if isinstance(exc, KeyError):
            return DeviceUnreachable("dev-1", f"{exc} while {self.doing}")
        return None


def test_a_translated_error_keeps_its_cause() -> None:
    errors = KeyErrors()
    original = KeyError("x")
    with pytest.raises(DeviceUnreachable, match="'x' while looking up") as caught, errors:
        raise original
    assert caught.value.__cause__ is original


def test_what_translate_leaves_alone_passes_unchanged() -> None:
    errors = KeyErrors()
    with pytest.raises(ValueError, match="a bug"), errors:
        raise ValueError("a bug")
    assert len(errors.seen) == 1


@pytest.mark.parametrize(
    "exc", [DeviceTimeout("dev-1", "already ours"), asyncio.CancelledError(), KeyboardInterrupt()]
)
def test_device_errors_and_base_exceptions_are_never_translated(exc: BaseException) -> None:
    errors = KeyErrors()
    with pytest.raises(type(exc)) as caught, errors:
        raise exc
    assert caught.value is exc
    assert errors.seen == []


def test_a_block_that_succeeds_is_untouched_and_the_boundary_is_reusable() -> None:
    errors = KeyErrors()
    for _ in range(3):
        with errors:
            pass
    with pytest.raises(DeviceUnreachable), errors:
        raise KeyError("y")
    assert len(errors.seen) == 1
