"""The effective config: every default filled in, as plain data, secrets masked on request.

Used by ``streetgate config show`` and by the ``config-get`` management command, so both say
the same; it lives in the config layer because the management commands sit below the CLI.
"""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

from drivers.profile import Profile, builtin_profiles, load_profile
from gateway.config.model import GatewayConfig

__all__ = ["MASK", "effective_config"]

MASK = "********"

#: Keys whose values are secrets (not the ``*_file`` keys that name where a secret is kept).
_SECRET_KEY = re.compile(r"(^|_)(key|password|passphrase|token|secret)$")


def _is_builtin(profile: Profile) -> bool:
    return profile.name in builtin_profiles() and load_profile(profile.name) == profile


def _plain(value: Any, key: str, redact: bool) -> Any:  # noqa: PLR0911 - one branch per type
    if isinstance(value, SecretStr):
        return MASK if redact else value.get_secret_value()
    if redact and isinstance(value, str) and _SECRET_KEY.search(key):
        return MASK
    if isinstance(value, Profile) and _is_builtin(value):
        return value.name  # a profile file's register map is shown in full, below
    if isinstance(value, BaseModel):
        return {
            name: _plain(getattr(value, name), name, redact)
            for name in type(value).model_fields
            if getattr(value, name) is not None
        }
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v, str(k), redact) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, key, redact) for v in value]
    return value


def effective_config(config: GatewayConfig, *, redact: bool = True) -> dict[str, Any]:
    """The config with every default filled in, paths resolved, secrets masked if ``redact``.

    Durations are in seconds and sizes in bytes; unset optional keys are left out. A shipped
    profile is shown by name, a profile file's register map in full (a config may hold it
    inline), so ``--no-redact`` output is itself a config that loads to the same settings.
    """
    data: dict[str, Any] = _plain(config, "", redact)
    return data
