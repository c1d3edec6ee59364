"""`streetgate node deploy|monitor` with the real mpremote against a virtual board: MicroPython's
unix port on a pty behind a TCP socket (simulator/board.py), its filesystem a temp directory."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import platform
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from firmware.deploy import deploy as deploy_files
from firmware.release import DEFAULT_SOURCE, collect_files, make_key_pair
from gateway.cli.exit_codes import ExitCode
from gateway.cli.main import app
from simulator.board import BoardFault, VirtualBoard, find_micropython
from tests.support.node_firmware import firmware_dir
from tests.support.readme_examples import readme_commands
from tests.support.sim_thread import in_thread

FIXTURE = firmware_dir()


def require_micropython() -> None:
    """Skip where the unix port has no wheel (it has x86_64 Linux ones only); where it has one,
    as in CI, the dev extra installs it and its absence is an error, not a skip."""
    try:
        find_micropython()
    except FileNotFoundError:
        if platform.machine() == "x86_64" and sys.platform == "linux":
            raise
        pytest.skip(
            "MicroPython's unix port has no wheel for this machine", allow_module_level=True
        )


require_micropython()


def node(*args: str | Path) -> Result:
    return CliRunner().invoke(app, ["node", *map(str, args)])


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(bundle of the fixture firmware, its public key, the private key)."""
    keys = tmp_path_factory.mktemp("keys")
    pair = make_key_pair(keys / "release.key")
    bundle = keys / "node-fixture.tar"
    result = node(
        "release",
        str(FIXTURE),
        "--version",
        "0.1.0",
        "--key",
        str(pair.private_file),
        "--out",
        str(bundle),
    )
    assert result.exit_code == ExitCode.OK, result.output
    return bundle, pair.public_file, pair.private_file


@contextlib.contextmanager
def board_at(root: Path, *faults: BoardFault) -> Iterator[VirtualBoard]:
    with in_thread(lambda: VirtualBoard(root, faults=frozenset(faults))) as board:
        yield board


def deploy(board_url: str, bundle: Path, key: Path, *extra: str) -> Result:
    return node(
        "deploy",
        "--port",
        board_url,
        "--bundle",
        str(bundle),
        "--release-key",
        str(key),
        "--node-id",
        "pole-17-aq",
        "--timeout",
        "5",
        "--boot-timeout",
        "5",
        *extra,
    )


def board_files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_deploy_copies_verifies_resets_and_the_node_runs(release, tmp_path: Path) -> None:
    bundle, public, _ = release
    with board_at(tmp_path / "flash") as board:
        result = deploy(board.url, bundle, public, "--ble", "--ble-key", "generate", "--json")
        assert result.exit_code == ExitCode.OK, result.output
        report = json.loads(result.stdout)
        on_board = board_files(board.root)
        expected = collect_files(FIXTURE)
        assert set(on_board) == set(expected) | {"node.json", "manifest.json", "bthome_counter"}
        assert json.loads(on_board["manifest.json"])["version"] == "0.1.0"
        for path, data in expected.items():
            assert on_board[path] == data, path
            assert report["files"][path] == hashlib.sha256(data).hexdigest()
        node_json = json.loads(on_board["node.json"])
        assert node_json == report["node"]
        assert node_json["node_id"] == "pole-17-aq"
        assert len(node_json["ble"]["key"]) == 32
        assert report["version"] == "0.1.0"
        assert board.boots == 2
        assert board.last_reset == "machine.reset"
        assert "boot 2 (machine.reset)" in report["boot_output"]

        # The node's main.py runs after the reset: it read node.json and ticks.
        watched = node("monitor", "--port", board.url, "--seconds", "1.5")
        assert watched.exit_code == ExitCode.OK, watched.output
        assert "tick " in watched.stdout
        assert "\r" not in watched.stdout


