"""Config from environment variables (balena device and fleet variables) laid over the file.

Every scalar key outside ``[[devices]]`` has one variable: ``STREETGATE_`` and the key path in
capitals, joined by ``_``: ``gateway_id`` → ``STREETGATE_GATEWAY_ID``, ``mqtt.port`` →
``STREETGATE_MQTT_PORT``, ``mqtt.tls.ca_file`` → ``STREETGATE_MQTT_TLS_CA_FILE``. The names are
derived from the config models (:func:`variables`), so a new key gets its variable, and they
keep to what balena allows (letters, digits, ``_``). A variable's text goes through the same
models as the file's value: ``"8883"`` is a port, ``"5s"`` a duration, ``"true"`` a boolean,
and a bad one is reported under the variable's name. Any other ``STREETGATE_*`` variable is
an error, not ignored: a misspelt name must not leave a gateway on its file's broker. Only
:data:`COMMAND_VARIABLES` are the commands' own (the config file's path, the log level).
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel

from gateway.core.errors import ConfigError, ConfigIssue

__all__ = ["COMMAND_VARIABLES", "PREFIX", "Overlay", "overlay", "variables"]

PREFIX = "STREETGATE_"

#: Variables the commands read themselves; not config keys.
COMMAND_VARIABLES = {
    "STREETGATE_CONFIG": "the config file of every command without -c (default: "
    "/etc/streetgate/config.toml)",
    "STREETGATE_LOG_LEVEL": "`streetgate run --log-level`",
    "STREETGATE_RELEASE_KEY": "the sensor-node release public key (`streetgate node deploy`)",
}

#: Config keys that no variable sets: lists of tables.
_NOT_FROM_ENVIRONMENT = frozenset({"devices"})


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The config model a field holds (also through ``X | None``), or None for a scalar."""
    candidates = get_args(annotation) if get_origin(annotation) in (Union, types.UnionType) else ()
    for candidate in (annotation, *candidates):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def variables(model: type[BaseModel], path: tuple[str, ...] = ()) -> dict[str, tuple[str, ...]]:
    """Variable name → the key path it sets, for every scalar key of ``model``."""
    found: dict[str, tuple[str, ...]] = {}
    for name, info in model.model_fields.items():
        if not path and name in _NOT_FROM_ENVIRONMENT:
            continue
        inner = _model_of(info.annotation)
        if inner is not None:
            found |= variables(inner, (*path, name))
        else:
            key = (*path, name)
            found[PREFIX + "_".join(key).upper()] = key
    return found


@dataclass
class Overlay:
    """The file's data with the variables applied, and where each applied value came from."""

    data: dict[str, Any]
    origins: dict[str, str] = field(default_factory=dict)  # key path ("mqtt.port") → variable
    issues: list[ConfigIssue] = field(default_factory=list)  # about the variables themselves
    known: dict[str, str] = field(default_factory=dict)  # key path → the variable that sets it

    @property
    def applied(self) -> bool:
        """Whether any variable was applied (or rejected)."""
        return bool(self.origins or self.issues)

    def source(self, file: str) -> str:
        """How errors name where the configuration came from."""
        names = sorted({*self.origins.values(), *(i.location for i in self.issues)})
        return f"{file} with {', '.join(names)}" if names else file

    def error(self, file: str, issues: Iterable[ConfigIssue] = ()) -> ConfigError:
        """A ConfigError with the variables' own issues first; a validation issue at a key a
        variable set names the variable instead of the key."""
        renamed = []
        for issue in issues:
            if issue.location in self.origins:
                where = f"{self.origins[issue.location]} (sets {issue.location})"
                renamed.append(ConfigIssue(where, issue.message))
            elif issue.message == "required key is missing" and issue.location in self.known:
                hint = f"{issue.message} (in the file, or as {self.known[issue.location]})"
                renamed.append(ConfigIssue(issue.location, hint))
            else:
                renamed.append(issue)
        return ConfigError(self.source(file), [*self.issues, *renamed])


def overlay(data: Mapping[str, Any], environ: Mapping[str, str], model: type[BaseModel]) -> Overlay:
    """Lay the ``STREETGATE_*`` variables of ``environ`` over a parsed config document."""
    known = variables(model)
    result = Overlay(_copy_tables(data), known={".".join(p): n for n, p in known.items()})
    for name in sorted(environ):
        if not name.startswith(PREFIX) or name in COMMAND_VARIABLES:
            continue
        value = environ[name]
        path = known.get(name)
        if path is None:
            result.issues.append(ConfigIssue(name, _unknown(name, known)))
        elif value == "":
            result.issues.append(
                ConfigIssue(name, "empty: give a value, or remove the variable to use the file's")
            )
        else:
            _set(result, path, name, value)
    return result


def _set(result: Overlay, path: tuple[str, ...], name: str, value: str) -> None:
    table = result.data
    for i, part in enumerate(path[:-1]):
        inner = table.setdefault(part, {})
        if not isinstance(inner, dict):
            where = ".".join(path[: i + 1])
            result.issues.append(ConfigIssue(name, f"{where} in the file is not a table"))
            return
        table = inner
    table[path[-1]] = value
    result.origins[".".join(path)] = name


def _unknown(name: str, known: Mapping[str, tuple[str, ...]]) -> str:
    # Compared without the prefix every name shares, which would make them all look alike.
    tails = [n.removeprefix(PREFIX) for n in (*known, *COMMAND_VARIABLES)]
    close = difflib.get_close_matches(name.removeprefix(PREFIX), tails, n=1, cutoff=0.75)
    hint = f"did you mean {PREFIX}{close[0]}? " if close else ""
    return (
        f"unknown streetgate variable ({hint}each config key outside [[devices]] has one, "
        f"e.g. STREETGATE_MQTT_HOST for mqtt.host; see docs/deploy.md)"
    )


def _copy_tables(data: Mapping[str, Any]) -> dict[str, Any]:
    """A copy deep enough that setting keys never changes the caller's tables."""
    return {k: _copy_tables(v) if isinstance(v, dict) else v for k, v in data.items()}
