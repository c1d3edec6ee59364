"""Device profiles: the shipped register maps, and errors that name the file and key path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from drivers.modbus.codec import decode_block, plan_reads
from drivers.profile import (
    MAX_REGISTERS_PER_REQUEST,
    DataType,
    Function,
    Order,
    Profile,
    builtin_profiles,
    load_profile,
    parse_profile,
)
from gateway.config.model import load_config
from gateway.core.errors import ConfigError, ConfigIssue

# Input-register addresses from the Eastron SDM120 / SDM630 register tables and the XY-MD02 manual.
SDM120 = {
    "voltage": 0x0000,
    "current": 0x0006,
    "active_power": 0x000C,
    "apparent_power": 0x0012,
    "reactive_power": 0x0018,
    "power_factor": 0x001E,
    "phase_angle": 0x0024,
    "frequency": 0x0046,
    "import_active_energy": 0x0048,
    "export_active_energy": 0x004A,
    "total_active_energy": 0x0156,
}
SDM630_KEY_REGISTERS = {
    "l1_voltage": 0x0000,
    "l2_voltage": 0x0002,
    "l3_voltage": 0x0004,
    "l1_current": 0x0006,
    "l1_active_power": 0x000C,
    "l1_power_factor": 0x001E,
    "total_active_power": 0x0034,
    "total_apparent_power": 0x0038,
    "total_reactive_power": 0x003C,
    "total_power_factor": 0x003E,
    "frequency": 0x0046,
    "import_active_energy": 0x0048,
    "export_active_energy": 0x004A,
    "neutral_current": 0x00E0,
    "total_active_energy": 0x0156,
}


def test_builtin_profile_names() -> None:
    assert builtin_profiles() == ["sdm120", "sdm630", "streetgate-node", "xy-md02"]


@pytest.mark.parametrize("name", builtin_profiles())
def test_builtin_profile_loads(name: str) -> None:
    profile = load_profile(name)
    assert isinstance(profile, Profile)
    assert profile.name == name
    assert profile.description
    assert profile.metrics
    assert len({m.name for m in profile.metrics}) == len(profile.metrics)


@pytest.mark.parametrize("name", builtin_profiles())
def test_builtin_profile_plan_respects_its_request_limit(name: str) -> None:
    profile = load_profile(name)
    assert 1 <= profile.max_registers_per_request <= MAX_REGISTERS_PER_REQUEST
    blocks = plan_reads(profile.metrics, profile.max_registers_per_request, profile.max_gap)
    assert blocks
    assert all(b.count <= profile.max_registers_per_request for b in blocks)
    assert sorted(m.name for b in blocks for m in b.metrics) == sorted(
        m.name for m in profile.metrics
    )


@pytest.mark.parametrize("name", ["sdm120", "sdm630"])
def test_eastron_profiles_are_float32_abcd_input_registers(name: str) -> None:
    profile = load_profile(name)
    assert profile.max_registers_per_request == 60  # Eastron: at most 30 values per request
    for metric in profile.metrics:
        assert metric.function is Function.INPUT
        assert metric.type is DataType.FLOAT32
        assert (metric.word_order, metric.byte_order) == (Order.BIG, Order.BIG)
        assert (metric.scale, metric.offset) == (1.0, 0.0)


def test_sdm120_register_map() -> None:
    profile = load_profile("sdm120")
    assert {m.name: m.address for m in profile.metrics} == SDM120
    units = {m.name: m.unit for m in profile.metrics}
    assert (units["voltage"], units["import_active_energy"], units["frequency"]) == (
        "V",
        "kWh",
        "Hz",
    )


def test_sdm630_key_registers() -> None:
    addresses = {m.name: m.address for m in load_profile("sdm630").metrics}
    assert {name: addresses[name] for name in SDM630_KEY_REGISTERS} == SDM630_KEY_REGISTERS


def test_sdm120_worked_example_decodes_230_1_volts() -> None:
    # RTU response 01 04 04 43 66 19 9A ...: float32 0x4366199A (pymodbus: 230.10000610351562).
    profile = load_profile("sdm120")
    first = plan_reads(profile.metrics, profile.max_registers_per_request, profile.max_gap)[0]
    assert (first.function, first.address) == (Function.INPUT, 0x0000)
    registers = [0x4366, 0x199A] + [0] * (first.count - 2)
    samples = {s.metric: s for s in decode_block(first, registers)}
    assert samples["voltage"].value == 230.1  # the float32 0x4366199A, written shortest
    assert samples["voltage"].unit == "V"
    assert samples["current"].value == 0.0


def test_xy_md02_worked_example() -> None:
    # Response 01 04 04 01 31 02 22 ...: T = 0x0131 -> 30.5 degC, RH = 0x0222 -> 54.6 %RH.
    profile = load_profile("xy-md02")
    (block,) = plan_reads(profile.metrics, profile.max_registers_per_request, profile.max_gap)
    assert (block.function, block.address, block.count) == (Function.INPUT, 0x0001, 2)
    values = {s.metric: s.value for s in decode_block(block, [0x0131, 0x0222])}
    assert values == {
        "temperature": pytest.approx(30.5, abs=1e-9),
        "humidity": pytest.approx(54.6, abs=1e-9),
    }
    negative = {s.metric: s.value for s in decode_block(block, [0xFF33, 0x0222])}
    assert negative["temperature"] == pytest.approx(-20.5, abs=1e-9)


def test_defaults_apply_to_every_metric_and_metrics_override_them() -> None:
    profile = parse_profile(
        {
            "name": "meter",
            "defaults": {"function": "input", "type": "float32", "word_order": "little"},
            "metrics": [
                {"name": "a", "address": 0},
                {"name": "b", "address": 2, "type": "int16", "function": "holding"},
            ],
        },
        "meter.toml",
    )
    a, b = profile.metrics
    assert (a.function, a.type, a.word_order) == (Function.INPUT, DataType.FLOAT32, Order.LITTLE)
    assert (b.function, b.type, b.word_order) == (Function.HOLDING, DataType.INT16, Order.LITTLE)


def test_profile_models_are_frozen() -> None:
    profile = load_profile("xy-md02")
    with pytest.raises(ValueError, match="frozen"):
        profile.max_gap = 3
    with pytest.raises(ValueError, match="frozen"):
        profile.metrics[0].scale = 1.0


# --- bad profiles --------------------------------------------------------------------------

GOOD_METRIC = 'name = "ok"\naddress = 0\n'


def write_profile(folder: Path, body: str, name: str = "custom.toml") -> Path:
    path = folder / name
    path.write_text('name = "custom"\n' + body, encoding="utf-8")
    return path


def issues_of(path: Path) -> tuple[ConfigIssue, ...]:
    with pytest.raises(ConfigError) as caught:
        load_profile(str(path))
    assert caught.value.source == str(path)
    assert str(path) in str(caught.value)
    return caught.value.issues


@pytest.mark.parametrize(
    ("body", "location", "message"),
    [
        pytest.param(
            f'[[metrics]]\n{GOOD_METRIC}\n[[metrics]]\nname = "b"\naddress = 2\ncolour = "red"\n',
            "metrics[1].colour",
            "unknown key",
            id="unknown-key-in-metric",
        ),
        pytest.param(
            f'[[metrics]]\n{GOOD_METRIC}\n[[metrics]]\nname = "ok"\naddress = 4\n',
            "metrics",
            "metric name 'ok' is used twice (metrics[0] and metrics[1])",
            id="duplicate-metric-name",
        ),
        pytest.param(
            f'[[metrics]]\n{GOOD_METRIC}type = "float16"\n',
            "metrics[0].type",
            "'float32'",
            id="bad-type-name",
        ),
        pytest.param(
            '[[metrics]]\nname = "far"\naddress = 65536\n',
            "metrics[0].address",
            "less than or equal to 65535",
            id="address-too-high",
        ),
        pytest.param(
            '[[metrics]]\nname = "neg"\naddress = -1\n',
            "metrics[0].address",
            "greater than or equal to 0",
            id="address-negative",
        ),
        pytest.param(
            '[[metrics]]\nname = "wide"\naddress = 0xFFFE\ntype = "int64"\n',
            "metrics[0]",
            "int64 at address 65534 runs past register 65535",
            id="int64-past-65535",
        ),
        pytest.param(
            '[[metrics]]\nname = "wide"\naddress = 0xFFFF\ntype = "float32"\n',
            "metrics[0]",
            "float32 at address 65535 runs past register 65535",
            id="float32-past-65535",
        ),
        pytest.param("", "metrics", "required key is missing", id="missing-metrics"),
        pytest.param("metrics = []\n", "metrics", "at least one", id="empty-metrics"),
        pytest.param(
            f'colour = "red"\n[[metrics]]\n{GOOD_METRIC}',
            "colour",
            "unknown key",
            id="unknown-top-level-key",
        ),
        pytest.param(
            f'[defaults]\ncolour = "red"\n[[metrics]]\n{GOOD_METRIC}',
            "metrics[0].colour",
            "unknown key",
            id="unknown-key-in-defaults",
        ),
        pytest.param(
            f'[[metrics]]\n{GOOD_METRIC}function = "coil"\n',
            "metrics[0].function",
            "'holding' or 'input'",
            id="bad-function",
        ),
        pytest.param(
            f'[[metrics]]\n{GOOD_METRIC}byte_order = "middle"\n',
            "metrics[0].byte_order",
            "'big' or 'little'",
            id="bad-byte-order",
        ),
        pytest.param(
            f"[[metrics]]\n{GOOD_METRIC}scale = 0\n",
            "metrics[0].scale",
            "must not be 0",
            id="zero-scale",
        ),
        pytest.param(
            f"[[metrics]]\n{GOOD_METRIC}scale = nan\n",
            "metrics[0].scale",
            "finite number",
            id="nan-scale",
        ),
        pytest.param(
            f"max_registers_per_request = 126\n[[metrics]]\n{GOOD_METRIC}",
            "max_registers_per_request",
            "less than or equal to 125",
            id="request-limit-above-protocol",
        ),
        pytest.param(
            'max_registers_per_request = 1\n[[metrics]]\nname = "f"\naddress = 0\n'
            'type = "float32"\n',
            "metrics",
            "float32 of 2 registers, more than max_registers_per_request = 1",
            id="metric-larger-than-request-limit",
        ),
        pytest.param(
            f"[[metrics]]\n{GOOD_METRIC}range = [80, -40]\n",
            "metrics[0]",
            "range: min must be below max, got [80, -40]",
            id="range-backwards",
        ),
        pytest.param(
            f"[[metrics]]\n{GOOD_METRIC}range = [0, inf]\n",
            "metrics[0].range[1]",
            "finite number",
            id="range-infinite",
        ),
        pytest.param(
            f"[[metrics]]\n{GOOD_METRIC}range = [0, 1, 2]\n",
            "metrics[0].range",
            "at most 2 items",
            id="range-three-items",
        ),
        pytest.param(
            f'[[metrics]]\n{GOOD_METRIC}unit = "Cel"\nrange = [-300, 80]\n',
            "metrics[0]",
            "[-300, 80] Cel is outside what is physically possible (>= -273.15 Cel)",
            id="range-below-absolute-zero",
        ),
        pytest.param(
            f'[[metrics]]\n{GOOD_METRIC}unit = "%RH"\nrange = [0, 120]\n',
            "metrics[0]",
            "(0..100 %RH)",
            id="humidity-above-100",
        ),
        pytest.param(
            f'[[metrics]]\n{GOOD_METRIC}\n[[metrics]]\nname = "has space"\naddress = 1\n',
            "metrics[1].name",
            "expected a name of letters, digits",
            id="bad-metric-name",
        ),
    ],
)
def test_bad_profile_names_file_and_key_path(
    tmp_path: Path, body: str, location: str, message: str
) -> None:
    (issue,) = issues_of(write_profile(tmp_path, body))
    assert issue.location == location
    assert message in issue.message


def test_every_problem_is_reported(tmp_path: Path) -> None:
    body = (
        '[[metrics]]\nname = "a"\naddress = 70000\n'
        '[[metrics]]\nname = "b"\naddress = 1\ntype = "float16"\n'
        '[[metrics]]\nname = "c"\naddress = 2\nunits = "V"\n'
    )
    issues = issues_of(write_profile(tmp_path, body))
    assert [i.location for i in issues] == [
        "metrics[0].address",
        "metrics[1].type",
        "metrics[2].units",
    ]


def test_defaults_must_be_a_table(tmp_path: Path) -> None:
    (issue,) = issues_of(write_profile(tmp_path, f"defaults = 3\n[[metrics]]\n{GOOD_METRIC}"))
    assert issue == ConfigIssue("defaults", "expected a table of metric defaults")


def test_profile_with_toml_syntax_error(tmp_path: Path) -> None:
    (issue,) = issues_of(write_profile(tmp_path, "[[metrics]\nname = 1\n"))
    assert issue.location == ""
    assert issue.message.startswith("not valid TOML")


def test_missing_profile_file(tmp_path: Path) -> None:
    (issue,) = issues_of(tmp_path / "nowhere.toml")
    assert issue.message.startswith("cannot read file")


def test_unknown_builtin_profile() -> None:
    with pytest.raises(ConfigError) as caught:
        load_profile("sdm999")
    assert caught.value.source == "profile 'sdm999'"
    (issue,) = caught.value.issues
    assert "no built-in profile named 'sdm999'" in issue.message
    assert "sdm120, sdm630, streetgate-node, xy-md02" in issue.message


def test_parse_profile_names_its_source() -> None:
    data: dict[str, Any] = {"name": "x", "metrics": [{"name": "a", "address": "zero"}]}
    with pytest.raises(ConfigError) as caught:
        parse_profile(data, "inline profile")
    assert caught.value.source == "inline profile"
    assert caught.value.issues[0].location == "metrics[0].address"


# --- custom profiles referenced from a config file -----------------------------------------

CONFIG = """\
gateway_id = "gw-1"

