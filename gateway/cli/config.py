"""``streetgate config validate|show``: check a config file, print the effective config.

``show`` prints the config after defaults (what the gateway will use), as TOML or with
``--json`` as one JSON object; secrets are masked unless ``--no-redact``: BTHome bindkeys and
any key named like ``key``, ``password``, ``token`` or ``secret``. Files holding secrets
(``mqtt.password_file``, TLS keys) are shown by path and never read here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from gateway.cli.common import load_or_exit
from gateway.config.effective import effective_config
from gateway.config.toml_write import dumps

__all__ = ["register"]


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
