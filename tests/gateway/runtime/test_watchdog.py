"""The progress watchdog: pings only while the loops that matter advance (real socket, outbox)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import pytest

from gateway.runtime.notify import Notifier
from gateway.runtime.progress_probes import OUTBOX_ALLOWANCE, outbox_probe
from gateway.runtime.watchdog import (
    Probe,
    ProgressTracker,
    Watchdog,
    heartbeat_path,
    heartbeat_verdict,
    read_heartbeat,
)
from gateway.store.outbox import Outbox
from tests.gateway.store.test_outbox import config, readings
from tests.support.notify_listener import NotifyListener
from tests.support.waiting import until


class FakeClock:
    """Monotonic seconds the test moves forward, so allowances are crossed without waiting."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_idle_never_stalls_and_a_frozen_marker_stalls_after_its_allowance() -> None:
    marker: list[int | None] = [None]
    tracker = ProgressTracker((Probe("loop", 10.0, lambda: marker[0]),))
    assert tracker.stalled(0.0) == []
    assert tracker.stalled(100.0) == []  # idle (None) for ages: fine
    marker[0] = 1
    assert tracker.stalled(100.0) == []
    assert tracker.stalled(110.0) == []  # exactly the allowance
    assert tracker.stalled(111.0) == ["loop: no progress for 11s"]
    marker[0] = 2
    assert tracker.stalled(112.0) == []  # progress clears it at once
    marker[0] = None
    assert tracker.stalled(500.0) == []
    marker[0] = 2  # owed again with the old marker: the allowance starts afresh
    assert tracker.stalled(501.0) == []
    assert tracker.stalled(511.5) == ["loop: no progress for 10s"]


