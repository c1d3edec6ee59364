"""Report-on-change settings as config: a metric's deadband in a profile, a device's overrides.

A profile metric may say ``deadband``, ``deadband_percent`` and ``max_silence`` (also in the
profile's ``[defaults]``); every device entry may override them per metric in its ``deadbands``
table, keyed by metric name, with ``"*"`` for every other measurement of the device::

    [devices.deadbands]
    temperature = { deadband = 0.2, max_silence = "15m" }
    "*" = { deadband_percent = 2 }
    voltage_l1 = {}          # an empty table: store every reading of this metric

A device's entry for a metric replaces the profile's rule for it whole, and its ``"*"`` replaces
the profile's rules of every measurement it does not name (states keep theirs). The policy itself is
:mod:`gateway.core.deadband`; this module checks the settings and turns them into its rules.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Self

from pydantic import Field, field_validator, model_validator

from gateway.core.config_types import NAME_PATTERN, Frozen, Seconds
from gateway.core.deadband import DeadbandRule, DeviceDeadbands, is_state

__all__ = [
    "ALL_METRICS",
    "DEFAULT_MAX_SILENCE",
    "Deadband",
    "DeadbandKey",
    "Reporting",
    "check_deadbands",
    "device_deadbands",
    "rule_of",
]

#: The ``deadbands`` key that covers every measurement without its own entry.
ALL_METRICS = "*"
#: ``max_silence`` when a deadband is given without one: the longest a steady metric goes unheard.
DEFAULT_MAX_SILENCE = 900.0

#: A key of a device's ``deadbands`` table: a metric name, or ``"*"``.
DeadbandKey = Annotated[str, Field(pattern=rf"^({NAME_PATTERN[1:-1]}|\*)$", max_length=64)]


def _not_negative(value: float | None, key: str, unit: str) -> float | None:
    if value is not None and value < 0:
        raise ValueError(f"{key} must be 0 or more ({unit}), got {value!r}")
    return value


class Deadband(Frozen):
    """One metric's report-on-change rule; all keys absent: store every reading."""

    deadband: float | None = Field(
        default=None,
        allow_inf_nan=False,
        description="Store a value only when it moved at least this much (in the metric's "
        "unit) from the last stored one; 0: every change.",
    )
    deadband_percent: float | None = Field(
        default=None,
        allow_inf_nan=False,
        description="Store a value only when it moved at least this many percent of the last "
        "stored one.",
    )
    max_silence: Seconds | None = Field(
        default=None,
        description="With a deadband: store a value at least this often, moved or not.",
    )

    @field_validator("deadband")
    @classmethod
    def _deadband_not_negative(cls, value: float | None) -> float | None:
        return _not_negative(value, "deadband", "in the metric's unit; 0: store every change")

    @field_validator("deadband_percent")
    @classmethod
    def _percent_not_negative(cls, value: float | None) -> float | None:
        return _not_negative(value, "deadband_percent", "percent of the last stored value")

    @model_validator(mode="after")
    def _silence_needs_a_deadband(self) -> Self:
        if self.max_silence is not None and not self.active:
            raise ValueError(
                "max_silence needs deadband or deadband_percent (deadband = 0 stores every "
                "change); without them every reading is stored"
            )
        return self

    @property
    def active(self) -> bool:
        """Whether readings are filtered at all."""
        return self.deadband is not None or self.deadband_percent is not None

    @property
    def silence(self) -> float:
        """``max_silence`` in seconds, its default filled in."""
        return DEFAULT_MAX_SILENCE if self.max_silence is None else self.max_silence

    def rule(self) -> DeadbandRule | None:
        """The runtime rule, or None when every reading is stored."""
        if not self.active:
            return None
        return DeadbandRule(
            max_silence_ms=round(self.silence * 1000),
            absolute=self.deadband or 0.0,
            percent=self.deadband_percent or 0.0,
        )


def rule_of(settings: Any) -> Deadband:
    """The :class:`Deadband` of anything with ``deadband``/``deadband_percent``/``max_silence``
    attributes (a profile's ``MetricSpec``)."""
    return Deadband(
        deadband=settings.deadband,
        deadband_percent=settings.deadband_percent,
        max_silence=settings.max_silence,
    )


def check_deadbands(
    overrides: Mapping[str, Deadband],
    *,
    metrics: Iterable[str] | None,
    profile_rules: Mapping[str, Deadband] | None = None,
    interval: float | None = None,
    where: str = "",
) -> None:
    """ValueError naming the key when a device's deadbands cannot work.

    ``metrics``: the metric names the device can send (None: not known before it is heard, as
    with BLE sensors); ``profile_rules``: the rules its profile gives; ``interval``: how often
    it is polled (None: it is heard, not polled); ``where``: the key path before ``deadbands``
    (``units[1].``).
    """
    known = None if metrics is None else set(metrics)
    problems: list[str] = []
    for metric, setting in overrides.items():
        key = f"{where}deadbands.{metric}" if metric != ALL_METRICS else f'{where}deadbands."*"'
        if known is not None and metric != ALL_METRICS and metric not in known:
            problems.append(
                f"{key}: the device has no metric {metric!r}; expected one of {sorted(known)} "
                f'or "*"'
            )
            continue
        problems += _rule_problems(key, metric, setting, interval)
    for metric, setting in (profile_rules or {}).items():
        if metric in overrides or (ALL_METRICS in overrides and not is_state(metric)):
            continue  # replaced by the device's entry
        problems += _rule_problems(f"{where}profile metric {metric}", metric, setting, interval)
    if problems:
        raise ValueError("; ".join(problems))


def _rule_problems(key: str, metric: str, setting: Deadband, interval: float | None) -> list[str]:
    problems = []
    banded = bool(setting.deadband or setting.deadband_percent)
    if metric != ALL_METRICS and is_state(metric) and banded:
        problems.append(
            f"{key}: {metric!r} is a state (0/1), not a measurement: a deadband means nothing "
            "there; use deadband = 0 to store only its changes"
        )
    if setting.active and interval is not None and setting.silence < interval:
        problems.append(
            f"{key}.max_silence: {setting.silence:g}s is shorter than the poll interval "
            f"({interval:g}s); expected at least the interval"
        )
    return problems


def device_deadbands(
    overrides: Mapping[str, Deadband], profile_rules: Mapping[str, Deadband] | None = None
) -> DeviceDeadbands:
    """The runtime rules of one device: its own entries over its profile's."""
    metrics: dict[str, DeadbandRule | None] = {
        metric: setting.rule()
        for metric, setting in (profile_rules or {}).items()
        if ALL_METRICS not in overrides or is_state(metric)  # "*" covers measurements only
    }
    default = None
    for metric, setting in overrides.items():
        if metric == ALL_METRICS:
            default = setting.rule()
        else:
            metrics[metric] = setting.rule()
    return DeviceDeadbands(metrics, default)


class Reporting(Frozen):
    """Base of device models that take ``deadbands`` (see the module doc)."""

    deadbands: dict[DeadbandKey, Deadband] = Field(
        default_factory=dict,
        description='Report on change, per metric name or "*" for all: '
        "[devices.deadbands.<metric>] tables; absent: every reading is stored.",
    )
