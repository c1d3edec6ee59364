"""A remote ``config-set`` edits the technician's file: comments, key order and layout stay.

The command runs as the command server runs it (scope check, validation, staging), on a copy of
examples/street-pole.toml; the file on disk is then compared line by line with the original.
"""

from __future__ import annotations

import asyncio
import copy
import shutil
import stat
import tomllib
from pathlib import Path
from typing import Any

import pytest

from gateway.config.change import marker_path, previous_path, read_marker, roll_back
from gateway.config.model import load_config
from gateway.core.errors import CommandRejected
from gateway.management.commands import CommandServer
from gateway.management.protocol import Command, ReplyStatus

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "street-pole.toml"


class Control:
    """The supervisor's part that config-set uses: the file, and a restart it records."""

    def __init__(self, path: Path) -> None:
        self.config_path = path
        self.config_lock = asyncio.Lock()
        self.restarts: list[str] = []

    def request_restart(self, reason: str) -> None:
        self.restarts.append(reason)


def config_set(path: Path, args: dict[str, Any]) -> tuple[Control, Any]:
    control = Control(path)
    server = CommandServer(load_config(path), control)
    outcome = asyncio.run(server._config_set(Command("c1", "config-set", args)))
    assert outcome.status is ReplyStatus.ACCEPTED, outcome
    assert outcome.then is not None
    outcome.then()
    assert control.restarts == ["config-set c1"]
    return control, outcome


@pytest.fixture
def pole(tmp_path: Path) -> Path:
    path = tmp_path / "street-pole.toml"
    shutil.copy(EXAMPLE, path)
    path.chmod(0o640)
    return path


def comments(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.lstrip().startswith("#") or " # " in line]


def test_changing_one_key_changes_only_that_line(pole: Path) -> None:
    before = pole.read_bytes()
    assert len(comments(before.decode())) == 8  # 7 comment lines and one after a value
    config_set(pole, {"patch": {"mqtt": {"health_interval": "5m"}}})
    old, new = before.decode().splitlines(), pole.read_text().splitlines()
    assert len(new) == len(old)
    assert [(a, b) for a, b in zip(old, new, strict=True) if a != b] == [
        ('health_interval = "60s"', 'health_interval = "5m"')
    ]
    assert load_config(pole).mqtt.health_interval == 300
    # the previous file is the exact bytes, private; the config keeps its mode
    assert previous_path(pole).read_bytes() == before
    assert stat.S_IMODE(previous_path(pole).stat().st_mode) == 0o600
    assert stat.S_IMODE(pole.stat().st_mode) == 0o640
    # a rollback puts back the exact bytes
    change = read_marker(pole)
    assert change is not None
    roll_back(pole, change, "test")
    assert pole.read_bytes() == before


def test_adding_a_device_and_removing_a_key_keep_every_comment(pole: Path) -> None:
    before = pole.read_text()
    devices = copy.deepcopy(tomllib.loads(before)["devices"])
    del devices[0]["timeout"]  # the RS-485 bus's timeout: back to the default
    devices[0]["units"][1]["interval"] = "20s"
    added = {
        "kind": "modbus_tcp",
        "name": "pump-meter",
        "host": "192.0.2.20",
        "unit_id": 4,
        "profile": "sdm120",
        "interval": "15s",
    }
    config_set(pole, {"patch": {"devices": [*devices, added], "mqtt": {"max_inflight": 4}}})
    after = pole.read_text()
    assert comments(after) == comments(before)
    old, new = before.splitlines(), after.splitlines()
    # Line by line: the old file with three edits, in place, and the new table at the end.
    expected = [line for line in old if line != 'timeout = "300ms"']
    expected[expected.index('health_interval = "60s"') + 1 : 0] = ["max_inflight = 4"]
    socket_meter = expected.index('name = "socket-meter"')
    assert expected[socket_meter + 3] == 'interval = "10s"'
    expected[socket_meter + 3] = 'interval = "20s"'
    expected += [
        "",
        "[[devices]]",
        'kind = "modbus_tcp"',
        'name = "pump-meter"',
        'host = "192.0.2.20"',
        "unit_id = 4",
        'profile = "sdm120"',
        'interval = "15s"',
    ]
    assert new == expected
    config = load_config(pole)
    assert [d.name for d in config.devices][-1] == "pump-meter"
    assert config.mqtt.max_inflight == 4


def test_a_refused_change_leaves_the_file_as_it_was(pole: Path) -> None:
    before = pole.read_bytes()
    control = Control(pole)
    server = CommandServer(load_config(pole), control)
    command = Command("c2", "config-set", {"patch": {"mqtt": {"host": "203.0.113.66"}}})
    with pytest.raises(CommandRejected, match=r"mqtt\.host"):
        asyncio.run(server._config_set(command))
    assert pole.read_bytes() == before
    assert not marker_path(pole).exists()
    assert control.restarts == []
