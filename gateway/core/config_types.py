"""Building blocks of the config models: frozen base, durations, sizes, names, profiles."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo

from drivers.profile import Profile, load_profile
from gateway.core.errors import ConfigError
from gateway.core.units import parse_duration, parse_size

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"  # safe in MQTT topics, file names and task names


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


def load_profile_field(value: Any, info: ValidationInfo) -> Any:
    """Field validator body: a profile given by name or path becomes a loaded Profile."""
    if isinstance(value, str):
        base = (info.context or {}).get("base_dir")
        try:
            return load_profile(value, base)
        except ConfigError as exc:
            raise ValueError("; ".join(str(i) for i in exc.issues) + f" [{exc.source}]") from exc
    return value


__all__ = [
    "NAME_PATTERN",
    "Bytes",
    "BytesOrZero",
    "Frozen",
    "Profile",
    "Seconds",
    "load_profile_field",
]
