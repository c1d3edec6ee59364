"""What a remote ``config-set`` may change: an allowlist; every other key is local-only.

The platform (anyone holding the command right) may manage what fleet operations need: the
devices and their schedules, their deadbands (with ``max_silence`` at most a day, so a deadband
cannot silence a device for good), the payload format and batching, the health interval and the
outbox's commit settings within safe bounds. Where data goes (broker, TLS, credentials, client
identity, topic prefix), every file path, the metrics listener and any key added later stay
*local*: changed on site with the CLI, the file or the environment, never over MQTT.

:func:`refused_changes` compares the document as it would be written with the document on disk
(after the merge patch, so a ``null`` that deletes a key, or a table or list replaced whole, is
seen as the change it makes). A local-only key restated with exactly the value written in the
file is not a change and passes; any other value, a deletion, or a key added is refused. It is
pure apart from looking at the profile files a device names (never reading their content).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drivers.profile import builtin_profiles
from gateway.core.units import parse_duration

__all__ = ["LOCAL_ONLY_HINT", "Refusal", "refused_changes", "remote_rule"]

LOCAL_ONLY_HINT = "change it on site (CLI, file or environment)"

#: A check of an allowed value: None when it may be set remotely, else why not.
Check = Callable[[Any], str | None]


@dataclass(frozen=True, slots=True)
class Refusal:
    """One key a remote change may not make, and why."""

    key: str  # dotted, as validation issues name keys: "mqtt.host", "devices[0].profile"
    message: str

    def __str__(self) -> str:
        return f"{self.key} {self.message}"


def _local_only(_: Any) -> str:
    return f"is local-only: {LOCAL_ONLY_HINT}"


def _any(_: Any) -> None:
    return None


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except ValueError:
            return None
    return None


@dataclass(frozen=True, slots=True)
class _Described:
    """A check and what it allows, in words (docs/config.md's "remote" column)."""

    check: Check
    allows: str

    def __call__(self, value: Any) -> str | None:
        return self.check(value)


def _duration_within(low: float, high: float) -> Check:
    def check(value: Any) -> str | None:
        seconds = _seconds(value)
        if seconds is None:  # not a duration at all: validation names it
            return None
        if not low <= seconds <= high:
            return (
                f"may be set remotely from {low:g}s to {high:g}s (got {value!r}); "
                f"another value is local-only: {LOCAL_ONLY_HINT}"
            )
        return None

    return _Described(check, f"{low:g}s to {high:g}s")


def _int_within(low: int, high: int) -> Check:
    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int):
            return None  # validation names it
        if not low <= value <= high:
            return (
                f"may be set remotely from {low} to {high} (got {value!r}); "
                f"another value is local-only: {LOCAL_ONLY_HINT}"
            )
        return None

    return _Described(check, f"{low} to {high}")


def _one_of(*allowed: str) -> Check:
    def check(value: Any) -> str | None:
        if isinstance(value, str) and value not in allowed:
            return (
                f"may be set remotely to {' or '.join(repr(a) for a in allowed)} "
                f"(got {value!r}); another value is local-only: {LOCAL_ONLY_HINT}"
            )
        return None

    return _Described(check, " or ".join(repr(a) for a in allowed))


#: The remote-allowed keys of the top-level tables and their remote bounds (docs/mqtt.md).
#: ``devices`` has its own rules (_device_refusals). Anything not named here is local-only.
REMOTE_TABLES: dict[str, dict[str, Check]] = {
    "mqtt": {
        "payload_format": _any,
        # how readings are encoded, like payload_format: never where they go or who reads them
        "compression": _any,
        "readings_per_message": _any,  # the model bounds it (1-10000)
        "max_inflight": _int_within(1, 100),
        "publish_timeout": _duration_within(1.0, 120.0),
        "health_interval": _duration_within(5.0, 86_400.0),
    },
    "outbox": {
        "commit_interval": _duration_within(0.01, 1.0),
        "commit_max_readings": _any,  # the model bounds it (1-100000)
        "queue_size": _int_within(100, 100_000),
        # off trades durability for speed: that is decided on site, not remotely
        "synchronous": _one_of("normal", "full"),
    },
}