def test_deploying_again_replaces_the_files_and_the_config(release, tmp_path: Path) -> None:
    bundle, public, _ = release
    with board_at(tmp_path / "flash") as board:
        assert deploy(board.url, bundle, public).exit_code == ExitCode.OK
        (board.root / "sgnode" / "app.py").write_text("broken = (\n")  # a damaged file
        again = deploy(board.url, bundle, public, "--node-id", "pole-18", "--unit-id", "7")
        assert again.exit_code == ExitCode.OK, again.output
        assert "deployed 0.1.0" in again.stdout
        assert (board.root / "sgnode" / "app.py").read_bytes() == (
            FIXTURE / "sgnode" / "app.py"
        ).read_bytes()
        config = json.loads((board.root / "node.json").read_text())
        assert (config["node_id"], config["modbus"]["unit_id"]) == ("pole-18", 7)
        assert board.boots == 3


@pytest.mark.skipif(
    not (DEFAULT_SOURCE / "main.py").exists(), reason="firmware/node is not on this branch yet"
)
def test_the_real_node_firmware_deploys(release, tmp_path: Path) -> None:
    _, public, private = release
    bundle = tmp_path / "node.tar"
    made = node("release", "--version", "0.0.0-test", "--key", str(private), "--out", str(bundle))
    assert made.exit_code == ExitCode.OK, made.output
    with board_at(tmp_path / "flash") as board:
        result = deploy(board.url, bundle, public)
        assert result.exit_code == ExitCode.OK, result.output
        on_board = board_files(board.root)
        for path, data in collect_files(DEFAULT_SOURCE).items():
            assert on_board[path] == data, path


def test_a_bundle_signed_with_another_key_is_refused_before_the_board_is_touched(
    release, tmp_path: Path
) -> None:
    bundle, _, _ = release
    other = make_key_pair(tmp_path / "other.key")
    with board_at(tmp_path / "flash") as board:
        result = deploy(board.url, bundle, other.public_file)
        assert result.exit_code == ExitCode.DECLINED, result.output
        assert "signature does not verify" in result.stderr
        assert board_files(board.root) == {}
        assert board.boots == 1


def test_a_damaged_bundle_is_refused(release, tmp_path: Path) -> None:
    bundle, public, _ = release
    damaged = tmp_path / "damaged.tar"
    data = bundle.read_bytes()
    marker = b"FIXTURE_VERSION"
    damaged.write_bytes(data.replace(marker, marker.lower(), 1))
    result = deploy("socket://127.0.0.1:9", damaged, public)
    assert result.exit_code == ExitCode.DAMAGED, result.output
    assert "sgnode/app.py" in result.stderr


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("port", ["/dev/ttyNOSUCHBOARD", "socket://127.0.0.1:{closed}"])
def test_a_missing_port_is_unreachable(release, port: str) -> None:
    bundle, public, _ = release
    port = port.format(closed=_closed_port())
    result = deploy(port, bundle, public)
    assert result.exit_code == ExitCode.UNREACHABLE, result.output
    assert f"{port}: cannot open the port" in result.stderr
    watched = node("monitor", "--port", port, "--seconds", "0.1")
    assert watched.exit_code == ExitCode.UNREACHABLE


class Modem:
    """Something else on a serial line: answers every line with OK, like an AT modem."""

    def __init__(self) -> None:
        self.url = ""
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Modem:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"socket://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while await reader.read(256):
                writer.write(b"\r\nOK\r\n")
        writer.close()


def test_something_that_is_not_micropython_is_named(release) -> None:
    bundle, public, _ = release
    with in_thread(Modem) as modem:
        result = node(
            "deploy",
            "--port",
            modem.url,
            "--bundle",
            str(bundle),
            "--release-key",
            str(public),
            "--node-id",
            "n1",
            "--timeout",
            "1",
        )
    assert result.exit_code == ExitCode.FAILURE, result.output
    assert "no MicroPython raw REPL answered" in result.stderr
    assert "OK" in result.stderr  # what it heard
    assert result.stdout == ""


