"""Put a verified firmware bundle and node.json on a MicroPython board through mpremote.

Uses mpremote's transport (the same code as the ``mpremote`` command, pinned to 1.29.0) on one
connection: interrupt the running program, enter the raw REPL without a soft reset (the unix
port exits on one), check the board is MicroPython, write each file, read back its SHA-256 on
the board, then reset and wait until the board prints something again. Files are copied as
``<path>.new`` and verified; only when all are good are they moved over the old ones, so a
failed copy leaves the old firmware whole. mpremote's and pyserial's exceptions are translated
here into :class:`~gateway.errors.BoardError` subclasses.

Paths on the board are relative to its working directory: ``/`` on a real board (the deploy
changes there first), the board directory on the unix port (the virtual board).
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import serial  # type: ignore[import-untyped]
from mpremote.transport import TransportError, TransportExecError  # type: ignore[import-untyped]
from mpremote.transport_serial import SerialTransport  # type: ignore[import-untyped]

from firmware.bundle import BOARD_MANIFEST_PATH, parse_manifest, sha256_hex
from gateway.core.errors import (
    BoardDidNotReturn,
    BoardError,
    BoardNotFound,
    CopyMismatch,
    KeyReuseRefused,
    ManifestError,
    NotMicroPython,
)

__all__ = [
    "BAUDRATE",
    "COUNTER_PATH",
    "BoardBle",
    "DeployResult",
    "Progress",
    "check_ble_key",
    "deploy",
    "fresh_counter_state",
    "open_console",
]

BAUDRATE = 115200
CHUNK = 256  # bytes per raw-REPL write, mpremote's own default
WATCHDOG_MS = 8000  # the longest an RP2040 allows (8388 ms); every command feeds it
STAGED = ".new"  # a file is copied and checked under this suffix, then moved into place
#: ``progress(path, bytes of this file written so far, size of this file)``
Progress = Callable[[str, int, int], None]
#: The node's BTHome counter file (sgnode/beacon.py), beside node.json.
COUNTER_PATH = "bthome_counter"
_COUNTER_MAX = 0xFFFF_FFFF


@dataclass(frozen=True, slots=True)
class BoardBle:
    """What a board holds of its BLE encryption state before a deploy."""

    key: str | None  # ble.key of its node.json (None: no node.json, unreadable, or no key)
    counter: int | None  # its counter file's value (None: missing or not a counter)


def fresh_counter_state() -> dict[str, bytes]:
    """The counter file a new key starts with (the node refuses to encrypt without one)."""
    return {COUNTER_PATH: b"0\n"}


def check_ble_key(port: str, key: str | None, board: BoardBle) -> None:
    """Refuse to deploy an existing ``key`` (one given, not generated here) unless the board
    holds that key *and* its counter state: anywhere else the node's counter would start at
    0 again under a key that has already encrypted (AES-CCM nonce reuse, replayable adverts).
    """
    if key is None:
        return
    hint = (
        "; deploy a new key instead: --rotate-key (then put the printed key in the gateway's"
        " bthome device)"
    )
    if board.counter is None:
        raise KeyReuseRefused(
            port,
            f"the board has no BLE counter state ({COUNTER_PATH} missing or unreadable), so the"
            " given --ble-key would restart its counter at 0 under a key that may have"
            f" encrypted before{hint}",
        )
    if board.key != key:
        raise KeyReuseRefused(
            port,
            f"the board's BLE counter state belongs to {'another key' if board.key else 'no key'},"
            f" not to the given --ble-key{hint}",
        )


@dataclass(frozen=True, slots=True)
class DeployResult:
    """What a deploy did: files copied (path -> SHA-256), files removed, the board's first
    words after its reset."""

    port: str
    platform: str
    files: dict[str, str]
    boot_output: str
    removed: tuple[str, ...] = ()  # files of the previous release that this one does not have


def open_console(port: str, timeout: float = 0.2) -> Any:
    """Open ``port`` (a device path or a pyserial URL) for reading the console."""
    try:
        return serial.serial_for_url(port, baudrate=BAUDRATE, timeout=timeout)
    except (serial.SerialException, OSError, ValueError) as exc:
        raise BoardNotFound(port, f"cannot open the port: {exc}") from exc


@contextlib.contextmanager
def _transport(port: str, timeout: float) -> Iterator[Any]:
    quiet = io.StringIO()  # mpremote prints raw bytes on stdout when it gives up
    try:
        with contextlib.redirect_stdout(quiet):
            transport = SerialTransport(port, baudrate=BAUDRATE, timeout=timeout)
    except (TransportError, serial.SerialException, OSError, ValueError) as exc:
        raise BoardNotFound(port, f"cannot open the port: {exc}") from exc
    try:
        yield transport
    finally:
        with contextlib.suppress(OSError, serial.SerialException):
            transport.close()


def _enter_raw_repl(transport: Any, port: str, timeout: float) -> str:
    """Interrupt the program, enter the raw REPL, return ``sys.platform`` (MicroPython only)."""
    quiet = io.StringIO()
    try:
        with contextlib.redirect_stdout(quiet):
            transport.enter_raw_repl(soft_reset=False, timeout_overall=timeout)
            name = transport.exec("import sys\nprint(sys.implementation.name, sys.platform)")
    except (TransportError, serial.SerialException, OSError) as exc:
        heard = quiet.getvalue().strip()[-120:]
        raise NotMicroPython(
            port,
            "no MicroPython raw REPL answered (is it a MicroPython board? is another program"
            " using the port? does its program ignore Ctrl-C?)"
            f"{f'; it sent: {heard}' if heard else ''}",
        ) from exc
    answer = bytes(name).decode(errors="replace").strip()
    implementation, _, platform = answer.partition(" ")
    if implementation != "micropython":
        raise NotMicroPython(port, f"the board runs {implementation!r}, not MicroPython")
    return platform


def _take_watchdog(transport: Any, port: str) -> None:
    """Define ``_sgfeed()`` on the board: feeds its watchdog, which the deploy now owns.

    A firmware's watchdog keeps running after Ctrl-C stops the program that fed it, and would
    reset the board in the middle of the copy. ``WDT(timeout=...)`` gives a handle on it (and
    starts one if none ran: then an aborted deploy resets the board into its old firmware, which
    the staged copy keeps whole). Ports without ``machine.WDT`` get a no-op.
    """
    code = (
        "def _sgfeed():\n pass\n"
        "try:\n import machine\n"
        f" _sgfeed = machine.WDT(timeout={WATCHDOG_MS}).feed\n"
        "except (ImportError, AttributeError, ValueError, OSError):\n pass\n"
        "_sgfeed()"
    )
    try:
        transport.exec(code)
    except (TransportError, serial.SerialException, OSError) as exc:
        raise BoardError(port, f"taking over the watchdog failed: {exc}") from exc


def _run(transport: Any, port: str, code: str, what: str) -> bytes:
    """Run ``code`` in the board's raw REPL (feeding its watchdog first); stdout as bytes."""
    try:
        return bytes(transport.exec("_sgfeed()\n" + code))
    except TransportExecError as exc:
        last = exc.error_output.strip().splitlines()[-1:] or ["(no message)"]
        raise BoardError(port, f"{what} failed on the board: {last[0]}") from exc
    except (TransportError, serial.SerialException, OSError) as exc:
        raise BoardError(port, f"{what}: the board stopped answering ({exc})") from exc