#: Device keys a remote change may set (the kinds in gateway/config/devices.py). Not here, so
#: local-only: a BTHome ``key`` (a secret protecting the data: deployed on site with the node).
#: ``port`` and ``profile`` name files and are checked further (_port_refusal, _profile_refusal).
REMOTE_DEVICE_KEYS = frozenset(
    {
        "kind",
        "name",
        "host",  # a Modbus TCP device's address: devices are fleet business
        "port",
        "unit_id",
        "profile",
        "interval",
        "timeout",
        "stale_after",
        "connect_attempts",
        "mode",
        "baudrate",
        "parity",
        "stopbits",
        "pattern",
        "fields",
        "encoding",
        "mac",
        "characteristics",
        "units",
        "deadbands",  # bounded: _silence_refusals
    }
)
REMOTE_UNIT_KEYS = frozenset({"name", "unit_id", "profile", "interval", "deadbands"})

#: The longest ``max_silence`` a remote change may set (drivers/deadband.py): a deadband set
#: remotely can make a device quiet, but never for longer than this.
REMOTE_MAX_SILENCE = 86_400.0

#: Serial ports a remote change may name: a tty device or a stable by-id/by-path link under
#: /dev, or a USB identity. Network ports (socket://, rfc2217://) and other paths are
#: local-only, unless the config on disk already names that port.
_REMOTE_PORT = re.compile(
    r"^(/dev/tty[A-Za-z0-9_]+|/dev/serial/by-(id|path)/[A-Za-z0-9_.:+-]+"
    r"|usb:[0-9A-Fa-f]{4}:[0-9A-Fa-f]{4}(:[A-Za-z0-9_.-]+)?)$"
)


def remote_rule(key: str) -> str | None:
    """What a remote ``config-set`` may set ``key`` to, in words for docs/config.md; None when
    the key is local-only.

    ``key`` is dotted without list indexes: ``"mqtt.max_inflight"``, ``"devices.host"``,
    ``"devices.units.interval"``. Keys inside a remote device key's value (a characteristic, a
    line field, an inline profile) go with that key: ``"devices.characteristics"``.
    """
    parts = key.split(".")
    if parts[0] == "devices":
        return _device_rule(parts[1:])
    table = REMOTE_TABLES.get(parts[0])
    check = table.get(parts[1]) if table is not None and len(parts) == 2 else None
    if check is None:
        return None
    return f"yes: {check.allows}" if isinstance(check, _Described) else "yes"


def _device_rule(parts: list[str]) -> str | None:
    if not parts:
        return "yes: the array of device tables, checked key by key"
    allowed = REMOTE_DEVICE_KEYS
    if parts[0] == "units" and len(parts) > 1:
        allowed, parts = REMOTE_UNIT_KEYS, parts[1:]
    name = parts[0]
    if name not in allowed:
        return None
    if len(parts) > 1:  # inside the value of a remote key: a characteristic, an inline profile
        return f"yes, as part of {name}"
    return {
        "port": "yes (a serial port: /dev/tty*, /dev/serial/by-id/*, /dev/serial/by-path/*, "
        "usb:VID:PID[:SERIAL] or one the config already uses)",
        "profile": "yes: a shipped profile, a .toml file already in the config's folder, or "
        "an inline table",
    }.get(name, "yes")


def refused_changes(
    current: Mapping[str, Any], proposed: Mapping[str, Any], config_path: Path
) -> list[Refusal]:
    """Every change from ``current`` (the file on disk) to ``proposed`` that is local-only.

    ``config_path`` is the config file: profile files must be under its directory.
    """
    refusals: list[Refusal] = []
    for key in sorted(set(current) | set(proposed), key=str):
        old, new = current.get(key, _MISSING), proposed.get(key, _MISSING)
        if key == "devices":
            if new is not _MISSING and new != old:
                refusals += _devices_refusals(old, new, config_path)
        elif key in REMOTE_TABLES and _is_table(old) and _is_table(new):
            refusals += _table_refusals(key, old, new, REMOTE_TABLES[key])
        else:
            refusals += _diff(key, old, new, _local_only)
    return refusals


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Any = _Missing()


