"""`streetgate creds command-key new|install` and `creds sign-command`: the signed-command key."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from gateway.cli.exit_codes import ExitCode
from gateway.cli.main import app
from gateway.config.model import load_config
from gateway.management.signing import verify_command
from provisioning.command_key_cli import INSTALLED_NAME
from tests.provisioning.test_creds import GATEWAY, write_config
from tests.support.readme_examples import readme_commands


def creds(*args: str) -> Result:
    return CliRunner().invoke(app, ["creds", *args])


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_install_sign_and_the_gateway_verifies(tmp_path: Path) -> None:
    made = creds("command-key", "new", "--out", str(tmp_path / "platform" / "cmd.key"))
    assert made.exit_code == 0, made.stderr
    public = Path(made.stdout.strip())
    private = tmp_path / "platform" / "cmd.key"
    assert public == tmp_path / "platform" / "cmd.key.pub"
    assert (mode(private), mode(public)) == (0o600, 0o644)
    again = creds("command-key", "new", "--out", str(private))
    assert again.exit_code == ExitCode.DECLINED
    assert "--force" in again.stderr

    config = write_config(tmp_path / "gw")
    installed = creds("command-key", "install", str(public), "-c", str(config))
    assert installed.exit_code == 0, installed.stderr
    target = tmp_path / "gw" / "tls" / INSTALLED_NAME  # beside mqtt.tls.key_file
    assert target.read_bytes() == public.read_bytes()
    assert "[management]\nrequire_signed = true\n" in installed.stdout
    config.write_text(
        config.read_text() + installed.stdout.split("variables):\n", 1)[1].split("installed")[0]
    )
    cfg = load_config(config)
    assert cfg.management is not None
    assert cfg.management.require_signed
    assert cfg.management.command_key_file == target

    signed = creds(
        "sign-command",
        "--key",
        str(private),
        "--gateway",
        GATEWAY,
        '{"id": "1", "command": "ping"}',
    )
    assert signed.exit_code == 0, signed.stderr
    data = json.loads(signed.stdout)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey  # noqa: PLC0415

    key = Ed25519PublicKey.from_public_bytes(cfg.management.command_key or b"")
    assert verify_command(data, key, GATEWAY, 300).command == {
        "id": "1",
        "command": "ping",
        "gateway": GATEWAY,
    }


def test_install_refuses_what_is_not_an_ed25519_public_key(tmp_path: Path) -> None:
    config = write_config(tmp_path, tls=False)
    private = tmp_path / "cmd.key"
    assert creds("command-key", "new", "--out", str(private)).exit_code == 0
    refused = creds("command-key", "install", str(private), "-c", str(config))
    assert refused.exit_code == ExitCode.FAILURE
    assert "not a PEM public key" in refused.stderr
    missing = creds("command-key", "install", str(tmp_path / "nope.pub"), "-c", str(config))
    assert missing.exit_code == ExitCode.NOT_FOUND
    ok = creds("command-key", "install", f"{private}.pub", "-c", str(config))
    assert ok.exit_code == 0, ok.stderr
    assert (tmp_path / INSTALLED_NAME).exists()  # no TLS key: beside the config
    twice = creds("command-key", "install", f"{private}.pub", "-c", str(config))
    assert twice.exit_code == ExitCode.DECLINED


def test_sign_command_refuses_an_unsafe_key_and_bad_json(tmp_path: Path) -> None:
    private = tmp_path / "cmd.key"
    assert creds("command-key", "new", "--out", str(private)).exit_code == 0
    bad = creds("sign-command", "--key", str(private), "--gateway", "g", "{not json")
    assert bad.exit_code == ExitCode.USAGE
    private.chmod(0o644)
    unsafe = creds("sign-command", "--key", str(private), "--gateway", "g", '{"id": "1"}')
    assert unsafe.exit_code == ExitCode.PERMISSION
    assert "chmod 600" in unsafe.stderr


def test_the_readme_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    commands = readme_commands("Signed commands")
    assert [c[1:3] for c in commands] == [
        ["creds", "command-key"],
        ["creds", "command-key"],
        ["creds", "sign-command"],
    ]
    write_config(tmp_path, tls=False)
    monkeypatch.chdir(tmp_path)
    for command in commands:
        result = CliRunner().invoke(app, command[1:])
        assert result.exit_code == 0, (command, result.stderr)
    assert json.loads(result.stdout)["gateway"] == "pole-17"
