"""What every ``streetgate`` subcommand shares: the ``--config`` option, stderr messages, the one
error/exit helper (:func:`fail`, :func:`reporting`), and loading the config or exiting with
:data:`ExitCode.CONFIG`.

Every command that reads the gateway config finds it by one rule (:data:`ConfigOption`):
``-c/--config PATH``, else the ``STREETGATE_CONFIG`` variable, else :data:`DEFAULT_CONFIG`
(where deploy/install.sh puts it). A default or variable that names no file is an error saying
which path was tried and how to give another.

Every error a command reports reads ``error: <what>: <why>`` on stderr (``warning:`` and
``note:`` likewise, :func:`warn`, :func:`note`), where ``<what>`` names the command (group) or
the thing that failed; a config error gives one such line per issue, naming the file and the
key. The exit status comes from :func:`gateway.cli.exit_codes.exit_code_for` unless the caller
gives one.

A module of its own, so that subcommand modules can import it at the top without importing
``gateway.cli``, which imports them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn

import typer

from gateway.cli.exit_codes import ExitCode, exit_code_for
from gateway.config.model import GatewayConfig, load_config
from gateway.core.errors import ConfigError, StreetgateError

__all__ = [
    "CONFIG_VARIABLE",
    "DEFAULT_CONFIG",
    "ConfigOption",
    "GivenBy",
    "UncheckedConfigOption",
    "command_name",
    "config_error_lines",
    "config_given_by",
    "err",
    "fail",
    "load_or_exit",
    "missing_config",
    "note",
    "reporting",
    "warn",
]

#: Where deploy/install.sh installs the config, and so where every command looks by default.
DEFAULT_CONFIG = Path("/etc/streetgate/config.toml")
#: The variable naming the config file when ``-c`` is not given (a container, a test bench).
CONFIG_VARIABLE = "STREETGATE_CONFIG"
#: Where a command's config path came from: ``-c``, STREETGATE_CONFIG, or the default.
GivenBy = Literal["option", "variable", "default"]


def default_config() -> Path:
    """:data:`DEFAULT_CONFIG`, looked up when a command runs (so a test can move it)."""
    return DEFAULT_CONFIG


def config_given_by(ctx: typer.Context, name: str = "config") -> GivenBy:
    """How the command's config option got its value: ``"option"`` (``-c``), ``"variable"``
    (STREETGATE_CONFIG) or ``"default"``."""
    source = ctx.get_parameter_source(name)
    kind = source.name if source is not None else "DEFAULT"
    if kind == "COMMANDLINE":
        return "option"
    return "variable" if kind == "ENVIRONMENT" else "default"


def missing_config(path: Path, given_by: GivenBy) -> str | None:
    """Why a config path that ``-c`` did not give cannot be used (no file there), or None.

    A path given with ``-c`` is left to :func:`load_config`, whose error names it.
    """
    if given_by == "option" or os.path.lexists(path):
        return None
    if given_by == "variable":
        return f"no config file at {path} (named by {CONFIG_VARIABLE}; give another with -c PATH)"
    return f"no config file at {path} (give one with -c PATH or {CONFIG_VARIABLE})"


def command_name(ctx: typer.Context) -> str:
    """The command as errors name it: its group, ``buffer`` for ``streetgate buffer export``."""
    # The context just below the root's; not the path's second word, which for
    # `python -m gateway validate` is "-m".
    here: Any = ctx  # a typer.Context; its parents are click's contexts
    while here.parent is not None and here.parent.parent is not None:
        here = here.parent
    return str(here.info_name or here.command_path)


def _config_exists(ctx: typer.Context, param: typer.CallbackParam, value: Path) -> Path:
    if ctx.resilient_parsing or param.name is None:  # shell completion: no checks
        return value
    problem = missing_config(value, config_given_by(ctx, param.name))
    if problem is not None:
        fail(command_name(ctx), problem, ExitCode.CONFIG)
    return value


def _config_option(*, check: bool) -> Any:
    return typer.Option(
        "--config",
        "-c",
        envvar=CONFIG_VARIABLE,
        show_envvar=True,
        default_factory=default_config,
        show_default=str(DEFAULT_CONFIG),
        callback=_config_exists if check else None,
        help="Gateway config file (TOML).",
    )


#: The gateway config of a command: ``-c PATH``, else STREETGATE_CONFIG, else DEFAULT_CONFIG.
ConfigOption = Annotated[Path, _config_option(check=True)]
#: The same, unchecked: for a command that may take the file another way too (``validate FILE``)
#: and checks with :func:`missing_config` itself.
UncheckedConfigOption = Annotated[Path, _config_option(check=False)]


def err(message: str) -> None:
    """A message for the technician, on stderr (stdout is for results)."""
    typer.echo(message, err=True)


def warn(what: str, why: str) -> None:
    """``warning: <what>: <why>`` on stderr: something the technician should fix, not fatal."""
    err(f"warning: {what}: {why}")


def note(what: str, why: str) -> None:
    """``note: <what>: <why>`` on stderr: worth knowing, nothing to fix."""
    err(f"note: {what}: {why}")


def config_error_lines(what: str, exc: ConfigError) -> list[str]:
    """``error: <what>: <file>: <key>: <problem>``, one line per issue of ``exc``."""
    return [f"error: {what}: {exc.source}: {issue}" for issue in exc.issues] or [
        f"error: {what}: {exc}"
    ]


def fail(what: str, why: BaseException | str, code: int | None = None) -> NoReturn:
    """Print ``error: <what>: <why>`` on stderr and end the command with ``code``.

    A :class:`ConfigError` prints one such line per issue. ``code`` defaults to
    :func:`exit_code_for` of an exception, ``ExitCode.FAILURE`` for a text.
    """
    if code is None:
        code = exit_code_for(why) if isinstance(why, BaseException) else ExitCode.FAILURE
    if isinstance(why, ConfigError):
        for line in config_error_lines(what, why):
            err(line)
    else:
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


def load_or_exit(path: Path, what: str) -> GatewayConfig:
    """Load a config for the command ``what``, or print every issue (``error: <what>: ...``,
    one line each) and exit with ExitCode.CONFIG."""
    try:
        return load_config(path)
    except ConfigError as exc:
        fail(what, exc, ExitCode.CONFIG)
