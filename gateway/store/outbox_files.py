"""The outbox's own files: one gateway per outbox (a lock), companions opened without surprises.

The outbox and its companions (``.lock``, ``.reserve``, ``.state.json``, ``.heartbeat.json``;
SQLite's ``-wal`` and ``-shm``) live in the gateway's state directory, the outbox's folder.

- :class:`OutboxLock`: ``fcntl.flock`` on ``<outbox>.lock``, taken before anything else is
  written there. The file is opened without following a symlink, never truncated before the lock
  is held, made 0600, and holds the holder's pid, so a second gateway can say which one runs.
  The kernel drops the lock when its holder dies: a stale lock file never blocks a restart.
- :func:`refuse_symlink`: a symlink where the outbox or a companion belongs is refused.
- :func:`open_companion`: create or open a companion with ``O_NOFOLLOW`` and mode 0600.

Blocking: call from a thread (the outbox's database thread) or a command line.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from pathlib import Path
from types import TracebackType
from typing import Self

from gateway.core.errors import OutboxForeign, OutboxLocked
from gateway.core.key_files import PRIVATE_MODE

__all__ = [
    "PRIVATE_MODE",
    "OutboxLock",
    "lock_path",
    "open_companion",
    "refuse_symlink",
]


def lock_path(outbox_path: Path) -> Path:
    """Where the lock of the outbox at ``outbox_path`` lives."""
    return outbox_path.with_name(outbox_path.name + ".lock")


def refuse_symlink(path: Path, what: str) -> None:
    """OutboxForeign if ``path`` is a symlink (its target would be written through it)."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode):
        raise OutboxForeign(path, f"the {what} is a symlink (to {os.readlink(path)})")
    if not stat.S_ISREG(info.st_mode):
        raise OutboxForeign(path, f"the {what} is not a regular file")


def open_companion(path: Path, flags: int, what: str) -> int:
    """Open (or create, mode 0600) a companion file without following a symlink; a file
    descriptor. Never truncates: the caller decides what to do with what is there."""
    try:
        fd = os.open(
            path, flags | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, PRIVATE_MODE
        )
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OutboxForeign(path, f"the {what} is a symlink") from exc
        raise
    try:
        _own_file(fd, path, what)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _own_file(fd: int, path: Path, what: str) -> None:
    """Refuse what is not a plain file of ours; make it 0600."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise OutboxForeign(path, f"the {what} is not a regular file")
    if info.st_nlink > 1:  # a hard link to some other file
        raise OutboxForeign(path, f"the {what} has other names (hard links)")
    if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) != PRIVATE_MODE:
        os.fchmod(fd, PRIVATE_MODE)


class OutboxLock:
    """The exclusive lock of one outbox: ``with OutboxLock(path):`` or ``acquire``/``release``."""

    def __init__(self, outbox_path: Path) -> None:
        self.outbox_path = outbox_path
        self.path = lock_path(outbox_path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock or raise :class:`OutboxLocked` naming the holder; does not wait."""
        if self._fd is not None:
            return
        self.outbox_path.parent.mkdir(parents=True, exist_ok=True)
        fd = open_companion(self.path, os.O_RDWR, "lock file")
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise OutboxLocked(self.outbox_path, _read_pid(fd)) from None
            # Ours now: our pid over the last holder's, in a fixed width (never truncated).
            os.pwrite(fd, f"{os.getpid():<15}\n".encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (the file stays: removing it would race with the next holder)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # the pid stays; without the lock it names nobody

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None
