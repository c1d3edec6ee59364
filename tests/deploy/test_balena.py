"""The balena files, parsed and held to the contract: compose, Dockerfile.template, balena.yml."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config.model import load_config
from gateway.core.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
BALENA_CONFIG = REPO / "deploy" / "balena" / "config.toml"

# balena's supervisor accepts these service fields (compose file format 2.4; see
# https://docs.balena.io/reference/supervisor/docker-compose/); anything else fails a push.
BALENA_SERVICE_FIELDS = {
    "build", "cap_add", "cap_drop", "cgroup_parent", "command", "cpu_shares", "cpu_quota",
    "cpuset", "devices", "depends_on", "dns", "dns_opt", "dns_search", "domainname",
    "entrypoint", "environment", "expose", "extra_hosts", "group_add", "healthcheck",
    "hostname", "image", "ipc", "labels", "mac_address", "mem_limit", "mem_reservation",
    "network_mode", "networks", "oom_kill_disable", "oom_score_adj", "pid", "pids_limit",
    "ports", "privileged", "read_only", "restart", "security_opt", "shm_size",
    "stop_grace_period", "stop_signal", "sysctls", "tmpfs", "ulimits", "user", "userns_mode",
    "volumes", "working_dir",
}  # fmt: skip


def compose() -> dict[str, Any]:
    data = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def service() -> dict[str, Any]:
    services = compose()["services"]
    assert list(services) == ["streetgate"]
    svc = services["streetgate"]
    assert isinstance(svc, dict)
    return svc


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) pairs, continuation lines joined, comments dropped."""
    text = (REPO / "Dockerfile.template").read_text()
    joined = re.sub(r"\s*\\\n\s*", " ", text)
    pairs = []
    for line in joined.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            instruction, _, args = line.strip().partition(" ")
            pairs.append((instruction.upper(), args.strip()))
    return pairs


def instructions(name: str) -> list[str]:
    return [args for instruction, args in dockerfile() if instruction == name]


def env_of_dockerfile() -> dict[str, str]:
    env = {}
    for args in instructions("ENV"):
        for word in shlex.split(args):
            key, _, value = word.partition("=")
            env[key] = value
    return env


def test_compose_uses_only_fields_balena_supports() -> None:
    assert compose()["version"] == "2.4"
    assert set(service()) <= BALENA_SERVICE_FIELDS, set(service()) - BALENA_SERVICE_FIELDS


def test_compose_gives_host_networking_dbus_and_serial_devices() -> None:
    svc = service()
    assert svc["network_mode"] == "host"
    assert svc["labels"]["io.balena.features.dbus"] == "1"  # a string: balena wants '1'
    assert "UDEV" not in svc["environment"]
    assert "UDEV" not in env_of_dockerfile()  # udev needs a privileged container
    address = "unix:path=/host/run/dbus/system_bus_socket"
    assert svc["environment"]["DBUS_SYSTEM_BUS_ADDRESS"] == address
    assert env_of_dockerfile()["DBUS_SYSTEM_BUS_ADDRESS"] == address
    # the engine restarts an unhealthy container only under a restart policy
    assert svc["restart"] in {"always", "on-failure"}


def test_the_container_is_not_privileged_and_has_no_capabilities() -> None:
    svc = service()
    assert "privileged" not in svc  # every device and capability of the host
    assert svc["cap_drop"] == ["ALL"]  # BLE over D-Bus, serial by device node: none needed
    assert "cap_add" not in svc
    assert "no-new-privileges" in svc["security_opt"]
    # serial ports only as listed devices: host path, container path, rw; nothing else of /dev
    assert isinstance(svc["devices"], list)  # none by default: each one listed must exist
    for device in svc["devices"]:
        host, inside, mode = device.split(":")
        assert host.startswith("/dev/")
        assert inside.startswith("/dev/")
        assert mode == "rw"
    assert not any("/dev" in mount for mount in svc["volumes"])
    assert svc["mem_limit"] == "256m"
    assert int(svc["pids_limit"]) <= 64


