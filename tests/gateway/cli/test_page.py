"""``streetgate page token``: a private token in the state directory, printed once."""

from __future__ import annotations

import stat
from pathlib import Path

from typer.testing import CliRunner

from gateway.cli.exit_codes import ExitCode
from gateway.cli.main import app
from gateway.runtime.status_page import read_token


def write_config(tmp_path: Path, metrics: str) -> Path:
    path = tmp_path / "gw.toml"
    path.write_text(
        'gateway_id = "gw"\n[mqtt]\nhost = "127.0.0.1"\n[outbox]\npath = "outbox.db"\n' + metrics
    )
    return path


def test_token_is_written_0600_beside_the_outbox_and_printed(tmp_path: Path) -> None:
    config = write_config(tmp_path, '[metrics]\nlisten = "0.0.0.0:9464"\nallow_remote = true\n')
    runner = CliRunner()
    result = runner.invoke(app, ["page", "token", "-c", str(config)])
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    path = tmp_path / "outbox.db.page-token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_token(path) == token
    assert ":9464/?token=" in result.stderr
    shown = runner.invoke(app, ["page", "token", "--show", "-c", str(config)])
    assert shown.stdout.strip() == token
    again = runner.invoke(app, ["page", "token", "-c", str(config)])
    assert again.stdout.strip() != token  # a new token locks the old one out


def test_show_without_a_token_is_not_found_and_loopback_is_explained(tmp_path: Path) -> None:
    config = write_config(tmp_path, '[metrics]\nlisten = "127.0.0.1:9464"\n')
    runner = CliRunner()
    result = runner.invoke(app, ["page", "token", "--show", "-c", str(config)])
    assert result.exit_code == ExitCode.NOT_FOUND
    result = runner.invoke(app, ["page", "token", "-c", str(config)])
    assert result.exit_code == 0
    assert "loopback only" in result.stderr


def test_the_documented_token_commands_run(tmp_path: Path) -> None:
    doc = Path(__file__).parents[3] / "docs" / "status-page.md"
    commands = [
        line.split("#", 1)[0].split()
        for line in doc.read_text().splitlines()
        if line.startswith("streetgate page token")
    ]
    assert len(commands) == 2
    config = write_config(tmp_path, '[metrics]\nlisten = "0.0.0.0:9464"\nallow_remote = true\n')
    for argv in commands:
        # As on a gateway: the default config, here named by the variable.
        result = CliRunner(env={"STREETGATE_CONFIG": str(config)}).invoke(app, argv[1:])
        assert result.exit_code == 0, (argv, result.output)
        assert read_token(tmp_path / "outbox.db.page-token") == result.stdout.strip()
