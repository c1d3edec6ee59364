"""Device profiles: register maps as data files, parsed into frozen typed models."""

from __future__ import annotations

import math
import tomllib
from enum import StrEnum
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FiniteFloat,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from drivers.deadband import Deadband, rule_of
from gateway.core.config_types import Seconds
from gateway.core.errors import ConfigError, ConfigIssue
from gateway.core.safe_files import MAX_PROFILE_BYTES, read_config_file
from gateway.core.validation import issues_from_validation_error


class Function(StrEnum):
    """Which Modbus register table a metric lives in."""

    HOLDING = "holding"  # function code 0x03
    INPUT = "input"  # function code 0x04


class DataType(StrEnum):
    """How the registers of one metric encode its value."""

    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    FLOAT32 = "float32"
    INT64 = "int64"
    UINT64 = "uint64"
    FLOAT64 = "float64"

    @property
    def registers(self) -> int:
        """Number of 16-bit registers a value of this type occupies."""
        return _REGISTERS[self]

    @property
    def int_range(self) -> tuple[int, int] | None:
        """Lowest and highest value of an integer type; None for floating-point types."""
        return _INT_RANGES.get(self)


_REGISTERS = {
    DataType.INT16: 1,
    DataType.UINT16: 1,
    DataType.INT32: 2,
    DataType.UINT32: 2,
    DataType.FLOAT32: 2,
    DataType.INT64: 4,
    DataType.UINT64: 4,
    DataType.FLOAT64: 4,
}


_INT_RANGES = {
    DataType.INT16: (-(2**15), 2**15 - 1),
    DataType.UINT16: (0, 2**16 - 1),
    DataType.INT32: (-(2**31), 2**31 - 1),
    DataType.UINT32: (0, 2**32 - 1),
    DataType.INT64: (-(2**63), 2**63 - 1),
    DataType.UINT64: (0, 2**64 - 1),
}


class Order(StrEnum):
    """Byte order inside a register, or word order across registers."""

    BIG = "big"
    LITTLE = "little"


MAX_REGISTERS_PER_REQUEST = 125  # Modbus Application Protocol: read holding/input registers

#: What a quantity can physically be, by unit: a metric's ``range`` must lie inside, and a
#: metric without one is still held to it (nothing is colder than absolute zero).
PHYSICAL_LIMITS: dict[str, tuple[float, float]] = {
    "Cel": (-273.15, math.inf),
    "K": (0.0, math.inf),
    "%RH": (0.0, 100.0),
    "Hz": (0.0, math.inf),
    "ug/m3": (0.0, math.inf),
    "s": (0.0, math.inf),
}


def _span(limits: tuple[float, float]) -> str:
    low, high = limits
    if math.isinf(high):
        return f">= {low:g}"
    return f"{low:g}..{high:g}"


