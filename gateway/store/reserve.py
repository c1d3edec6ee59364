"""Disk space held in reserve, so a full disk can be recovered from instead of wedging SQLite.

On a full disk SQLite cannot even delete rows (a delete writes pages to the WAL) nor
checkpoint (which may grow the database file). A file of zeros written while space is
plentiful is given back when the disk fills, which is enough to checkpoint and drop readings;
the reserve is re-made once there is room again.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from pathlib import Path

from gateway.store.outbox_files import open_companion

log = logging.getLogger(__name__)


class DiskReserve:
    """A file of ``size`` bytes next to the outbox (``<outbox>.reserve``). Blocking I/O:
    call from the outbox's database thread."""

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.size = size

    @property
    def held(self) -> bool:
        """Whether the reserve is in place."""
        try:
            return self.path.lstat().st_size >= self.size
        except FileNotFoundError:
            return False

    def ensure(self) -> bool:
        """Make the reserve if it is missing; False (and nothing left behind) if no room."""
        if self.size == 0 or self.held:
            return True
        try:
            # No symlink followed, nothing truncated, 0600 (gateway/store/outbox_files.py).
            fd = open_companion(self.path, os.O_WRONLY, "outbox's .reserve file")
            try:
                try:
                    os.posix_fallocate(fd, 0, self.size)
                except OSError as exc:
                    if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                        raise
                    # No fallocate here: append zeros, never writing over what is there.
                    done = os.lseek(fd, 0, os.SEEK_END)
                    while done < self.size:
                        done += os.write(fd, bytes(min(65536, self.size - done)))
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                self.path.unlink()
            log.warning(
                "no room for the %d-byte disk reserve %s: %s", self.size, self.path, exc.strerror
            )
            return False
        return True

    def release(self) -> bool:
        """Give the reserve's space back to the filesystem; True if there was one."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        log.warning("disk full: released the %d-byte reserve %s", self.size, self.path)
        return True
