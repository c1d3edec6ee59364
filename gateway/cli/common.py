"""What every ``streetgate`` subcommand shares: the ``--config`` option, stderr messages, the one
error/exit helper (:func:`fail`, :func:`reporting`), and loading the config or exiting with
:data:`ExitCode.CONFIG`.

Every error a command reports reads ``error: <what>: <why>`` on stderr, where ``<what>`` names
the command (group) or the thing that failed; the exit status comes from
:func:`gateway.cli.exit_codes.exit_code_for` unless the caller gives one.

A module of its own, so that subcommand modules can import it at the top without importing
``gateway.cli``, which imports them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from gateway.cli.exit_codes import ExitCode, exit_code_for
from gateway.config.model import GatewayConfig, load_config
from gateway.core.errors import ConfigError, StreetgateError

__all__ = ["ConfigOption", "err", "fail", "load_or_exit", "reporting"]

ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", help="Gateway config file (TOML).", show_default=True)
]


def err(message: str) -> None:
    """A message for the technician, on stderr (stdout is for results)."""
    typer.echo(message, err=True)


def fail(what: str, why: BaseException | str, code: int | None = None) -> NoReturn:
    """Print ``error: <what>: <why>`` on stderr and end the command with ``code``.

    ``code`` defaults to :func:`exit_code_for` of an exception, ``ExitCode.FAILURE`` for a text.
    """
    if code is None:
        code = exit_code_for(why) if isinstance(why, BaseException) else ExitCode.FAILURE
    err(f"error: {what}: {why}")
    if isinstance(why, BaseException):
        raise typer.Exit(code) from why
    raise typer.Exit(code)


@contextlib.contextmanager
def reporting(what: str, *kinds: type[StreetgateError]) -> Iterator[None]:
    """An error of ``kinds`` (default: any :class:`StreetgateError`) raised inside becomes
    :func:`fail` ``(what, exc)``: its message, and the exit code :func:`exit_code_for` gives."""
    caught = kinds or (StreetgateError,)
    try:
        yield
    except caught as exc:
        fail(what, exc)


def load_or_exit(path: Path) -> GatewayConfig:
    """Load a config for a command, or print every issue and exit with ExitCode.CONFIG."""
    try:
        return load_config(path)
    except ConfigError as exc:
        err(str(exc))
        raise typer.Exit(ExitCode.CONFIG) from exc
