"""Fleet mode of ``streetgate sim``: many simulated gateways' devices served by one process.

streetgate sim --fleet 20 --profile holding10 --count 20 --fleet-dir fleet/

serves 20 × 20 Modbus TCP devices on consecutive ports and writes ``fleet/fleet-001.toml`` ..
``fleet/fleet-020.toml``, one gateway config each (gateway ids ``fleet-001``.., an outbox
``fleet-NNN.db`` beside each config), so that 20 gateway processes can be pointed at them.
``holding10`` is the simulator's own profile for the issue-16 benchmark device: ten uint16
holding registers ``r0``..``r9`` in one request; it is written into the folder as
``holding10.toml`` and the configs refer to it there. Built-in profiles (``sdm630``) work too.

This module plans the fleet (pure, no I/O but :func:`write_fleet_profiles`); serving and the
configs' text live in :mod:`simulator.cli`, beside the single-gateway mode they share.
"""

from __future__ import annotations

import itertools
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from drivers.profile import Profile, parse_profile
from simulator.modbus_server import DeviceSpec

__all__ = [
    "FLEET_PROFILES",
    "FleetDevice",
    "FleetGateway",
    "fleet_gateway_id",
    "fleet_profile_file",
    "load_fleet_profile",
    "plan_fleet",
    "write_fleet_profiles",
]

#: Most gateways one fleet numbers (``fleet-001``..``fleet-999``).
MAX_GATEWAYS = 999

_HOLDING10 = "\n".join(
    [
        "# Written by `streetgate sim --fleet`: the issue-16 benchmark device,",
        "# ten uint16 holding registers read in one request.",
        'name = "holding10"',
        'description = "Ten uint16 holding registers r0..r9 (simulated benchmark device)"',
        "",
        "[defaults]",
        'function = "holding"',
        'type = "uint16"',
        *(f'\n[[metrics]]\nname = "r{i}"\naddress = {i}' for i in range(10)),
        "",
    ]
)

#: Profiles the simulator defines for fleets, by name: their TOML text.
FLEET_PROFILES: dict[str, str] = {"holding10": _HOLDING10}


def fleet_profile_file(name: str) -> str:
    """The file name a fleet profile is written to (and the configs' ``profile`` reference)."""
    return f"{name}.toml"


def load_fleet_profile(name: str) -> Profile:
    """A fleet profile by name; KeyError for a name that is not one."""
    return parse_profile(tomllib.loads(FLEET_PROFILES[name]), f"fleet profile {name}")


def write_fleet_profiles(directory: Path, names: Sequence[str]) -> None:
    """Write the fleet profiles among ``names`` into ``directory`` (overwriting: generated)."""
    for name in dict.fromkeys(names):
        if name in FLEET_PROFILES:
            (directory / fleet_profile_file(name)).write_text(FLEET_PROFILES[name], "utf-8")


def fleet_gateway_id(number: int) -> str:
    """``fleet-001`` for 1."""
    if not 1 <= number <= MAX_GATEWAYS:
        raise ValueError(f"fleet gateway numbers run from 1 to {MAX_GATEWAYS}, got {number}")
    return f"fleet-{number:03d}"


@dataclass(frozen=True, slots=True)
class FleetDevice:
    """One device of a fleet gateway: served as ``spec`` (name unique in the whole fleet),
    configured as ``name`` with profile reference ``profile_ref``."""

    spec: DeviceSpec
    name: str
    profile_ref: str


@dataclass(frozen=True, slots=True)
class FleetGateway:
    """One simulated gateway's share of the fleet."""

    gateway_id: str
    devices: tuple[FleetDevice, ...]


def plan_fleet(
    profiles: Sequence[tuple[str, Profile]],
    *,
    gateways: int,
    devices_per_gateway: int,
    unit_id: int = 1,
    first: int = 1,
) -> list[FleetGateway]:
    """``gateways`` gateways numbered from ``first``, each with ``devices_per_gateway`` devices
    cycling through ``profiles`` (reference, profile), named ``sim-<profile>-<n>`` per gateway.

    Each device's simulated name is ``<gateway_id>.<name>``, so values differ between gateways.
    """
    if gateways < 1:
        raise ValueError(f"a fleet needs at least 1 gateway, got {gateways}")
    if devices_per_gateway < 1:
        raise ValueError(f"a fleet gateway needs at least 1 device, got {devices_per_gateway}")
    if not profiles:
        raise ValueError("a fleet needs at least one profile")
    last = first + gateways - 1
    if first < 1 or last > MAX_GATEWAYS:
        raise ValueError(
            f"fleet gateways {first}..{last} run outside 1..{MAX_GATEWAYS}; lower --fleet"
        )
    plan = []
    for number in range(first, last + 1):
        gateway_id = fleet_gateway_id(number)
        numbers: dict[str, itertools.count[int]] = {}
        devices = []
        for ref, profile in itertools.islice(itertools.cycle(profiles), devices_per_gateway):
            n = next(numbers.setdefault(profile.name, itertools.count(1)))
            name = f"sim-{profile.name}-{n}"
            spec = DeviceSpec(f"{gateway_id}.{name}", profile, unit_id)
            devices.append(FleetDevice(spec, name, ref))
        plan.append(FleetGateway(gateway_id, tuple(devices)))
    return plan
