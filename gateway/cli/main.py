"""The ``streetgate`` command line."""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated

import typer

from gateway.cli.common import err, load_or_exit
from gateway.cli.exit_codes import ExitCode
from gateway.config.devices import describe, device_names
from gateway.config.model import GatewayConfig, load_config
from gateway.config.transport_security import insecure_flags, transport_warnings
from gateway.core.errors import ConfigError

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


def _transport(config: GatewayConfig) -> str:
    tls = config.mqtt.tls
    if tls is None:
        return "plain TCP"
    return "TLS, certificate NOT verified" if tls.insecure_skip_verify else "TLS"


def summary(config: GatewayConfig) -> str:
    """One paragraph a technician can check against the cabinet."""
    lines = [
        f"gateway {config.gateway_id}: broker {config.mqtt.host}:{config.mqtt.port}"
        f" ({_transport(config)}), outbox {config.outbox.path}",
        f"{sum(len(device_names(d)) for d in config.devices)} device(s):",
    ]
    lines += [f"  {line}" for device in config.devices for line in describe(device)]
    return "\n".join(lines)


def transport_warning_lines(config: GatewayConfig) -> list[str]:
    """``warning: ...`` lines for an insecure broker connection
    (gateway/config/transport_security.py)."""
    return [
        f"{'warning' if w.serious else 'note'}: {w.message}; {w.hint}"
        for w in transport_warnings(config.mqtt)
    ]


def validate_json(file: Path) -> tuple[dict[str, object], GatewayConfig | None]:
    """``validate --json``: the verdict, every issue and the devices, as one JSON document."""
    try:
        config = load_config(file)
    except ConfigError as exc:
        issues = [{"location": i.location, "message": i.message} for i in exc.issues]
        return {"file": str(file), "valid": False, "issues": issues}, None
    devices = [{"name": name, "kind": d.kind} for d in config.devices for name in device_names(d)]
    return {
        "file": str(file),
        "valid": True,
        "gateway_id": config.gateway_id,
        "broker": f"{config.mqtt.host}:{config.mqtt.port}",
        "tls": config.mqtt.tls is not None,
        "insecure": insecure_flags(config.mqtt),
        "warnings": transport_warning_lines(config),
        "outbox": str(config.outbox.path),
        "devices": devices,
        "summary": summary(config).splitlines(),
    }, config


@app.command()
def validate(
    file: Annotated[Path, typer.Argument(help="Config file to check.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Check a config file: print "ok" and a summary, or every error (non-zero exit).

    The same as ``streetgate config validate``.
    """
    if as_json:
        data, config = validate_json(file)
        typer.echo(json.dumps(data))
        if config is None:
            err(f"invalid configuration in {file}")
            raise typer.Exit(ExitCode.CONFIG)
        return
    config = load_or_exit(file)
    typer.echo(f"ok: {file}")
    typer.echo(summary(config))
    for line in transport_warning_lines(config):
        err(line)


def _register_subcommands() -> None:
    from firmware import node_cli  # noqa: PLC0415
    from gateway.cli import (  # noqa: PLC0415 - keeps `validate` light
        buffer as buffer_cli,
    )
    from gateway.cli import config as config_cli  # noqa: PLC0415
    from gateway.cli import doctor as doctor_cli  # noqa: PLC0415
    from gateway.cli import healthcheck as healthcheck_cli  # noqa: PLC0415
    from gateway.cli import init as init_cli  # noqa: PLC0415
    from gateway.cli import read as read_cli  # noqa: PLC0415
    from gateway.cli import run as cli_run  # noqa: PLC0415
    from gateway.cli import service as service_cli  # noqa: PLC0415
    from gateway.cli import status as status_cli  # noqa: PLC0415
    from gateway.cli import tail as tail_cli  # noqa: PLC0415
    from gateway.cli.scan import register as register_scan  # noqa: PLC0415
    from provisioning import creds_cli, fleet_cli  # noqa: PLC0415 - balena-sdk only when run
    from simulator import cli as sim_cli  # noqa: PLC0415
    from simulator import demo  # noqa: PLC0415

    cli_run.register(app)
    app.add_typer(service_cli.app, name="service")
    buffer_cli.register(app)
    config_cli.register(app)
    init_cli.register(app)
    sim_cli.register(app)
    demo.register(app)
    register_scan(app)
    creds_cli.register(app)
    fleet_cli.register(app)
    node_cli.register(app)
    for module in (doctor_cli, read_cli, tail_cli, healthcheck_cli, status_cli):
        module.register(app)


def main() -> None:
    """Console-script entry point."""
    _register_subcommands()
    app()