class MetricSpec(BaseModel):
    """Where one metric lives and how to turn its registers into a value."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64, description="The metric's name."
    )
    address: int = Field(ge=0, le=0xFFFF, description="Its first register (0-based).")
    function: Function = Field(
        default=Function.HOLDING, description="Register table: holding (0x03) or input (0x04)."
    )
    type: DataType = Field(default=DataType.UINT16, description="How its registers encode it.")
    word_order: Order = Field(default=Order.BIG, description="Register order of a 32/64-bit value.")
    byte_order: Order = Field(default=Order.BIG, description="Byte order inside a register.")
    scale: float = Field(
        default=1.0, allow_inf_nan=False, description="value = raw × scale + offset; not 0."
    )
    offset: float = Field(default=0.0, allow_inf_nan=False, description="Added after scale.")
    unit: str = Field(default="", description='The unit readings carry, e.g. "V".')
    # The raw value (before scale and offset) a device gives when it has no valid reading,
    # e.g. 65535 for a uint16; a metric holding it is left out of the poll's readings.
    missing: int | None = Field(
        default=None,
        description="The raw value the device gives when it has no valid reading (e.g. 65535); "
        "such a value is left out.",
    )
    # Report-on-change (drivers/deadband.py): store a value only when it moved this much from
    # the last stored one, or max_silence passed. Absent: every reading is stored.
    deadband: float | None = Field(
        default=None,
        allow_inf_nan=False,
        description="Report on change: store a value only when it moved at least this much "
        "(in its unit) from the last stored one; absent: every reading is stored.",
    )
    deadband_percent: float | None = Field(
        default=None,
        allow_inf_nan=False,
        description="Report on change, relative: store a value only when it moved at least "
        "this many percent from the last stored one.",
    )
    max_silence: Seconds | None = Field(
        default=None,
        description="With a deadband: store a value at least this often even when it did not move.",
    )
    # [min, max] a working device of this model can report (after scale and offset), e.g. the
    # sensor's measuring range. `streetgate scan modbus` rejects a profile whose values fall
    # outside; the gateway does not use it yet (a reading outside could become "suspect").
    range: tuple[FiniteFloat, FiniteFloat] | None = Field(
        default=None,
        description="[min, max] a working device of this model can report (after scale and "
        "offset); scan modbus rejects a profile whose values fall outside.",
    )

    @property
    def count(self) -> int:
        """Registers this metric occupies."""
        return self.type.registers

    @field_validator("scale")
    @classmethod
    def _scale_not_zero(cls, value: float) -> float:
        if value == 0:
            raise ValueError("scale must not be 0 (every reading would equal the offset)")
        return value

    @property
    def report(self) -> Deadband:
        """This metric's deadband settings."""
        return rule_of(self)

    @model_validator(mode="after")
    def _deadband_settings(self) -> MetricSpec:
        rule_of(self)  # its checks: not negative, max_silence only with a deadband
        return self

    @property
    def plausible_range(self) -> tuple[float, float] | None:
        """The declared ``range``, else what the unit allows physically (None: no limit known)."""
        if self.range is not None:
            return self.range
        return PHYSICAL_LIMITS.get(self.unit)

    @model_validator(mode="after")
    def _range_is_physical(self) -> MetricSpec:
        if self.range is None:
            return self
        low, high = self.range
        if not low < high:
            raise ValueError(f"range: min must be below max, got [{low:g}, {high:g}]")
        limits = PHYSICAL_LIMITS.get(self.unit)
        if limits is not None and not limits[0] <= low < high <= limits[1]:
            raise ValueError(
                f"range: [{low:g}, {high:g}] {self.unit} is outside what is physically possible"
                f" ({_span(limits)} {self.unit})"
            )
        return self

    @model_validator(mode="after")
    def _fits_address_space(self) -> MetricSpec:
        if self.address + self.count - 1 > 0xFFFF:
            raise ValueError(
                f"a {self.type.value} at address {self.address} runs past register 65535"
            )
        if self.missing is not None:
            bounds = self.type.int_range
            if bounds is None:
                raise ValueError(f"missing: only integer types have a sentinel, not {self.type}")
            if not bounds[0] <= self.missing <= bounds[1]:
                raise ValueError(
                    f"missing: {self.missing} is not a {self.type.value} "
                    f"(expected {bounds[0]}..{bounds[1]})"
                )
        return self