def _make_dirs(transport: Any, port: str, path: str, made: set[str]) -> None:
    parts = path.split("/")[:-1]
    for depth in range(1, len(parts) + 1):
        directory = "/".join(parts[:depth])
        if directory in made:
            continue
        _run(
            transport,
            port,
            f"import os\ntry:\n os.mkdir({directory!r})\nexcept OSError as e:\n"
            f" if e.errno != 17:\n  raise",
            f"making directory {directory}",
        )
        made.add(directory)


def _write(transport: Any, port: str, path: str, data: bytes, progress: Progress) -> None:
    """Write ``data`` to ``path`` + STAGED on the board; progress is reported for ``path``."""
    staged = path + STAGED
    _run(transport, port, f"f=open({staged!r},'wb')\nw=f.write", f"opening {staged}")
    progress(path, 0, len(data))
    for start in range(0, len(data), CHUNK):
        chunk = data[start : start + CHUNK]
        _run(transport, port, f"w({chunk!r})", f"writing {path}")
        progress(path, start + len(chunk), len(data))
    _run(transport, port, "f.close()\ndel f, w", f"closing {path}")


def _board_sha256(transport: Any, port: str, path: str) -> str:
    code = (
        "import hashlib\nh=hashlib.sha256()\nb=bytearray(256)\n"
        f"with open({path!r},'rb') as f:\n while True:\n  n=f.readinto(b)\n  if not n:\n   break\n"
        "  h.update(b[:n])\nprint(h.digest().hex())\ndel h, b"
    )
    return _run(transport, port, code, f"hashing {path}").decode().strip()


