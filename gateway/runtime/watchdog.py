"""The progress watchdog: pings systemd and writes a heartbeat only while the gateway progresses.

A watchdog ping that a timer sends proves only that the timer runs. This one is sent from the
event loop, and only when every loop that matters has advanced within its allowance:

- the event loop itself: the watchdog is a task on it, so a blocked loop sends nothing;
- each :class:`Probe` (the outbox's commit loop, the forwarder, every poller; see
  gateway/runtime/progress_probes.py): a function returning a progress marker, or None while the
  loop
  owes nothing (idle is not stuck). A marker that stays the same for longer than the probe's
  allowance while something is owed is a stall;
- each watched task: one that ended while the gateway runs is a stall too.

Stalled, the gateway stops pinging and systemd (``WatchdogSec=``) kills and restarts it. The
same verdict goes into the heartbeat file next to the outbox, which ``streetgate healthcheck``
reads for a container engine's health check (balena, Docker), where there is no systemd.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.runtime.notify import Notifier
from gateway.runtime.state_file import pid_alive, write_state

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_INTERVAL",
    "HEARTBEAT_FORMAT",
    "Probe",
    "ProgressTracker",
    "Verdict",
    "Watchdog",
    "heartbeat_path",
    "heartbeat_verdict",
    "read_heartbeat",
]

#: Seconds between checks when systemd sets no watchdog period (a container, a terminal).
DEFAULT_INTERVAL = 10.0

#: Version of the heartbeat file's layout.
HEARTBEAT_FORMAT = 1


@dataclass(frozen=True, slots=True)
class Probe:
    """One loop the watchdog watches.

    ``progress()`` returns None while the loop owes nothing, otherwise a marker that changes
    whenever the loop gets something done. ``allowance`` is how long, in seconds, the marker
    may stay the same while something is owed.
    """

    name: str
    allowance: float
    progress: Callable[[], Hashable | None]


@dataclass(slots=True)
class _Seen:
    marker: Hashable | None
    since: float


@dataclass
class ProgressTracker:
    """Pure bookkeeping: which probes are stalled at a given (monotonic) time."""

    probes: tuple[Probe, ...]
    _seen: dict[str, _Seen] = field(default_factory=dict)

    def stalled(self, now: float) -> list[str]:
        """One line per stalled probe, naming it and for how long it has not advanced."""
        found = []
        for probe in self.probes:
            marker = probe.progress()
            seen = self._seen.get(probe.name)
            if marker is None or seen is None or seen.marker != marker:
                self._seen[probe.name] = _Seen(marker, now)
                continue
            idle = now - seen.since
            if idle > probe.allowance:
                found.append(f"{probe.name}: no progress for {idle:.0f}s")
        return found


def _what(stalled: Iterable[str]) -> set[str]:
    return {line.split(": no progress", 1)[0] for line in stalled}


def heartbeat_path(outbox_path: Path) -> Path:
    """Where the gateway using ``outbox_path`` writes its heartbeat."""
    return outbox_path.with_name(outbox_path.name + ".heartbeat.json")


class Watchdog:
    """Checks progress every ``interval`` s; pings and writes the heartbeat. Run ``run()`` as a
    task (``status:watchdog``).

    ``tasks`` returns the tasks that must keep running. ``describe`` gives the short status
    line for ``systemctl status`` while all is well. ``clock`` (monotonic seconds) times the
    probes' allowances.
    """

    def __init__(
        self,
        notifier: Notifier,
        probes: Iterable[Probe],
        *,
        heartbeat: Path | None,
        tasks: Callable[[], Iterable[asyncio.Task[Any]]] = tuple,
        describe: Callable[[], str] = lambda: "running",
        interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._notifier = notifier
        self._tracker = ProgressTracker(tuple(probes))
        self._heartbeat = heartbeat
        self._tasks = tasks
        self._describe = describe
        self.interval = interval or notifier.watchdog or DEFAULT_INTERVAL
        self.stalled: list[str] = []
        self.pings = 0
        self._status = ""
        self._heartbeat_failing = False
        self._clock = clock

    def check(self) -> list[str]:
        """What is stalled now (empty: all is well)."""
        stalled = self._tracker.stalled(self._clock())
        stalled += [f"task {t.get_name()} ended" for t in self._tasks() if t.done()]
        return stalled

    async def beat(self) -> bool:
        """One round: check, ping if all is well, update status and heartbeat. True if well."""
        stalled = self.check()
        # Logged when what is stalled changes, not each time its duration grows.
        if _what(stalled) != _what(self.stalled):
            if stalled:
                log.error("watchdog: stalled (%s); not pinging", "; ".join(stalled))
            else:
                log.warning("watchdog: progress again; pinging")
        self.stalled = stalled
        if not stalled and self._notifier.watchdog is not None and self._notifier.ping():
            self.pings += 1
        status = "stalled: " + "; ".join(stalled) if stalled else self._describe()
        if status != self._status:
            self._notifier.status(status)
            self._status = status
        await self._write_heartbeat()
        return not stalled

    async def run(self) -> None:
        """Beat until cancelled. The first beat comes at once (systemd may be waiting)."""
        while True:
            await self.beat()
            await asyncio.sleep(self.interval)

    async def _write_heartbeat(self) -> None:
        if self._heartbeat is None:
            return
        state = {
            "format": HEARTBEAT_FORMAT,
            "pid": os.getpid(),
            "updated_unix": round(time.time(), 3),
            "interval_s": self.interval,
            "stalled": self.stalled,
        }
        try:
            await asyncio.to_thread(write_state, self._heartbeat, state)
        except OSError as exc:
            if not self._heartbeat_failing:
                log.warning("cannot write the heartbeat %s: %s", self._heartbeat, exc)
            self._heartbeat_failing = True
        else:
            self._heartbeat_failing = False


# -- the reading side (``streetgate healthcheck``; blocking) ----------------------------------


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether the gateway is healthy, and why (one line for a container's health log)."""

    healthy: bool
    reason: str


def read_heartbeat(path: Path) -> dict[str, Any] | None:
    """The heartbeat's content; None when there is none. Raises ValueError if unreadable."""
    from gateway.runtime.state_file import read_status_file  # noqa: PLC0415 - only readers need it

    return read_status_file(path, HEARTBEAT_FORMAT, "a heartbeat")


def heartbeat_verdict(
    data: Mapping[str, Any] | None, now_unix: float, alive: Callable[[int], bool] = pid_alive
) -> Verdict:
    """Pure but for ``alive``: judge a heartbeat's content at ``now_unix``.

    Healthy only when the file is there, its process lives, it is fresh (at most three
    intervals and 5 s old) and nothing is stalled.
    """
    if data is None:
        return Verdict(False, "no heartbeat: the gateway has not started (yet)")
    pid, updated, interval = data.get("pid"), data.get("updated_unix"), data.get("interval_s")
    stalled = data.get("stalled")
    if not (
        isinstance(pid, int)
        and isinstance(updated, int | float)
        and isinstance(interval, int | float)
        and isinstance(stalled, list)
    ):
        return Verdict(False, "the heartbeat lacks pid, time, interval or stalled")
    if not alive(pid):
        return Verdict(False, f"the gateway (pid {pid}) is gone")
    age = now_unix - updated
    if age > 3 * interval + 5:
        return Verdict(False, f"heartbeat {age:.0f}s old: the gateway's event loop is stuck")
    if stalled:
        return Verdict(False, "stalled: " + "; ".join(str(s) for s in stalled))
    return Verdict(True, f"healthy (pid {pid}, heartbeat {max(age, 0):.0f}s old)")
