"""``streetgate run``: the gateway process."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from gateway.cli.common import ConfigOption, fail, load_or_exit
from gateway.cli.exit_codes import ExitCode
from gateway.config.change import read_marker
from gateway.config.tls_files import pending_tls_files
from gateway.core.errors import (
    ConfigError,
    OutboxForeign,
    OutboxLocked,
    OutboxNotOurs,
    StreetgateError,
    UnsafeKeyFile,
)
from gateway.runtime.journal_log import log_handler


def setup_logging(level: str) -> None:
    """Log lines to stderr; under systemd with priority prefixes and without timestamps."""
    logging.basicConfig(level=level.upper(), handlers=[log_handler(sys.stderr)])
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


async def _serve(config_path: Path) -> None:
    # The supervisor restarts the gateway in-process (restart, config-set commands). Imported
    # here: the runtime loads aiomqtt, pymodbus and bleak, which other commands do without.
    from gateway.runtime.supervisor import Supervisor  # noqa: PLC0415

    supervisor = Supervisor(config_path)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, supervisor.shutdown)
    # systemctl reload (ExecReload= sends SIGHUP): re-read the config file in-process.
    loop.add_signal_handler(signal.SIGHUP, supervisor.request_reload)
    await supervisor.run()


def run(
    config: ConfigOption,
    log_level: Annotated[
        str, typer.Option(envvar="STREETGATE_LOG_LEVEL", help="debug, info, warning or error.")
    ] = "info",
) -> None:
    """Run the gateway: poll devices, buffer readings, forward them to the broker.

    SIGHUP (``systemctl reload``) re-reads the config file; SIGTERM and SIGINT stop it.
    """
    # Until the event loop's handler is in place, a SIGHUP (a reload asked for too early) must
    # not end the process, which is SIGHUP's default.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if read_marker(config) is None:
        # With a remote change pending, the supervisor settles it first.
        pending = pending_tls_files(load_or_exit(config, "run").mqtt.tls, config)
        if len(pending) == 1:
            fail("run", str(pending[0]), ExitCode.CONFIG)
        if pending:
            lines = "".join(f"\n  {p}" for p in pending)
            fail("run", f"the TLS files the config names do not exist yet:{lines}", ExitCode.CONFIG)
    setup_logging(log_level)
    try:
        asyncio.run(_serve(config.absolute()))  # config-get reports where it is
    except Exception as exc:
        error = find_error(exc)
        if error is None:
            raise
        # Not exit_code_for: a running gateway's broker or device trouble is FAILURE, as before.
        permission = isinstance(error, UnsafeKeyFile | OutboxNotOurs)  # systemd: no restart
        code = ExitCode.PERMISSION if permission else ExitCode.FAILURE
        if isinstance(error, ConfigError):
            code = ExitCode.CONFIG
        elif isinstance(error, OutboxLocked | OutboxForeign):
            code = ExitCode.DECLINED  # refused; nothing was written
        fail("run", error, code)


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