def _is_table(value: Any) -> bool:
    return value is _MISSING or isinstance(value, Mapping)


def _table_refusals(name: str, old: Any, new: Any, allowed: Mapping[str, Check]) -> list[Refusal]:
    old = {} if old is _MISSING else old
    new = {} if new is _MISSING else new
    refusals: list[Refusal] = []
    for key in sorted(set(old) | set(new), key=str):
        before, after = old.get(key, _MISSING), new.get(key, _MISSING)
        check = allowed.get(key, _local_only)
        if check is not _local_only and after is _MISSING:
            continue  # an allowed key removed: back to its default, which is safe
        refusals += _diff(f"{name}.{key}", before, after, check)
    return refusals


def _diff(key: str, old: Any, new: Any, check: Check) -> list[Refusal]:
    """Refusals for ``key`` going from ``old`` to ``new`` (``_MISSING``: absent)."""
    if _same(old, new):
        return []
    if check is _local_only and isinstance(new, Mapping) and _is_table(old):
        # Name the keys inside a local table that change (mqtt.tls.ca_file), not the table;
        # a table added empty ([metrics] turns the endpoint on) is named itself.
        old = {} if old is _MISSING else old
        inner = [
            refusal
            for sub in sorted(set(old) | set(new), key=str)
            for refusal in _diff(
                f"{key}.{sub}", old.get(sub, _MISSING), new.get(sub, _MISSING), check
            )
        ]
        return inner or [Refusal(key, check(new) or "")]
    reason = check(new)
    return [] if reason is None else [Refusal(key, reason)]


def _same(old: Any, new: Any) -> bool:
    # bool is an int in Python: True == 1 must still count as a change of type.
    return type(old) is type(new) and old == new


# -- devices --------------------------------------------------------------------------------


def _devices_refusals(old: Any, new: Any, config_path: Path) -> list[Refusal]:
    if not isinstance(new, list):  # nothing to check entry by entry: refused as it stands
        return [Refusal("devices", "may be set remotely as an array of device tables only")]
    current = [d for d in old if isinstance(d, Mapping)] if isinstance(old, list) else []
    by_name = {d["name"]: d for d in current if isinstance(d.get("name"), str)}
    known_ports = {d["port"] for d in current if isinstance(d.get("port"), str)}
    refusals: list[Refusal] = []
    for index, device in enumerate(new):
        if not isinstance(device, Mapping):
            continue  # validation names it
        where = f"devices[{index}]"
        was = by_name.get(_name(device), {})
        refusals += _entry_refusals(where, was, device, REMOTE_DEVICE_KEYS)
        port = device.get("port")
        if isinstance(port, str) and port not in known_ports and not _REMOTE_PORT.match(port):
            refusals.append(Refusal(f"{where}.port", _port_message(port)))
        if "profile" in device:
            refusals += _profile_refusals(f"{where}.profile", device["profile"], config_path)
        refusals += _silence_refusals(where, was, device)
        units = device.get("units")
        if isinstance(units, list):
            old_units: Any = was.get("units")
            if not isinstance(old_units, list):
                old_units = []
            old_by_name = {_name(u): u for u in old_units if isinstance(u, Mapping)}
            for u_index, unit in enumerate(units):
                if not isinstance(unit, Mapping):
                    continue
                u_where = f"{where}.units[{u_index}]"
                u_was = old_by_name.get(_name(unit), {})
                refusals += _entry_refusals(u_where, u_was, unit, REMOTE_UNIT_KEYS)
                if "profile" in unit:
                    refusals += _profile_refusals(
                        f"{u_where}.profile", unit["profile"], config_path
                    )
                refusals += _silence_refusals(u_where, u_was, unit)
    return refusals


