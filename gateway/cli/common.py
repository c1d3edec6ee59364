"""What every ``streetgate`` subcommand shares: the ``--config`` option, stderr messages, and
loading the config or exiting with :data:`ExitCode.CONFIG`.

A module of its own, so that subcommand modules can import it at the top without importing
``gateway.cli``, which imports them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gateway.cli.exit_codes import ExitCode
from gateway.config.model import GatewayConfig, load_config
from gateway.core.errors import ConfigError

__all__ = ["ConfigOption", "err", "load_or_exit"]

ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", help="Gateway config file (TOML).", show_default=True)
]


def err(message: str) -> None:
    """A message for the technician, on stderr (stdout is for results)."""
    typer.echo(message, err=True)


def load_or_exit(path: Path) -> GatewayConfig:
    """Load a config for a command, or print every issue and exit with ExitCode.CONFIG."""
    try:
        return load_config(path)
    except ConfigError as exc:
        err(str(exc))
        raise typer.Exit(ExitCode.CONFIG) from exc
