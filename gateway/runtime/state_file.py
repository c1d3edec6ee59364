"""The gateway's state file next to the outbox, for local tools in other processes.

``streetgate buffer status`` runs in its own process and cannot ask the gateway, so the gateway
writes ``<outbox>.state.json``: the health snapshot (gateway/runtime/health_report.py) plus its
pid, the time
of the update, the interval it keeps and since when the broker connection is up. It is
rewritten every ``STATE_INTERVAL`` seconds and whenever the forwarder's state changes, always
atomically (temporary file, then rename), so a reader sees the old or the new file, never half
of one. At a clean stop the last write says ``"running": false``.

A reader tells a running gateway from a gone one with :func:`gateway_view`: the file says
stopped, the pid no longer exists, or the file is older than a few intervals.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.core.key_files import PRIVATE_MODE, write_atomically

# Only a type here: importing the forwarder would load aiomqtt, and the ``streetgate status``,
# ``buffer`` and ``tail`` commands that read this file should start without it.
if TYPE_CHECKING:
    from gateway.uplink.forwarder import ForwarderStats

log = logging.getLogger(__name__)

__all__ = [
    "STATE_FORMAT",
    "STATE_INTERVAL",
    "GatewayView",
    "StateFileWriter",
    "current_view",
    "gateway_view",
    "pid_alive",
    "read_state",
    "stale_after",
    "state_path",
    "write_state",
]

#: Version of the file's layout; a reader refuses a format it does not know.
STATE_FORMAT = 1

#: Seconds between periodic rewrites (changes of the forwarder's state are written within 1 s).
STATE_INTERVAL = 5.0

#: How often the forwarder's state is compared with what was last written.
CHECK_INTERVAL = 1.0


def state_path(outbox_path: Path) -> Path:
    """Where the gateway using ``outbox_path`` writes its state file."""
    return outbox_path.with_name(outbox_path.name + ".state.json")


def write_state(path: Path, state: Mapping[str, Any]) -> None:
    """Replace the state file atomically, mode 0600 whatever the umask (a new file, never one
    a symlink points at). Blocking: call it in a thread."""
    data = (json.dumps(state, separators=(",", ":")) + "\n").encode()
    write_atomically(path, data, PRIVATE_MODE, sync=False)


def _iso(unix: float | None) -> str | None:
    if unix is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(unix))


class StateFileWriter:
    """Keeps the state file current; run ``run()`` as a task (``status:state-file``).

    ``snapshot`` is the health reporter's snapshot (the one source of truth for counters);
    ``forwarder`` is the live forwarder statistics, watched for changes between snapshots.
    A failed write (disk full, read-only file system) is logged and retried on the next turn:
    the state file never stops the gateway.
    """

    def __init__(
        self,
        path: Path,
        snapshot: Callable[[], Awaitable[dict[str, Any]]],
        forwarder: ForwarderStats,
        *,
        interval: float = STATE_INTERVAL,
        check_interval: float = CHECK_INTERVAL,
    ) -> None:
        self.path = path
        self._snapshot = snapshot
        self._forwarder = forwarder
        self._interval = interval
        self._check_interval = check_interval
        self._failing = False
        self.writes = 0

    def _signature(self) -> tuple[object, ...]:
        fwd = self._forwarder
        return (fwd.state, fwd.connects, fwd.connection_failures, fwd.last_error, fwd.broker)

    async def state(self, *, running: bool) -> dict[str, Any]:
        """The file's content now."""
        snapshot = await self._snapshot()
        forwarder = dict(snapshot.get("forwarder", {}))
        forwarder["connected_since"] = _iso(self._forwarder.connected_since)
        return {
            "format": STATE_FORMAT,
            "running": running,
            "pid": os.getpid(),
            "updated_unix": round(time.time(), 3),
            "interval_s": self._interval,
            **snapshot,
            "forwarder": forwarder,
        }

    async def write(self, *, running: bool = True) -> bool:
        """Write the file now; False if the write failed (logged once per failure spell)."""
        state = await self.state(running=running)
        job = asyncio.get_running_loop().run_in_executor(None, write_state, self.path, state)
        try:
            # A cancelled caller still waits, so two writes never race for the same file.
            await asyncio.shield(job)
        except asyncio.CancelledError:
            await asyncio.wait([job])
            raise
        except OSError as exc:
            if not self._failing:
                log.warning("cannot write the state file %s: %s", self.path, exc)
            self._failing = True
            return False
        if self._failing:
            log.info("state file %s written again", self.path)
        self._failing = False
        self.writes += 1
        return True

    async def run(self) -> None:
        """Write periodically and on change until cancelled; then write ``running: false``."""
        last_signature: tuple[object, ...] | None = None
        last_written = -float("inf")
        try:
            while True:
                signature = self._signature()
                due = time.monotonic() - last_written >= self._interval
                if (signature != last_signature or due) and await self.write():
                    last_signature = signature
                    last_written = time.monotonic()
                await asyncio.sleep(self._check_interval)
        except asyncio.CancelledError:
            await self.write(running=False)  # readers see "stopped" at once, not after a timeout
            raise


