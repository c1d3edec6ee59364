"""`streetgate buffer` next to a running gateway: it reads and purges while the gateway writes."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from typer.testing import CliRunner, Result

from drivers.profile import load_profile
from gateway.cli.exit_codes import ExitCode
from gateway.cli.main import app
from gateway.config.model import parse_config
from gateway.core.model import Reading
from gateway.runtime.app import pipeline
from gateway.store import reader as buffer_store
from gateway.store.outbox import Outbox
from simulator.broker import free_port
from simulator.modbus_server import DeviceSpec, ModbusSimulator
from tests.support.gateway_rig import gateway_process
from tests.support.mosquitto import Mosquitto
from tests.support.sim_thread import in_thread
from tests.support.subscriber import Subscriber


def buffer(*args: str) -> Result:
    return CliRunner().invoke(app, ["buffer", *args])


def status(config: Path) -> dict[str, Any]:
    result = buffer("status", "-c", str(config), "--json")
    assert result.exit_code == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def wait_for_status(
    config: Path, predicate: Callable[[dict[str, Any]], bool], timeout: float = 15
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        result = buffer("status", "-c", str(config), "--json")
        if result.exit_code == ExitCode.NOT_FOUND:  # the gateway is still starting
            data: dict[str, Any] = {"stderr": result.stderr}
        else:
            assert result.exit_code == 0, result.stderr
            data = json.loads(result.stdout)
            if predicate(data):
                return data
        assert time.monotonic() < deadline, f"status never got there: {data}"
        time.sleep(0.1)


def wait_for_state(
    path: Path, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10
) -> dict[str, Any]:
    """The gateway's state file, once ``predicate`` holds for it."""
    deadline = time.monotonic() + timeout
    while True:
        state: dict[str, Any] = json.loads(path.read_text())
        if predicate(state):
            return state
        assert time.monotonic() < deadline, f"state file not updated: {state}"
        time.sleep(0.2)


def exported_seqs(config: Path, out: Path) -> list[int]:
    result = buffer("export", "-c", str(config), "-f", "jsonl", "-o", str(out), "--force")
    assert result.exit_code == 0, result.stderr
    return [json.loads(line)["seq"] for line in out.read_text().splitlines()]