def test_a_wedged_outbox_thread_stops_the_pings_and_the_heartbeat_says_why(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        clock = FakeClock()
        async with (
            NotifyListener(tmp_path) as listener,
            Outbox(config(tmp_path, commit_interval="10ms")) as outbox,
            asyncio.TaskGroup() as tg,
        ):
            commit = tg.create_task(outbox.run(), name="outbox:commit")
            notifier = Notifier.from_environ(listener.env(watchdog_usec=2_000_000))
            beat_file = heartbeat_path(tmp_path / "outbox.db")
            watchdog = Watchdog(notifier, [outbox_probe(outbox)], heartbeat=beat_file, clock=clock)
            await outbox.put_many(readings(10))
            assert await watchdog.beat()
            await until(lambda: outbox.progress() is None)  # committed, and back on the loop
            assert outbox.last_seq == 10
            assert listener.drain() == [{"WATCHDOG": "1"}, {"STATUS": "running"}]

            # Wedge the database thread (the outbox's only worker) as a stuck disk would.
            gate = threading.Event()
            release = tg.create_task(_release_at_exit(gate), name="test:release")
            assert outbox._executor is not None  # the test reaches the outbox's thread
            outbox._executor.submit(gate.wait, 30)
            await outbox.put_many(readings(5, start=10))
            # From here the commit count stays put: the next commit cannot finish.
            assert outbox.progress() is not None
            assert await watchdog.beat()  # just wedged: within the allowance
            clock.now += OUTBOX_ALLOWANCE + 1
            assert not await watchdog.beat()
            assert not await watchdog.beat()
            assert watchdog.stalled == ["outbox:commit: no progress for 61s"]
            sent = listener.drain()
            assert {"WATCHDOG": "1"} not in sent[1:]  # the in-allowance beat's ping, then none
            assert sent[-1] == {"STATUS": "stalled: outbox:commit: no progress for 61s"}
            verdict = heartbeat_verdict(
                await asyncio.to_thread(read_heartbeat, beat_file), time.time()
            )
            assert not verdict.healthy
            assert "outbox:commit" in verdict.reason

            gate.set()  # the disk answers again: the commit finishes, pings resume
            await until(lambda: outbox.progress() is None)
            assert outbox.last_seq == 15
            assert await watchdog.beat()
            assert {"WATCHDOG": "1"} in listener.drain()
            beat = await asyncio.to_thread(read_heartbeat, beat_file)
            assert heartbeat_verdict(beat, time.time()).healthy
            commit.cancel()
            release.cancel()

    asyncio.run(scenario())


async def _release_at_exit(gate: threading.Event) -> None:
    """Whatever happens in the test, the database thread is let go when its task group ends."""
    try:
        await asyncio.Event().wait()
    finally:
        gate.set()


def test_a_task_that_ended_stops_the_pings(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with NotifyListener(tmp_path) as listener:

            async def poller() -> None:
                await asyncio.sleep(0)  # a loop that returns: a bug, not a stop

            task = asyncio.create_task(poller(), name="poll:modbus_tcp:meter-1")
            notifier = Notifier.from_environ(listener.env(watchdog_usec=2_000_000))
            watchdog = Watchdog(notifier, [], heartbeat=None, tasks=lambda: [task])
            assert await watchdog.beat() is (not task.done())
            await task
            assert not await watchdog.beat()
            assert watchdog.stalled == ["task poll:modbus_tcp:meter-1 ended"]
            assert listener.drain()[-1] == {"STATUS": "stalled: task poll:modbus_tcp:meter-1 ended"}

    asyncio.run(scenario())


def test_a_blocked_event_loop_sends_nothing(tmp_path: Path) -> None:
    """The pings come from a task on the event loop, not a thread: a blocked loop is silent."""

    async def scenario() -> None:
        async with NotifyListener(tmp_path) as listener:
            notifier = Notifier.from_environ(listener.env(watchdog_usec=20_000))  # every 10 ms
            watchdog = Watchdog(notifier, [], heartbeat=None)
            task = asyncio.create_task(watchdog.run(), name="status:watchdog")
            await until(lambda: watchdog.pings >= 3)
            listener.drain()
            time.sleep(0.3)  # noqa: ASYNC251 - the point: a loop blocked for 30 ping periods
            assert listener.drain() == []
            await until(lambda: watchdog.pings >= 6)  # unblocked: pinging again
            task.cancel()

    asyncio.run(scenario())


def test_without_a_watchdog_period_it_checks_every_10s_and_never_pings(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with NotifyListener(tmp_path) as listener:
            watchdog = Watchdog(Notifier.from_environ(listener.env()), [], heartbeat=None)
            assert watchdog.interval == 10.0
            assert await watchdog.beat()
            assert listener.drain() == [{"STATUS": "running"}]
            assert watchdog.pings == 0

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("beat", "alive", "healthy", "reason"),
    [
        (None, True, False, "no heartbeat"),
        ({"pid": 7, "updated_unix": 990.0, "interval_s": 10.0}, True, False, "lacks"),
        (
            {"pid": 7, "updated_unix": 990.0, "interval_s": 10.0, "stalled": []},
            False,
            False,
            "gone",
        ),
        (
            {"pid": 7, "updated_unix": 960.0, "interval_s": 10.0, "stalled": []},
            True,
            False,
            "stuck",
        ),
        ({"pid": 7, "updated_unix": 990.0, "interval_s": 10.0, "stalled": ["x"]}, True, False, "x"),
        ({"pid": 7, "updated_unix": 990.0, "interval_s": 10.0, "stalled": []}, True, True, "pid 7"),
        ({"pid": 7, "updated_unix": 966.0, "interval_s": 10.0, "stalled": []}, True, True, "34s"),
    ],
)
def test_heartbeat_verdict(
    beat: dict[str, object] | None, alive: bool, healthy: bool, reason: str
) -> None:
    verdict = heartbeat_verdict(beat, 1000.0, alive=lambda pid: alive)
    assert verdict.healthy is healthy
    assert reason in verdict.reason


def test_an_unreadable_heartbeat_is_a_value_error(tmp_path: Path) -> None:
    path = tmp_path / "hb.json"
    assert read_heartbeat(path) is None
    path.write_text("{")
    with pytest.raises(ValueError, match="not JSON"):
        read_heartbeat(path)
    path.write_text(json.dumps({"format": 99}))
    with pytest.raises(ValueError, match="format 1"):
        read_heartbeat(path)


def test_a_stall_is_logged_once_and_its_end_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        clock = FakeClock()
        marker: list[int | None] = [1]
        probe = Probe("forward:mqtt", 60.0, lambda: marker[0])
        watchdog = Watchdog(Notifier(None), [probe], heartbeat=None, clock=clock)
        for _ in range(5):
            await watchdog.beat()
            clock.now += 30
        marker[0] = 2
        await watchdog.beat()
        await watchdog.beat()

    with caplog.at_level("WARNING", logger="gateway.runtime.watchdog"):
        asyncio.run(scenario())
    assert [r.getMessage() for r in caplog.records] == [
        "watchdog: stalled (forward:mqtt: no progress for 90s); not pinging",
        "watchdog: progress again; pinging",
    ]