def _discard(transport: Any, staged: list[str]) -> None:
    """Best effort: remove the staged copies of a deploy that failed (the old files stay)."""
    names = [path + STAGED for path in staged]
    code = f"import os\nfor n in {names!r}:\n try:\n  os.remove(n)\n except OSError:\n  pass"
    with contextlib.suppress(TransportError, serial.SerialException, OSError):
        transport.exec(code)


def _commit(transport: Any, port: str, staged: list[str]) -> None:
    """Move every verified copy over its file, in one command (the old firmware stays whole
    until every new file is on the board and checked)."""
    code = (
        f"import os\nfor n in {staged!r}:\n try:\n  os.remove(n)\n except OSError:\n  pass\n"
        f" os.rename(n + {STAGED!r}, n)"
    )
    _run(transport, port, code, "moving the new files into place")


def _previous_release(transport: Any, port: str) -> frozenset[str]:
    """The files the board's last deploy put there, from its manifest.json (none if absent or
    not a manifest: then nothing is removed)."""
    code = (
        f"try:\n with open({BOARD_MANIFEST_PATH!r}) as f:\n  print(f.read())\n"
        "except OSError:\n pass"
    )
    data = _run(transport, port, code, f"reading {BOARD_MANIFEST_PATH}")
    if not data.strip():
        return frozenset()
    try:
        return frozenset(parse_manifest(data).files)
    except ManifestError:
        return frozenset()


def _board_ble(transport: Any, port: str) -> BoardBle:
    """The board's node.json BLE key and counter file, read without changing anything."""
    code = (
        "def _r(n):\n try:\n  with open(n) as f:\n   return f.read(4096)\n"
        " except OSError:\n  return None\n"
        f"print(repr((_r('node.json'), _r({COUNTER_PATH!r}))))"
    )
    out = _run(transport, port, code, "reading the board's BLE state").decode(errors="replace")
    try:
        config_text, counter_text = ast.literal_eval(out.strip())
    except (ValueError, SyntaxError, TypeError):
        return BoardBle(None, None)
    key = None
    if isinstance(config_text, str):
        with contextlib.suppress(ValueError, AttributeError, TypeError, KeyError):
            key = json.loads(config_text)["ble"]["key"]
    counter = None
    if isinstance(counter_text, str) and counter_text.strip().isdigit():
        value = int(counter_text.strip())
        counter = value if value <= _COUNTER_MAX else None
    return BoardBle(key if isinstance(key, str) else None, counter)


def _remove(transport: Any, port: str, paths: list[str]) -> None:
    code = f"import os\nfor n in {paths!r}:\n try:\n  os.remove(n)\n except OSError:\n  pass"
    _run(transport, port, code, "removing the previous release's files")