def test_the_outbox_lives_on_a_named_volume() -> None:
    volumes = compose()["volumes"]
    mounts = dict(m.split(":", 1) for m in service()["volumes"])
    assert set(mounts) <= set(volumes)  # named volumes only (balena has no bind mounts)
    data_dir = Path(mounts["streetgate-data"])
    config = tomllib.loads(BALENA_CONFIG.read_text())
    assert Path(config["outbox"]["path"]).parent == data_dir
    for key in ("ca_file", "cert_file", "key_file"):
        assert Path(config["mqtt"]["tls"][key]).is_relative_to(data_dir)


def test_dockerfile_builds_for_the_fleet_architecture_and_checks_health() -> None:
    froms = instructions("FROM")
    assert len(froms) == 2
    # official multi-arch images (balenalib is unmaintained): full to build, slim to run, one
    # Python minor and one Debian release in both, so the venv copied across works
    assert froms == ["python:3.11-bookworm AS build", "python:3.11-slim-bookworm"]
    [healthcheck] = instructions("HEALTHCHECK")
    options, _, command = healthcheck.partition(" CMD ")
    assert json.loads(command) == ["streetgate", "healthcheck"]
    flags = dict(o.removeprefix("--").split("=") for o in options.split())
    # unhealthy only after the heartbeat is surely stale (gateway/runtime/watchdog.py: 3 × 10 s + 5
    # s)
    assert int(flags["interval"].removesuffix("s")) * int(flags["retries"]) > 35
    assert int(flags["start-period"].removesuffix("s")) >= 60  # opening a big outbox
    assert instructions("CMD") == ['["streetgate", "run"]']
    assert instructions("STOPSIGNAL") == ["SIGTERM"]


def test_dockerfile_copies_every_package_and_the_config_it_names() -> None:
    copies = [args.split() for args in instructions("COPY") if not args.startswith("--from")]
    sources = {src for args in copies for src in args[:-1]}
    for src in sources:
        assert (REPO / src).exists(), src
    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["hatch"]["build"][
        "targets"
    ]["wheel"]["packages"]
    assert set(packages) <= sources
    assert {"pyproject.toml", "README.md"} <= sources  # the build reads both
    # and the files the wheel force-includes and its licence: the build fails without them
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    wheel = project["tool"]["hatch"]["build"]["targets"]["wheel"]
    needed = set(wheel["force-include"]) | set(project["project"]["license-files"])
    copied = {src for src in sources if (REPO / src).is_file()}
    copied |= {
        str(path.relative_to(REPO))
        for src in sources
        if (REPO / src).is_dir()
        for path in (REPO / src).rglob("*")
    }
    assert needed <= copied, needed - copied
    config_copy = next(args for args in copies if args[0] == "deploy/balena/config.toml")
    assert env_of_dockerfile()["STREETGATE_CONFIG"] == config_copy[1]
    ignored = (REPO / ".dockerignore").read_text().split()
    assert not sources & set(ignored)


def test_the_baked_config_needs_only_the_gateway_id_per_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as exc:
        load_config(BALENA_CONFIG, {})
    assert [str(i) for i in exc.value.issues] == [
        "gateway_id: required key is missing (in the file, or as STREETGATE_GATEWAY_ID)"
    ]
    env = {"STREETGATE_GATEWAY_ID": "pole-17", "STREETGATE_MQTT_HOST": "mqtt.example.org"}
    config = load_config(BALENA_CONFIG, env)
    assert (config.gateway_id, config.mqtt.host) == ("pole-17", "mqtt.example.org")
    assert config.outbox.path == Path("/data/outbox.db")


def test_balena_yml_matches_the_package() -> None:
    data = yaml.safe_load((REPO / "balena.yml").read_text())
    assert data["type"] == "sw.application"
    # one version source, gateway/__init__.py: balena numbers the releases itself
    assert "version" not in data
    assert data["name"] == tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["name"]
    assert data["data"]["defaultDeviceType"] in data["data"]["supportedDeviceTypes"]
