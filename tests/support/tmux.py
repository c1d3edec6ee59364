"""A command in a real terminal: a tmux session on its own server socket, read with capture-pane."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import pytest

__all__ = ["Tmux"]


class Tmux:
    """``with Tmux(argv, cwd) as term: term.wait_for("text"); term.keys("C-c")``.

    The command runs in a shell that prints ``EXIT=<status>`` when it ends, so a test can read
    the exit status from the screen. Each instance has its own tmux server (``-L``), killed on
    exit, so tests never touch anyone else's sessions.
    """

    def __init__(
        self, argv: Sequence[str], cwd: Path, *, width: int = 200, height: int = 50
    ) -> None:
        if shutil.which("tmux") is None:
            pytest.fail("the terminal tests need tmux (apt-get install tmux)")
        self._socket = f"streetgate-test-{os.getpid()}-{id(self)}"
        self._command = f"{shlex.join(argv)}; echo EXIT=$?; sleep 600"
        self._cwd = cwd
        self._size = (width, height)

    def _tmux(self, *args: str) -> str:
        result = subprocess.run(
            ["tmux", "-L", self._socket, *args], capture_output=True, text=True, check=True
        )
        return result.stdout

    def __enter__(self) -> Self:
        width, height = self._size
        self._tmux(
            "-f", "/dev/null", "new-session", "-d", "-s", "t", "-x", str(width), "-y", str(height),
            "-c", str(self._cwd), self._command,
        )  # fmt: skip
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        subprocess.run(
            ["tmux", "-L", self._socket, "kill-server"], capture_output=True, check=False
        )

    def screen(self) -> str:
        """What the terminal shows now (without colours)."""
        return self._tmux("capture-pane", "-p", "-t", "t", "-S", "-")

    def wait_for(self, text: str, timeout: float = 20.0) -> str:
        """The screen once it shows ``text``."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if text in screen:
                return screen
            if time.monotonic() > deadline:
                pytest.fail(f"the terminal never showed {text!r}; it shows:\n{screen}")
            time.sleep(0.1)

    def keys(self, *keys: str) -> None:
        """Type ``keys`` (tmux key names such as ``C-c``, ``Enter``)."""
        self._tmux("send-keys", "-t", "t", *keys)

    def exit_status(self, timeout: float = 20.0) -> int:
        """The command's exit status, once it has ended."""
        screen = self.wait_for("EXIT=", timeout)
        return int(screen.split("EXIT=", 1)[1].split()[0])