# -- the reading side (local tools; blocking) ----------------------------------------------


def read_state(path: Path) -> dict[str, Any] | None:
    """The state file's content; None when there is none. Raises ValueError if unreadable."""
    return read_status_file(path, STATE_FORMAT, "a state file")


def read_status_file(path: Path, expected_format: int, what: str) -> dict[str, Any] | None:
    """A JSON status file the gateway writes for local tools (the state file, the watchdog's
    heartbeat); None when there is none. Raises ValueError if it is unreadable, not JSON, or
    not of ``expected_format``."""
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != expected_format:
        raise ValueError(f"{path}: not {what} of format {expected_format}")
    return data


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (also when it belongs to another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True, slots=True)
class GatewayView:
    """What a local tool can tell about the gateway from its state file."""

    running: bool
    reason: str  # for humans, after "gateway": "running (pid 12)", "not running (...)"
    pid: int | None = None
    updated_unix: float | None = None
    forwarder: Mapping[str, Any] | None = None  # state, connected_since, last_error, ...

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "running": self.running,
            "reason": self.reason,
            "pid": self.pid,
            "updated": _iso(self.updated_unix),
            "forwarder": dict(self.forwarder) if self.forwarder is not None else None,
        }


def stale_after(interval: float) -> float:
    """Age in seconds past which a state file no longer speaks for a running gateway."""
    return 3 * interval + 5


def gateway_view(state: Mapping[str, Any] | None, now_unix: float, alive: bool) -> GatewayView:
    """Pure: judge a state file's content, given the time and whether its pid exists."""
    if state is None:
        return GatewayView(False, "not running (no state file: it has not run here)")
    pid = state.get("pid")
    updated = state.get("updated_unix")
    interval = state.get("interval_s")
    if not (
        isinstance(pid, int)
        and isinstance(updated, int | float)
        and isinstance(interval, int | float)
    ):
        return GatewayView(False, "unknown (the state file lacks pid or time)")
    forwarder = state.get("forwarder")
    fwd = forwarder if isinstance(forwarder, Mapping) else None
    age = now_unix - updated
    if not state.get("running", False):
        reason = f"not running (stopped cleanly at {_iso(updated)})"
        return GatewayView(False, reason, pid, updated, None)
    if not alive:
        reason = f"not running (pid {pid} is gone; last update {_iso(updated)})"
        return GatewayView(False, reason, pid, updated, None)
    if age > stale_after(interval):
        reason = f"not running (state file stale: last updated {_iso(updated)}, {age:.0f}s ago)"
        return GatewayView(False, reason, pid, updated, None)
    return GatewayView(True, f"running (pid {pid})", pid, updated, fwd)


def current_view(path: Path) -> GatewayView:
    """Read and judge the state file at ``path`` (blocking)."""
    try:
        state = read_state(path)
    except ValueError as exc:
        return GatewayView(False, f"unknown ({exc})")
    pid = state.get("pid") if state is not None else None
    alive = isinstance(pid, int) and pid > 0 and pid_alive(pid)
    return gateway_view(state, time.time(), alive)
