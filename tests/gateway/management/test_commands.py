"""Remote commands over a real mosquitto: round trips, bad commands, config-set rollback."""

from __future__ import annotations

import asyncio
import json
import tomllib
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from gateway.config.change import (
    ChangeState,
    PendingChange,
    marker_path,
    merge_patch,
    previous_path,
    stage_change,
    write_marker,
)
from gateway.config.toml_write import dumps
from gateway.core.errors import CommandRejected, ErrorCode
from gateway.management.commands import _validate
from gateway.runtime.app import Gateway
from gateway.runtime.supervisor import Supervisor
from simulator.modbus_server import DeviceSpec, ModbusSimulator
from tests.support.mosquitto import Mosquitto, free_port
from tests.support.platform_client import platform
from tests.support.waiting import until

GW = "cmd-gw"


async def bounded(scenario: Coroutine[Any, Any, None], seconds: float = 60) -> None:
    """Run a scenario; a hang fails it with a traceback of where it waited (not a bare timeout)."""
    async with asyncio.timeout(seconds):
        await scenario


@dataclass
class Running:
    """A supervised gateway in this test's event loop."""

    supervisor: Supervisor
    config_path: Path
    gateways: list[Gateway] = field(default_factory=list)
    started: asyncio.Event = field(default_factory=asyncio.Event)

    async def next_start(self, count: int) -> Gateway:
        """Wait until the gateway has started ``count`` times and is connected; return it."""
        async with asyncio.timeout(20):
            while len(self.gateways) < count:
                self.started.clear()
                await self.started.wait()
            gateway = self.gateways[count - 1]
            await gateway.forwarder.connected.wait()
        return gateway


def write_config(path: Path, broker: Mosquitto, devices: list[dict[str, Any]]) -> None:
    document = {
        "gateway_id": GW,
        "mqtt": {"host": broker.host, "port": broker.port, "reconnect_max": 1.0},
        "outbox": {"path": "outbox.db"},
        "devices": devices,
    }
    path.write_text(dumps(document), "utf-8")


@asynccontextmanager
async def supervised(
    tmp_path: Path, broker: Mosquitto, devices: list[dict[str, Any]]
) -> AsyncIterator[Running]:
    config_path = tmp_path / "gateway.toml"
    write_config(config_path, broker, devices)
    running: Running

    def on_started(gateway: Gateway) -> None:
        running.gateways.append(gateway)
        running.started.set()

    running = Running(Supervisor(config_path, on_started=on_started), config_path)
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(running.supervisor.run(), name="test:supervisor")
        try:
            await running.next_start(1)
            yield running
        finally:
            running.supervisor.shutdown()
            async with asyncio.timeout(20):
                await task


@asynccontextmanager
async def climate_sensor() -> AsyncIterator[tuple[ModbusSimulator, list[dict[str, Any]]]]:
    from drivers.profile import load_profile  # noqa: PLC0415

    async with ModbusSimulator([DeviceSpec("climate-1", load_profile("xy-md02"))]) as sim:
        devices = [
            sim["climate-1"].gateway_config(timeout=0.5, interval=30).model_dump(mode="json")
            | {"profile": "xy-md02"}
        ]
        yield sim, devices