class Profile(BaseModel):
    """A device model's register map."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="The profile's name.")
    description: str = Field(default="", description="What device it is for.")
    max_registers_per_request: int = Field(
        default=MAX_REGISTERS_PER_REQUEST,
        ge=1,
        le=125,
        description="Most registers one request reads (some devices take fewer than 125).",
    )
    max_gap: int = Field(
        default=0,
        ge=0,
        le=124,
        description="Unused registers a request may span to join two metrics.",
    )
    metrics: tuple[MetricSpec, ...] = Field(
        description="The metrics: one [[metrics]] table each (at least one)."
    )

    # A field validator, not a model validator: its errors carry the key path "metrics", and it
    # runs only when every metric is valid (a min_length constraint would add a spurious "at least
    # 1 item" error whenever the only metric is invalid).
    @field_validator("metrics")
    @classmethod
    def _check_metrics(
        cls, metrics: tuple[MetricSpec, ...], info: ValidationInfo
    ) -> tuple[MetricSpec, ...]:
        if not metrics:
            raise ValueError("expected at least one [[metrics]] table")
        first_use: dict[str, int] = {}
        for index, metric in enumerate(metrics):
            if metric.name in first_use:
                raise ValueError(
                    f"metric name {metric.name!r} is used twice "
                    f"(metrics[{first_use[metric.name]}] and metrics[{index}])"
                )
            first_use[metric.name] = index
        limit = info.data.get("max_registers_per_request", MAX_REGISTERS_PER_REQUEST)
        for index, metric in enumerate(metrics):
            if metric.count > limit:
                raise ValueError(
                    f"metrics[{index}] ({metric.name}) is a {metric.type.value} of {metric.count}"
                    f" registers, more than max_registers_per_request = {limit}"
                )
        return metrics

    @property
    def deadbands(self) -> dict[str, Deadband]:
        """The deadband settings of every metric that has one, by metric name."""
        return {m.name: m.report for m in self.metrics if m.report.active}


def builtin_profiles() -> list[str]:
    """Names of the profiles shipped with streetgate."""
    return list(_builtin_names())


@cache
def _builtin_names() -> tuple[str, ...]:
    folder = resources.files("drivers") / "profiles"
    return tuple(
        sorted(p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml"))
    )


def parse_profile(data: dict[str, Any], source: str) -> Profile:
    """Validate a profile document (a parsed TOML table); ``[defaults]`` apply to every metric."""
    data = dict(data)
    defaults = data.pop("defaults", {})
    if not isinstance(defaults, dict):
        raise ConfigError(source, [ConfigIssue("defaults", "expected a table of metric defaults")])
    metrics = data.get("metrics")
    if isinstance(metrics, list):
        data["metrics"] = [
            {**defaults, **metric} if isinstance(metric, dict) else metric for metric in metrics
        ]
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, issues_from_validation_error(exc)) from exc


def load_profile(ref: str, base_dir: Path | None = None) -> Profile:
    """Load a profile by built-in name (``"sdm120"``) or by path to a ``.toml`` file."""
    if ref.endswith(".toml") or "/" in ref:
        path = Path(ref)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        return _load_profile_file(path.resolve())
    if ref not in builtin_profiles():
        known = ", ".join(builtin_profiles())
        raise ConfigError(
            f"profile {ref!r}",
            [
                ConfigIssue(
                    "",
                    f"no built-in profile named {ref!r}; expected one of: {known}, "
                    "or a path to a .toml profile file",
                )
            ],
        )
    return _load_builtin(ref)


def load_profile_field(value: Any, info: ValidationInfo) -> Any:
    """Field validator body: a profile given by name or path becomes a loaded Profile.

    Relative paths resolve against ``base_dir`` in the validation context (the config's folder).
    """
    if isinstance(value, str):
        base = (info.context or {}).get("base_dir")
        try:
            return load_profile(value, base)
        except ConfigError as exc:
            raise ValueError("; ".join(str(i) for i in exc.issues) + f" [{exc.source}]") from exc
    return value


@cache
def _load_builtin(name: str) -> Profile:
    """Shipped profiles are package data: read and validated once per process."""
    text = (resources.files("drivers") / "profiles" / f"{name}.toml").read_text("utf-8")
    return _parse_text(text, f"built-in profile {name}")


@cache
def _load_profile_file(path: Path) -> Profile:
    data = read_config_file(path, "profile", MAX_PROFILE_BYTES)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), [ConfigIssue("", f"profile: not UTF-8 text: {exc}")]) from exc
    return _parse_text(text, str(path))


def _parse_text(text: str, source: str) -> Profile:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [ConfigIssue("", f"not valid TOML: {exc}")]) from exc
    return parse_profile(data, source)
