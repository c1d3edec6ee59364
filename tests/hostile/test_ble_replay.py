"""Issue 12, item 6: encrypted BTHome adverts recorded off the air and played back.

The gateway side runs the real scan source on the simulator's air (real advertisement bytes
from simulator/ble.py through bleak's backend seam) into a real Outbox, with the counter file
where the gateway keeps it; a restart is a new outbox and scan source on the same files. The
node side runs the firmware in MicroPython's unix port; the deploy side the real mpremote
against the virtual board.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from drivers.ble.bthome import SERVICE_UUID, decode_bthome
from drivers.ble.counters import CounterFile, counters_path
from drivers.ble.scan import REPLAY, BleScanSource
from gateway.cli.exit_codes import ExitCode
from gateway.config.model import OutboxConfig
from gateway.core.clock import SystemClock
from gateway.core.errors import StoreError
from gateway.runtime.health_report import device_report
from gateway.store.outbox import Outbox
from simulator.ble import BleSimulator, SimBthome, parse_ad_structures
from tests.firmware.test_deploy import board_at, board_files, deploy, release
from tests.firmware.test_node import node_json, running_node
from tests.support.waiting import until

pytestmark = pytest.mark.timeout(60)

KEY = bytes.fromhex("231d39c1d7cc1ab1aee224cd096db932")
MAC = "A4:C1:38:00:00:02"


@asynccontextmanager
async def gateway(tmp_path: Path, sim: BleSimulator, device: SimBthome) -> AsyncIterator[Any]:
    """The scan source and a real outbox, as the gateway wires them (counter file included)."""
    outbox_path = tmp_path / "outbox.db"
    async with Outbox(OutboxConfig(path=outbox_path, commit_interval=0.01)) as outbox:
        source = BleScanSource(
            [device.gateway_config()],
            outbox.put_many,
            SystemClock(),
            sim.scanner_backend,
            counters=CounterFile(counters_path(outbox_path)),
            counter_interval=0.05,
        )
        async with asyncio.TaskGroup() as tg:
            tasks = [
                tg.create_task(outbox.run(), name="outbox:commit"),
                tg.create_task(source.run(), name=source.task_name),
            ]
            await until(lambda: source.stats().scanning is not None)
            try:
                yield source, outbox
            finally:
                for task in tasks:
                    task.cancel()


def on_air(sim: BleSimulator, device: SimBthome, rounds: int) -> tuple[list[bytes], int]:
    """``rounds`` fresh measurements sent by ``device``: the raw advertising data of each, and
    the number of readings they carry."""
    captured: list[bytes] = []
    readings = 0
    for _ in range(rounds):
        packet = device.measure(float(len(captured)))
        raw = device.advertising_data(packet)
        for _ in range(device.repeats):
            sim.transmit(device.mac, device.name, raw)
        captured.append(raw)
        readings += len(packet.values)
    return captured, readings


def test_replayed_and_older_adverts_are_dropped_and_counted_also_after_a_restart(
    tmp_path: Path,
) -> None:
    sim = BleSimulator()
    sensor = SimBthome("th-sealed", MAC, key=KEY, repeats=2)
    sim.add(sensor)
    old_umask = os.umask(0)  # the counter file is 0600 whatever the umask
    try:

        async def first_life() -> list[bytes]:
            async with gateway(tmp_path, sim, sensor) as (source, outbox):
                captured, readings = on_air(sim, sensor, 4)
                await until(lambda: outbox.last_seq == readings)
                assert source.stats().counter_writes >= 1
                stored = outbox.last_seq
                # The attacker plays back what it recorded: the oldest adverts, out of order.
                for raw in (captured[0], captured[1], captured[0]):
                    sim.transmit(MAC, None, raw)
                await until(lambda: source.statuses["th-sealed"].dropped[REPLAY] == 3)
                await asyncio.sleep(0.1)
                assert outbox.last_seq == stored, "a replayed advert was stored"
                report = device_report(source.statuses["th-sealed"])
                assert report["dropped"] == {"replay": 3}
                assert report["polls_failed"] == 0  # an attacker cannot make it look broken
            return captured

        captured = asyncio.run(first_life())
        counter_file = counters_path(tmp_path / "outbox.db")
        assert stat.S_IMODE(counter_file.stat().st_mode) == 0o600
        saved = json.loads(counter_file.read_text())
        last = decode_bthome(parse_ad_structures(captured[-1])[0][SERVICE_UUID], MAC, KEY)
        assert list(saved["counters"].values()) == [last.counter], saved
        assert KEY.hex() not in counter_file.read_text()

        async def after_restart() -> None:
            async with gateway(tmp_path, sim, sensor) as (source, outbox):
                stored = outbox.last_seq
                # The last accepted advert (same counter) and every older one.
                for raw in reversed(captured):
                    sim.transmit(MAC, None, raw)
                await until(lambda: source.statuses["th-sealed"].dropped[REPLAY] == 4)
                await asyncio.sleep(0.1)
                assert outbox.last_seq == stored, "a replay was stored after the restart"
                # The sensor's next real advert is accepted at once.
                _, readings = on_air(sim, sensor, 1)
                await until(lambda: outbox.last_seq == stored + readings)

        asyncio.run(after_restart())
    finally:
        os.umask(old_umask)


def test_a_corrupt_or_foreign_counter_file_is_refused_clearly(tmp_path: Path) -> None:
    target = tmp_path / "secret.key"
    target.write_text("not ours")
    link = tmp_path / "outbox.db.ble-counters.json"
    link.symlink_to(target)
    with pytest.raises(StoreError, match="symlink"):
        CounterFile(link).load()
    assert target.read_text() == "not ours"
    link.unlink()
    link.write_text('{"format": 1, "counters": {"x": -1}}')
    assert CounterFile(link).load() == {}  # set aside, logged
    assert not link.exists()
    assert [p.name.split(".corrupt-")[0] for p in tmp_path.glob("*.corrupt-*")] == [link.name]


# -- the node -----------------------------------------------------------------------------------


def test_node_without_counter_state_refuses_to_advertise_encrypted(tmp_path: Path) -> None:
    async def scenario() -> list[str]:
        async with running_node(tmp_path, node_json(ble=True, key=KEY.hex()), None) as node:
            await node.wait_for("sample ")
            await asyncio.sleep(2.5)  # adverts would go every 1 s
            return list(node.lines)

    lines = asyncio.run(scenario())
    assert not [line for line in lines if line.startswith("bthome ")], lines
    refused = [line for line in lines if line.startswith("BLE OFF: no encryption counter state")]
    assert refused, lines
    assert "--rotate-key" in refused[0]
    assert not (tmp_path / "bthome_counter").exists()


# -- node deploy ----------------------------------------------------------------------------------


def test_deploy_refuses_an_existing_key_to_a_board_without_counter_state(
    tmp_path: Path, release: tuple[Path, Path, Path]
) -> None:
    bundle, public, _ = release
    with board_at(tmp_path / "flash") as board:
        result = deploy(board.url, bundle, public, "--ble", "--ble-key", KEY.hex())
        assert result.exit_code == ExitCode.DECLINED, result.output
        assert "no BLE counter state" in result.output
        assert "--rotate-key" in result.output
        assert board_files(board.root) == {}, "nothing may be written"

        rotated = deploy(board.url, bundle, public, "--ble", "--rotate-key", "--json")
        assert rotated.exit_code == ExitCode.OK, rotated.output
        new_key = json.loads(rotated.stdout)["node"]["ble"]["key"]
        assert new_key != KEY.hex()
        on_board = board_files(board.root)
        assert json.loads(on_board["node.json"])["ble"]["key"] == new_key
        assert on_board["bthome_counter"].strip().isdigit()

        # The same key again, to the board that holds it with its counter: allowed, and the
        # counter state is left as the node wrote it.
        (board.root / "bthome_counter").write_text("2048")
        again = deploy(board.url, bundle, public, "--ble", "--ble-key", new_key)
        assert again.exit_code == ExitCode.OK, again.output
        assert int((board.root / "bthome_counter").read_text()) >= 2048

        # Counter state lost: the same key is refused again.
        (board.root / "bthome_counter").unlink()
        lost = deploy(board.url, bundle, public, "--ble", "--ble-key", new_key)
        assert lost.exit_code == ExitCode.DECLINED, lost.output


__all__ = ["release"]  # the module's release fixture: a signed bundle of the node firmware