def _wait_for_boot(transport: Any, port: str, timeout: float) -> str:
    """After the reset command: the board's first output, reopening the port if it went away.

    A raw-REPL end marker (0x04) means the board answered instead of resetting.
    """
    deadline = time.monotonic() + timeout
    console = transport.serial
    heard = bytearray()
    while time.monotonic() < deadline:
        try:
            if console is None:
                console = serial.serial_for_url(port, baudrate=BAUDRATE, timeout=0.2)
            console.timeout = 0.2
            heard += console.read(512)
        except (serial.SerialException, OSError):
            # A native-USB board drops off the bus while it resets: wait for it to come back.
            with contextlib.suppress(serial.SerialException, OSError):
                if console is not None and console is not transport.serial:
                    console.close()
            console = None
            time.sleep(0.2)
            continue
        if b"\x04" in heard:
            text = heard.replace(b"\x04", b"\n").decode(errors="replace").strip()
            raise BoardDidNotReturn(port, f"the board did not reset; it answered: {text[-200:]}")
        if heard.strip():
            # Let the first line finish, for the report.
            with contextlib.suppress(serial.SerialException, OSError):
                heard += console.read(256)
            if console is not transport.serial:
                console.close()
            return bytes(heard).decode(errors="replace").strip()
    raise BoardDidNotReturn(
        port, f"the board printed nothing within {timeout:g} s of its reset (did not come back)"
    )


def deploy(
    port: str,
    files: Mapping[str, bytes],
    *,
    manifest: bytes | None = None,
    progress: Progress | None = None,
    timeout: float = 5.0,
    boot_timeout: float = 10.0,
    existing_ble_key: str | None = None,
) -> DeployResult:
    """Copy ``files`` (board path -> bytes) to the board at ``port``, verify each, reset.

    With the release's ``manifest``, it goes on the board too (``manifest.json``, last), and
    the files the previous release's manifest lists that this one does not are removed.
    ``timeout`` bounds the wait for the raw REPL; ``boot_timeout`` the wait for the board's
    first output after the reset. ``existing_ble_key``: a BLE key that was not made for this
    deploy; the board must hold it with its counter state (:func:`check_ble_key`), checked
    before anything is written.
    """
    report = progress or (lambda _path, _done, _size: None)
    copied: dict[str, str] = {}
    if manifest is not None:
        files = {**files, BOARD_MANIFEST_PATH: manifest}
    with _transport(port, timeout) as transport:
        platform = _enter_raw_repl(transport, port, timeout)
        _take_watchdog(transport, port)
        if platform != "linux":  # a real board: files live at the root of its filesystem
            _run(transport, port, "import os\nos.chdir('/')", "changing to /")
        if existing_ble_key is not None:
            check_ble_key(port, existing_ble_key, _board_ble(transport, port))
        previous = _previous_release(transport, port) if manifest is not None else frozenset()
        made: set[str] = set()
        staged: list[str] = []
        try:
            for path, data in files.items():
                _make_dirs(transport, port, path, made)
                staged.append(path)
                _write(transport, port, path, data, report)
                expected = sha256_hex(data)
                actual = _board_sha256(transport, port, path + STAGED)
                if actual != expected:
                    raise CopyMismatch(port, path, expected, actual)
                copied[path] = actual
        except BoardError:
            _discard(transport, staged)
            raise
        _commit(transport, port, staged)
        removed = sorted(previous - set(files))
        if removed:
            _remove(transport, port, removed)
        try:
            transport.exec_raw_no_follow("import machine\nmachine.reset()")
        except (TransportError, serial.SerialException, OSError) as exc:
            raise BoardError(port, f"sending the reset failed: {exc}") from exc
        boot_output = _wait_for_boot(transport, port, boot_timeout)
    return DeployResult(port, platform, copied, boot_output, tuple(removed))
