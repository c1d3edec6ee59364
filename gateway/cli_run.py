"""``streetgate run``: the gateway process."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from gateway.app import run_gateway
from gateway.cli_common import load_or_exit
from gateway.config import GatewayConfig
from gateway.errors import StreetgateError, UnsafeKeyFile
from gateway.exit_codes import ExitCode
from gateway.journal_log import log_handler


def setup_logging(level: str) -> None:
    """Log lines to stderr; under systemd with priority prefixes and without timestamps."""
    logging.basicConfig(level=level.upper(), handlers=[log_handler(sys.stderr)])
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


async def _serve(config: GatewayConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await run_gateway(config, stop)


def register(app: typer.Typer) -> None:
    """Add ``run`` to the CLI."""

    @app.command()
    def run(
        config: Annotated[
            Path,
            typer.Option(
                "--config", "-c", envvar="STREETGATE_CONFIG", help="Gateway config file (TOML)."
            ),
        ],
        log_level: Annotated[
            str, typer.Option(envvar="STREETGATE_LOG_LEVEL", help="debug, info, warning or error.")
        ] = "info",
    ) -> None:
        """Run the gateway: poll devices, buffer readings, forward them to the broker."""
        cfg = load_or_exit(config)
        setup_logging(log_level)
        try:
            asyncio.run(_serve(cfg))
        except Exception as exc:
            error = find_error(exc)
            if error is None:
                raise
            typer.echo(f"streetgate: {error}", err=True)
            code = ExitCode.PERMISSION if isinstance(error, UnsafeKeyFile) else ExitCode.FAILURE
            raise typer.Exit(code) from exc


def find_error(exc: BaseException) -> StreetgateError | None:
    """The first StreetgateError in an exception or (nested) exception group."""
    if isinstance(exc, StreetgateError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = find_error(inner)
            if found is not None:
                return found
    return None
