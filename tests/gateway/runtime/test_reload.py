"""Local reloads (SIGHUP) in-process: trial and rollback as config-set's, the shared lock, the
record of what happened. The real process, its signals and systemd's socket:
tests/system/test_reload.py.
"""

from __future__ import annotations

import asyncio
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from gateway.config.change import (
    ChangeOrigin,
    ChangeState,
    PendingChange,
    marker_path,
    previous_path,
    read_marker,
    rejected_path,
    write_marker,
)
from gateway.runtime.app import Gateway
from gateway.runtime.reload import ReloadResult
from gateway.runtime.supervisor import Supervisor
from tests.support.mosquitto import Mosquitto, free_port
from tests.support.platform_client import platform
from tests.support.waiting import until

GW = "reload-gw"


def config_text(port: int, *, comment: str = "") -> str:
    return (
        f"# the technician's notes {comment}\n"
        f'gateway_id = "{GW}"\n'
        "[mqtt]\n"
        'host = "127.0.0.1"\n'
        f"port = {port}\n"
        'reconnect_max = "1s"\n'
        "[outbox]\n"
        'path = "outbox.db"\n'
    )


@dataclass
class Running:
    supervisor: Supervisor
    path: Path
    gateways: list[Gateway] = field(default_factory=list)

    async def started(self, count: int) -> Gateway:
        await until(lambda: len(self.gateways) >= count, timeout=20)
        return self.gateways[count - 1]


@asynccontextmanager
async def supervised(tmp_path: Path, broker: Mosquitto) -> AsyncIterator[Running]:
    path = tmp_path / "gateway.toml"
    path.write_text(config_text(broker.port))
    gateways: list[Gateway] = []
    supervisor = Supervisor(path, on_started=gateways.append, reload_confirm_timeout=2)
    running = Running(supervisor, path, gateways)
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(supervisor.run(), name="test:supervisor")
        try:
            await (await running.started(1)).forwarder.connected.wait()
            yield running
        finally:
            supervisor.shutdown()
            async with asyncio.timeout(20):
                await task