def _silences(entry: Mapping[str, Any]) -> dict[str, Any]:
    """Every ``max_silence`` of a device entry, by its key path inside the entry: in its
    ``deadbands`` table and in an inline profile table (its ``[defaults]`` and metrics)."""
    found: dict[str, Any] = {}
    deadbands = entry.get("deadbands")
    if isinstance(deadbands, Mapping):
        for metric, setting in deadbands.items():
            if isinstance(setting, Mapping) and "max_silence" in setting:
                found[f"deadbands.{metric}.max_silence"] = setting["max_silence"]
    profile = entry.get("profile")
    if isinstance(profile, Mapping):
        defaults = profile.get("defaults")
        if isinstance(defaults, Mapping) and "max_silence" in defaults:
            found["profile.defaults.max_silence"] = defaults["max_silence"]
        metrics = profile.get("metrics")
        for index, metric in enumerate(metrics if isinstance(metrics, list) else []):
            if isinstance(metric, Mapping) and "max_silence" in metric:
                found[f"profile.metrics[{index}].max_silence"] = metric["max_silence"]
    return found


def _silence_refusals(
    where: str, was: Mapping[str, Any], entry: Mapping[str, Any]
) -> list[Refusal]:
    """A remote ``max_silence`` above :data:`REMOTE_MAX_SILENCE` would let a deadband silence a
    device for good; one the same-named device already has on disk is not a change."""
    before = _silences(was)
    check = _duration_within(0.0, REMOTE_MAX_SILENCE)
    return [
        Refusal(f"{where}.{key}", reason)
        for key, value in _silences(entry).items()
        if not _same(before.get(key, _MISSING), value) and (reason := check(value)) is not None
    ]


def _name(entry: Mapping[str, Any]) -> str | None:
    name = entry.get("name")
    return name if isinstance(name, str) else None  # anything else: validation names it


def _entry_refusals(
    where: str, was: Mapping[str, Any], entry: Mapping[str, Any], allowed: frozenset[str]
) -> list[Refusal]:
    """Keys of a device entry outside ``allowed`` must be as the same-named device has them."""
    refusals: list[Refusal] = []
    for key in sorted(set(was) | set(entry), key=str):
        if key in allowed:
            continue
        old, new = was.get(key, _MISSING), entry.get(key, _MISSING)
        if not _same(old, new):
            refusals.append(Refusal(f"{where}.{key}", _local_only(new)))
    return refusals


def _port_message(port: str) -> str:
    return (
        f"{port!r} may not be named remotely: expected /dev/tty..., /dev/serial/by-id/..., "
        f"/dev/serial/by-path/... or usb:VID:PID[:SERIAL], or a port the config already uses; "
        f"other ports are local-only: {LOCAL_ONLY_HINT}"
    )


def _profile_refusals(key: str, profile: Any, config_path: Path) -> list[Refusal]:
    if not isinstance(profile, str):
        return []  # an inline profile table names no file
    reason = _profile_reason(profile, config_path)
    return [] if reason is None else [Refusal(key, reason)]


def _profile_reason(ref: str, config_path: Path) -> str | None:
    """Why ``ref`` may not be named remotely; None if it is a shipped or config-dir profile."""
    # As drivers.profile.load_profile tells a name from a path.
    if not (ref.endswith(".toml") or "/" in ref):
        return None  # a name: a shipped profile, or validation says which names there are
    refused = (
        f"{ref!r} may not be named remotely: expected a shipped profile "
        f"({', '.join(builtin_profiles())}) or a .toml file already in the config directory "
        f"{config_path.parent}; other profile files are local-only: {LOCAL_ONLY_HINT}"
    )
    if not ref.endswith(".toml") or "\0" in ref:
        return refused
    directory = config_path.parent.resolve()
    path = Path(ref) if Path(ref).is_absolute() else directory / ref
    try:
        resolved = path.resolve(strict=True)  # symlinks followed: where it really is
        regular = resolved.is_file()
    except (OSError, RuntimeError):
        return refused
    own_files = {
        config_path.resolve(),
        config_path.with_name(config_path.name + ".previous").resolve(),
    }
    if not regular or not resolved.is_relative_to(directory) or resolved in own_files:
        return refused
    return None
