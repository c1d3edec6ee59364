"""Deadband settings in profiles and device entries: checked at load, resolved into rules."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from gateway.config.devices import deadband_rules, describe
from gateway.config.model import parse_config
from gateway.core.deadband import DeadbandRule
from gateway.core.errors import ConfigError

PROFILE = """
name = "meter"
[defaults]
type = "uint16"
deadband_percent = 1
[[metrics]]
name = "voltage"
address = 0
max_silence = "5m"
[[metrics]]
name = "current"
address = 1
deadband = 0.5
[[metrics]]
name = "relay_state"
address = 2
deadband_percent = 0
"""

BASE = """
gateway_id = "pole-7"
[mqtt]
host = "127.0.0.1"
[outbox]
path = "outbox.db"
"""


def config(devices: str, tmp_path: Any = None) -> dict[str, Any]:
    return tomllib.loads(BASE + devices)


def load(devices: str, tmp_path: Any) -> Any:
    (tmp_path / "meter.toml").write_text(PROFILE)
    return parse_config(config(devices), "gateway.toml", tmp_path)


def issues(devices: str, tmp_path: Any) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(devices, tmp_path)
    return [str(issue) for issue in caught.value.issues]


TCP = """
[[devices]]
kind = "modbus_tcp"
name = "meter-1"
host = "10.0.0.5"
profile = "meter.toml"
interval = "10s"
"""


def test_profile_rules_with_defaults(tmp_path):
    rules = deadband_rules(load(TCP, tmp_path).devices)["meter-1"]
    assert rules.rule_for("voltage") == DeadbandRule(300_000, percent=1.0)
    assert rules.rule_for("current") == DeadbandRule(900_000, absolute=0.5, percent=1.0)
    # a state may have report-on-change (deadband 0)
    assert rules.rule_for("relay_state") == DeadbandRule(900_000)


def test_device_entries_replace_the_profiles(tmp_path):
    devices = (
        TCP
        + """
[devices.deadbands]
voltage = { deadband = 2, max_silence = "1h" }
current = {}
"""
    )
    rules = deadband_rules(load(devices, tmp_path).devices)["meter-1"]
    assert rules.rule_for("voltage") == DeadbandRule(3_600_000, absolute=2.0)
    assert rules.rule_for("current") is None


def test_a_device_star_covers_measurements_but_not_states(tmp_path):
    devices = TCP + '[devices.deadbands]\n"*" = { deadband = 1 }\n'
    rules = deadband_rules(load(devices, tmp_path).devices)["meter-1"]
    assert rules.rule_for("voltage") == DeadbandRule(900_000, absolute=1.0)
    assert rules.rule_for("relay_state") == DeadbandRule(900_000)  # the profile's


def test_no_deadbands_no_rules(tmp_path):
    devices = """
[[devices]]
kind = "ruuvi"
name = "tag"
mac = "CB:B8:33:4C:88:4F"
"""
    assert deadband_rules(load(devices, tmp_path).devices) == {}


def test_ble_and_bus_units_take_deadbands(tmp_path):
    devices = """
[[devices]]
kind = "ruuvi"
name = "tag"
mac = "CB:B8:33:4C:88:4F"
deadbands = { "*" = { deadband = 0.2 }, calibration_state = { deadband = 0 } }
[[devices]]
kind = "modbus_rtu"
name = "bus"
port = "/dev/ttyUSB0"
[[devices.units]]
name = "unit-3"
unit_id = 3
profile = "meter.toml"
deadbands = { current = { deadband = 0.1 } }
"""
    rules = deadband_rules(load(devices, tmp_path).devices)
    assert rules["tag"].rule_for("temperature") == DeadbandRule(900_000, absolute=0.2)
    assert rules["tag"].rule_for("movement_state") is None
    assert rules["unit-3"].rule_for("current") == DeadbandRule(900_000, absolute=0.1)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            "deadbands = { current = { deadband = -1 } }",
            "devices[0].deadbands.current.deadband: deadband must be 0 or more",
        ),
        (
            "deadbands = { current = { deadband_percent = -5 } }",
            "devices[0].deadbands.current.deadband_percent: deadband_percent must be 0 or more",
        ),
        (
            'deadbands = { current = { deadband = 1, max_silence = "5s" } }',
            "deadbands.current.max_silence: 5s is shorter than the poll interval (10s)",
        ),
        (
            'deadbands = { current = { max_silence = "1h" } }',
            "max_silence needs deadband or deadband_percent",
        ),
        (
            "deadbands = { relay_state = { deadband = 0.5 } }",
            "deadbands.relay_state: 'relay_state' is a state (0/1), not a measurement",
        ),
        (
            "deadbands = { power = { deadband = 1 } }",
            "deadbands.power: the device has no metric 'power'; expected one of",
        ),
        ('deadbands = { "bad name" = { deadband = 1 } }', "devices[0].deadbands.bad name"),
    ],
)
def test_config_errors_name_the_key(tmp_path, extra: str, expected: str):
    found = issues(TCP + extra + "\n", tmp_path)
    assert any(expected in issue for issue in found), found


def test_a_profile_max_silence_shorter_than_the_interval_is_refused(tmp_path):
    found = issues(TCP.replace('"10s"', '"10m"'), tmp_path)
    assert any(
        "profile metric voltage.max_silence: 300s is shorter than the poll interval (600s)" in i
        for i in found
    ), found


def test_a_profile_refuses_a_negative_deadband():
    from drivers.profile import parse_profile  # noqa: PLC0415

    with pytest.raises(ConfigError, match=r"metrics\[0\].deadband: deadband must be 0 or more"):
        parse_profile(
            {"name": "x", "metrics": [{"name": "a", "address": 0, "deadband": -1}]}, "x.toml"
        )


def test_the_readme_example_is_a_valid_config(tmp_path):
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text("utf-8")
    block = next(
        part.split("```", 1)[0]
        for part in readme.split("```toml\n")[1:]
        if "[devices.deadbands]" in part.split("```", 1)[0]
    )
    rules = deadband_rules(load(block, tmp_path).devices)["pole-7-air"]
    assert rules.rule_for("temperature") == DeadbandRule(900_000, absolute=0.2)
    assert rules.rule_for("humidity") == DeadbandRule(3_600_000, percent=2.0)


def test_validate_says_which_metrics_have_deadbands(tmp_path):
    devices = TCP + '[devices.deadbands]\ncurrent = {}\n"*" = { deadband = 1 }\n'
    (line,) = describe(load(devices, tmp_path).devices[0])
    assert line.endswith(", every 10s, deadbands on relay_state, every other measurement")
    (line,) = describe(load(TCP, tmp_path).devices[0])  # the profile's rules
    assert line.endswith(", deadbands on current, relay_state, voltage")
