"""Files the config names, read safely: a regular file of bounded size, or a clear ConfigError.

Every file a config names (the config itself, device profiles, ``mqtt.password_file``, the TLS
files) is opened here. A name may be a symlink (``/etc/streetgate/config.toml -> ...`` is
normal), but what it points at must be a regular file: ``/dev/zero``, a FIFO or a directory is
refused after ``fstat`` of the opened file (``O_NONBLOCK``, so opening a FIFO never waits). At
most ``max_bytes + 1`` bytes are read, so a huge or endless file costs no more memory than the
limit. Blocking: call it in a thread from the event loop.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from gateway.core.errors import ConfigError, ConfigIssue

__all__ = [
    "MAX_CONFIG_BYTES",
    "MAX_PASSWORD_BYTES",
    "MAX_PROFILE_BYTES",
    "MAX_TLS_BYTES",
    "check_config_file",
    "read_config_file",
]

MAX_CONFIG_BYTES = 1024 * 1024
MAX_PROFILE_BYTES = 256 * 1024
MAX_PASSWORD_BYTES = 4096
MAX_TLS_BYTES = 1024 * 1024

_READ_CHUNK = 65536


def _refuse(path: Path, what: str, message: str) -> ConfigError:
    return ConfigError(str(path), [ConfigIssue(what, message)])


def _open_regular(path: Path, what: str, max_bytes: int) -> tuple[int, int]:
    """Open ``path`` for reading; (fd, size) once fstat says it is a regular file in bounds."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        raise _refuse(path, what, f"cannot read file: {exc.strerror}") from exc
    try:
        size = _regular_size(fd, path, what, max_bytes)
    except BaseException:
        os.close(fd)
        raise
    return fd, size


def _regular_size(fd: int, path: Path, what: str, max_bytes: int) -> int:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise _refuse(path, what, "not a regular file")
    if info.st_size > max_bytes:
        raise _refuse(path, what, f"{info.st_size:,} bytes, larger than the {max_bytes:,} allowed")
    return info.st_size


def read_config_file(path: Path, what: str, max_bytes: int) -> bytes:
    """The bytes of a file the config names; ConfigError if it is not a regular file of at most
    ``max_bytes``. ``what`` names it in the error ("profile", "mqtt.password_file"; "" for the
    config file itself, which the error names already)."""
    fd, _ = _open_regular(path, what, max_bytes)
    chunks: list[bytes] = []
    total = 0
    try:
        while total <= max_bytes:  # the file may grow after fstat: read one byte past the limit
            chunk = os.read(fd, min(_READ_CHUNK, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as exc:
        raise _refuse(path, what, f"cannot read file: {exc.strerror}") from exc
    finally:
        os.close(fd)
    if total > max_bytes:
        raise _refuse(path, what, f"larger than the {max_bytes:,} bytes allowed")
    return b"".join(chunks)


def check_config_file(path: Path, what: str, max_bytes: int) -> None:
    """Check, without reading it, that a file another library loads by path (ssl's TLS files)
    is a regular file of at most ``max_bytes``; ConfigError otherwise."""
    fd, _ = _open_regular(path, what, max_bytes)
    os.close(fd)
