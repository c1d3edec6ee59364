"""``streetgate creds init|install|show`` (the gateway's TLS client key and certificate), and
``command-key``/``sign-command`` from provisioning/command_key_cli.py.

Exit codes (gateway.exit_codes): 0 done; 1 a check failed (wrong key, CN, CA, expired);
3 config invalid or without [mqtt.tls] paths; 5 a file's permissions (unsafe key, cannot
write); 6 a file does not exist; 8 refused to replace a key without --force.
Key material is never printed: only paths, names, dates and fingerprints of public data.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from gateway.cli.common import ConfigOption, err, load_or_exit, note, reporting, warn
from gateway.cli.exit_codes import ExitCode
from gateway.core.errors import CredsError
from provisioning import command_key_cli
from provisioning.creds import (
    EXPIRY_WARNING_DAYS,
    CertificateInfo,
    KeyType,
    describe_certificate,
    init_credentials,
    install_certificate,
)
from provisioning.progress import working

__all__ = ["app", "show_dict"]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def init(
    config: ConfigOption,
    key_type: Annotated[
        KeyType, typer.Option("--key-type", help="ec (P-256) or rsa (3072 bits).")
    ] = KeyType.EC,
    directory: Annotated[
        Path | None,
        typer.Option("--dir", help="Put key and CSR here instead of at mqtt.tls.key_file."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing private key.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
) -> None:
    """Make the gateway's private key (mode 0600) and a certificate signing request for it."""
    cfg = load_or_exit(config, "creds")
    with reporting("creds", CredsError), working(f"making a {key_type.value} private key"):
        result = init_credentials(cfg, key_type, directory, force=force)
    if as_json:
        document = {
            "schema": "streetgate.creds.init/1",
            "key_file": str(result.key_file),
            "csr_file": str(result.csr_file),
            "common_name": cfg.gateway_id,
        }
        typer.echo(json.dumps(document))
    else:
        typer.echo(str(result.csr_file))
    err(f"private key: {result.key_file} (mode 0600; it never leaves this gateway)")
    err(
        f"certificate signing request (CN={cfg.gateway_id}): {result.csr_file}\n"
        "next: send the .csr file to the city's CA; when the signed certificate comes back run\n"
        f"  streetgate creds install -c {config} --cert SIGNED.crt [--ca CA.crt]"
    )
    if not result.configured:
        note("creds", f"point mqtt.tls.key_file in {config} at {result.key_file}")


def install(
    config: ConfigOption,
    cert: Annotated[Path, typer.Option("--cert", help="The signed certificate (PEM).")],
    ca: Annotated[
        Path | None,
        typer.Option("--ca", help="The CA certificate (PEM); default: mqtt.tls.ca_file."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
) -> None:
    """Check a signed certificate against the key, gateway id and CA, then install it."""
    cfg = load_or_exit(config, "creds")
    with reporting("creds", CredsError):
        leaf, installed = install_certificate(cfg, cert, ca, _now())
    if as_json:
        document = {
            "schema": "streetgate.creds.install/1",
            "installed": [str(path) for path in installed],
            "not_after": leaf.not_valid_after_utc.isoformat(),
        }
        typer.echo(json.dumps(document))
    else:
        for path in installed:
            typer.echo(f"installed {path}")
    err(
        f"certificate for CN={cfg.gateway_id}, valid until"
        f" {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC; restart the gateway to use it"
    )


def show_dict(info: CertificateInfo) -> dict[str, Any]:
    """The JSON document of ``creds show --json``."""
    return {
        "schema": "streetgate.creds.show/1",
        "cert_file": str(info.cert_file),
        "subject": info.subject,
        "common_name": info.common_name,
        "issuer": info.issuer,
        "serial": info.serial,
        "not_before": info.not_before.isoformat(),
        "not_after": info.not_after.isoformat(),
        "days_left": info.days_left,
        "expired": info.expired,
        "expires_soon": info.days_left < EXPIRY_WARNING_DAYS,
        "key_file": str(info.key_file),
        "key_mode": info.key_mode,
        "key_mode_ok": info.key_mode_ok,
        "key_matches": info.key_matches,
    }


def _show_text(info: CertificateInfo) -> str:
    key = (
        "missing"
        if info.key_mode is None
        else f"mode {info.key_mode} ({'ok' if info.key_mode_ok else 'UNSAFE'})"
    )
    match = {True: "yes", False: "NO", None: "unknown (key unreadable)"}[info.key_matches]
    return "\n".join(
        [
            f"certificate  {info.cert_file}",
            f"subject      {info.subject}",
            f"issuer       {info.issuer}",
            f"serial       {info.serial}",
            f"not before   {info.not_before:%Y-%m-%d %H:%M} UTC",
            f"not after    {info.not_after:%Y-%m-%d %H:%M} UTC",
            f"days left    {info.days_left}",
            f"key          {info.key_file}: {key}",
            f"key matches  {match}",
        ]
    )


def show(
    config: ConfigOption,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
) -> None:
    """Show the installed certificate: subject, issuer, validity, days to expiry, key mode.

    Exits 1 when the certificate has expired or does not match the key, 5 when the key is
    readable by others.
    """
    cfg = load_or_exit(config, "creds")
    with reporting("creds", CredsError):
        info = describe_certificate(cfg, _now())
    typer.echo(json.dumps(show_dict(info)) if as_json else _show_text(info))
    code = ExitCode.OK
    if info.expired:
        err(
            f"error: creds: the certificate expired on {info.not_after:%Y-%m-%d}:"
            " get a new one signed"
        )
        code = ExitCode.FAILURE
    elif info.days_left < EXPIRY_WARNING_DAYS:
        warn("creds", f"the certificate expires in {info.days_left} day(s): renew it soon")
    if info.key_matches is False:
        err(f"error: creds: the certificate is not for the private key {info.key_file}")
        code = ExitCode.FAILURE
    if info.key_mode is not None and not info.key_mode_ok:
        err(f"error: creds: the private key is readable by others: chmod 600 {info.key_file}")
        code = ExitCode.PERMISSION
    if code is not ExitCode.OK:
        raise typer.Exit(code)


app = typer.Typer(
    name="creds",
    help="The gateway's TLS client key and certificate; the platform's command key.",
    no_args_is_help=True,
)
app.command("init")(init)
app.command("install")(install)
app.command("show")(show)
app.add_typer(command_key_cli.app, name="command-key")
app.command("sign-command")(command_key_cli.sign)
