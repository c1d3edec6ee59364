"""Outbox files of another user (a ``streetgate run`` as root in the service's state directory):
refused with the ``chown`` that fixes it when they cannot be written, warned about when they can.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

import gateway.runtime.supervisor  # noqa: F401 - imported before the child cannot read it
from gateway.cli.exit_codes import ExitCode
from gateway.cli.main import app
from gateway.store.outbox_files import OutboxLock

NOBODY = 65534

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="giving files away needs root")


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A folder another user can reach (pytest's tmp_path is root's, mode 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="sg-owner-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder)


def test_root_running_on_the_service_users_files_is_warned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    for name in ("outbox.db", "outbox.db-wal"):
        (state / name).write_bytes(b"")
        os.chown(state / name, NOBODY, NOBODY)
    with caplog.at_level(logging.WARNING), OutboxLock(state / "outbox.db"):
        pass
    [record] = [r for r in caplog.records if "belong to another user" in r.getMessage()]
    message = record.getMessage()
    assert "outbox.db (nobody), outbox.db-wal (nobody)" in message
    assert "run the gateway as the user that owns" in message


def as_nobody(config: Path) -> tuple[int, str]:
    """``streetgate run -c config`` in a forked child that became ``nobody``: (exit, stderr).

    Forked rather than a new process: this test's Python lives where nobody may not read it.
    """
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 99
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            result = CliRunner().invoke(app, ["run", "-c", str(config)])
            os.write(write, f"{result.exit_code}\n{result.stderr}".encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        out = pipe.read().decode()
    os.waitpid(pid, 0)
    status, _, stderr = out.partition("\n")
    return int(status), stderr


def test_the_service_user_refuses_roots_files_naming_the_fix(open_dir: Path) -> None:
    state = open_dir / "state"
    state.mkdir()
    os.chown(state, NOBODY, NOBODY)  # the service's own state directory ...
    (state / "outbox.db").write_bytes(b"")  # ... where root ran the gateway once
    (state / "outbox.db").chmod(0o644)
    config = open_dir / "gw.toml"
    config.write_text(
        'gateway_id = "gw"\n[mqtt]\nhost = "127.0.0.1"\nport = 1\n'
        f'[outbox]\npath = "{state / "outbox.db"}"\n'
    )
    config.chmod(0o644)
    code, stderr = as_nobody(config)
    assert code == ExitCode.PERMISSION, stderr
    assert "outbox.db (root)" in stderr
    assert f"`sudo chown -R nobody: {state}`" in stderr
    assert not (state / "outbox.db.lock").exists()  # nothing written