def test_a_copy_that_arrives_damaged_is_caught_by_its_hash(release, tmp_path: Path) -> None:
    bundle, public, _ = release
    old = {"main.py": b"print('old firmware')\n", "node.json": b"{}\n"}
    flash = tmp_path / "flash"
    flash.mkdir()
    for path, data in old.items():
        (flash / path).write_bytes(data)
    with board_at(flash, BoardFault.CORRUPT_WRITES) as board:
        result = deploy(board.url, bundle, public)
        assert result.exit_code == ExitCode.DAMAGED, result.output
        assert "main.py on the board has SHA-256" in result.stderr
        assert board.boots == 1  # not reset into a damaged firmware
        assert board_files(flash) == old  # the old firmware is whole, no copies left behind


def test_a_board_that_does_not_come_back_is_reported(release, tmp_path: Path) -> None:
    bundle, public, _ = release
    with board_at(tmp_path / "flash", BoardFault.NO_REBOOT) as board:
        result = node(
            "deploy",
            "--port",
            board.url,
            "--bundle",
            str(bundle),
            "--release-key",
            str(public),
            "--node-id",
            "n1",
            "--boot-timeout",
            "1",
        )
        assert result.exit_code == ExitCode.UNREACHABLE, result.output
        assert "did not come back" in result.stderr
        assert board_files(board.root)["node.json"]  # the copy itself went through


def test_the_release_key_can_come_from_the_environment(release, tmp_path: Path) -> None:
    bundle, public, _ = release
    with board_at(tmp_path / "flash") as board:
        result = CliRunner().invoke(
            app,
            ["node", "deploy", "-p", board.url, "-b", str(bundle), "--node-id", "n1"],
            env={"STREETGATE_RELEASE_KEY": str(public)},
        )
        assert result.exit_code == ExitCode.OK, result.output
        assert "\x1b[" not in result.stderr  # no progress bar when stderr is not a terminal


def test_the_board_can_be_driven_by_the_mpremote_command(tmp_path: Path) -> None:
    with board_at(tmp_path / "flash") as board:
        import subprocess  # noqa: PLC0415

        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "mpremote",
                "connect",
                board.url,
                "resume",
                "exec",
                "print(sum(range(10)))",
                "+",
                "fs",
                "cp",
                str(FIXTURE / "main.py"),
                ":copied.py",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert "45" in done.stdout
        assert (board.root / "copied.py").read_bytes() == (FIXTURE / "main.py").read_bytes()


def test_the_readme_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ "Sensor nodes: release and deploy" as written, except that the board is a virtual one
    (this machine has no USB), the monitor stops after a second, and the release is made from
    the fixture firmware while firmware/node is not on the branch."""
    commands = readme_commands("Sensor nodes: release and deploy")
    assert [c[2] for c in commands] == ["list", "keygen", "release", "config", "deploy", "monitor"]
    monkeypatch.chdir(tmp_path)
    outputs: dict[str, str] = {}
    with board_at(tmp_path / "flash") as board:
        for command in commands:
            assert command[:2] == ["streetgate", "node"]
            args = [board.url if arg == "/dev/ttyACM0" else arg for arg in command[1:]]
            if command[2] == "monitor":
                args += ["--seconds", "1"]
            if command[2] == "release" and not (DEFAULT_SOURCE / "main.py").exists():
                args.append(str(FIXTURE))
            result = node(*args[1:])
            assert result.exit_code == ExitCode.OK, (command, result.output)
            outputs[command[2]] = result.stdout
        written = json.loads((board.root / "node.json").read_text())
        assert written["modbus"]["unit_id"] == 3
        assert f"ble key: {written['ble']['key']}\n" in outputs["deploy"]  # for the gateway
        assert board.boots == 2


def test_progress_is_reported_per_file_up_to_its_size(tmp_path: Path) -> None:
    files = collect_files(FIXTURE) | {"node.json": b'{"schema": 1}\n', "big.py": b"#" * 700}
    seen: dict[str, list[int]] = {}

    def progress(path: str, done: int, size: int) -> None:
        assert size == len(files[path])
        seen.setdefault(path, []).append(done)

    with board_at(tmp_path / "flash") as board:
        result = deploy_files(board.url, files, progress=progress, boot_timeout=5)
    assert list(seen) == list(files)
    assert seen["big.py"] == [0, 256, 512, 700]
    assert all(done[-1] == len(files[path]) for path, done in seen.items())
    assert result.platform == "linux"
    assert result.files == {path: hashlib.sha256(data).hexdigest() for path, data in files.items()}


WATCHED_MAIN = """\
import machine
import time

