"""Log lines for journald: a syslog priority prefix on every line, no timestamps.

systemd connects a service's stderr to the journal and says so in ``JOURNAL_STREAM``
(``<device>:<inode>`` of that stream). A line starting with ``<N>`` is stored with priority N
(``SyslogLevelPrefix=``, on by default), so ``journalctl -p warning`` and the red lines in
``systemctl status`` work; the journal adds its own timestamps. Every line of a multi-line
record (a traceback) gets the prefix, as journald splits the stream at newlines.
Anywhere else (a terminal, a container, a file) lines keep the plain format with a timestamp.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import IO

__all__ = ["PLAIN_FORMAT", "JournalFormatter", "log_handler", "priority", "writes_to_journal"]

PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# syslog(3) priorities
_CRIT, _ERR, _WARNING, _NOTICE, _INFO, _DEBUG = 2, 3, 4, 5, 6, 7


def priority(levelno: int) -> int:
    """The syslog priority of a logging level (custom levels fall to the next lower one)."""
    if levelno >= logging.CRITICAL:
        return _CRIT
    if levelno >= logging.ERROR:
        return _ERR
    if levelno >= logging.WARNING:
        return _WARNING
    if levelno >= logging.INFO:
        return _INFO
    return _DEBUG


class JournalFormatter(logging.Formatter):
    """``<N>logger: message``, the prefix repeated on each line."""

    def __init__(self) -> None:
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """The record's text with its priority before every line."""
        prefix = f"<{priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).split("\n"))


def writes_to_journal(stream: IO[str], environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``stream`` is the journal stream systemd names in ``JOURNAL_STREAM``.

    Compared by device and inode, as systemd.exec(5) advises: a child whose stderr was
    redirected elsewhere inherits the variable but not the stream.
    """
    env = os.environ if environ is None else environ
    device, _, inode = env.get("JOURNAL_STREAM", "").partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError):  # no file descriptor (captured), or closed
        return False
    return (st.st_dev, st.st_ino) == (int(device), int(inode))


def log_handler(stream: IO[str], environ: Mapping[str, str] | None = None) -> logging.Handler:
    """A handler writing to ``stream`` in the journal's format or the plain one."""
    handler = logging.StreamHandler(stream)
    journal = writes_to_journal(stream, environ)
    handler.setFormatter(JournalFormatter() if journal else logging.Formatter(PLAIN_FORMAT))
    return handler
