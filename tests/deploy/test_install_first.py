"""deploy/install.sh on a first install: into a bare tree without accounts, the config checked
on every later run (its issues, or the TLS files still pending, and the next step), and the
state directory given back to the service user after a ``streetgate run`` as root.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import sysconfig
from pathlib import Path

from tests.deploy.test_systemd import INSTALL

SKELETON = Path(__file__).resolve().parents[2] / "deploy" / "config.toml"


def dependencies(into: Path) -> Path:
    """This checkout's dependencies without streetgate itself, as a folder for PYTHONPATH."""
    into.mkdir(exist_ok=True)
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.startswith(("streetgate", "_editable_impl_streetgate", "__editable__")):
            link = into / entry.name
            if not link.exists():
                link.symlink_to(entry)
    return into


def install(root: Path, wheel: Path) -> subprocess.CompletedProcess[str]:
    """install.sh --root with the wheel alone; the tree's streetgate finds this checkout's
    dependencies through PYTHONPATH, so the config check can run."""
    deps = dependencies(root.parent / "deps")
    env = {**os.environ, "PIP_NO_DEPS": "1", "PYTHONPATH": str(deps)}
    return subprocess.run(
        [str(INSTALL), "--root", str(root), "--python", sys.executable, "--from", str(wheel)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )


def owner(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


def test_into_a_bare_tree_no_accounts_are_made(tmp_path: Path, wheel: Path, as_root: None) -> None:
    tree = tmp_path / "staging"
    tree.mkdir()
    result = install(tree, wheel)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "has no etc/passwd (a bare tree): the system user streetgate is not created" in (
        result.stdout
    )
    assert not (tree / "etc" / "passwd").exists()
    assert not (tree / "etc" / "group").exists()
    assert owner(tree / "var/lib/streetgate") == (0, 0, 0o750)
    assert owner(tree / "etc/streetgate/tls") == (0, 0, 0o700)
    assert (tree / "etc/streetgate/config.toml").read_bytes() == SKELETON.read_bytes()
    assert (tree / "opt/streetgate/venv/bin/streetgate").exists()
    assert subprocess.run(["id", "streetgate"], capture_output=True, check=False).returncode != 0
    assert install(tree, wheel).stdout.splitlines()[-1] == "install: done: 0 change(s)"


def test_a_later_run_says_what_the_config_still_lacks(root: Path, wheel: Path) -> None:
    first = install(root, wheel)
    assert first.returncode == 0, first.stderr
    config = root / "etc/streetgate/config.toml"

    second = install(root, wheel)  # the skeleton, untouched
    assert second.returncode == 0, second.stderr
    assert "install: /etc/streetgate/config.toml is not valid yet (the errors are above)" in (
        second.stdout
    )
    assert "gateway_id: expected a name" in second.stderr
    assert "mqtt.host: String should have at least 1 character" in second.stderr
    assert "sudo streetgate creds init -c /etc/streetgate/config.toml --gateway-id" in second.stdout

    # filled in, but the TLS files (tls/ beside the config) are not there yet
    config.write_text(
        config.read_text()
        .replace('gateway_id = ""', 'gateway_id = "pole-17"')
        .replace('host = ""', 'host = "mqtt.city.example"')
    )
    third = install(root, wheel)
    assert third.returncode == 0, third.stderr
    tls = root / "etc/streetgate/tls"
    assert f"pending: mqtt.tls.key_file {tls / 'gateway.key'} does not exist yet" in third.stderr
    assert "the TLS files above are not there yet; the service is not started" in third.stdout
    assert "then run this script again: it starts the service" in third.stdout

    for name in ("ca.crt", "gateway.crt", "gateway.key"):
        (tls / name).write_text("placeholder\n")
    fourth = install(root, wheel)
    assert "install: config valid; under --root no service is started" in fourth.stdout
    assert "pending" not in fourth.stderr


def test_what_a_run_as_root_left_in_the_state_directory_goes_back(root: Path, wheel: Path) -> None:
    assert install(root, wheel).returncode == 0
    state = root / "var/lib/streetgate"
    uid, gid, _ = owner(state)
    for name in ("outbox.db", "outbox.db-wal", "outbox.db.lock"):
        (state / name).write_bytes(b"")
        (state / name).chmod(0o644)  # root's, as `sudo streetgate run` left them
    (state / "old").mkdir(mode=0o755)
    victim = root.parent / "victim"  # what a link the service user made points at
    victim.write_text("root's\n")
    victim.chmod(0o644)
    (state / "link").symlink_to(victim)
    result = install(root, wheel)
    assert result.returncode == 0, result.stderr
    assert (
        "install: giving 4 file(s) in /var/lib/streetgate to streetgate (files 0600, folders"
        " 0700): old outbox.db outbox.db-wal outbox.db.lock"
    ) in result.stdout
    for name in ("outbox.db", "outbox.db-wal", "outbox.db.lock"):
        assert owner(state / name) == (uid, gid, 0o600)
    assert owner(state / "old") == (uid, gid, 0o700)
    assert (state / "link").lstat().st_uid == 0  # a link is not followed, nor given away
    assert owner(victim) == (0, 0, 0o644)
    assert install(root, wheel).stdout.splitlines()[-1] == "install: done: 0 change(s)"