wdt = machine.WDT(timeout=1000)
print("watchdog armed")
while True:
    wdt.feed()
    time.sleep(0.1)
"""


def _wait_until(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.02)


def test_the_virtual_boards_watchdog_resets_an_unfed_board(tmp_path: Path) -> None:
    flash = tmp_path / "flash"
    flash.mkdir()
    (flash / "main.py").write_text("import machine\nmachine.WDT(timeout=200)\nprint('armed')\n")
    with board_at(flash) as board:  # main.py ends: the REPL does not feed the watchdog
        _wait_until(lambda: board.boots >= 2)
        assert board.last_reset == "watchdog"


def test_deploy_feeds_the_watchdog_the_firmware_started(release, tmp_path: Path) -> None:
    """The copy takes longer than the firmware's 1 s watchdog; the deploy keeps it fed, so the
    only reset is its own."""
    _, public, private = release
    source = tmp_path / "fw"
    shutil.copytree(FIXTURE, source)
    (source / "sgnode" / "table.py").write_text(f"DATA = {'x' * 12_000!r}\n")
    bundle = tmp_path / "slow.tar"
    made = node("release", str(source), "--version", "2", "--key", str(private), "-o", str(bundle))
    assert made.exit_code == ExitCode.OK, made.output
    flash = tmp_path / "flash"
    flash.mkdir()
    (flash / "main.py").write_text(WATCHED_MAIN)
    with board_at(flash) as board:
        result = deploy(board.url, bundle, public)
        assert result.exit_code == ExitCode.OK, result.output
        assert (board.boots, board.last_reset) == (2, "machine.reset")


def test_files_the_new_release_dropped_are_removed_and_others_kept(release, tmp_path: Path) -> None:
    _, public, private = release
    old_source = tmp_path / "v1"
    shutil.copytree(FIXTURE, old_source)
    (old_source / "sgnode" / "retired.py").write_text("GONE = True\n")
    v1, v2 = tmp_path / "v1.tar", tmp_path / "v2.tar"
    for source, out, version in ((old_source, v1, "1"), (FIXTURE, v2, "2")):
        made = node(
            "release", str(source), "--version", version, "--key", str(private), "-o", str(out)
        )
        assert made.exit_code == ExitCode.OK, made.output
    with board_at(tmp_path / "flash") as board:
        assert deploy(board.url, v1, public).exit_code == ExitCode.OK
        assert (board.root / "sgnode" / "retired.py").exists()
        (board.root / "notes.txt").write_text("the technician's own file\n")
        result = deploy(board.url, v2, public, "--json")
        assert result.exit_code == ExitCode.OK, result.output
        assert json.loads(result.stdout)["removed"] == ["sgnode/retired.py"]
        assert set(board_files(board.root)) == set(collect_files(FIXTURE)) | {
            "node.json",
            "manifest.json",
            "notes.txt",
        }


def test_a_board_that_cannot_boot_says_so(tmp_path: Path) -> None:
    broken = tmp_path / "micropython"
    broken.write_text("#!/bin/sh\nexit 3\n")
    broken.chmod(0o755)

    async def boot() -> None:
        async with VirtualBoard(tmp_path / "flash", micropython=str(broken)):
            pass

    with pytest.raises(RuntimeError, match=r"cannot boot: .*micropython ended \(status 3\)"):
        asyncio.run(boot())
