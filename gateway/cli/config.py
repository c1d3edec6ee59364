"""``streetgate config validate|show``: check a config file, print the effective config.

``show`` prints the config after defaults (what the gateway will use), as TOML or with
``--json`` as one JSON object; secrets are masked unless ``--no-redact``: BTHome bindkeys and
any key named like ``key``, ``password``, ``token`` or ``secret``. Files holding secrets
(``mqtt.password_file``, TLS keys) are shown by path and never read here.
"""

from __future__ import annotations

import json
import re
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel, SecretStr

from drivers.profile import Profile, builtin_profiles, load_profile
from gateway.cli.common import load_or_exit
from gateway.config.model import GatewayConfig
from gateway.config.toml_write import dumps

__all__ = ["MASK", "effective_config", "register"]

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


def show(
    config: Annotated[Path, typer.Option("--config", "-c", help="Gateway config file (TOML).")],
    redact: Annotated[
        bool, typer.Option("--redact/--no-redact", help="Mask secrets (BTHome keys, passwords).")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """The effective config after defaults (TOML, or JSON with --json), secrets masked."""
    data = effective_config(load_or_exit(config), redact=redact)
    typer.echo(json.dumps(data) if as_json else dumps(data), nl=as_json)


def register(app: typer.Typer) -> None:
    """Add ``config validate|show`` to the CLI (once)."""
    if any(group.name == "config" for group in app.registered_groups):
        return
    from gateway.cli.main import validate  # noqa: PLC0415 - gateway.cli.main imports this module

    group = typer.Typer(
        name="config",
        help="Check a config file, or print the effective config (secrets masked).",
        no_args_is_help=True,
    )
    group.command("validate")(validate)
    group.command("show")(show)
    app.add_typer(group, name="config")
