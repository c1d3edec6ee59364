"""The ``streetgate`` command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gateway.config import GatewayConfig, load_config
from gateway.config_devices import describe, device_names
from gateway.errors import ConfigError

app = typer.Typer(
    name="streetgate",
    help="Edge gateway for smart-city street devices.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

EXIT_CONFIG = 3  # config file invalid (2 is typer's usage error)

ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", help="Gateway config file (TOML).", show_default=True)
]


def _err(message: str) -> None:
    typer.echo(message, err=True)


def load_or_exit(path: Path) -> GatewayConfig:
    """Load a config for a command, or print every issue and exit with EXIT_CONFIG."""
    try:
        return load_config(path)
    except ConfigError as exc:
        _err(str(exc))
        raise typer.Exit(EXIT_CONFIG) from exc


def summary(config: GatewayConfig) -> str:
    """One paragraph a technician can check against the cabinet."""
    lines = [
        f"gateway {config.gateway_id}: broker {config.mqtt.host}:{config.mqtt.port}"
        f" ({'TLS' if config.mqtt.tls else 'plain TCP'}), outbox {config.outbox.path}",
        f"{sum(len(device_names(d)) for d in config.devices)} device(s):",
    ]
    lines += [f"  {line}" for device in config.devices for line in describe(device)]
    return "\n".join(lines)


@app.command()
def validate(file: Annotated[Path, typer.Argument(help="Config file to check.")]) -> None:
    """Check a config file: print "ok" and a summary, or every error (non-zero exit)."""
    config = load_or_exit(file)
    typer.echo(f"ok: {file}")
    typer.echo(summary(config))


def _register_subcommands() -> None:
    from gateway import (  # noqa: PLC0415 - keeps `validate` light
        buffer_cli,
        cli_run,
        doctor_cli,
        read_cli,
        tail_cli,
    )
    from simulator import cli as sim_cli  # noqa: PLC0415
    from simulator import demo  # noqa: PLC0415

    cli_run.register(app)
    buffer_cli.register(app)
    sim_cli.register(app)
    demo.register(app)
    for module in (doctor_cli, read_cli, tail_cli):
        module.register(app)


def main() -> None:
    """Console-script entry point."""
    _register_subcommands()
    app()
