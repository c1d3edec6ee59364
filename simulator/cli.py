"""``streetgate sim``: serve simulated Modbus TCP devices and write a gateway config for them.

streetgate sim --profile sdm120 --count 3 --write-config gw.toml   # one terminal
streetgate run -c gw.toml                                          # another

With ``--rtu`` the devices are Modbus RTU units on one virtual serial port instead
(:mod:`simulator.rtu_cli`). ``--serial KIND`` (repeatable) adds serial sensors, each on its
own virtual serial port (:mod:`simulator.serial_cli`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import signal
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Annotated, cast

import typer

from drivers.profile import Profile, load_profile
from gateway.cli.common import fail
from gateway.cli.exit_codes import ExitCode
from gateway.config.devices import BAUD_RATES
from gateway.config.model import NAME_PATTERN, parse_config
from gateway.core.errors import ConfigError, WriteConfigError
from gateway.core.units import format_duration, parse_duration
from simulator.fleet import (
    FLEET_PROFILES,
    FleetGateway,
    fleet_profile_file,
    load_fleet_profile,
    plan_fleet,
    write_fleet_profiles,
)
from simulator.modbus_rtu_server import precise_timer_loop
from simulator.modbus_server import DeviceSpec, ModbusSimulator
from simulator.rtu_cli import ConfigBus, Parity, bus_toml, rtu_fleet, serve_rtu
from simulator.serial_cli import SERIAL_KINDS, describe, serial_sensors, serial_toml
from simulator.serial_sensors import SerialSensorSim

__all__ = [
    "ConfigDevice",
    "GatewaySettings",
    "SimProfile",
    "config_toml",
    "fleet",
    "serve",
    "serve_fleet",
    "sim",
    "write_config_file",
]


@dataclass(frozen=True, slots=True)
class SimProfile:
    """A profile as the user named it (what the config refers to) and as loaded."""

    ref: str
    profile: Profile


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    """The non-device part of a written config, and the poll interval of every device."""

    gateway_id: str = "sim-gateway"
    broker_host: str = "127.0.0.1"
    broker_port: int = 1883
    outbox: Path = Path("outbox.db")
    interval: float = 1.0


@dataclass(frozen=True, slots=True)
class ConfigDevice:
    """A served device as the config describes it."""

    name: str
    profile_ref: str
    host: str
    port: int
    unit_id: int


def fleet(profiles: Sequence[SimProfile], count: int, unit_id: int) -> list[tuple[DeviceSpec, str]]:
    """``count`` devices cycling through ``profiles``, named ``sim-<profile>-<n>``.

    Returns each device's spec with the profile reference to write into a config.
    """
    numbers: dict[str, itertools.count[int]] = {}
    devices = []
    for entry in itertools.islice(itertools.cycle(profiles), count):
        name = entry.profile.name
        n = next(numbers.setdefault(name, itertools.count(1)))
        devices.append((DeviceSpec(f"sim-{name}-{n}", entry.profile, unit_id), entry.ref))
    return devices


def _toml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # JSON string escapes are valid TOML ones


def config_toml(
    settings: GatewaySettings,
    devices: Sequence[ConfigDevice],
    bus: ConfigBus | None = None,
    serial: Sequence[SerialSensorSim] = (),
) -> str:
    """A complete gateway config for ``devices`` (Modbus TCP), the RTU ``bus``, if any, and
    the ``serial`` sensors."""
    count = len(devices) + (len(bus.units) if bus is not None else 0) + len(serial)
    lines = [
        f"# Written by `streetgate sim` for {count} simulated device(s).",
        "# Run the gateway against them with: streetgate run -c <this file>",
        f"gateway_id = {_toml_str(settings.gateway_id)}",
        "",
        "[mqtt]",
        f"host = {_toml_str(settings.broker_host)}",
        f"port = {settings.broker_port}",
        "",
        "[outbox]",
        f"path = {_toml_str(str(settings.outbox))}",
    ]
    for device in devices:
        lines += [
            "",
            "[[devices]]",
            'kind = "modbus_tcp"',
            f"name = {_toml_str(device.name)}",
            f"host = {_toml_str(device.host)}",
            f"port = {device.port}",
            f"unit_id = {device.unit_id}",
            f"profile = {_toml_str(device.profile_ref)}",
            f"interval = {_toml_str(format_duration(settings.interval))}",
        ]
    if bus is not None:
        lines += bus_toml(bus, format_duration(settings.interval))
    lines += serial_toml(serial, settings.interval)
    return "\n".join(lines) + "\n"


def write_config_file(path: Path, text: str, *, force: bool) -> None:
    """Write a config after checking it loads; without ``force`` an existing file is kept."""
    parse_config(tomllib.loads(text), str(path), path.parent.resolve())
    try:
        with path.open("w" if force else "x", encoding="utf-8") as file:
            file.write(text)
    except FileExistsError as exc:
        raise WriteConfigError(path, f"{path} exists; add --force to overwrite it") from exc
    except OSError as exc:
        raise WriteConfigError(path, f"cannot write {path}: {exc.strerror}") from exc


def _profiles(refs: Sequence[str]) -> list[SimProfile]:
    loaded = []
    for ref in refs:
        try:
            profile = load_profile(ref, Path.cwd())
        except ConfigError as exc:
            problems = "; ".join(str(issue) for issue in exc.issues)
            raise typer.BadParameter(problems, param_hint="'--profile'") from exc
        is_path = ref.endswith(".toml") or "/" in ref
        loaded.append(SimProfile(str(Path(ref).resolve()) if is_path else ref, profile))
    return loaded


def _interval(text: str) -> float:
    return _duration(text, "--interval", allow_zero=False)


def _duration(text: str, option: str, *, allow_zero: bool) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=f"'{option}'") from exc
    if seconds < 0 or (seconds == 0 and not allow_zero):
        above = "0 or more" if allow_zero else "above 0"
        raise typer.BadParameter(
            f"expected a duration {above}, got {text!r}", param_hint=f"'{option}'"
        )
    return seconds


def _rtu_devices(
    devices: list[tuple[DeviceSpec, str]], unit_id: int, baud: int, parity: str
) -> list[tuple[DeviceSpec, str]]:
    if baud not in BAUD_RATES:
        raise typer.BadParameter(
            f"expected one of the standard baud rates {list(BAUD_RATES)}", param_hint="'--baud'"
        )
    if parity not in ("N", "E", "O"):
        raise typer.BadParameter(f"expected N, E or O, got {parity!r}", param_hint="'--parity'")
    try:
        return rtu_fleet(devices, unit_id)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--unit-id'") from exc


def _check_names(gateway_id: str, broker_host: str) -> None:
    if not re.match(NAME_PATTERN, gateway_id) or len(gateway_id) > 64:
        raise typer.BadParameter(
            f"expected up to 64 letters, digits, '_', '.' or '-' (not first), got {gateway_id!r}",
            param_hint="'--gateway-id'",
        )
    if not broker_host:
        raise typer.BadParameter("expected a host name or address", param_hint="'--broker-host'")


def _write_rtu_config(path: Path, settings: GatewaySettings, force: bool, bus: ConfigBus) -> None:
    write_config_file(path, config_toml(settings, [], bus), force=force)
    typer.echo(f"wrote {path}; run the gateway: streetgate run -c {path}", err=True)


def stop_on_signals() -> asyncio.Event:
    """An event SIGINT and SIGTERM set (call on the running loop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # not on Windows' default loop
            loop.add_signal_handler(sig, stop.set)
    return stop


async def serve_rtu_until_signalled(
    devices: Sequence[tuple[DeviceSpec, str]],
    *,
    baudrate: int,
    parity: Parity,
    turnaround: float,
    link: Path | None,
    settings: GatewaySettings,
    config_path: Path | None,
    force: bool,
) -> None:
    """``sim --rtu``: serve one simulated RTU bus until SIGINT/SIGTERM."""
    write = (
        None if config_path is None else partial(_write_rtu_config, config_path, settings, force)
    )
    await serve_rtu(
        devices,
        baudrate=baudrate,
        parity=parity,
        turnaround=turnaround,
        link=link,
        stop=stop_on_signals(),
        write_config=write,
    )
    typer.echo("stopped", err=True)


async def serve(
    devices: Sequence[tuple[DeviceSpec, str]],
    *,
    host: str,
    base_port: int,
    settings: GatewaySettings,
    config_path: Path | None = None,
    force: bool = False,
    stop: asyncio.Event | None = None,
    started: asyncio.Future[ModbusSimulator] | None = None,
    serial: Sequence[str] = (),
) -> None:
    """Serve ``devices`` and ``serial`` sensors until ``stop`` is set (or SIGINT/SIGTERM).

    ``started`` gets the running simulator once every device listens and the config is written.
    """
    if stop is None:
        stop = stop_on_signals()
    specs = [spec for spec, _ in devices]
    async with (
        ModbusSimulator(specs, host=host, base_port=base_port, history=8) as sim,
        serial_sensors(serial) as sensors,
    ):
        if config_path is not None:
            described = [
                ConfigDevice(spec.name, ref, host, sim[spec.name].port, spec.unit_id)
                for spec, ref in devices
            ]
            text = config_toml(settings, described, serial=sensors)
            # Off the event loop: checking the config reads profile files, then it is written.
            await asyncio.to_thread(write_config_file, config_path, text, force=force)
            typer.echo(
                f"wrote {config_path}; run the gateway: streetgate run -c {config_path}", err=True
            )
        for spec in specs:
            port = sim[spec.name].port
            typer.echo(f"{spec.name}  {spec.profile.name}  {host}:{port}  unit {spec.unit_id}")
        for sensor in sensors:
            typer.echo(describe(sensor))
        typer.echo(f"serving {len(specs) + len(sensors)} device(s); Ctrl-C to stop", err=True)
        if started is not None:
            started.set_result(sim)
        await stop.wait()
    typer.echo("stopped", err=True)


async def serve_fleet(
    gateways: Sequence[FleetGateway],
    *,
    host: str,
    base_port: int,
    settings: GatewaySettings,
    directory: Path,
    force: bool = False,
    stop: asyncio.Event | None = None,
    started: asyncio.Future[ModbusSimulator] | None = None,
) -> None:
    """``sim --fleet``: serve every gateway's devices from this process, on consecutive ports
    from ``base_port``, and write ``<gateway_id>.toml`` per gateway into ``directory``."""
    if stop is None:
        stop = stop_on_signals()
    specs = [device.spec for gateway in gateways for device in gateway.devices]
    async with ModbusSimulator(specs, host=host, base_port=base_port, history=8) as sim:
        refs = [device.profile_ref for gateway in gateways for device in gateway.devices]
        await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
        used = [name for name in FLEET_PROFILES if fleet_profile_file(name) in refs]
        await asyncio.to_thread(write_fleet_profiles, directory, used)
        for gateway in gateways:
            described = [
                ConfigDevice(d.name, d.profile_ref, host, sim[d.spec.name].port, d.spec.unit_id)
                for d in gateway.devices
            ]
            own = replace(
                settings, gateway_id=gateway.gateway_id, outbox=Path(f"{gateway.gateway_id}.db")
            )
            path = directory / f"{gateway.gateway_id}.toml"
            # Off the event loop: checking the config reads profile files, then it is written.
            await asyncio.to_thread(
                write_config_file, path, config_toml(own, described), force=force
            )
            for d in gateway.devices:
                typer.echo(
                    f"{gateway.gateway_id}  {d.name}  {d.spec.profile.name}  {host}:"
                    f"{sim[d.spec.name].port}  unit {d.spec.unit_id}"
                )
        typer.echo(
            f"wrote {len(gateways)} config(s) to {directory}; "
            f"run a gateway each: streetgate run -c {directory}/<gateway_id>.toml",
            err=True,
        )
        typer.echo(
            f"serving {len(specs)} device(s) of {len(gateways)} gateway(s); Ctrl-C to stop",
            err=True,
        )
        if started is not None:
            started.set_result(sim)
        await stop.wait()
    typer.echo("stopped", err=True)


def _fleet_profiles(refs: Sequence[str]) -> list[tuple[str, Profile]]:
    """``--profile`` in fleet mode: the simulator's fleet profiles by name, then the usual ones."""
    loaded = []
    for ref in refs:
        if ref in FLEET_PROFILES:
            loaded.append((fleet_profile_file(ref), load_fleet_profile(ref)))
        else:
            loaded.extend((p.ref, p.profile) for p in _profiles([ref]))
    return loaded


def _run_fleet(
    gateways: int,
    first: int,
    directory: Path | None,
    *,
    profiles: Sequence[str],
    count: int,
    unit_id: int,
    host: str,
    base_port: int,
    settings: GatewaySettings,
    force: bool,
) -> None:
    if directory is None:
        raise typer.BadParameter(
            "--fleet needs a folder for the configs", param_hint="'--fleet-dir'"
        )
    try:
        plan = plan_fleet(
            _fleet_profiles(profiles),
            gateways=gateways,
            devices_per_gateway=count,
            unit_id=unit_id,
            first=first,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--fleet'") from exc
    total = gateways * count
    if base_port and base_port + total - 1 > 65535:
        raise typer.BadParameter(
            f"{total} devices from port {base_port} run past 65535; lower it or use 0",
            param_hint="'--base-port'",
        )
    existing = [g.gateway_id for g in plan if (directory / f"{g.gateway_id}.toml").exists()]
    if existing and not force:
        raise typer.BadParameter(
            f"{directory} already holds {existing[0]}.toml; add --force to overwrite",
            param_hint="'--fleet-dir'",
        )
    try:
        asyncio.run(
            serve_fleet(
                plan,
                host=host,
                base_port=base_port,
                settings=settings,
                directory=directory,
                force=force,
            )
        )
    except KeyboardInterrupt:  # only where signal handlers could not be installed
        pass
    except (WriteConfigError, ConfigError) as exc:
        fail("sim", exc, ExitCode.FAILURE)
    except OSError as exc:
        fail("sim", f"{exc}; for free ports use --base-port 0", ExitCode.FAILURE)


def sim(  # noqa: PLR0917 - one parameter per CLI option
    profile: Annotated[
        list[str] | None,
        typer.Option(
            "--profile",
            "-p",
            help="Built-in profile name or path to a .toml profile; repeat for a mixed fleet "
            "(devices cycle through the profiles). Default: sdm120.",
            show_default=False,
        ),
    ] = None,
    count: Annotated[int, typer.Option(min=1, help="Number of devices.")] = 1,
    host: Annotated[str, typer.Option(help="Address the devices listen on.")] = "127.0.0.1",
    base_port: Annotated[
        int,
        typer.Option(
            min=0, max=65535, help="Port of the first device, the next ones follow; 0: free ports."
        ),
    ] = 5020,
    unit_id: Annotated[int, typer.Option(min=0, max=255, help="Modbus unit id.")] = 1,
    interval: Annotated[
        str, typer.Option(help="Poll interval written to the config (e.g. 500ms, 1s, 1m).")
    ] = "1s",
    write_config: Annotated[
        Path | None,
        typer.Option(help="Write a gateway config (TOML) for the devices.", dir_okay=False),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite the --write-config file.")
    ] = False,
    broker_host: Annotated[str, typer.Option(help="MQTT broker host for the config.")] = (
        "127.0.0.1"
    ),
    broker_port: Annotated[
        int, typer.Option(min=1, max=65535, help="MQTT broker port for the config.")
    ] = 1883,
    gateway_id: Annotated[str, typer.Option(help="gateway_id for the config.")] = "sim-gateway",
    outbox: Annotated[
        Path, typer.Option(help="Outbox path for the config (relative to the config file).")
    ] = Path("outbox.db"),
    rtu: Annotated[
        bool,
        typer.Option(
            "--rtu",
            help="Modbus RTU units on one virtual serial port (ids from --unit-id up) "
            "instead of Modbus TCP devices.",
        ),
    ] = False,
    baud: Annotated[int, typer.Option(help="RTU: baud rate of the bus.")] = 19200,
    parity: Annotated[str, typer.Option(help="RTU: parity, N, E or O.")] = "N",
    turnaround: Annotated[
        str, typer.Option(help="RTU: each unit's processing time before it answers (e.g. 5ms).")
    ] = "0s",
    link: Annotated[
        Path | None,
        typer.Option(
            help="RTU: the port's path, a symlink to the pty kept across restarts "
            "(default: one in a temporary folder).",
            dir_okay=False,
        ),
    ] = None,
    serial: Annotated[
        list[str] | None,
        typer.Option(
            "--serial",
            help=f"A serial sensor on a virtual serial port, one of {', '.join(SERIAL_KINDS)}; "
            "repeat for more. Without --profile, only serial sensors are served.",
            show_default=False,
        ),
    ] = None,
    fleet_size: Annotated[
        int | None,
        typer.Option(
            "--fleet",
            min=1,
            help="Fleet mode: the devices of this many gateways (--count each, through "
            "--profile; 'holding10' is ten holding registers), a config each in --fleet-dir.",
            show_default=False,
        ),
    ] = None,
    fleet_dir: Annotated[
        Path | None,
        typer.Option(help="Fleet mode: folder for the configs fleet-NNN.toml.", file_okay=False),
    ] = None,
    fleet_first: Annotated[
        int, typer.Option(min=1, help="Fleet mode: number of the first gateway (fleet-NNN).")
    ] = 1,
) -> None:
    """Serve simulated devices (Modbus TCP; RTU with --rtu; serial sensors with --serial).

    Runs until Ctrl-C; --write-config writes a gateway config for them; --fleet serves
    the devices of many gateways and writes a config for each.
    """
    settings = GatewaySettings(gateway_id, broker_host, broker_port, outbox, _interval(interval))
    _check_names(gateway_id, broker_host)
    if fleet_size is not None:
        if rtu or serial or write_config is not None:
            raise typer.BadParameter(
                "cannot be combined with --rtu, --serial or --write-config", param_hint="'--fleet'"
            )
        _run_fleet(
            fleet_size,
            fleet_first,
            fleet_dir,
            profiles=profile or ["sdm120"],
            count=count,
            unit_id=unit_id,
            host=host,
            base_port=base_port,
            settings=settings,
            force=force,
        )
        return
    profiles = _profiles(profile or ["sdm120"])
    if base_port and base_port + count - 1 > 65535:
        raise typer.BadParameter(
            f"{count} devices from port {base_port} run past 65535; lower it or use 0",
            param_hint="'--base-port'",
        )
    if write_config is not None and write_config.exists() and not force:
        raise typer.BadParameter(
            f"{write_config} exists; add --force to overwrite it", param_hint="'--write-config'"
        )
    for kind in serial or ():
        if kind not in SERIAL_KINDS:
            raise typer.BadParameter(
                f"expected one of {', '.join(SERIAL_KINDS)}, got {kind!r}", param_hint="'--serial'"
            )
    if serial and rtu:
        raise typer.BadParameter(
            "cannot be combined with --rtu; serve them from a second `streetgate sim --serial`",
            param_hint="'--serial'",
        )
    devices = [] if serial and profile is None else fleet(profiles, count, unit_id)
    if rtu:
        devices = _rtu_devices(devices, unit_id, baud, parity)
    turnaround_s = _duration(turnaround, "--turnaround", allow_zero=True)
    try:
        # An RTU bus's frame timing needs timers finer than the default loop's millisecond.
        with asyncio.Runner(loop_factory=precise_timer_loop if rtu else None) as runner:
            runner.run(
                serve_rtu_until_signalled(
                    devices,
                    baudrate=baud,
                    parity=cast(Parity, parity),
                    turnaround=turnaround_s,
                    link=link,
                    settings=settings,
                    config_path=write_config,
                    force=force,
                )
                if rtu
                else serve(
                    devices,
                    host=host,
                    base_port=base_port,
                    settings=settings,
                    config_path=write_config,
                    force=force,
                    serial=serial or (),
                )
            )
    except KeyboardInterrupt:  # only where signal handlers could not be installed
        pass
    except (WriteConfigError, ConfigError) as exc:  # ConfigError: a bug, it must always load
        fail("sim", exc, ExitCode.FAILURE)
    except OSError as exc:
        hint = "" if rtu else "; for free ports use --base-port 0"
        fail("sim", f"{exc}{hint}", ExitCode.FAILURE)
