"""systemd's notify protocol on a real Unix datagram socket; the gateway speaking it and logging."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from drivers.profile import load_profile
from gateway.runtime.notify import Notifier, watchdog_interval
from gateway.runtime.watchdog import heartbeat_path
from simulator.modbus_server import DeviceSpec, ModbusSimulator
from tests.support.gateway_rig import running_gateway
from tests.support.mosquitto import Mosquitto
from tests.support.notify_listener import NotifyListener
from tests.support.platform_client import platform
from tests.system.test_end_to_end import write_config


def test_messages_arrive_as_newline_separated_assignments(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with NotifyListener(tmp_path) as listener:
            notifier = Notifier.from_environ(listener.env(watchdog_usec=30_000_000))
            assert notifier.active
            assert notifier.watchdog == 15.0
            assert notifier.ready("up:\n 3 devices")
            assert await listener.next() == {"READY": "1", "STATUS": "up: 3 devices"}
            assert notifier.ping()
            assert await listener.next() == {"WATCHDOG": "1"}
            assert notifier.status("connecting")
            assert await listener.next() == {"STATUS": "connecting"}
            assert notifier.stopping()
            assert await listener.next() == {"STOPPING": "1", "STATUS": "stopping"}
            assert notifier.sent == 4

    asyncio.run(scenario())


def test_an_abstract_socket_name_starts_with_at(tmp_path: Path) -> None:
    async def scenario() -> None:
        name = f"streetgate-test-{os.getpid()}-{tmp_path.name}"
        async with NotifyListener(abstract=name) as listener:
            notifier = Notifier.from_environ(listener.env())
            assert listener.address == f"@{name}"
            assert notifier.ping() is True  # sent, though no watchdog was asked for
            assert await listener.next() == {"WATCHDOG": "1"}
            assert notifier.watchdog is None

    asyncio.run(scenario())


def test_without_systemd_every_call_is_a_no_op() -> None:
    notifier = Notifier.from_environ({})
    assert not notifier.active
    assert notifier.ready("up") is False
    assert notifier.ping() is False
    assert (notifier.sent, notifier.lost) == (0, 0)


def test_a_vanished_socket_is_counted_as_lost_not_raised(tmp_path: Path) -> None:
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert notifier.active
    assert notifier.ping() is False
    assert notifier.lost == 1


def test_a_socket_that_is_no_unix_path_is_ignored() -> None:
    assert not Notifier.from_environ({"NOTIFY_SOCKET": "vsock:2:1234"}).active


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "20000000"}, 10.0),
        ({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "42"}, 10.0),
        ({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "43"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_the_period_for_this_process(
    env: dict[str, str], expected: float | None
) -> None:
    assert watchdog_interval(env, 42) == expected


def test_the_gateway_says_ready_pings_while_running_and_says_stopping(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async def scenario() -> None:
        device = DeviceSpec("meter-1", load_profile("sdm120"), unit_id=1)
        async with ModbusSimulator([device]) as sim, NotifyListener(tmp_path) as listener:
            config = write_config(tmp_path / "gw.toml", mosquitto, sim, interval="200ms")
            log = tmp_path / "gateway.log"  # running_gateway's log plays the journal's stream
            log.touch()
            st = log.stat()
            journal = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
            # a watchdog period of 0.4 s: a ping every 0.2 s
            env = {**listener.env(watchdog_usec=400_000), **journal}
            async with running_gateway(config, env) as proc:
                ready = await listener.until("READY", 20)
                assert ready["READY"] == "1"
                assert "1 device(s)" in ready["STATUS"]
                for _ in range(3):
                    await listener.until("WATCHDOG")
                beat = json.loads(heartbeat_path(tmp_path / "outbox.db").read_text())
                assert beat["pid"] == proc.pid
                assert beat["stalled"] == []
                assert beat["interval_s"] == 0.2
                assert await healthcheck(config) == (0, "healthy")
                # A remote restart happens in-process: systemd hears RELOADING, then READY
                # again, and never STOPPING (it would take that for the end of the service).
                async with platform("127.0.0.1", mosquitto.port, "e2e-gw") as me:
                    assert (await me.call("restart"))["status"] == "accepted"
                    reloading = await listener.until("RELOADING", 20)
                    assert int(reloading["MONOTONIC_USEC"]) > 0
                    again = await listener.until("READY", 20)
                    assert "1 device(s)" in again["STATUS"]
                assert not any("STOPPING" in m for m in listener.messages)
                assert proc.returncode is None
                proc.send_signal(signal.SIGTERM)
                stopping = await listener.until("STOPPING")
                assert stopping["STOPPING"] == "1"
                assert await asyncio.wait_for(proc.wait(), 15) == 0
            assert await healthcheck(config) == (1, "unhealthy")  # the process is gone
            # READY came before any ping, and nothing was sent before READY but STATUS lines
            first_ready = next(i for i, m in enumerate(listener.messages) if "READY" in m)
            assert all("WATCHDOG" not in m for m in listener.messages[:first_ready])
            # log lines for journald: priority prefixes, no timestamps
            lines = (tmp_path / "gateway.log").read_text().splitlines()
            assert (
                "<6>gateway.runtime.app: gateway e2e-gw running: 1 device(s), broker"
                in "\n".join(lines)
            )
            assert all(line.startswith("<") for line in lines), lines

    asyncio.run(scenario())


async def healthcheck(config: Path) -> tuple[int, str]:
    """``streetgate healthcheck`` as the container engine runs it: exit status, first word."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "gateway", "healthcheck", "-c", str(config)),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode().split()[0].rstrip(":")