def test_status_export_and_purge_while_the_gateway_writes(tmp_path: Path) -> None:
    spec = DeviceSpec("meter-1", load_profile("sdm630"))  # 21 metrics a poll
    with in_thread(lambda: ModbusSimulator([spec])) as sim:
        config = tmp_path / "gw.toml"
        config.write_text(
            "\n".join(
                [
                    'gateway_id = "live-gw"',
                    "[mqtt]",
                    'host = "127.0.0.1"',
                    f"port = {free_port()}",  # nothing listens: readings pile up in the outbox
                    'reconnect_min = "200ms"',
                    'reconnect_max = "1s"',
                    "[outbox]",
                    'path = "outbox.db"',
                    'commit_interval = "50ms"',
                    "[[devices]]",
                    'kind = "modbus_tcp"',
                    'name = "meter-1"',
                    'host = "127.0.0.1"',
                    f"port = {sim['meter-1'].port}",
                    'profile = "sdm630"',
                    'interval = "100ms"',
                ]
            )
            + "\n"
        )
        with gateway_process(config) as proc:
            # status: the gateway process, its forwarder out of reach, readings piling up
            first = wait_for_status(
                config, lambda d: d["gateway"]["running"] and (d["depth"] or 0) >= 200
            )
            assert first["gateway"]["pid"] == proc.pid
            assert first["gateway"]["forwarder"]["state"] in {"connecting", "waiting"}
            assert first["first_seq"] == 1
            assert first["dropped"] == first["purged"] == 0

            # export while the gateway commits: a contiguous snapshot from seq 1
            seqs = exported_seqs(config, tmp_path / "one.jsonl")
            assert seqs == list(range(1, len(seqs) + 1))
            assert len(seqs) >= first["depth"]

            # purge part of it, then all of it, while the gateway keeps committing
            half = seqs[len(seqs) // 2]
            result = buffer("purge", "-c", str(config), "--yes", "--upto-seq", str(half))
            assert result.exit_code == 0, result.stderr
            assert result.stderr.startswith(f"purged {half:,} readings up to seq {half} (")
            result = buffer("purge", "-c", str(config), "--yes")
            assert result.exit_code == 0, result.stderr
            purged_upto = int(result.stderr.split("up to seq ")[1].split()[0])
            assert purged_upto > half

            # the gateway keeps going: new readings continue the sequence after the purged ones
            after = wait_for_status(config, lambda d: d["last_committed_seq"] >= purged_upto + 200)
            assert after["purged"] == purged_upto  # nothing delivered, nothing dropped
            assert after["first_seq"] == purged_upto + 1
            assert after["gateway"]["running"]
            seqs = exported_seqs(config, tmp_path / "two.jsonl")
            assert seqs == list(range(purged_upto + 1, purged_upto + 1 + len(seqs)))
            assert proc.poll() is None

            # the gateway's own figures follow the purge (its state file, rewritten every 5 s)
            state = wait_for_state(
                tmp_path / "outbox.db.state.json",
                lambda s: (
                    s["outbox"]["last_seq"] > purged_upto and s["outbox"]["purged"] == purged_upto
                ),
            )
            assert state["outbox"]["depth"] <= state["outbox"]["last_seq"] - purged_upto
            assert state["outbox"]["dropped"] == 0

            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0
    stopped = status(config)
    assert stopped["gateway"]["running"] is False
    assert "stopped cleanly" in stopped["gateway"]["reason"]
    assert stopped["first_seq"] == purged_upto + 1
    assert stopped["last_seq"] == stopped["last_committed_seq"]
    assert stopped["depth"] == stopped["last_seq"] - purged_upto
    log = (tmp_path / "gateway.log").read_text()
    assert "Traceback" not in log
    assert " ERROR " not in log


def test_the_forwarder_moves_past_readings_purged_while_it_drains(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    config = parse_config(
        {
            "gateway_id": "purge-gw",
            # one reading per message, one message in flight: a long, slow backlog drain
            "mqtt": {
                "host": mosquitto.host,
                "port": mosquitto.port,
                "readings_per_message": 1,
                "max_inflight": 1,
            },
            "outbox": {"path": str(tmp_path / "outbox.db")},
        },
        "test",
    )
    backlog = 5000
    now = int(time.time() * 1000)

    def readings(n: int, start: int) -> list[Reading]:
        return [
            Reading("meter-1", "power", float(i), "W", now + i) for i in range(start, start + n)
        ]

    async def scenario() -> None:
        async with Outbox(config.outbox) as outbox:  # buffered while the uplink was down
            await outbox.put_many(readings(backlog, 0))
        sub = Subscriber(mosquitto.host, mosquitto.port, "streetgate/purge-gw/readings")
        async with asyncio.TaskGroup() as tg:
            listener = tg.create_task(sub.run(), name="test:platform")
            await asyncio.wait_for(sub.subscribed.wait(), 5)
            async with pipeline(config) as (outbox, forwarder):
                await asyncio.wait_for(forwarder.connected.wait(), 5)
                # The technician purges the backlog while the forwarder is draining it.
                await asyncio.to_thread(buffer_store.purge, config.outbox.path, backlog)
                await outbox.put_many(readings(5, backlog))
                live = set(range(backlog + 1, backlog + 6))
                async with asyncio.timeout(10):
                    while not live <= sub.delivery.distinct():  # noqa: ASYNC110 - a set
                        await asyncio.sleep(0.05)
            listener.cancel()
        delivered_backlog = [s for s in sub.delivery.distinct() if s <= backlog]
        assert len(delivered_backlog) < backlog  # the purge did land in the middle of the drain
        assert sub.delivery.report()["misordered"] == 0
        live_messages = [m for m in sub.delivery.messages if m["first_seq"] > backlog]
        assert [m["historical"] for m in live_messages] == [False] * 5

    asyncio.run(scenario())