def test_every_command_round_trips(tmp_path: Path, mosquitto: Mosquitto) -> None:
    async def scenario() -> None:
        async with (
            climate_sensor() as (sim, devices),
            supervised(tmp_path, mosquitto, devices) as running,
            platform(mosquitto.host, mosquitto.port, GW) as plat,
        ):
            pong = await plat.call("ping", gateway=GW)
            assert pong["status"] == "ok"
            assert pong["gateway"] == GW
            assert pong["command"] == "ping"
            assert pong["result"]["pong"] is True
            assert pong["result"]["version"]

            # read-now: a poll out of schedule (the interval is 30 s), values as served
            before = sim["climate-1"].requests
            read = await plat.call("read-now", {"device": "climate-1"})
            assert read["status"] == "ok", read
            values = read["result"]["readings"]
            assert {r["metric"] for r in values} == {"temperature", "humidity"}
            for r in values:
                assert sim["climate-1"].was_served(r["metric"], r["value"])
            assert sim["climate-1"].requests > before

            got = await plat.call("config-get")
            assert got["status"] == "ok"
            assert got["result"]["path"] == str(running.config_path)
            config = got["result"]["config"]
            assert config["gateway_id"] == GW
            assert config["mqtt"]["port"] == mosquitto.port
            assert config["devices"][0]["name"] == "climate-1"

            status = await plat.call("buffer-status")
            assert status["status"] == "ok"
            assert status["result"]["outbox"]["last_seq"] >= len(values)
            assert status["result"]["forwarder"]["state"] == "connected"

            restart = await plat.call("restart")
            assert restart["status"] == "accepted"
            await running.next_start(2)
            assert (await plat.call("ping"))["status"] == "ok"

            # config-set with a merge patch: accepted, restarted, applied once connected
            command_id = "set-health-interval"
            patch = {"mqtt": {"health_interval": "17s"}}
            await plat.send(
                {
                    "id": command_id,
                    "command": "config-set",
                    "args": {"patch": patch, "confirm_timeout": 10},
                }
            )
            accepted = await plat.reply(command_id)
            assert accepted["status"] == "accepted", accepted
            applied = await plat.reply(command_id, nth=2)
            assert applied["status"] == "applied", applied
            gateway = await running.next_start(3)
            assert gateway.config.mqtt.health_interval == 17.0
            on_disk = tomllib.loads(running.config_path.read_text("utf-8"))
            assert on_disk["mqtt"]["health_interval"] == "17s"
            assert on_disk["devices"][0]["name"] == "climate-1"  # the rest is untouched
            previous = tomllib.loads(previous_path(running.config_path).read_text("utf-8"))
            assert "health_interval" not in previous["mqtt"]
            assert not marker_path(running.config_path).exists()
            got = await plat.call("config-get")
            assert got["result"]["config"]["mqtt"]["health_interval"] == 17.0

            # A repeated id gets the same reply, and the command does not run again.
            await plat.send({"id": command_id, "command": "config-set", "args": {"patch": patch}})
            again = await plat.reply(command_id, nth=3)
            assert again == applied
            assert (await plat.call("ping"))["status"] == "ok"
            assert len(running.gateways) == 3

    asyncio.run(bounded(scenario()))


def test_bad_commands_get_clear_replies(tmp_path: Path, mosquitto: Mosquitto) -> None:
    async def scenario() -> None:
        async with (
            climate_sensor() as (_sim, devices),
            supervised(tmp_path, mosquitto, devices) as running,
            platform(mosquitto.host, mosquitto.port, GW) as plat,
        ):
            original = running.config_path.read_text("utf-8")

            async def error_of(payload: dict[str, Any] | bytes, command_id: str | None) -> Any:
                seen = len(plat.replies[command_id])
                await plat.send(payload)
                reply = await plat.reply(command_id, nth=seen + 1)
                assert reply["status"] == "error", reply
                assert reply["gateway"] == GW
                return reply["error"]

            error = await error_of(b"{not json", None)
            assert error["code"] == "bad_payload"
            assert "not JSON" in error["message"]
            error = await error_of(b"\xff\xfe", None)
            assert error["code"] == "bad_payload"
            error = await error_of(b"[1, 2]", None)
            assert error["code"] == "bad_request"
            error = await error_of({"command": "ping"}, None)
            assert (error["code"], error["message"]) == (
                "bad_request",
                "id: expected a non-empty string",
            )
            error = await error_of({"id": "c1"}, "c1")
            assert error["message"] == "command: expected a non-empty string"
            error = await error_of({"id": "c2", "command": "ping", "gateway": "other-gw"}, "c2")
            assert error["code"] == "wrong_gateway"
            assert "other-gw" in error["message"]
            error = await error_of({"id": "c3", "command": "reboot-the-city"}, "c3")
            assert error["code"] == "unknown_command"
            assert "ping" in error["message"]
            error = await error_of({"id": "c4", "command": "ping", "extra": 1}, "c4")
            assert error["code"] == "bad_request"
            error = await error_of({"id": "c5", "command": "ping", "args": [1]}, "c5")
            assert error["code"] == "bad_args"
            error = await error_of({"id": "c6", "command": "ping", "args": {"x": 1}}, "c6")
            assert error["code"] == "bad_args"
            error = await error_of({"id": "c7", "command": "read-now", "args": {}}, "c7")
            assert (error["code"], error["message"]) == (
                "bad_args",
                "args.device: expected a device name",
            )
            error = await error_of(
                {"id": "c8", "command": "read-now", "args": {"device": "lamp-99"}}, "c8"
            )
            assert error["code"] == "not_found"
            assert "climate-1" in error["message"]
            error = await error_of(
                {
                    "id": "c9",
                    "command": "config-set",
                    "args": {"patch": {"mqtt": {"readings_per_message": 0}}},
                },
                "c9",
            )
            assert error["code"] == "invalid_config"
            assert [i["key"] for i in error["issues"]] == ["mqtt.readings_per_message"]
            error = await error_of(
                {"id": "c9b", "command": "config-set", "args": {"patch": {"mqtt": {"port": 0}}}},
                "c9b",
            )
            assert error["code"] == "local_only"  # checked before validation: nothing is read
            assert [i["key"] for i in error["issues"]] == ["mqtt.port"]
            assert "mqtt.port is local-only: change it on site" in error["message"]
            error = await error_of(
                {"id": "c10", "command": "config-set", "args": {"patch": {"gateway_id": "x"}}},
                "c10",
            )
            assert error["code"] == "local_only"
            assert error["issues"][0]["key"] == "gateway_id"
            error = await error_of(
                {"id": "c11", "command": "config-set", "args": {"patch": {}, "config": {}}}, "c11"
            )
            assert error["code"] == "bad_args"
            error = await error_of(
                {
                    "id": "c12",
                    "command": "config-set",
                    "args": {"patch": {}, "confirm_timeout": "soon"},
                },
                "c12",
            )
            assert error["code"] == "bad_args"
            assert "confirm_timeout" in error["message"]

            # Nothing changed, nothing crashed: the gateway still answers, never restarted.
            assert running.config_path.read_text("utf-8") == original
            assert not marker_path(running.config_path).exists()
            assert (await plat.call("ping"))["status"] == "ok"
            assert len(running.gateways) == 1

            # A retained command reaches live subscribers as a plain message, but would run
            # again on every reconnect: the redelivered copy (retain flag set) is refused.
            await plat.send({"id": "c13", "command": "ping"}, retain=True)
            assert (await plat.reply("c13"))["status"] == "ok"
            assert (await plat.call("restart"))["status"] == "accepted"
            error = (await plat.reply("c13", nth=2))["error"]
            assert error["code"] == "retained"
            await plat.client.publish(plat.cmd_topic, b"", qos=1, retain=True)  # clear it
            await running.next_start(2)

    asyncio.run(bounded(scenario()))


