"""``streetgate validate`` and ``config validate|show|schema|reference``: check a config, print
the effective one, the JSON Schema of the file or the reference of its keys.

Both find the config by the one rule of every command (gateway/cli/common.py): ``-c PATH``,
else STREETGATE_CONFIG, else /etc/streetgate/config.toml; ``validate`` also takes the file as
an argument, as it always did (not together with ``-c``).

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

from gateway.cli.common import (
    UncheckedConfigOption,
    command_name,
    config_given_by,
    err,
    fail,
    load_or_exit,
    missing_config,
    warn,
)
from gateway.cli.exit_codes import ExitCode
from gateway.cli.reference import reference_markdown, schema_json
from gateway.config.devices import describe, device_names
from gateway.config.effective import effective_config
from gateway.config.model import GatewayConfig, load_config
from gateway.config.tls_files import pending_tls_files
from gateway.config.toml_write import dumps
from gateway.config.transport_security import insecure_flags, transport_warnings
from gateway.core.errors import ConfigError

__all__ = [
    "app",
    "pending_lines",
    "reference",
    "schema",
    "show",
    "summary",
    "transport_warning_lines",
    "validate",
    "validate_json",
]


def _the_file(ctx: typer.Context, config: Path, file: Path | None) -> Path:
    """The config file: the argument, else ``-c``/STREETGATE_CONFIG/the default; exits if
    both ``-c`` and the argument are given, or the variable or default names no file."""
    what = command_name(ctx)
    given_by = config_given_by(ctx)
    if file is not None:
        if given_by == "option":
            both = f"give the config file once: -c {config} or {file}, not both"
            fail(what, both, ExitCode.USAGE)
        config, given_by = file, "option"
    problem = missing_config(config, given_by)
    if problem is not None:
        fail(what, problem, ExitCode.CONFIG)
    return config


FileArgument = Annotated[
    Path | None,
    typer.Argument(help="The config file: the same as -c FILE (not both).", show_default=False),
]


def show(
    ctx: typer.Context,
    config: UncheckedConfigOption,
    file: FileArgument = None,
    redact: Annotated[
        bool, typer.Option("--redact/--no-redact", help="Mask secrets (BTHome keys, passwords).")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """The effective config after defaults (TOML, or JSON with --json), secrets masked."""
    data = effective_config(load_or_exit(_the_file(ctx, config, file), "config"), redact=redact)
    typer.echo(json.dumps(data) if as_json else dumps(data), nl=as_json)


def _transport(config: GatewayConfig) -> str:
    tls = config.mqtt.tls
    if tls is None:
        return "plain TCP"
    return "TLS, certificate NOT verified" if tls.insecure_skip_verify else "TLS"


def _brokers(config: GatewayConfig) -> str:
    endpoints = config.mqtt.endpoints
    if len(endpoints) == 1:
        return f"broker {endpoints[0]}"
    return f"brokers {', '.join(str(b) for b in endpoints)} (in this order)"


def summary(config: GatewayConfig) -> str:
    """One paragraph a technician can check against the cabinet."""
    lines = [
        f"gateway {config.gateway_id}: {_brokers(config)}"
        f" ({_transport(config)}), outbox {config.outbox.path}",
        f"{sum(len(device_names(d)) for d in config.devices)} device(s):",
    ]
    lines += [f"  {line}" for device in config.devices for line in describe(device)]
    return "\n".join(lines)


def transport_warning_lines(config: GatewayConfig, what: str) -> list[str]:
    """``warning: <what>: ...`` lines for an insecure broker connection
    (gateway/config/transport_security.py), ``note: <what>: ...`` for a lesser point."""
    return [
        f"{'warning' if w.serious else 'note'}: {what}: {w.message}; {w.hint}"
        for w in transport_warnings(config.mqtt)
    ]


def pending_lines(config: GatewayConfig, file: Path) -> list[str]:
    """``pending: ...`` lines for the TLS files the config names that are not there yet
    (a first install: gateway/config/tls_files.py)."""
    return [f"pending: {p}" for p in pending_tls_files(config.mqtt.tls, file)]


def validate_json(file: Path, what: str) -> tuple[dict[str, object], GatewayConfig | None]:
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
        "broker": str(config.mqtt.endpoints[0]),
        "brokers": [str(b) for b in config.mqtt.endpoints],
        "tls": config.mqtt.tls is not None,
        "insecure": insecure_flags(config.mqtt),
        "warnings": transport_warning_lines(config, what),
        "pending": [str(p) for p in pending_tls_files(config.mqtt.tls, file)],
        "outbox": str(config.outbox.path),
        "devices": devices,
        "summary": summary(config).splitlines(),
    }, config


def validate(
    ctx: typer.Context,
    config: UncheckedConfigOption,
    file: FileArgument = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    ready: Annotated[
        bool,
        typer.Option(
            "--ready",
            help="Also fail (exit 3, as `run` would) while a TLS file it names does not exist yet.",
        ),
    ] = False,
) -> None:
    """Check a config file: print "ok" and a summary, or every error (non-zero exit).

    TLS files it names that do not exist yet (a first install) are listed as ``pending:`` with
    the command that installs each; that is an error only with ``--ready``. The same as
    ``streetgate config validate``.
    """
    what = command_name(ctx)
    config = _the_file(ctx, config, file)
    if as_json:
        data, loaded = validate_json(config, what)
        typer.echo(json.dumps(data))
        if loaded is None:
            invalid = f"invalid configuration in {config} (the issues are in the JSON above)"
            fail(what, invalid, ExitCode.CONFIG)
        if ready and data["pending"]:
            raise typer.Exit(ExitCode.CONFIG)
        return
    valid = load_or_exit(config, what)
    typer.echo(f"ok: {config}")
    typer.echo(summary(valid))
    for line in transport_warning_lines(valid, what):
        err(line)
    pending = pending_lines(valid, config)
    for line in pending:
        err(line)
    if pending:
        why = "the gateway does not start until these files are there"
        if ready:
            fail(what, why, ExitCode.CONFIG)
        warn(what, why)


def schema() -> None:
    """Print the JSON Schema of the config file, for editors (docs/config.md says how)."""
    typer.echo(schema_json(), nl=False)


def reference() -> None:
    """Print the reference of every config key (Markdown; docs/config.md)."""
    typer.echo(reference_markdown(), nl=False)


app = typer.Typer(
    name="config",
    help="Check a config file, print the effective config (secrets masked), its schema or its "
    "reference.",
    no_args_is_help=True,
)
app.command("validate")(validate)
app.command("show")(show)
app.command("schema")(schema)
app.command("reference")(reference)
