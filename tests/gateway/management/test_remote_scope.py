"""The remote config scope (gateway/management/remote_scope.py): what config-set may change, as a
pure rule."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from gateway.config.change import merge_patch
from gateway.management.remote_scope import refused_changes

DEVICE = {
    "kind": "modbus_tcp",
    "name": "meter-1",
    "host": "10.0.0.5",
    "profile": "sdm120",
    "interval": "10s",
}
BUS = {
    "kind": "modbus_rtu",
    "name": "bus-1",
    "port": "/run/rs485",  # a udev link set up on site
    "units": [{"name": "u1", "unit_id": 1, "profile": "xy-md02"}],
}
BTHOME = {"kind": "bthome", "name": "pole-t", "mac": "A4:C1:38:00:00:01", "key": "0" * 32}
CURRENT: dict[str, Any] = {
    "gateway_id": "gw-1",
    "mqtt": {
        "host": "broker.example",
        "port": 8883,
        "username": "gw-1",
        "password_file": "mqtt-password",
        "tls": {"ca_file": "tls/ca.crt"},
        "health_interval": "60s",
    },
    "outbox": {"path": "/var/lib/streetgate/outbox.db", "commit_interval": "50ms"},
    "devices": [DEVICE, BUS, BTHOME],
}


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "etc" / "gateway.toml"
    path.parent.mkdir()
    path.write_text("")
    return path


def refused(patch: dict[str, Any], config_path: Path) -> dict[str, str]:
    proposed = merge_patch(CURRENT, patch)
    return {r.key: r.message for r in refused_changes(CURRENT, proposed, config_path)}


def devices(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"devices": list(entries)}


@pytest.mark.parametrize(
    "patch",
    [
        {"mqtt": {"payload_format": "senml", "readings_per_message": 50, "max_inflight": 32}},
        {"mqtt": {"payload_format": "compact", "compression": "zstd"}},
        {"mqtt": {"health_interval": "17s", "publish_timeout": 30}},
        {"outbox": {"commit_interval": "200ms", "commit_max_readings": 500, "queue_size": 5000}},
        {"outbox": {"synchronous": "full"}},
        {"mqtt": {"health_interval": None}},  # back to the default
        {"mqtt": {"host": "broker.example", "port": 8883}},  # restated as on disk: no change
        devices(DEVICE | {"interval": "2s", "timeout": "1s"}, BUS, BTHOME),
        devices(DEVICE),  # devices removed
        {"devices": None},
        devices(DEVICE | {"name": "meter-2", "host": "10.0.0.6", "unit_id": 4}),
        devices({"kind": "sds011", "name": "pm-1", "port": "/dev/ttyUSB0"}),
        devices({"kind": "pms5003", "name": "pm-2", "port": "/dev/serial/by-id/usb-FTDI_A1-if00"}),
        devices({"kind": "sds011", "name": "pm-3", "port": "usb:0403:6001:A1"}),
        devices(BUS | {"units": [{"name": "u2", "unit_id": 2, "profile": "sdm120"}]}),
        devices(BTHOME | {"stale_after": "10m"}),  # the key restated as on disk
        devices(DEVICE | {"profile": {"name": "inline", "metrics": []}}),  # names no file
    ],
)
def test_fleet_changes_are_allowed(patch: dict[str, Any], config_path: Path) -> None:
    assert refused(patch, config_path) == {}


@pytest.mark.parametrize(
    ("patch", "keys"),
    [
        ({"gateway_id": "gw-2"}, {"gateway_id"}),
        ({"mqtt": {"host": "evil", "port": 1883}}, {"mqtt.host", "mqtt.port"}),
        ({"mqtt": {"port": "8883"}}, {"mqtt.port"}),  # same value, another type: a change
        ({"mqtt": {"brokers": ["evil:1883"]}}, {"mqtt.brokers"}),
        (
            {"mqtt": {"host": None, "port": None, "brokers": [{"host": "evil"}]}},
            {"mqtt.host", "mqtt.port", "mqtt.brokers"},
        ),
        ({"mqtt": {"session_expiry": "7d"}}, {"mqtt.session_expiry"}),
        ({"mqtt": {"tls": None}}, {"mqtt.tls"}),
        ({"mqtt": {"tls": {"ca_file": "other.pem"}}}, {"mqtt.tls.ca_file"}),
        ({"mqtt": {"tls": {"insecure_skip_verify": True}}}, {"mqtt.tls.insecure_skip_verify"}),
        ({"mqtt": {"username": None}}, {"mqtt.username"}),
        ({"mqtt": {"password_file": "tls/client.key"}}, {"mqtt.password_file"}),
        ({"mqtt": {"topic_prefix": "x"}}, {"mqtt.topic_prefix"}),
        (
            {"mqtt": {"keepalive": "1h", "reconnect_max": "1d"}},
            {"mqtt.keepalive", "mqtt.reconnect_max"},
        ),
        ({"mqtt": "evil:1883"}, {"mqtt"}),
        (
            {"mqtt": None},
            {"mqtt.host", "mqtt.port", "mqtt.username", "mqtt.password_file", "mqtt.tls"},
        ),
        ({"outbox": {"path": "gateway.toml"}}, {"outbox.path"}),
        (
            {"outbox": {"disk_reserve": 0, "max_bytes": "1GB"}},
            {"outbox.disk_reserve", "outbox.max_bytes"},
        ),
        ({"outbox": {"synchronous": "off"}}, {"outbox.synchronous"}),
        ({"outbox": {"queue_size": 10_000_000}}, {"outbox.queue_size"}),
        ({"mqtt": {"health_interval": "100ms"}}, {"mqtt.health_interval"}),
        ({"mqtt": {"max_inflight": 1000}}, {"mqtt.max_inflight"}),
        (
            {"metrics": {"listen": "0.0.0.0:9464", "allow_remote": True}},
            {"metrics.listen", "metrics.allow_remote"},
        ),
        ({"metrics": {}}, {"metrics"}),  # turning the endpoint on
        (
            {"management": {"require_signed_commands": False}},
            {"management.require_signed_commands"},
        ),
        (
            {"management": {"require_signed": False, "command_key_file": "/tmp/evil.pub"}},
            {"management.require_signed", "management.command_key_file"},
        ),
        ({"mqtt": {"protocol": "5"}}, {"mqtt.protocol"}),
        ({"anything_added_later": 1}, {"anything_added_later"}),
        (devices(DEVICE | {"profile": "/dev/zero"}), {"devices[0].profile"}),
        (devices(DEVICE | {"profile": "../x.toml"}), {"devices[0].profile"}),
        (devices(DEVICE | {"profile": "/etc/passwd.toml"}), {"devices[0].profile"}),
        (devices(DEVICE | {"profile": "gateway.toml"}), {"devices[0].profile"}),  # the config
        (devices(DEVICE | {"profile": "missing.toml"}), {"devices[0].profile"}),
        (
            devices({"kind": "sds011", "name": "pm", "port": "socket://evil:7000"}),
            {"devices[0].port"},
        ),
        (devices({"kind": "sds011", "name": "pm", "port": "/dev/sda"}), {"devices[0].port"}),
        (devices({"kind": "sds011", "name": "pm", "port": "/dev/../etc/x"}), {"devices[0].port"}),
        (devices(BTHOME | {"key": "1" * 32}), {"devices[0].key"}),  # a bindkey is set on site
        (devices({k: v for k, v in BTHOME.items() if k != "key"}), {"devices[0].key"}),
        (devices(BTHOME | {"name": "new-t", "key": "1" * 32}), {"devices[0].key"}),
        (devices(DEVICE | {"key_file": "tls/client.key"}), {"devices[0].key_file"}),
        (
            devices(BUS | {"units": [{"name": "u1", "unit_id": 1, "profile": "/dev/zero"}]}),
            {"devices[0].units[0].profile"},
        ),
    ],
)
def test_local_changes_are_refused_by_key(
    patch: dict[str, Any], keys: set[str], config_path: Path
) -> None:
    got = refused(patch, config_path)
    assert set(got) == keys
    for message in got.values():
        assert "local-only" in message or "may not be named remotely" in message
        assert "change it on site (CLI, file or environment)" in message


def test_a_profile_file_must_really_be_in_the_config_directory(
    tmp_path: Path, config_path: Path
) -> None:
    (config_path.parent / "profiles").mkdir()
    inside = config_path.parent / "profiles" / "meter.toml"
    inside.write_text("")
    outside = tmp_path / "meter.toml"
    outside.write_text("")
    os.symlink(outside, config_path.parent / "escape.toml")
    os.symlink("/dev/zero", config_path.parent / "zero.toml")
    os.symlink(inside, config_path.parent / "alias.toml")

    def profile_refused(ref: str) -> bool:
        return bool(refused(devices(DEVICE | {"profile": ref}), config_path))

    assert not profile_refused("profiles/meter.toml")
    assert not profile_refused(str(inside))  # absolute, but inside
    assert not profile_refused("alias.toml")  # a link that stays inside
    assert profile_refused("escape.toml")  # a link that leaves
    assert profile_refused("zero.toml")  # a link to a device file
    assert profile_refused(str(outside))
    assert profile_refused("profiles/../../meter.toml")
    assert profile_refused("profiles/")  # a directory
    (config_path.parent / "dir.toml").mkdir()
    assert profile_refused("dir.toml")
    assert profile_refused("./gateway.toml.previous")


def test_a_port_the_config_already_uses_may_be_restated(config_path: Path) -> None:
    moved = BUS | {"name": "bus-2"}  # the same local port under another entry
    assert refused(devices(DEVICE, moved), config_path) == {}


def test_the_message_names_the_key_and_the_way(config_path: Path) -> None:
    proposed = merge_patch(CURRENT, {"mqtt": {"host": "evil"}})
    (refusal,) = refused_changes(CURRENT, proposed, config_path)
    assert str(refusal) == "mqtt.host is local-only: change it on site (CLI, file or environment)"


def test_entries_of_any_shape_are_left_to_validation(config_path: Path) -> None:
    odd = merge_patch(CURRENT, {"devices": [{"name": ["x"], "kind": "sds011"}, "text", 1]})
    assert {r.key for r in refused_changes(CURRENT, odd, config_path)} == set()
    shapeless = merge_patch(CURRENT, {"devices": {"profile": "/dev/zero"}})
    assert [r.key for r in refused_changes(CURRENT, shapeless, config_path)] == ["devices"]


def test_a_remote_deadband_is_allowed_with_max_silence_up_to_a_day(config_path: Path):
    banded = DEVICE | {"deadbands": {"*": {"deadband": 5, "max_silence": "24h"}}}
    unit: dict[str, Any] = {"name": "u1", "unit_id": 1, "profile": "xy-md02"}
    unit |= {"deadbands": {"temperature": {"deadband": 1, "max_silence": 3600}}}
    assert refused(devices(banded, BUS | {"units": [unit]}, BTHOME), config_path) == {}


def test_a_remote_max_silence_above_a_day_is_refused_wherever_it_hides(config_path: Path):
    banded = DEVICE | {"deadbands": {"*": {"deadband": 1e9, "max_silence": "25h"}}}
    unit: dict[str, Any] = {"name": "u1", "unit_id": 1, "profile": "xy-md02"}
    unit |= {"deadbands": {"temperature": {"deadband": 1, "max_silence": 1e9}}}
    inline = {
        "name": "meter",
        "defaults": {"deadband": 1e9, "max_silence": "3650d"},
        "metrics": [{"name": "v", "address": 0, "max_silence": "100000s"}],
    }
    sneaky = BTHOME | {"profile": inline}  # validation refuses it anyway; the scope first
    found = refused(devices(banded, BUS | {"units": [unit]}, sneaky), config_path)
    assert set(found) == {
        "devices[0].deadbands.*.max_silence",
        "devices[1].units[0].deadbands.temperature.max_silence",
        "devices[2].profile.defaults.max_silence",
        "devices[2].profile.metrics[0].max_silence",
    }
    assert (
        "may be set remotely from 0s to 86400s (got '25h')"
        in found["devices[0].deadbands.*.max_silence"]
    )


def test_a_long_max_silence_set_on_site_may_be_restated(config_path: Path):
    on_site = DEVICE | {"deadbands": {"power": {"deadband": 10, "max_silence": "7d"}}}
    current = CURRENT | {"devices": [on_site, BUS, BTHOME]}
    proposed = current | {"devices": [on_site | {"interval": "20s"}, BUS, BTHOME]}
    assert refused_changes(current, proposed, config_path) == []
    longer = DEVICE | {"deadbands": {"power": {"deadband": 10, "max_silence": "8d"}}}
    proposed = current | {"devices": [longer, BUS, BTHOME]}
    assert [r.key for r in refused_changes(current, proposed, config_path)] == [
        "devices[0].deadbands.power.max_silence"
    ]
