"""Building blocks of the config models: frozen base, durations, sizes, names.

A duration is a number of seconds or a text such as ``"500ms"``, ``"30s"``, ``"2m"``, ``"1h"``,
``"1d"``; a size is a number of bytes or a text such as ``"64MB"``, ``"512KiB"``, ``"1GiB"``
(gateway/core/units.py). Their JSON Schema (``streetgate config schema``) allows both forms.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from gateway.core.units import DURATION_PATTERN, SIZE_PATTERN, parse_duration, parse_size

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


def _number_or_text(number: dict[str, Any], pattern: str, example: str) -> WithJsonSchema:
    text = {"type": "string", "pattern": pattern, "examples": [example]}
    return WithJsonSchema({"anyOf": [number, text]})


#: A duration in seconds: a number, or a text such as "500ms", "30s", "2m".
Seconds = Annotated[
    float,
    BeforeValidator(_duration),
    Field(gt=0, allow_inf_nan=False),
    _number_or_text({"type": "number", "exclusiveMinimum": 0}, DURATION_PATTERN, "30s"),
]
#: A size in bytes (0 allowed): a number, or a text such as "8MiB".
BytesOrZero = Annotated[
    int,
    BeforeValidator(_size),
    Field(ge=0),
    _number_or_text({"type": "integer", "minimum": 0}, SIZE_PATTERN, "8MiB"),
]
#: A size in bytes: a number, or a text such as "256MB".
Bytes = Annotated[
    int,
    BeforeValidator(_size),
    Field(gt=0),
    _number_or_text({"type": "integer", "exclusiveMinimum": 0}, SIZE_PATTERN, "256MB"),
]


#: The JSON Schema of a duration that may also be 0 (off): a number of seconds or a text.
DURATION_OR_ZERO_JSON_SCHEMA = _number_or_text(
    {"type": "number", "minimum": 0}, DURATION_PATTERN, "5m"
)


def value_kind(metadata: Iterable[object]) -> Literal["duration", "size"] | None:
    """Whether a config field (its ``FieldInfo.metadata``) is a :data:`Seconds` duration or a
    :data:`Bytes` size, for docs/config.md; None for anything else."""
    for item in metadata:
        if isinstance(item, BeforeValidator):
            if item.func is _duration:
                return "duration"
            if item.func is _size:
                return "size"
    return None


class Frozen(BaseModel):
    """Base of every config model: immutable, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")


__all__ = [
    "DURATION_OR_ZERO_JSON_SCHEMA",
    "NAME_PATTERN",
    "Bytes",
    "BytesOrZero",
    "Frozen",
    "Name",
    "Seconds",
    "value_kind",
]
