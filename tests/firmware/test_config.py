"""node.json (the contract with firmware/node) and `streetgate node list`'s board identification."""

from __future__ import annotations

import json
import re

import pytest
from serial.tools.list_ports_common import ListPortInfo  # type: ignore[import-untyped]
from typer.testing import CliRunner

from firmware.boards import BoardKind, identify, node_boards
from firmware.node_cli import format_boards
from firmware.node_config import node_config, node_json
from gateway.cli.exit_codes import ExitCode
from gateway.cli.main import app
from gateway.core.errors import ConfigError

# The example of the contract, verbatim.
CONTRACT = """{"schema": 1, "node_id": "pole-17-aq", "sample_interval_s": 10,
 "modbus": {"enabled": true, "unit_id": 1, "baudrate": 9600},
 "ble": {"enabled": false, "interval_s": 5, "key": null}}"""


def node(*args: str):
    return CliRunner().invoke(app, ["node", *args])


def test_the_contract_example_is_written_back_exactly() -> None:
    data = json.loads(CONTRACT)
    written = json.loads(node_json(node_config(data)))
    assert written == data
    assert list(written) == list(data)
    assert list(written["modbus"]) == list(data["modbus"])
    assert list(written["ble"]) == list(data["ble"])


def test_node_config_prints_what_deploy_would_write() -> None:
    result = node("config", "--node-id", "pole-17-aq")
    assert result.exit_code == ExitCode.OK, result.output
    assert json.loads(result.stdout) == json.loads(CONTRACT)
    custom = node(
        "config",
        "--node-id",
        "n1",
        "--no-modbus",
        "--unit-id",
        "247",
        "--baudrate",
        "19200",
        "--ble",
        "--ble-interval",
        "30",
        "--ble-key",
        "generate",
        "--sample-interval",
        "60",
    )
    assert custom.exit_code == ExitCode.OK, custom.output
    written = json.loads(custom.stdout)
    assert written["modbus"] == {"enabled": False, "unit_id": 247, "baudrate": 19200}
    assert written["ble"]["enabled"] is True
    assert written["ble"]["interval_s"] == 30
    assert re.fullmatch(r"[0-9a-f]{32}", written["ble"]["key"])
    assert written["sample_interval_s"] == 60


@pytest.mark.parametrize(
    ("change", "location"),
    [
        ({"node_id": ""}, "node_id"),
        ({"node_id": "Pole-17"}, "node_id"),
        ({"node_id": "a" * 33}, "node_id"),
        ({"node_id": "pole_17"}, "node_id"),
        ({"sample_interval_s": 0}, "sample_interval_s"),
        ({"sample_interval_s": "10"}, "sample_interval_s"),
        ({"schema": 2}, "schema"),
        ({"modbus": {"enabled": True, "unit_id": 0, "baudrate": 9600}}, "modbus.unit_id"),
        ({"modbus": {"enabled": True, "unit_id": 248, "baudrate": 9600}}, "modbus.unit_id"),
        ({"modbus": {"enabled": True, "unit_id": 1, "baudrate": 9601}}, "modbus.baudrate"),
        ({"modbus": {"enabled": 1, "unit_id": 1, "baudrate": 9600}}, "modbus.enabled"),
        ({"ble": {"enabled": True, "interval_s": 5, "key": "ab" * 15}}, "ble.key"),
        ({"ble": {"enabled": True, "interval_s": 5, "key": "AB" * 16}}, "ble.key"),
        ({"ble": {"enabled": True, "interval_s": 5, "key": None, "tx": 1}}, "ble.tx"),
        ({"extra": True}, "extra"),
    ],
)
def test_bad_node_settings_name_the_key(change: dict[str, object], location: str) -> None:
    data = json.loads(CONTRACT) | change
    with pytest.raises(ConfigError) as caught:
        node_config(data)
    assert [issue.location for issue in caught.value.issues] == [location]


def test_bad_options_exit_with_config_and_name_the_key() -> None:
    result = node("config", "--node-id", "Pole 17", "--unit-id", "300", "--ble-key", "xyz")
    assert result.exit_code == ExitCode.CONFIG
    assert result.stdout == ""
    for location in ("node_id", "modbus.unit_id", "ble.key"):
        assert f": {location}: " in result.stderr


# --- node list --------------------------------------------------------------------------------


def port(device: str, vid: int | None = None, pid: int | None = None, serial: str | None = None):
    info = ListPortInfo(device, skip_link_detection=True)
    info.vid, info.pid, info.serial_number = vid, pid, serial
    info.description = f"{device} test port"
    return info


def test_boards_are_told_apart_by_usb_identity() -> None:
    ports = [
        port("/dev/ttyACM1", 0x2E8A, 0x0005, "E6614104"),  # Raspberry Pi Pico, MicroPython
        port("/dev/ttyACM0", 0x303A, 0x4001),  # ESP32-S3 native USB
        port("/dev/ttyUSB0", 0x10C4, 0xEA60, "0001"),  # CP2102 on an ESP32 DevKit
        port("/dev/ttyUSB1", 0x1A86, 0x7523),  # CH340
        port("/dev/ttyUSB2", 0x1A86, 0x55D4),  # CH9102
        port("/dev/ttyUSB3", 0x0403, 0x6001),  # FT232R
        port("/dev/ttyUSB4", 0x0403, 0x6015),  # FT231X
        port("/dev/ttyUSB5", 0x0403, 0x6010),  # FT2232: not a board carrier we know
        port("/dev/ttyACM2", 0x2341, 0x0043),  # Arduino Uno
        port("/dev/ttyAMA0"),  # the Pi's own UART
    ]
    boards = {board.device: board for board in node_boards(lambda: ports)}
    assert list(boards) == sorted(boards)
    assert {d: b.kind for d, b in boards.items()} == {
        "/dev/ttyACM0": BoardKind.NATIVE,
        "/dev/ttyACM1": BoardKind.NATIVE,
        "/dev/ttyUSB0": BoardKind.BRIDGE,
        "/dev/ttyUSB1": BoardKind.BRIDGE,
        "/dev/ttyUSB2": BoardKind.BRIDGE,
        "/dev/ttyUSB3": BoardKind.BRIDGE,
        "/dev/ttyUSB4": BoardKind.BRIDGE,
    }
    pico = boards["/dev/ttyACM1"].as_dict()
    assert pico["usb_id"] == "2e8a:0005"
    assert pico["kind"] == "MicroPython native"
    assert pico["serial_number"] == "E6614104"
    assert boards["/dev/ttyUSB2"].chip == "WCH CH9102"
    assert identify(0xF055, 0x9800) == (
        BoardKind.NATIVE,
        "MicroPython pyboard / generic MicroPython USB",
    )
    assert identify(None, None) is None
    assert format_boards([boards["/dev/ttyACM1"], boards["/dev/ttyUSB0"]]).splitlines() == [
        "/dev/ttyACM1  usb 2e8a:0005  MicroPython native: Raspberry Pi RP2040/RP2350"
        "  serial E6614104",
        "/dev/ttyUSB0  usb 10c4:ea60  USB-UART bridge: Silicon Labs CP210x  serial 0001",
    ]


def test_node_list_prints_a_json_list() -> None:
    result = node("list", "--json")
    assert result.exit_code == ExitCode.OK, result.output
    boards = json.loads(result.stdout)
    assert isinstance(boards, list)
    for board in boards:  # whatever this machine has attached
        assert board["kind"] in ("MicroPython native", "USB-UART bridge")