[mqtt]
host = "127.0.0.1"

[outbox]
path = "outbox.db"

[[devices]]
kind = "modbus_tcp"
name = "pole-7"
host = "192.0.2.7"
profile = "{profile}"
"""

CUSTOM_PROFILE = """\
name = "renke-weather"
description = "Renke-type weather station"
max_registers_per_request = 15
max_gap = 4  # wind force and direction, humidity sit between

[defaults]
function = "holding"
scale = 0.1

[[metrics]]
name = "wind_speed"
address = 0x01F4
unit = "m/s"

[[metrics]]
name = "temperature"
address = 0x01F9
type = "int16"
unit = "Cel"
"""


def test_custom_profile_by_path_relative_to_config(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "profiles").mkdir(parents=True)
    (site / "profiles" / "renke.toml").write_text(CUSTOM_PROFILE, encoding="utf-8")
    config_file = site / "gateway.toml"
    config_file.write_text(CONFIG.format(profile="profiles/renke.toml"), encoding="utf-8")

    (device,) = load_config(config_file).devices
    profile = device.profile
    assert profile.name == "renke-weather"
    assert profile.max_registers_per_request == 15
    assert [(m.name, m.address, m.function) for m in profile.metrics] == [
        ("wind_speed", 0x01F4, Function.HOLDING),
        ("temperature", 0x01F9, Function.HOLDING),
    ]
    (block,) = plan_reads(profile.metrics, profile.max_registers_per_request, profile.max_gap)
    assert (block.address, block.count) == (0x01F4, 6)
    values = {s.metric: s.value for s in decode_block(block, [123, 0, 0, 0, 0, 0xFF9C])}
    assert values == {"wind_speed": pytest.approx(12.3), "temperature": pytest.approx(-10.0)}


def test_bad_custom_profile_is_reported_at_the_device(tmp_path: Path) -> None:
    (tmp_path / "broken.toml").write_text(
        'name = "broken"\n[[metrics]]\nname = "a"\naddress = 0\ntype = "float16"\n',
        encoding="utf-8",
    )
    config_file = tmp_path / "gateway.toml"
    config_file.write_text(CONFIG.format(profile="broken.toml"), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(config_file)
    assert caught.value.source == str(config_file)
    (issue,) = caught.value.issues
    assert issue.location == "devices[0].profile"
    assert "metrics[0].type" in issue.message
    assert str(tmp_path / "broken.toml") in issue.message  # which file to open


def test_missing_custom_profile_is_reported_at_the_device(tmp_path: Path) -> None:
    config_file = tmp_path / "gateway.toml"
    config_file.write_text(CONFIG.format(profile="profiles/none.toml"), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(config_file)
    (issue,) = caught.value.issues
    assert issue.location == "devices[0].profile"
    assert "profile: cannot read file" in issue.message
    assert str(tmp_path / "profiles" / "none.toml") in issue.message


# --- plausibility ranges --------------------------------------------------------------------

#: Bit fields: any value of their type is a valid reading, so a range says nothing.
BIT_FIELDS = {("streetgate-node", "status"), ("streetgate-node", "error")}


@pytest.mark.parametrize("name", builtin_profiles())
def test_every_shipped_metric_has_a_range(name: str) -> None:
    for metric in load_profile(name).metrics:
        if (name, metric.name) in BIT_FIELDS:
            continue
        assert metric.range is not None, f"{name}: {metric.name} has no range"
        assert metric.plausible_range == metric.range


def test_a_temperature_without_a_range_is_still_above_absolute_zero(tmp_path: Path) -> None:
    path = write_profile(tmp_path, f'[[metrics]]\n{GOOD_METRIC}unit = "Cel"\n')
    (metric,) = load_profile(str(path)).metrics
    assert metric.range is None
    assert metric.plausible_range == (-273.15, float("inf"))
    (other,) = load_profile(
        str(write_profile(tmp_path, f"[[metrics]]\n{GOOD_METRIC}", "b.toml"))
    ).metrics
    assert other.plausible_range is None
