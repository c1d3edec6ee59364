"""``streetgate creds command-key new|install`` and ``creds sign-command``: signed commands.

The platform makes the Ed25519 command key pair once (``new``: private key 0600, public key
0644) and signs each command with it (``sign-command``, or gateway/management/signing.py in its
own code). Each gateway gets the public key (``install``, which checks it and prints the
``[management]`` lines to add). Exit codes (gateway.exit_codes): 1 not an Ed25519 key or a
bad command, 2 bad JSON, 3 invalid config, 5 the private key is readable by others, 6 a file
does not exist, 8 refused to replace a key without --force.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.cli.common import ConfigOption, err, fail, load_or_exit
from gateway.cli.exit_codes import ExitCode
from gateway.config.management import read_command_key
from gateway.core.key_files import unsafe_mode, write_atomically
from gateway.management.signing import sign_command

__all__ = ["INSTALLED_NAME", "app", "sign"]

#: The public key's file name in the gateway's credentials directory.
INSTALLED_NAME = "platform-command-key.pub"


def new(
    out: Annotated[Path, typer.Option("--out", help="The private key file to write (mode 0600).")],
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing private key.")
    ] = False,
) -> None:
    """Make the platform's command key pair: OUT (0600, signs) and OUT.pub (for the gateways)."""
    public_file = out.with_name(out.name + ".pub")
    if out.exists() and not force:
        fail(
            "creds",
            f"{out} exists; --force replaces it (and every gateway's key)",
            ExitCode.DECLINED,
        )
    key = Ed25519PrivateKey.generate()
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(
        out,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        0o600,
    )
    write_atomically(
        public_file,
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        0o644,
    )
    typer.echo(str(public_file))
    err(
        f"private key: {out} (mode 0600; keep it on the platform, it signs every command)\n"
        f"next, on each gateway: streetgate creds command-key install {public_file} -c CONFIG"
    )


def install(
    public_key: Annotated[Path, typer.Argument(help="The platform's public key (PEM).")],
    config: ConfigOption,
    directory: Annotated[
        Path | None,
        typer.Option(
            "--dir",
            help="Where to put it; default: beside mqtt.tls.key_file, else beside the config.",
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an installed key.")] = False,
) -> None:
    """Install the platform's command public key and print the [management] lines to add."""
    cfg = load_or_exit(config, "creds")
    if not public_key.exists():
        fail("creds", f"{public_key} does not exist", ExitCode.NOT_FOUND)
    try:
        raw = read_command_key(public_key)
    except ValueError as exc:
        fail("creds", exc, ExitCode.FAILURE)
    tls = cfg.mqtt.tls
    if directory is None:
        key_file = tls.key_file if tls is not None else None
        directory = key_file.parent if key_file is not None else config.resolve().parent
    target = directory / INSTALLED_NAME
    if target.exists() and not force:
        fail("creds", f"{target} exists; --force replaces it", ExitCode.DECLINED)
    directory.mkdir(parents=True, exist_ok=True)
    pem = Ed25519PublicKey.from_public_bytes(raw).public_bytes(  # what was checked, as PEM
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    write_atomically(target, pem, 0o644)
    typer.echo(f"installed {target}")
    typer.echo(
        "add to the config (on site: in the file, or as STREETGATE_MANAGEMENT_* variables):\n"
        "[management]\n"
        "require_signed = true\n"
        f'command_key_file = "{target}"'
    )


def sign(
    command: Annotated[
        str, typer.Argument(help='The command object, e.g. \'{"id": "7f3c", "command": "ping"}\'.')
    ],
    key: Annotated[Path, typer.Option("--key", help="The platform's private command key.")],
    gateway: Annotated[str, typer.Option("--gateway", help="The target gateway's id.")],
) -> None:
    """Print COMMAND signed for GATEWAY, ready to publish on <prefix>/<gateway>/cmd."""
    try:
        body: Any = json.loads(command)
    except json.JSONDecodeError as exc:
        fail("creds", f"COMMAND is not JSON: {exc}", ExitCode.USAGE)
    if not isinstance(body, dict):
        fail("creds", "COMMAND: expected a JSON object with id and command", ExitCode.USAGE)
    private = _load_private(key)
    try:
        typer.echo(sign_command(private, body, gateway).decode("utf-8"))
    except ValueError as exc:
        fail("creds", exc, ExitCode.FAILURE)


def _load_private(path: Path) -> Ed25519PrivateKey:
    try:
        data = path.read_bytes()
        mode = unsafe_mode(path)
    except FileNotFoundError:
        fail("creds", f"{path} does not exist", ExitCode.NOT_FOUND)
    except OSError as exc:
        fail("creds", f"cannot read {path}: {exc.strerror}", ExitCode.PERMISSION)
    if mode is not None:
        fail(
            "creds",
            f"{path} is readable by others (mode {mode:04o}): chmod 600 {path}",
            ExitCode.PERMISSION,
        )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        fail("creds", f"{path} is not an unencrypted PEM private key", ExitCode.FAILURE)
    if not isinstance(key, Ed25519PrivateKey):
        fail("creds", f"{path} is not an Ed25519 private key", ExitCode.FAILURE)
    return key


#: ``creds command-key``; provisioning/creds_cli.py mounts it and :func:`sign` (``sign-command``).
app = typer.Typer(
    name="command-key",
    help="The platform's Ed25519 key for signed commands: make it, install it on a gateway.",
    no_args_is_help=True,
)
app.command("new")(new)
app.command("install")(install)
