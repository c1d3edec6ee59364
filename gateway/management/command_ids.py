"""Replies remembered by command id, kept across restarts in ``<outbox>.commands.json``.

A command id seen again gets the reply it got the first time (docs/mqtt.md, "Repeated ids"). In
memory the last ``capacity`` replies are kept. The replies of commands that change something
(``restart``, ``config-set``: :data:`LASTING`) are also written to a small file beside the
outbox before the command takes effect, and read back at start, so a ``restart`` retried with
the same id after the restart is answered, not run again. Entries older than ``max_age`` are
forgotten; a reply larger than :data:`MAX_STORED_REPLY` stays in memory only.

The file is written atomically (a temporary file created 0600, fsync, rename) in a thread. It
is read only if it is a regular file (not through a symlink) of at most :data:`MAX_FILE` bytes;
anything else is ignored with a warning, never changed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.core.key_files import PRIVATE_MODE, read_private_file, write_atomically

log = logging.getLogger(__name__)

__all__ = ["LASTING", "MAX_AGE", "ReplyMemory", "replies_path"]

#: Commands whose replies survive a restart: running them twice would do something twice.
LASTING = frozenset({"restart", "config-set"})

#: Seconds a remembered reply is kept (a platform retries within minutes, not days).
MAX_AGE = 24 * 3600.0

#: Larger replies are not written to the file.
MAX_STORED_REPLY = 16 * 1024

#: Entries the file holds at most (the newest).
MAX_ENTRIES = 64

#: The file is refused unread above this size (a reply JSON-escaped in the file's JSON at
#: most doubles).
MAX_FILE = MAX_ENTRIES * 2 * MAX_STORED_REPLY + 4096

#: Version of the file's layout.
FILE_FORMAT = 1


def replies_path(outbox_path: Path) -> Path:
    """Where the gateway using ``outbox_path`` keeps its remembered replies."""
    return outbox_path.with_name(outbox_path.name + ".commands.json")


class ReplyMemory:
    """The last ``capacity`` replies by command id; the lasting ones also in ``path``."""

    def __init__(
        self,
        path: Path | None,
        capacity: int,
        max_age: float = MAX_AGE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.capacity = capacity
        self.max_age = max_age
        self._clock = clock
        self._replies: OrderedDict[str, tuple[float, bytes, bool]] = OrderedDict()
        self._lock = asyncio.Lock()

    def get(self, command_id: str) -> bytes | None:
        """The reply remembered for ``command_id``, if it is not too old."""
        entry = self._replies.get(command_id)
        if entry is None or self._clock() - entry[0] > self.max_age:
            return None
        return entry[1]

    def __len__(self) -> int:
        return len(self._replies)

    async def remember(self, command_id: str, command: str | None, payload: bytes) -> None:
        """Remember ``payload``; a lasting command's reply is on disk when this returns."""
        lasting = command in LASTING and len(payload) <= MAX_STORED_REPLY
        self._replies[command_id] = (self._clock(), payload, lasting)
        self._replies.move_to_end(command_id)
        while len(self._replies) > self.capacity:
            self._replies.popitem(last=False)
        if lasting:
            await self.save()

    async def save(self) -> None:
        """Write the lasting replies to the file (in a thread); a failure is logged, not raised:
        the command still runs, it is only not remembered across a restart."""
        if self.path is None:
            return
        now = self._clock()
        entries = [
            {"id": command_id, "at": round(at, 3), "reply": payload.decode("utf-8")}
            for command_id, (at, payload, lasting) in self._replies.items()
            if lasting and now - at <= self.max_age
        ][-MAX_ENTRIES:]
        document = {"format": FILE_FORMAT, "replies": entries}
        async with self._lock:  # one writer at a time: they share the temporary file's name
            try:
                await asyncio.to_thread(_write_private, self.path, document)
            except OSError as exc:
                log.warning("cannot keep command replies in %s: %s", self.path, exc)

    async def load(self) -> None:
        """Read back the file (in a thread): what it holds joins what is in memory."""
        if self.path is None:
            return
        try:
            entries = await asyncio.to_thread(_read_entries, self.path)
        except (OSError, ValueError) as exc:
            log.warning("ignoring remembered command replies %s: %s", self.path, exc)
            return
        now = self._clock()
        for command_id, at, payload in reversed(entries[-MAX_ENTRIES:]):
            if now - at <= self.max_age and command_id not in self._replies:
                self._replies[command_id] = (at, payload, True)
                self._replies.move_to_end(command_id, last=False)
        while len(self._replies) > self.capacity:
            self._replies.popitem(last=False)


def _write_private(path: Path, document: dict[str, Any]) -> None:
    """Replace ``path`` atomically with ``document``, 0600 whatever the umask. Blocking."""
    data = (json.dumps(document, separators=(",", ":")) + "\n").encode()
    write_atomically(path, data, PRIVATE_MODE)


def _read_entries(path: Path) -> list[tuple[str, float, bytes]]:
    """The file's entries, oldest first; [] when there is none. Blocking.

    Raises ValueError (or OSError) naming what is wrong with a file that is there.
    """
    data = read_private_file(path, MAX_FILE)
    if data is None:
        return []
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not JSON: {exc}") from exc
    if not isinstance(document, dict) or document.get("format") != FILE_FORMAT:
        raise ValueError(f"expected an object with format {FILE_FORMAT}")
    raw = document.get("replies")
    if not isinstance(raw, list):
        raise ValueError("replies: expected a list")  # noqa: TRY004 - a bad file, not a bad call
    entries = []
    for item in raw:
        if not (
            isinstance(item, dict)
            and isinstance(item.get("id"), str)
            and isinstance(item.get("at"), int | float)
            and isinstance(item.get("reply"), str)
        ):
            raise ValueError("replies: expected objects with id, at and reply")  # noqa: TRY004
        entries.append((item["id"], float(item["at"]), item["reply"].encode("utf-8")))
    return entries