async def stage_locally(
    running: Running, patch: dict[str, Any], command_id: str, confirm_timeout: float = 60
) -> None:
    """Stage a change as config-set does after its checks, then restart: a change to a key that
    is local-only (gateway/management/remote_scope.py) can no longer come over MQTT, but the
    rollback
    that guards it is the same."""
    current = tomllib.loads(running.config_path.read_text("utf-8"))
    await asyncio.to_thread(
        stage_change, running.config_path, merge_patch(current, patch), command_id, confirm_timeout
    )
    running.supervisor.request_restart(f"test change {command_id}")


def test_config_change_to_an_unreachable_broker_is_rolled_back(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async def scenario() -> None:
        async with (
            supervised(tmp_path, mosquitto, []) as running,
            platform(mosquitto.host, mosquitto.port, GW) as plat,
        ):
            original = running.config_path.read_text("utf-8")
            nowhere = free_port()
            await stage_locally(running, {"mqtt": {"port": nowhere}}, "move-broker", 3)
            outcome = await plat.reply("move-broker")
            assert outcome["status"] == "rolled_back", outcome
            assert outcome["error"]["code"] == "rolled_back"
            assert f"127.0.0.1:{nowhere}" in outcome["error"]["message"]
            assert "within 3s" in outcome["error"]["message"]
            # Started with the new config, then with the old one again.
            await running.next_start(3)
            assert running.gateways[1].config.mqtt.port == nowhere
            assert running.gateways[2].config.mqtt.port == mosquitto.port
            assert running.config_path.read_text("utf-8") == original
            # The marker goes once the report is out (it is kept until then, so a report
            # lost to a crash is made after the next start).
            await until(lambda: not marker_path(running.config_path).exists())
            assert (await plat.call("ping"))["status"] == "ok"

    asyncio.run(bounded(scenario()))


def test_a_change_still_on_trial_at_start_is_rolled_back(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """The gateway stopped or crashed with a new config on trial: the next start restores."""
    config_path = tmp_path / "gateway.toml"
    write_config(config_path, mosquitto, [])
    good = config_path.read_text("utf-8")
    previous_path(config_path).write_text(good, "utf-8")
    document = tomllib.loads(good)
    document["mqtt"]["port"] = free_port()
    config_path.write_text(dumps(document), "utf-8")
    write_marker(
        config_path,
        PendingChange("crashed-change", ChangeState.PENDING, 4e9, 60.0, trial_started=True),
    )

    async def scenario() -> None:
        async with platform(mosquitto.host, mosquitto.port, GW) as plat:
            gateways: list[Gateway] = []
            supervisor = Supervisor(config_path, on_started=gateways.append)
            async with asyncio.TaskGroup() as tg:
                task = tg.create_task(supervisor.run(), name="test:supervisor")
                outcome = await plat.reply("crashed-change")
                assert outcome["status"] == "rolled_back"
                assert "stopped or crashed" in outcome["error"]["message"]
                await until(lambda: not marker_path(config_path).exists())
                supervisor.shutdown()
                await task
            assert [g.config.mqtt.port for g in gateways] == [mosquitto.port]
            assert config_path.read_text("utf-8") == good
            assert not marker_path(config_path).exists()

    asyncio.run(bounded(scenario()))


def test_replies_are_json_with_the_documented_keys(tmp_path: Path, mosquitto: Mosquitto) -> None:
    async def scenario() -> None:
        async with (
            supervised(tmp_path, mosquitto, []),
            platform(mosquitto.host, mosquitto.port, GW) as plat,
        ):
            ok = await plat.call("ping")
            assert set(ok) == {"id", "gateway", "command", "status", "ts", "result"}
            await plat.send({"id": "e1", "command": "nope"})
            error = await plat.reply("e1")
            assert set(error) == {"id", "gateway", "command", "status", "ts", "error"}
            assert set(error["error"]) == {"code", "message"}
            assert json.dumps(error)  # plain JSON types only

    asyncio.run(bounded(scenario()))


#: The ACL documented in docs/mqtt.md: a gateway (user name = gateway id) publishes its own
#: topics and reads its own command topic; only the platform user may publish commands.
ACL = """\
pattern write streetgate/%u/readings
pattern write streetgate/%u/meta
pattern write streetgate/%u/status
pattern write streetgate/%u/health
pattern write streetgate/%u/reply
pattern read streetgate/%u/cmd

user platform
topic readwrite streetgate/#
"""


def test_only_the_platform_can_command_a_gateway(tmp_path: Path) -> None:
    acl = tmp_path / "acl"
    acl.write_text(ACL, "utf-8")
    broker = Mosquitto(tmp_path, listener_options=f"acl_file {acl}\n")
    broker.start()
    try:
        config_path = tmp_path / "gateway.toml"
        write_config(config_path, broker, [])
        document = tomllib.loads(config_path.read_text("utf-8"))
        document["mqtt"]["username"] = GW
        config_path.write_text(dumps(document), "utf-8")

        async def scenario() -> None:
            gateways: list[Gateway] = []
            ready = asyncio.Event()

            def started(gateway: Gateway) -> None:
                gateways.append(gateway)
                ready.set()

            supervisor = Supervisor(config_path, on_started=started)
            async with asyncio.TaskGroup() as tg:
                task = tg.create_task(supervisor.run(), name="test:supervisor")
                await ready.wait()
                await gateways[0].forwarder.connected.wait()
                async with (
                    platform(broker.host, broker.port, GW, username="platform") as plat,
                    aiomqtt.Client(broker.host, broker.port, username="intruder") as intruder,
                ):
                    # The broker acknowledges the intruder's publish (QoS 1) and drops it.
                    evil = json.dumps({"id": "evil", "command": "restart"}).encode()
                    await intruder.publish(plat.cmd_topic, evil, qos=1)
                    # Anything delivered before the platform's ping is answered before it.
                    assert (await plat.call("ping"))["status"] == "ok"
                    assert plat.replies["evil"] == []
                supervisor.shutdown()
                await task
            assert len(gateways) == 1  # never restarted

        asyncio.run(bounded(scenario()))
    finally:
        broker.stop()


def test_a_full_command_queue_refuses_with_busy(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """The worker is not started, so the queue fills deterministically; then it drains."""
    from gateway.config.model import parse_config  # noqa: PLC0415
    from gateway.management.commands import COMMAND_QUEUE, CommandServer  # noqa: PLC0415
    from gateway.runtime.app import pipeline  # noqa: PLC0415

    config = parse_config(
        {
            "gateway_id": GW,
            "mqtt": {"host": mosquitto.host, "port": mosquitto.port},
            "outbox": {"path": str(tmp_path / "outbox.db")},
        },
        "test",
    )

    async def scenario() -> None:
        commands = CommandServer(config)
        async with (
            pipeline(config, commands) as (outbox, forwarder),
            platform(mosquitto.host, mosquitto.port, GW) as plat,
        ):
            await forwarder.connected.wait()
            for n in range(COMMAND_QUEUE + 1):
                await plat.send({"id": f"q{n}", "command": "ping"})
            # Deeply nested JSON is refused like any bad payload; nothing else happens.
            await plat.send(b"[" * 100_000 + b"]" * 100_000)
            busy = await plat.reply(f"q{COMMAND_QUEUE}")
            assert busy["status"] == "error"
            assert busy["error"]["code"] == "busy"
            nested = await plat.reply(None)
            assert nested["error"]["code"] == "bad_payload"
            assert commands.waiting == COMMAND_QUEUE
            assert all(not plat.replies[f"q{n}"] for n in range(COMMAND_QUEUE))
            async with asyncio.TaskGroup() as tg:
                worker = tg.create_task(
                    commands.run(Gateway(config, outbox, forwarder)), name="mgmt:commands"
                )
                for n in range(COMMAND_QUEUE):
                    assert (await plat.reply(f"q{n}"))["status"] == "ok"
                worker.cancel()

    asyncio.run(bounded(scenario()))


def test_a_refused_subscription_is_recognised_in_either_form() -> None:
    """MQTT 3.1.1 SUBACK codes are ints, paho gives ReasonCodes; 0x80 and up is a refusal."""
    from paho.mqtt.packettypes import PacketTypes  # noqa: PLC0415
    from paho.mqtt.reasoncodes import ReasonCode  # noqa: PLC0415

    from gateway.uplink.forwarder import _refused  # noqa: PLC0415

    assert _refused(0x80)
    assert not _refused(1)
    assert _refused(ReasonCode(PacketTypes.SUBACK, identifier=0x87))  # not authorised (v5)
    assert not _refused(ReasonCode(PacketTypes.SUBACK, identifier=1))  # granted QoS 1


def test_a_config_that_fails_to_start_is_rolled_back(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """Valid as a document, but the gateway cannot start with it (a CA file that is not there)."""

    async def scenario() -> None:
        async with (
            supervised(tmp_path, mosquitto, []) as running,
            platform(mosquitto.host, mosquitto.port, GW) as plat,
        ):
            original = running.config_path.read_text("utf-8")
            await stage_locally(
                running, {"mqtt": {"tls": {"ca_file": "no-such-ca.pem"}}}, "tls-typo"
            )
            outcome = await plat.reply("tls-typo")
            assert outcome["status"] == "rolled_back"
            message = outcome["error"]["message"]
            assert message.startswith("the gateway failed to run with the new config")
            assert "mqtt.tls.ca_file" in message
            assert running.config_path.read_text("utf-8") == original
            await until(lambda: not marker_path(running.config_path).exists())
            assert len(running.gateways) == 2  # the new config never got as far as starting

    asyncio.run(bounded(scenario()))


def test_commands_work_again_after_the_broker_restarts(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """The session is clean: the broker forgets the subscription, the gateway makes it again."""

    async def scenario() -> None:
        async with supervised(tmp_path, mosquitto, []) as running:
            async with platform(mosquitto.host, mosquitto.port, GW) as plat:
                assert (await plat.call("ping"))["status"] == "ok"
            forwarder = running.gateways[0].forwarder
            await asyncio.to_thread(mosquitto.stop)
            await asyncio.to_thread(mosquitto.start)
            await until(lambda: forwarder.stats.connects >= 2, timeout=20)
            await forwarder.connected.wait()
            async with platform(mosquitto.host, mosquitto.port, GW) as plat:
                assert (await plat.call("ping"))["status"] == "ok"
            assert len(running.gateways) == 1  # the same gateway, reconnected

    asyncio.run(bounded(scenario()))


def test_config_set_is_checked_with_the_environment_laid_over_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a balena device the gateway id and broker may come from STREETGATE_* variables:
    a change is validated as the gateway will load it, and a key a variable sets is refused
    (the variable would win after the restart), naming the variable."""
    monkeypatch.setenv("STREETGATE_GATEWAY_ID", "pole-17")
    monkeypatch.setenv("STREETGATE_MQTT_PORT", "8883")
    path = tmp_path / "gw.toml"
    document = {"mqtt": {"host": "broker.example"}, "outbox": {"path": "outbox.db"}}
    _validate(document, path, "pole-17", {"mqtt": {"host": "broker.example"}})  # no id: from env

    with pytest.raises(CommandRejected) as refused:
        _validate(document | {"mqtt": {"port": 1883}}, path, "pole-17", {"mqtt": {"port": 1883}})
    assert refused.value.code is ErrorCode.INVALID_CONFIG
    assert "mqtt.port: set by the environment variable STREETGATE_MQTT_PORT" in str(refused.value)

    monkeypatch.setenv("STREETGATE_MQTT_KEEPALIVE", "forever")
    with pytest.raises(CommandRejected, match="STREETGATE_MQTT_KEEPALIVE"):
        _validate(document, path, "pole-17", {"mqtt": {"host": "broker.example"}})
