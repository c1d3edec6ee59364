"""The gateway config: examples validate, every mistake is named by key path and expectation."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from gateway.config.model import GatewayConfig, Synchronous, load_config, parse_config
from gateway.core.errors import ConfigError, ConfigIssue
from gateway.core.units import format_duration, parse_duration, parse_size

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"

Mutation = Callable[[dict[str, Any]], object]


def base() -> dict[str, Any]:
    """A valid config document with every section and two devices."""
    return {
        "gateway_id": "cabinet-0012",
        "mqtt": {
            "host": "mqtt.city.example",
            "port": 8883,
            "keepalive": "30s",
            "tls": {
                "ca_file": "/etc/streetgate/ca.crt",
                "cert_file": "/etc/streetgate/gateway.crt",
                "key_file": "/etc/streetgate/gateway.key",
            },
        },
        "outbox": {"path": "/var/lib/streetgate/outbox.db", "max_bytes": "512MB"},
        "devices": [
            {
                "kind": "modbus_tcp",
                "name": "lighting-meter",
                "host": "192.0.2.10",
                "profile": "sdm630",
                "interval": "10s",
            },
            {
                "kind": "modbus_tcp",
                "name": "cabinet-climate",
                "host": "192.0.2.10",
                "unit_id": 3,
                "profile": "xy-md02",
                "interval": "30s",
            },
        ],
    }


def issues_after(mutate: Mutation) -> tuple[ConfigIssue, ...]:
    data = base()
    mutate(data)
    with pytest.raises(ConfigError) as caught:
        parse_config(data, "gateway.toml")
    assert caught.value.source == "gateway.toml"
    return caught.value.issues


def one_issue(mutate: Mutation) -> ConfigIssue:
    (issue,) = issues_after(mutate)
    return issue


# --- the examples --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cabinet.toml", "local.toml"])
def test_example_configs_validate(name: str) -> None:
    config = load_config(EXAMPLES / name)
    assert isinstance(config, GatewayConfig)
    assert config.devices
    assert config.outbox.path.is_absolute()


def test_cabinet_example_values() -> None:
    config = load_config(EXAMPLES / "cabinet.toml")
    assert config.gateway_id == "cabinet-0012"
    assert (config.mqtt.host, config.mqtt.port, config.mqtt.keepalive) == (
        "mqtt.city.example",
        8883,
        30.0,
    )
    assert config.mqtt.tls is not None
    assert config.mqtt.tls.cert_file == Path("/etc/streetgate/gateway.crt")
    assert config.outbox.max_bytes == 512_000_000
    assert config.outbox.commit_interval == pytest.approx(0.1)
    assert config.outbox.synchronous is Synchronous.NORMAL
    meter, climate = config.devices
    assert (meter.name, meter.unit_id, meter.profile.name, meter.interval, meter.timeout) == (
        "lighting-meter",
        1,
        "sdm630",
        10.0,
        1.0,
    )
    assert (climate.name, climate.unit_id, climate.profile.name, climate.interval) == (
        "cabinet-climate",
        3,
        "xy-md02",
        30.0,
    )


def test_defaults() -> None:
    data = base()
    del data["mqtt"]["port"], data["mqtt"]["keepalive"], data["mqtt"]["tls"]
    del data["outbox"]["max_bytes"]
    data["devices"] = []
    config = parse_config(data, "gateway.toml")
    assert (config.mqtt.port, config.mqtt.keepalive, config.mqtt.tls) == (1883, 30.0, None)
    assert config.mqtt.topic_prefix == "streetgate"
    assert config.outbox.max_bytes == 256 * 1024 * 1024
    assert config.devices == ()


def test_base_document_is_valid() -> None:
    config = parse_config(base(), "gateway.toml")
    assert [d.name for d in config.devices] == ["lighting-meter", "cabinet-climate"]


# --- each kind of mistake ------------------------------------------------------------------


def setter(*path: str | int, value: object) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        target: Any = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


def remover(*path: str | int) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        target: Any = data
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return mutate


@pytest.mark.parametrize(
    ("mutate", "location", "expected"),
    [
        # wrong values
        pytest.param(
            setter("devices", 1, "port", value=70000),
            "devices[1].port",
            "less than or equal to 65535 (got 70000)",
            id="port-too-high",
        ),
        pytest.param(
            setter("devices", 1, "port", value="five-oh-two"),
            "devices[1].port",
            "valid integer",
            id="port-not-a-number",
        ),
        pytest.param(
            setter("devices", 0, "unit_id", value=256),
            "devices[0].unit_id",
            "less than or equal to 255",
            id="unit-id",
        ),
        pytest.param(
            setter("mqtt", "port", value=0),
            "mqtt.port",
            "greater than or equal to 1",
            id="mqtt-port",
        ),
        pytest.param(
            setter("mqtt", "host", value=""),
            "mqtt.host",
            "at least 1 character",
            id="empty-host",
        ),
        pytest.param(
            setter("mqtt", "tls", "cert_file", value=42),
            "mqtt.tls.cert_file",
            "valid path",
            id="cert-file-not-a-path",
        ),
        pytest.param(
            remover("mqtt", "tls", "key_file"),
            "mqtt.tls",
            "cert_file and key_file must be given together",
            id="cert-without-key",
        ),
        pytest.param(
            remover("mqtt", "tls", "ca_file"),
            "mqtt.tls.ca_file",
            "required key is missing",
            id="tls-without-ca",
        ),
        pytest.param(
            setter("mqtt", "tls", value="yes"),
            "mqtt.tls",
            "valid dictionary",
            id="tls-not-a-table",
        ),
        pytest.param(
            setter("mqtt", "topic_prefix", value="city/#"),
            "mqtt.topic_prefix",
            "wildcards",
            id="topic-prefix-wildcard",
        ),
        pytest.param(
            setter("mqtt", "readings_per_message", value=0),
            "mqtt.readings_per_message",
            "greater than or equal to 1",
            id="readings-per-message",
        ),
        pytest.param(
            setter("outbox", "max_bytes", value="lots"),
            "outbox.max_bytes",
            "expected a size such as '64MB'",
            id="max-bytes-words",
        ),
        pytest.param(
            setter("outbox", "max_bytes", value=0),
            "outbox.max_bytes",
            "greater than 0",
            id="max-bytes-zero",
        ),
        pytest.param(
            setter("outbox", "max_bytes", value=True),
            "outbox.max_bytes",
            "got a boolean",
            id="max-bytes-boolean",
        ),
        pytest.param(
            setter("outbox", "max_bytes", value="0.5B"),
            "outbox.max_bytes",
            "whole number of bytes",
            id="max-bytes-half-a-byte",
        ),
        pytest.param(
            setter("outbox", "commit_interval", value="2s"),
            "outbox.commit_interval",
            "commit_interval above 1s",
            id="commit-interval-too-long",
        ),
        pytest.param(
            setter("outbox", "synchronous", value="sometimes"),
            "outbox.synchronous",
            "'off', 'normal' or 'full' (got 'sometimes')",
            id="synchronous",
        ),
        pytest.param(
            setter("devices", 0, "interval", value="5 parsecs"),
            "devices[0].interval",
            "expected a duration such as '250ms', '5s'",
            id="interval-words",
        ),
        pytest.param(
            setter("devices", 0, "interval", value="0s"),
            "devices[0].interval",
            "greater than 0",
            id="interval-zero",
        ),
        pytest.param(
            setter("devices", 0, "interval", value=-1),
            "devices[0].interval",
            "greater than 0",
            id="interval-negative",
        ),
        pytest.param(
            setter("devices", 0, "timeout", value=True),
            "devices[0].timeout",
            "got a boolean",
            id="timeout-boolean",
        ),
        pytest.param(
            setter("devices", 0, "timeout", value=float("inf")),
            "devices[0].timeout",
            "finite number",
            id="timeout-infinite",
        ),
        pytest.param(
            setter("mqtt", "keepalive", value=float("nan")),
            "mqtt.keepalive",
            "",
            id="keepalive-nan",
        ),
        pytest.param(
            setter("devices", 1, "name", value="cabinet climate"),
            "devices[1].name",
            "expected a name of letters, digits, '_', '.' or '-'",
            id="device-name-with-space",
        ),
        pytest.param(
            setter("gateway_id", value="cabinet/12"),
            "gateway_id",
            "expected a name of letters, digits",
            id="gateway-id",
        ),
        pytest.param(
            setter("devices", 1, "profile", value="sdm999"),
            "devices[1].profile",
            "no built-in profile named 'sdm999'",
            id="unknown-profile",
        ),
        pytest.param(
            setter("devices", 1, "kind", value="modbus_rtx"),
            "devices[1].kind",
            "expected one of: 'modbus_tcp', 'modbus_rtu', 'sds011', 'pms5003', 'line', "
            "'bthome', 'ruuvi', 'ble_gatt' (got 'modbus_rtx')",
            id="unknown-device-kind",
        ),
        pytest.param(
            remover("devices", 1, "kind"),
            "devices[1].kind",
            "required key is missing; expected one of: 'modbus_tcp', 'modbus_rtu', 'sds011', "
            "'pms5003', 'line', 'bthome', 'ruuvi', 'ble_gatt'",
            id="missing-device-kind",
        ),
        pytest.param(
            setter("devices", 1, value=3),
            "devices[1]",
            "valid dictionary",
            id="device-not-a-table",
        ),
        pytest.param(
            setter("mqtt", "compression", value="deflate"),
            "mqtt",
            "compression = 'deflate' needs payload_format = 'compact' (got 'streetgate')",
            id="compression-without-compact",
        ),
        pytest.param(
            setter("mqtt", "compression", value="gzip"),
            "mqtt.compression",
            "'none', 'deflate' or 'zstd'",
            id="unknown-compression",
        ),
        # missing keys
        pytest.param(remover("gateway_id"), "gateway_id", "required key is missing", id="no-id"),
        pytest.param(remover("mqtt"), "mqtt", "required key is missing", id="no-mqtt"),
        pytest.param(remover("outbox"), "outbox", "required key is missing", id="no-outbox"),
        pytest.param(
            remover("mqtt", "host"), "mqtt", "no broker: give mqtt.host", id="no-mqtt-host"
        ),
        pytest.param(
            remover("outbox", "path"), "outbox.path", "required key is missing", id="no-path"
        ),
        pytest.param(
            remover("devices", 1, "host"),
            "devices[1].host",
            "required key is missing",
            id="no-device-host",
        ),
        pytest.param(
            remover("devices", 0, "profile"),
            "devices[0].profile",
            "required key is missing",
            id="no-profile",
        ),
        # unknown keys, at every level
        pytest.param(setter("colour", value=1), "colour", "unknown key", id="unknown-top"),
        pytest.param(
            setter("mqtt", "hostname", value="x"), "mqtt.hostname", "unknown key", id="unknown-mqtt"
        ),
        pytest.param(
            setter("mqtt", "tls", "ca_cert", value="x"),
            "mqtt.tls.ca_cert",
            "unknown key",
            id="unknown-tls",
        ),
        pytest.param(
            setter("outbox", "max_size", value="1MB"),
            "outbox.max_size",
            "unknown key",
            id="unknown-outbox",
        ),
        pytest.param(
            setter("devices", 1, "baudrate", value=9600),
            "devices[1].baudrate",
            "unknown key",
            id="unknown-device",
        ),
    ],
)
def test_mistake_is_located_and_explained(mutate: Mutation, location: str, expected: str) -> None:
    issue = one_issue(mutate)
    assert issue.location == location
    assert expected in issue.message
    assert str(issue) == f"{location}: {issue.message}"


def test_unknown_key_message_says_what_to_do() -> None:
    issue = one_issue(setter("outbox", "max_size", value="1MB"))
    assert issue.message == "unknown key (not allowed here; check the spelling)"


def test_duplicate_device_names() -> None:
    def duplicate(data: dict[str, Any]) -> None:
        data["devices"][1]["name"] = "lighting-meter"

    issue = one_issue(duplicate)
    assert issue.location == "devices"
    assert "device names must be unique" in issue.message
    assert "lighting-meter" in issue.message


def test_every_mistake_is_reported_at_once() -> None:
    def many(data: dict[str, Any]) -> None:
        data["mqtt"]["port"] = -1
        data["outbox"]["colour"] = "red"
        data["devices"][0]["interval"] = "soon"
        data["devices"][1]["port"] = 65536

    issues = issues_after(many)
    assert [i.location for i in issues] == [
        "mqtt.port",
        "outbox.colour",
        "devices[0].interval",
        "devices[1].port",
    ]


def test_config_error_text_names_source_and_every_issue() -> None:
    data = base()
    data["mqtt"]["port"] = -1
    data["devices"][1]["port"] = 65536
    with pytest.raises(ConfigError) as caught:
        parse_config(data, "/etc/streetgate/gateway.toml")
    text = str(caught.value)
    assert text.splitlines()[0] == "invalid configuration in /etc/streetgate/gateway.toml:"
    assert "  /etc/streetgate/gateway.toml: mqtt.port: " in text
    assert "  /etc/streetgate/gateway.toml: devices[1].port: " in text


def test_unchanged_input_document() -> None:
    data = base()
    snapshot = copy.deepcopy(data)
    parse_config(data, "gateway.toml", Path("/srv"))
    assert data == snapshot


# --- files ---------------------------------------------------------------------------------

MINIMAL = """\
gateway_id = "gw-1"

