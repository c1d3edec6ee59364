"""Private key and certificate files: safe modes on load, atomic writes with the right mode."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

__all__ = ["PRIVATE_MODE", "UNSAFE_BITS", "read_private_file", "unsafe_mode", "write_atomically"]

#: Mode of every file the gateway writes that may hold readings or secrets.
PRIVATE_MODE = 0o600

# Like ssh: a private key that its group or anyone else may read or write is not private.
UNSAFE_BITS = 0o077


def unsafe_mode(path: Path) -> int | None:
    """The file's permission bits if group or others have any access to it, else None.

    Raises OSError when the file cannot be stat'ed (missing, no permission).
    """
    mode = stat.S_IMODE(path.stat().st_mode)
    return mode if mode & UNSAFE_BITS else None


def write_atomically(path: Path, data: bytes, mode: int, *, sync: bool = True) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old or the new file, never half.

    The temporary file is created with ``mode`` from the start (``O_EXCL``, so a key is never
    readable by others, not even for a moment), synced, then renamed over ``path``.
    ``sync=False``: no fsync (status files rewritten every few seconds, not worth the wear).
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(tmp, flags, mode)
    except FileExistsError:  # left by a killed process with our pid (pid 1 in a container)
        tmp.unlink()
        fd = os.open(tmp, flags, mode)
    try:
        try:
            os.fchmod(fd, mode)  # the umask may have taken bits away; never adds any
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if not sync:
        return
    with contextlib.suppress(OSError):  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def read_private_file(path: Path, max_bytes: int) -> bytes | None:
    """The bytes of a file the gateway wrote with :func:`write_atomically`; None if there is none.

    The counterpart for reading it back: no symlink followed (OSError), and ValueError if it is
    not a regular file of at most ``max_bytes`` (checked before anything is read).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("not a regular file")
        if info.st_size > max_bytes:
            raise ValueError(f"{info.st_size} bytes; at most {max_bytes}")
        data = file.read(max_bytes + 1)
    if len(data) > max_bytes:  # it grew after fstat
        raise ValueError(f"more than {max_bytes} bytes")
    return data
