"""`node deploy` and `node monitor` in a real terminal (tmux): the progress bar, and Ctrl-C."""

from __future__ import annotations

import sys
from pathlib import Path

from firmware.release import load_private_key, make_key_pair, write_bundle
from simulator.board import VirtualBoard
from tests.firmware.test_deploy import require_micropython
from tests.support.node_firmware import firmware_dir
from tests.support.sim_thread import in_thread
from tests.support.tmux import Tmux

STREETGATE = [sys.executable, "-m", "gateway"]
FIXTURE = firmware_dir()

require_micropython()


def test_deploy_shows_a_progress_bar_on_a_terminal_then_the_result(tmp_path: Path) -> None:
    source = tmp_path / "fw"
    (source / "sgnode").mkdir(parents=True)
    for path in ("main.py", "sgnode/__init__.py", "sgnode/app.py"):
        (source / path).write_bytes((FIXTURE / path).read_bytes())
    # A file big enough that the copy takes a while: the bar is on screen during it.
    (source / "sgnode" / "table.py").write_text(f"DATA = {'x' * 16_000!r}\n")
    pair = make_key_pair(tmp_path / "release.key")
    bundle = tmp_path / "node.tar"
    write_bundle(source, "2.0.0", load_private_key(pair.private_file), bundle)
    with in_thread(lambda: VirtualBoard(tmp_path / "flash")) as board:
        argv = [
            *STREETGATE, "node", "deploy", "--port", board.url, "--bundle", str(bundle),
            "--release-key", str(pair.public_file), "--node-id", "pole-1",
        ]  # fmt: skip
        with Tmux(argv, tmp_path) as term:
            during = term.wait_for(" kB", timeout=60)
            status = term.exit_status(timeout=120)
            final = term.screen()
    assert status == 0, final
    assert "━" in during, during  # the bar itself
    assert "deployed 2.0.0" in final
    assert "board after reset: streetgate virtual board: boot 2" in final
    assert " kB" not in final  # the bar is gone once the copy is done


def test_monitor_follows_the_console_until_ctrl_c(tmp_path: Path) -> None:
    flash = tmp_path / "flash"
    flash.mkdir()
    (flash / "main.py").write_text(
        "import time\ni = 0\nwhile True:\n    print('tick', i)\n    i += 1\n    time.sleep(0.2)\n"
    )
    with in_thread(lambda: VirtualBoard(flash)) as board:
        with Tmux([*STREETGATE, "node", "monitor", "--port", board.url], tmp_path) as term:
            term.wait_for("tick ")
            term.keys("C-c")
            status = term.exit_status()
            final = term.screen()
        assert board.boots == 1  # only read: the node was not interrupted or reset
    assert status == 0, final
    assert "Traceback" not in final