[mqtt]
host = "127.0.0.1"

[outbox]
path = "{path}"
"""


def test_toml_syntax_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('gateway_id = "gw-1"\n[mqtt\nhost = "x"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.source == str(path)
    (issue,) = caught.value.issues
    assert issue.location == ""
    assert issue.message.startswith("not valid TOML:")
    assert "line 2" in issue.message
    assert str(path) in str(caught.value)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.source == str(path)
    assert caught.value.issues == (ConfigIssue("", "cannot read file: No such file or directory"),)


def test_relative_outbox_path_resolves_against_the_config_folder(tmp_path: Path) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    path = folder / "gateway.toml"
    path.write_text(MINIMAL.format(path="data/outbox.db"), encoding="utf-8")
    config = load_config(path)
    assert config.outbox.path == folder.resolve() / "data" / "outbox.db"


def test_relative_path_does_not_depend_on_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "etc" / "gateway.toml").write_text(
        MINIMAL.format(path="outbox.db"), encoding="utf-8"
    )
    monkeypatch.chdir(tmp_path / "elsewhere")
    config = load_config(Path("../etc/gateway.toml"))
    assert config.outbox.path == (tmp_path / "etc" / "outbox.db").resolve()


def test_absolute_outbox_path_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(MINIMAL.format(path="/var/lib/streetgate/outbox.db"), encoding="utf-8")
    assert load_config(path).outbox.path == Path("/var/lib/streetgate/outbox.db")


def test_relative_tls_and_password_files_resolve(tmp_path: Path) -> None:
    data = base()
    data["mqtt"]["tls"] = {"ca_file": "ca.crt", "cert_file": "gw.crt", "key_file": "/keys/gw.key"}
    data["mqtt"]["password_file"] = "secrets/password"
    mqtt = parse_config(data, "gateway.toml", tmp_path).mqtt
    assert mqtt.tls is not None
    assert (mqtt.tls.ca_file, mqtt.tls.cert_file, mqtt.tls.key_file) == (
        tmp_path / "ca.crt",
        tmp_path / "gw.crt",
        Path("/keys/gw.key"),
    )
    assert mqtt.password_file == tmp_path / "secrets" / "password"


def test_without_base_dir_paths_stay_as_written() -> None:
    data = base()
    data["outbox"]["path"] = "outbox.db"
    assert parse_config(data, "gateway.toml").outbox.path == Path("outbox.db")


# --- frozen models -------------------------------------------------------------------------


def test_models_are_frozen() -> None:
    config = parse_config(base(), "gateway.toml")
    with pytest.raises(ValidationError, match="frozen"):
        config.gateway_id = "other"
    with pytest.raises(ValidationError, match="frozen"):
        config.mqtt.port = 1
    assert config.mqtt.tls is not None
    with pytest.raises(ValidationError, match="frozen"):
        config.mqtt.tls.insecure_skip_verify = True
    with pytest.raises(ValidationError, match="frozen"):
        config.outbox.max_bytes = 1
    with pytest.raises(ValidationError, match="frozen"):
        config.devices[0].interval = 1.0
    with pytest.raises(ValidationError, match="frozen"):
        config.devices[0].profile.metrics[0].address = 7
    assert isinstance(config.devices, tuple)
    assert config.mqtt.port == 8883


# --- durations and sizes -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("5s", 5.0),
        ("1.5s", 1.5),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1d", 86400.0),
        ("0s", 0.0),
        (" 10 s ", 10.0),
        ("100ms", 0.1),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    ["", "5", "s", "-5s", "5 sec", "5S", "1.s", ".5s", "1e3s", "5s5", "five seconds", "5 min"],
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"expected a duration such as '250ms', '5s'"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1000000", 1_000_000),
        ("512B", 512),
        ("1kB", 1000),
        ("1KB", 1000),
        ("64MB", 64_000_000),
        ("2GB", 2_000_000_000),
        ("512KiB", 512 * 1024),
        ("64MiB", 64 * 1024**2),
        ("1GiB", 1024**3),
        ("1.5KiB", 1536),
        ("2.01kB", 2010),  # not 2009: float arithmetic would truncate
        ("4.35MB", 4_350_000),
        (" 8 MB ", 8_000_000),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "MB", "-1MB", "1 TB", "1mb", "1 MiBs", "lots", "1e6"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"expected a size such as '64MB', '512KiB' or '1GiB'"):
        parse_size(text)


@pytest.mark.parametrize("text", ["0.5B", "1.0001kB", "0.1"])
def test_parse_size_rejects_fractions_of_a_byte(text: str) -> None:
    with pytest.raises(ValueError, match="expected a whole number of bytes"):
        parse_size(text)


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.25, "250ms"), (5.0, "5s"), (1.5, "1.5s"), (120.0, "120s")]
)
def test_format_duration_round_trips(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("interval", "250ms", 0.25),
        ("interval", 2, 2.0),
        ("interval", 0.5, 0.5),
        ("timeout", "2m", 120.0),
    ],
)
def test_durations_in_config(field: str, value: object, expected: float) -> None:
    data = base()
    data["devices"][0][field] = value
    assert getattr(parse_config(data, "gateway.toml").devices[0], field) == expected


@pytest.mark.parametrize(("value", "expected"), [("1GiB", 1024**3), (4096, 4096)])
def test_sizes_in_config(value: object, expected: int) -> None:
    data = base()
    data["outbox"]["max_bytes"] = value
    assert parse_config(data, "gateway.toml").outbox.max_bytes == expected