def test_a_valid_edit_restarts_with_it_and_an_invalid_one_changes_nothing(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async def scenario() -> None:
        async with supervised(tmp_path, mosquitto) as running:
            record = running.supervisor.reloads
            # Nothing changed: it restarts all the same (TLS and profile files are read again).
            running.supervisor.request_reload()
            await running.started(2)
            await until(lambda: record.counts[ReloadResult.APPLIED] == 1)

            edited = config_text(mosquitto.port, comment="v2").replace(
                'reconnect_max = "1s"', 'reconnect_max = "2s"'
            )
            running.path.write_text(edited)
            running.supervisor.request_reload()
            second = await running.started(3)
            assert second.config.mqtt.reconnect_max == 2
            await until(lambda: record.counts[ReloadResult.APPLIED] == 2)
            assert not marker_path(running.path).exists()
            assert running.path.read_text() == edited  # the technician's file, as written

            running.path.write_text(edited.replace("port = ", "port = -"))
            running.supervisor.request_reload()
            await until(lambda: record.counts[ReloadResult.INVALID] == 1)
            report = record.report()
            assert report["last"]["result"] == "invalid"
            assert [i["key"] for i in report["last"]["issues"]] == ["mqtt.port"]
            assert len(running.gateways) == 3  # still the same gateway, on the old config
            assert not marker_path(running.path).exists()
            # the health report carries it
            assert second.health is not None
            snapshot = await second.health.snapshot()
            assert snapshot["reload"]["counts"]["invalid"] == 1

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_an_edit_that_loses_the_broker_is_rolled_back_and_kept_aside(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async def scenario() -> None:
        async with supervised(tmp_path, mosquitto) as running:
            original = running.path.read_bytes()
            nowhere = config_text(free_port(), comment="typo")
            running.path.write_text(nowhere)
            running.path.chmod(0o640)
            running.supervisor.request_reload()
            # on trial with the new port (2 s here), then back to the previous file
            third = await running.started(3)
            assert third.config.mqtt.port == mosquitto.port
            record = running.supervisor.reloads
            await until(lambda: record.counts[ReloadResult.ROLLED_BACK] == 1)
            assert running.path.read_bytes() == original
            kept = rejected_path(running.path)
            assert kept.read_text() == nowhere
            assert stat.S_IMODE(kept.stat().st_mode) == 0o600
            assert "no connection to the broker 127.0.0.1:" in (record.last_message or "")
            assert str(kept) in (record.last_message or "")
            await third.forwarder.connected.wait()

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_an_edit_made_while_the_broker_is_down_is_not_rolled_back_for_it(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """Without a broker before the reload, starting is the test: an outage is no reason to
    undo the technician's edit of a device."""

    async def scenario() -> None:
        async with supervised(tmp_path, mosquitto) as running:
            await asyncio.to_thread(mosquitto.stop)
            first = running.gateways[0]
            await until(lambda: not first.forwarder.connected.is_set())
            edited = config_text(mosquitto.port, comment="offline edit")
            running.path.write_text(edited)
            running.supervisor.request_reload()
            await running.started(2)
            record = running.supervisor.reloads
            await until(lambda: record.counts[ReloadResult.APPLIED] == 1)
            await asyncio.sleep(2.5)  # past the confirm timeout: nothing rolls back
            assert running.path.read_text() == edited
            assert len(running.gateways) == 2
            await asyncio.to_thread(mosquitto.start)

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_a_reload_waits_for_a_config_set_and_is_refused_while_it_is_on_trial(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async def scenario() -> None:
        async with (
            supervised(tmp_path, mosquitto) as running,
            platform(mosquitto.host, mosquitto.port, GW) as plat,
        ):
            supervisor = running.supervisor
            # One lock: a config-set waits while a reload holds it (and the reverse).
            async with supervisor.config_lock:
                patch = {"mqtt": {"health_interval": "30s"}}
                await plat.send({"id": "c1", "command": "config-set", "args": {"patch": patch}})
                await asyncio.sleep(1.0)
                assert "c1" not in plat.replies  # waiting for the lock
            assert (await plat.reply("c1"))["status"] == "accepted"
            assert (await plat.reply("c1", nth=2))["status"] == "applied"
            # While a change is on trial, a reload is refused and changes nothing.
            held = PendingChange("c-held", ChangeState.PENDING, 4e9, 60.0)
            await asyncio.to_thread(write_marker, running.path, held)
            before = await asyncio.to_thread(running.path.read_bytes)
            starts = len(running.gateways)
            supervisor.request_reload()
            await until(lambda: supervisor.reloads.counts[ReloadResult.REFUSED] == 1)
            assert "c-held" in (supervisor.reloads.last_message or "")
            assert await asyncio.to_thread(running.path.read_bytes) == before
            assert len(running.gateways) == starts
            await asyncio.to_thread(marker_path(running.path).unlink)

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_a_reload_on_trial_when_the_gateway_crashed_is_rolled_back_at_the_next_start(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    path = tmp_path / "gateway.toml"
    good = config_text(mosquitto.port)
    previous_path(path).write_text(good)
    crashing = config_text(mosquitto.port, comment="the edit that crashed it")
    path.write_text(crashing)
    write_marker(
        path,
        PendingChange(
            "reload-x",
            ChangeState.PENDING,
            4e9,
            60.0,
            trial_started=True,
            origin=ChangeOrigin.RELOAD,
        ),
    )

    async def scenario() -> None:
        gateways: list[Gateway] = []
        supervisor = Supervisor(path, on_started=gateways.append)
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(supervisor.run(), name="test:supervisor")
            await until(lambda: supervisor.reloads.counts[ReloadResult.ROLLED_BACK] == 1)
            supervisor.shutdown()
            await task
        assert "stopped or crashed" in (supervisor.reloads.last_message or "")
        assert path.read_text() == good
        assert rejected_path(path).read_text() == crashing
        assert read_marker(path) is None

    asyncio.run(asyncio.wait_for(scenario(), 60))
