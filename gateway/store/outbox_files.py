"""The outbox's own files: one gateway per outbox (a lock), companions opened without surprises.

The outbox and its companions (``.lock``, ``.reserve``, ``.state.json``, ``.heartbeat.json``;
SQLite's ``-wal`` and ``-shm``) live in the gateway's state directory, the outbox's folder.

- :class:`OutboxLock`: ``fcntl.flock`` on ``<outbox>.lock``, taken before anything else is
  written there. The file is opened without following a symlink, never truncated before the lock
  is held, made 0600, and holds the holder's pid, so a second gateway can say which one runs.
  The kernel drops the lock when its holder dies: a stale lock file never blocks a restart.
- :func:`refuse_symlink`: a symlink where the outbox or a companion belongs is refused.
- :func:`open_companion`: create or open a companion with ``O_NOFOLLOW`` and mode 0600.
- :func:`check_owner`: files of the outbox that belong to another user (a ``streetgate run``
  as root in the service's state directory leaves root's files the service cannot write) are
  refused (:class:`OutboxNotOurs`) when they cannot be written, else warned about.

Blocking: call from a thread (the outbox's database thread) or a command line.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import pwd
import stat
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Self

from gateway.core.errors import OutboxForeign, OutboxLocked, OutboxNotOurs
from gateway.core.key_files import PRIVATE_MODE

log = logging.getLogger(__name__)

__all__ = [
    "COMPANIONS",
    "PRIVATE_MODE",
    "OutboxLock",
    "check_owner",
    "lock_path",
    "open_companion",
    "refuse_symlink",
]


#: Files next to the outbox that belong to it, by suffix (the lock is checked when taken).
COMPANIONS = (".reserve", ".state.json", ".heartbeat.json", "-wal", "-shm")


def lock_path(outbox_path: Path) -> Path:
    """Where the lock of the outbox at ``outbox_path`` lives."""
    return outbox_path.with_name(outbox_path.name + ".lock")


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def check_owner(outbox_path: Path, files: Iterable[Path]) -> None:
    """Refuse (OutboxNotOurs) or warn about ``files`` of the outbox that another user owns.

    Refused when one cannot be written by this user: opening would fail later with a bare
    "permission denied". Warned about when it can (root running on the service user's files:
    what root creates now, the service cannot write later).
    """
    me = os.geteuid()
    foreign: list[tuple[Path, int]] = []
    for path in files:
        try:
            info = path.lstat()
        except FileNotFoundError:
            continue
        if info.st_uid != me:
            foreign.append((path, info.st_uid))
    if not foreign:
        return
    folder = outbox_path.parent
    owners = ", ".join(f"{p.name} ({_user(uid)})" for p, uid in foreign)
    message = (
        f"outbox files in {folder} belong to another user than the {_user(me)} running the"
        f" gateway: {owners}"
    )
    if any(not os.access(p, os.W_OK, follow_symlinks=False) for p, _ in foreign):
        owner = _user(os.stat(folder).st_uid)
        raise OutboxNotOurs(
            outbox_path,
            f"{message}; it cannot write them. A `streetgate run` as another user (root?) left"
            f" them: give them back with `sudo chown -R {owner}: {folder}` (deploy/install.sh"
            " does it), and run the gateway only as its service",
        )
    log.warning(
        "%s; files created now will be %s's and the service user cannot write them: run the"
        " gateway as the user that owns %s (sudo -u USER streetgate run ...)",
        message,
        _user(me),
        folder,
    )


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
        companions = [self.outbox_path.with_name(self.outbox_path.name + s) for s in COMPANIONS]
        check_owner(self.outbox_path, [self.outbox_path, self.path, *companions])
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
