"""The ``streetgate`` command line: the root app, built at import from one module per command group.

Each command group's module owns its ``typer.Typer()`` (``gateway/cli/buffer.py``'s ``app``) or
its command functions; this module only mounts them, in the order ``--help`` lists them. Heavy
libraries (bleak, pymodbus, balena, mpremote) are imported inside the commands that use them,
so ``streetgate validate`` and ``streetgate healthcheck`` start fast.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

import typer

from firmware import node_cli
from gateway.cli import (
    buffer,
    config,
    decode,
    doctor,
    healthcheck,
    init,
    page,
    read,
    run,
    scan,
    service,
    status,
    tail,
)
from gateway.cli.exit_codes import ExitCode
from provisioning import creds_cli, fleet_cli
from simulator import cli as sim_cli
from simulator import demo

#: What each exit status means, for ``--help`` and README.md's "Exit codes" table.
EXIT_CODE_MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "done; every check passed",
    ExitCode.FAILURE: "the command ran and something failed (a check, a runtime error)",
    ExitCode.USAGE: "bad command line, or an answer a script did not give",
    ExitCode.CONFIG: "the config file is invalid or unreadable",
    ExitCode.UNREACHABLE: "a broker, device, port or API could not be reached",
    ExitCode.PERMISSION: "a file's permissions are unsafe or do not allow the operation",
    ExitCode.NOT_FOUND: "what the command was asked about does not exist (yet)",
    ExitCode.DAMAGED: "a data file is damaged (left untouched)",
    ExitCode.DECLINED: "refused or declined: nothing changed",
}

EPILOG = "Exit codes: " + ", ".join(
    f"{int(code)} {code.name.lower().replace('_', ' ')}" for code in EXIT_CODE_MEANINGS
)

app = typer.Typer(
    name="streetgate",
    help="Edge gateway for smart-city street devices.",
    epilog=EPILOG,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


def streetgate_version() -> str:
    """The installed package's version."""
    try:
        return version("streetgate")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"streetgate {streetgate_version()}")
        raise typer.Exit(ExitCode.OK)


@app.callback()
def _streetgate(
    _version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Edge gateway for smart-city street devices."""


# Mounted in the order the commands were always listed; names and options are the commands'.
app.command("validate")(config.validate)
app.command("run")(run.run)
app.add_typer(buffer.app, name="buffer")
app.add_typer(config.app, name="config")
app.command("init")(init.init)
app.command("sim")(sim_cli.sim)
app.command("demo")(demo.demo)
app.add_typer(scan.app, name="scan")
app.add_typer(creds_cli.app, name="creds")
app.add_typer(fleet_cli.app, name="fleet")
app.add_typer(node_cli.app, name="node")
app.command("doctor")(doctor.doctor)
app.command("read")(read.read)
app.command("tail")(tail.tail)
app.command("decode")(decode.decode)
app.command("healthcheck")(healthcheck.healthcheck)
app.command("status")(status.status)
app.add_typer(page.app, name="page")
app.add_typer(service.app, name="service")


def main() -> None:
    """Console-script entry point."""
    app()
