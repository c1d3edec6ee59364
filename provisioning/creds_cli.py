"""``streetgate creds init|install|show`` (the gateway's TLS client key and certificate), and
``command-key``/``sign-command`` from provisioning/command_key_cli.py.

Exit codes (gateway.exit_codes): 0 done; 1 a check failed (wrong key, CN, CA, expired);
2 a bad or contradicting ``--gateway-id``; 3 config unreadable, without [mqtt.tls] paths or
without a gateway id; 5 a file's permissions (unsafe key, cannot write); 6 a file does not
exist; 8 refused to replace a key without --force.
Key material is never printed: only paths, names, dates and fingerprints of public data.

The commands read only ``gateway_id`` and ``[mqtt.tls]`` of the config (read_tls_setup), so
they work on a first install before the rest is filled in: install.sh's skeleton has no
gateway id yet, ``--gateway-id`` gives it.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from gateway.cli.common import ConfigOption, err, fail, note, reporting, warn
from gateway.cli.exit_codes import ExitCode
from gateway.config.tls_files import TlsSetup, check_gateway_id, read_tls_setup
from gateway.core.errors import ConfigError, CredsError
from provisioning import command_key_cli
from provisioning.creds import (
    EXPIRY_WARNING_DAYS,
    CertificateInfo,
    KeyType,
    describe_certificate,
    init_credentials,
    install_ca,
    install_certificate,
)
from provisioning.progress import working

__all__ = ["app", "show_dict"]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


GatewayIdOption = Annotated[
    str | None,
    typer.Option(
        "--gateway-id",
        help="This gateway's id, when the config has none yet (install.sh's skeleton).",
    ),
]


def _setup(config: Path) -> TlsSetup:
    """``gateway_id`` and ``[mqtt.tls]`` of the config, which may not be complete yet."""
    try:
        return read_tls_setup(config)
    except ConfigError as exc:
        fail("creds", exc, ExitCode.CONFIG)


def _gateway_id(setup: TlsSetup, given: str | None, config: Path) -> str:
    """``--gateway-id`` or the config's; they must not contradict each other."""
    if given is not None:
        problem = check_gateway_id(given)
        if problem is not None:
            fail("creds", f"--gateway-id {given!r}: {problem}", ExitCode.USAGE)
        if setup.gateway_id is not None and setup.gateway_id != given:
            fail(
                "creds",
                f"--gateway-id {given} is not the gateway_id of {config} ({setup.gateway_id});"
                " the certificate must be for the id the gateway uses",
                ExitCode.USAGE,
            )
        return given
    if setup.gateway_id is None:
        fail(
            "creds",
            f"{config}: gateway_id: {setup.gateway_id_problem}; give --gateway-id NAME (the"
            " certificate is made for it)",
            ExitCode.CONFIG,
        )
    return setup.gateway_id


def _id_note(setup: TlsSetup, gateway_id: str, config: Path) -> None:
    if setup.gateway_id is None:
        note(
            "creds",
            f"{config} has no gateway_id yet: `streetgate init` writes it, or set"
            f' gateway_id = "{gateway_id}" by hand',
        )


def init(  # noqa: PLR0917 - one parameter per option
    config: ConfigOption,
    gateway_id: GatewayIdOption = None,
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
    """Make the gateway's private key (mode 0600) and a certificate signing request for it.

    Needs only a gateway id (the config's, or --gateway-id) and where the key goes
    (mqtt.tls.key_file, or --dir): the rest of the config may still be incomplete.
    """
    setup = _setup(config)
    name = _gateway_id(setup, gateway_id, config)
    with reporting("creds", CredsError), working(f"making a {key_type.value} private key"):
        result = init_credentials(name, setup.tls, key_type, directory, force=force)
    if as_json:
        document = {
            "schema": "streetgate.creds.init/1",
            "key_file": str(result.key_file),
            "csr_file": str(result.csr_file),
            "common_name": name,
        }
        typer.echo(json.dumps(document))
    else:
        typer.echo(str(result.csr_file))
    again = f" --gateway-id {name}" if setup.gateway_id is None else ""
    err(f"private key: {result.key_file} (mode 0600; it never leaves this gateway)")
    err(
        f"certificate signing request (CN={name}): {result.csr_file}\n"
        "next: send the .csr file to the city's CA; when the signed certificate comes back run\n"
        f"  streetgate creds install -c {config}{again} --cert SIGNED.crt [--ca CA.crt]"
    )
    if not result.configured:
        note("creds", f"point mqtt.tls.key_file in {config} at {result.key_file}")
    _id_note(setup, name, config)


def _install_ca_only(config: Path, ca: Path, as_json: bool) -> None:
    setup = _setup(config)
    with reporting("creds", CredsError):
        roots = install_ca(setup.tls, ca, _now())
    target = setup.tls.ca_file if setup.tls is not None else ca
    if as_json:
        document = {
            "schema": "streetgate.creds.install/1",
            "installed": [str(target)],
            "not_after": min(root.not_valid_after_utc for root in roots).isoformat(),
        }
        typer.echo(json.dumps(document))
    else:
        typer.echo(f"installed {target}")
    subjects = ", ".join(root.subject.rfc4514_string() for root in roots)
    err(f"CA certificate(s): {subjects}; restart the gateway to use it")


def install(
    config: ConfigOption,
    cert: Annotated[
        Path | None, typer.Option("--cert", help="The signed certificate (PEM).")
    ] = None,
    ca: Annotated[
        Path | None,
        typer.Option(
            "--ca", help="The CA certificate (PEM); default: mqtt.tls.ca_file. Alone: only the CA."
        ),
    ] = None,
    gateway_id: GatewayIdOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
) -> None:
    """Check a signed certificate against the key, gateway id and CA, then install it (and the
    CA) where mqtt.tls says; or, with --ca alone, install the CA."""
    if cert is None:
        if ca is None:
            fail("creds", "give --cert SIGNED.crt (and --ca CA.crt), or --ca alone", ExitCode.USAGE)
        _install_ca_only(config, ca, as_json)
        return
    setup = _setup(config)
    name = _gateway_id(setup, gateway_id, config)
    with reporting("creds", CredsError):
        leaf, installed = install_certificate(name, setup.tls, cert, ca, _now())
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
        f"certificate for CN={name}, valid until"
        f" {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC; restart the gateway to use it"
    )
    _id_note(setup, name, config)


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
    with reporting("creds", CredsError):
        info = describe_certificate(_setup(config).tls, _now())
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
