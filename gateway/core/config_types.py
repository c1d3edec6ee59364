"""Building blocks of the config models: frozen base, durations, sizes, names."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from gateway.core.units import parse_duration, parse_size

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"  # safe in MQTT topics, file names and task names

#: A device name, as readings carry it.
Name = Annotated[str, Field(pattern=NAME_PATTERN, max_length=64)]


def _duration(value: Any) -> Any:
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, bool):
        raise ValueError("expected a duration such as '500ms' or '5s', got a boolean")  # noqa: TRY004 - pydantic reports ValueError
    return value  # plain numbers are seconds


def _size(value: Any) -> Any:
    if isinstance(value, str):
        return parse_size(value)
    if isinstance(value, bool):
        raise ValueError("expected a size such as '64MB' or a number of bytes, got a boolean")  # noqa: TRY004 - pydantic reports ValueError
    return value  # plain numbers are bytes


Seconds = Annotated[float, BeforeValidator(_duration), Field(gt=0, allow_inf_nan=False)]
BytesOrZero = Annotated[int, BeforeValidator(_size), Field(ge=0)]
Bytes = Annotated[int, BeforeValidator(_size), Field(gt=0)]


class Frozen(BaseModel):
    """Base of every config model: immutable, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")


__all__ = [
    "NAME_PATTERN",
    "Bytes",
    "BytesOrZero",
    "Frozen",
    "Name",
    "Seconds",
]
