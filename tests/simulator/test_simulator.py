"""The device simulator: its values, its Modbus TCP servers and the ``streetgate sim`` command."""

from __future__ import annotations

import asyncio
import itertools
import math
import re
import signal
import socket
import time
from pathlib import Path

import pytest
import typer
from pymodbus.client import AsyncModbusTcpClient
from typer.testing import CliRunner

from drivers import build_driver
from drivers.modbus.tcp import ModbusTcpDriver
from drivers.profile import Profile, builtin_profiles, load_profile, parse_profile
from gateway.config.model import ModbusTcpDevice, load_config
from gateway.core.errors import (
    ConfigError,
    DeviceUnreachable,
    ModbusExceptionCode,
    WriteConfigError,
)
from simulator.cli import (
    ConfigDevice,
    GatewaySettings,
    SimProfile,
    config_toml,
    fleet,
    serve,
    sim,
    write_config_file,
)
from simulator.modbus_server import DeviceSpec, ModbusSimulator, SimulatedDevice
from simulator.values import DeviceValues, Kind, classify, encode_metric, value_range
from tests.support.simcli import sim_process

PROFILES = {name: load_profile(name) for name in builtin_profiles()}


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def served_series(profile: Profile, seed: str, times: list[float]) -> dict[str, list[float]]:
    """What a device would put on the wire at each time, decoded as the gateway decodes it."""
    values = DeviceValues(profile, seed)
    series: dict[str, list[float]] = {m.name: [] for m in profile.metrics}
    for t in times:
        for metric in profile.metrics:
            series[metric.name].append(values.encode(metric, t)[1])
    return series


# --- values ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_values_are_deterministic_per_seed_and_time(name: str) -> None:
    times = [0.0, 0.05, 1.0, 2.5, 2.5, 61.0, 3600.0, 90_000.0]
    first = served_series(PROFILES[name], "a", times)
    assert served_series(PROFILES[name], "a", times) == first
    assert served_series(PROFILES[name], "b", times) != first


def test_every_builtin_metric_gets_a_specific_generator() -> None:
    kinds = {m.name: classify(m) for p in PROFILES.values() for m in p.metrics}
    assert Kind.UNKNOWN not in kinds.values()
    assert kinds["total_active_energy"] is Kind.ENERGY_TOTAL
    assert kinds["neutral_current"] is Kind.NEUTRAL_CURRENT
    assert kinds["temperature"] is Kind.TEMPERATURE


def test_meter_values_are_plausible_over_a_day() -> None:
    times = [i * 53.0 for i in range(815)]  # half a day, at an odd step
    for profile in (PROFILES["sdm120"], PROFILES["sdm630"]):
        series = served_series(profile, "plausible", times)
        for metric in profile.metrics:
            values = series[metric.name]
            kind = classify(metric)
            if kind is Kind.VOLTAGE:
                assert all(224 < v < 236 for v in values), metric.name
            elif kind is Kind.FREQUENCY:
                assert all(49.95 <= v <= 50.05 for v in values)
            elif kind is Kind.POWER_FACTOR:
                assert all(0.85 <= v <= 1.0 for v in values), metric.name
            elif kind in {Kind.CURRENT, Kind.ACTIVE_POWER, Kind.APPARENT_POWER}:
                assert all(v > 0 for v in values), metric.name
            assert len(set(values)) > 100, f"{metric.name} hardly changes"
        for phases in (["active_power"], ["l1_active_power", "l2_active_power", "l3_active_power"]):
            if all(p in series for p in phases) and "total_active_power" in series:
                for i, total in enumerate(series["total_active_power"]):
                    assert math.isclose(total, sum(series[p][i] for p in phases), rel_tol=1e-5)
        for i, apparent in enumerate(series.get("apparent_power", [])):
            assert apparent >= series["active_power"][i]


def test_energy_counters_never_decrease_and_follow_power() -> None:
    profile = PROFILES["sdm630"]
    values = DeviceValues(profile, "energy")
    metrics = {m.name: m for m in profile.metrics}
    # Irregular reads: sub-second, repeated, a step backwards, and a gap longer than a week.
    times = [0.0, 0.3, 0.3, 0.9, 5.0, 4.0, 60.0, 61.5, 3600.0, 3600.0 + 700_000.0]
    times += [times[-1] + 0.7 * i for i in range(1, 200)]
    counters = ("import_active_energy", "export_active_energy", "total_active_energy")
    served: dict[str, list[float]] = {name: [] for name in counters}
    for t in times:  # the order reads come in
        for name in counters:
            served[name].append(values.encode(metrics[name], t)[1])
    for name, series in served.items():
        assert all(b >= a for a, b in itertools.pairwise(series)), name
        assert series[-1] > series[0], name
    # Over an hour the import counter grows by the energy the active power amounts to.
    fresh = DeviceValues(profile, "energy")
    start = fresh.value("import_active_energy", 0.0)
    power = [fresh.total_power(float(t)) for t in range(3600)]
    grown = fresh.value("import_active_energy", 3600.0) - start
    assert grown == pytest.approx(sum(power) / 3.6e6, rel=0.01)


def test_climate_values_drift_slowly_within_bounds() -> None:
    profile = PROFILES["xy-md02"]
    times = [float(t) for t in range(0, 3 * 86_400, 30)]
    series = served_series(profile, "climate", times)
    temperature, humidity = series["temperature"], series["humidity"]
    assert all(5.0 <= v <= 30.0 for v in temperature)
    assert all(30.0 <= v <= 95.0 for v in humidity)
    assert max(abs(b - a) for a, b in itertools.pairwise(temperature)) < 1.0
    assert max(temperature) - min(temperature) > 2.0  # it does move
    assert all(round(v * 10) == pytest.approx(v * 10, abs=1e-6) for v in temperature)  # 0.1 steps


def test_unknown_metrics_walk_within_what_their_type_holds() -> None:
    profile = parse_profile(
        {
            "name": "odd",
            "metrics": [
                {"name": "mystery", "address": 0},  # uint16: walks in 0..100
                {"name": "offset", "address": 1, "offset": 500.0},  # cannot hold 0..100
                {"name": "tiny", "address": 2, "type": "int16", "scale": 0.001, "unit": "x"},
            ],
        },
        "test",
    )
    series = served_series(profile, "odd", [float(t) for t in range(0, 20_000, 7)])
    assert all(0 <= v <= 100 for v in series["mystery"])
    assert len(set(series["mystery"])) > 10
    lo, hi = value_range(profile.metrics[1])
    assert (lo, hi) == (500.0, 66035.0)
    assert all(lo <= v <= hi for v in series["offset"])
    assert all(0 <= v <= 32.767 for v in series["tiny"])


def test_encode_clamps_integers_and_rounds_float32() -> None:
    temperature = PROFILES["xy-md02"].metrics[0]  # int16 x 0.1
    registers, served = encode_metric(temperature, 1e9)
    assert registers == [0x7FFF]
    assert served == pytest.approx(3276.7)
    registers, served = encode_metric(temperature, -20.54)
    assert registers == [0xFF33]
    assert served == pytest.approx(-20.5)
    voltage = PROFILES["sdm120"].metrics[0]  # float32
    registers, served = encode_metric(voltage, 230.1)
    assert registers == [0x4366, 0x199A]
    assert served == pytest.approx(230.1, abs=1e-5)
    assert encode_metric(voltage, served)[0] == registers  # what was served encodes the same


# --- servers ---------------------------------------------------------------------------------


def test_served_values_are_the_seeded_ones_at_the_injected_time() -> None:
    async def scenario() -> None:
        clock = FakeClock(5000.0)
        specs = [DeviceSpec("meter", PROFILES["sdm630"], seed=42)]
        async with ModbusSimulator(specs, clock=clock, history=3) as sim:
            device = sim["meter"]
            expected = DeviceValues(PROFILES["sdm630"], 42)
            async with ModbusTcpDriver(device.gateway_config(timeout=1.0)) as driver:
                for t in (0.0, 1.5, 3.0, 600.0, 601.0):
                    clock.now = 5000.0 + t
                    for sample in await driver.poll():
                        metric = next(m for m in device.profile.metrics if m.name == sample.metric)
                        assert sample.value == expected.encode(metric, t)[1]
            assert len(device.served("l1_voltage")) == 3  # capped history
            assert (
                device.served("frequency")[-1]
                == expected.encode(
                    next(m for m in device.profile.metrics if m.name == "frequency"), 601.0
                )[1]
            )

    asyncio.run(scenario())


def test_every_register_of_the_read_plan_is_readable_and_others_are_not() -> None:
    async def scenario() -> None:
        async with ModbusSimulator([DeviceSpec("m", PROFILES["sdm120"], unit_id=3)]) as sim:
            device = sim["m"]
            client = AsyncModbusTcpClient(device.host, port=device.port, retries=0, timeout=1)
            await client.connect()
            try:
                for block in device.plan:
                    for address in range(block.address, block.address + block.count):
                        rr = await client.read_input_registers(address, count=1, device_id=3)
                        assert not rr.isError(), address
                outside = device.plan[-1].address + device.plan[-1].count
                rr = await client.read_input_registers(outside, count=1, device_id=3)
                assert rr.isError()
                assert rr.exception_code == ModbusExceptionCode.ILLEGAL_DATA_ADDRESS
                rr = await client.read_holding_registers(0, count=1, device_id=3)
                assert rr.exception_code == ModbusExceptionCode.ILLEGAL_DATA_ADDRESS
            finally:
                client.close()

    asyncio.run(scenario())


def test_fleet_of_200_devices_in_one_process() -> None:
    async def scenario() -> None:
        names = sorted(PROFILES)
        specs = [DeviceSpec(f"dev-{i}", PROFILES[names[i % 3]]) for i in range(200)]
        started = time.monotonic()
        async with ModbusSimulator(specs) as sim:
            assert len(set(sim.ports.values())) == 200
            results: dict[str, int] = {}

            async def poll(device: SimulatedDevice) -> None:
                async with build_driver(device.gateway_config(timeout=5.0)) as driver:
                    samples = await driver.poll()
                assert all(device.was_served(s.metric, s.value) for s in samples)
                results[device.name] = len(samples)

            async with asyncio.TaskGroup() as tg:
                for device in sim:
                    tg.create_task(poll(device), name=f"test:poll:{device.name}")
            assert sorted(results) == sorted(s.name for s in specs)
            ports = list(sim.ports.values())
        assert time.monotonic() - started < 20
        with pytest.raises(DeviceUnreachable):  # everything was shut down
            async with build_driver(sim["dev-0"].gateway_config(timeout=1.0)):
                pass
        assert len(ports) == 200

    asyncio.run(scenario())


def test_base_port_and_restart_on_the_same_port() -> None:
    async def scenario() -> None:
        with socket.socket() as probe:  # a port the OS says is free
            probe.bind(("127.0.0.1", 0))
            free = probe.getsockname()[1]
        async with ModbusSimulator([DeviceSpec("a", PROFILES["xy-md02"])], base_port=free) as sim:
            device = sim["a"]
            assert device.port == free
            await device.stop()
            assert not device.running
            with pytest.raises(DeviceUnreachable):
                async with build_driver(device.gateway_config(timeout=1.0)):
                    pass
            await device.start()
            assert device.running
            assert device.port == free
            async with build_driver(device.gateway_config(timeout=1.0)) as driver:
                assert len(await driver.poll()) == 2

    asyncio.run(scenario())


def test_simulator_rejects_bad_setups() -> None:
    spec = DeviceSpec("same", PROFILES["xy-md02"])
    with pytest.raises(ValueError, match="unique"):
        ModbusSimulator([spec, spec])
    with pytest.raises(ValueError, match="65535"):
        ModbusSimulator([spec, DeviceSpec("b", PROFILES["xy-md02"])], base_port=65535)

    async def scenario() -> None:
        async with ModbusSimulator([spec]) as sim:
            with pytest.raises(ValueError, match="UNKNOWN"):
                sim["same"].fail_with(ModbusExceptionCode.UNKNOWN)
            with pytest.raises(ValueError, match=">= 0"):
                sim["same"].slow_down(-1)
            taken = sim["same"].port
            with pytest.raises(OSError, match="cannot listen"):
                async with ModbusSimulator([DeviceSpec("x", PROFILES["xy-md02"])], base_port=taken):
                    pass

    asyncio.run(scenario())


# --- streetgate sim --------------------------------------------------------------------------


def test_fleet_cycles_profiles_and_numbers_devices_per_profile() -> None:
    profiles = [
        SimProfile("sdm120", PROFILES["sdm120"]),
        SimProfile("xy-md02", PROFILES["xy-md02"]),
    ]
    devices = fleet(profiles, 5, unit_id=3)
    assert [(spec.name, ref) for spec, ref in devices] == [
        ("sim-sdm120-1", "sdm120"),
        ("sim-xy-md02-1", "xy-md02"),
        ("sim-sdm120-2", "sdm120"),
        ("sim-xy-md02-2", "xy-md02"),
        ("sim-sdm120-3", "sdm120"),
    ]
    assert {spec.unit_id for spec, _ in devices} == {3}


def test_written_config_loads_and_is_not_overwritten_without_force(tmp_path: Path) -> None:
    settings = GatewaySettings('gw-"1"', "broker.local", 8883, Path("data/outbox.db"), 0.25)
    devices = [
        ConfigDevice("sim-sdm120-1", "sdm120", "127.0.0.1", 5020, 1),
        ConfigDevice("sim-xy-md02-1", "xy-md02", "127.0.0.1", 5021, 7),
    ]
    path = tmp_path / "gw.toml"
    with pytest.raises(ConfigError, match="gateway_id"):  # caught before anything is written
        write_config_file(path, config_toml(settings, devices), force=False)
    assert not path.exists()
    settings = GatewaySettings("gw-1", "broker.local", 8883, Path("data/outbox.db"), 0.25)
    write_config_file(path, config_toml(settings, devices), force=False)
    config = load_config(path)
    assert config.gateway_id == "gw-1"
    assert (config.mqtt.host, config.mqtt.port) == ("broker.local", 8883)
    assert config.outbox.path == tmp_path / "data" / "outbox.db"
    assert [(d.name, d.port, d.unit_id, d.profile.name, d.interval) for d in config.devices] == [
        ("sim-sdm120-1", 5020, 1, "sdm120", 0.25),
        ("sim-xy-md02-1", 5021, 7, "xy-md02", 0.25),
    ]
    with pytest.raises(WriteConfigError, match="--force"):
        write_config_file(path, config_toml(settings, devices[:1]), force=False)
    assert len(load_config(path).devices) == 2
    write_config_file(path, config_toml(settings, devices[:1]), force=True)
    assert len(load_config(path).devices) == 1


def sim_app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """Keep ``sim`` a subcommand, as in the real CLI."""

    app.command("sim")(sim)
    return app


def flat(text: str) -> str:
    """Error text without rich's box drawing and line wrapping."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--profile", "nope"], "Invalid value for '--profile': no built-in profile named 'nope'"),
        (["--profile", "missing.toml"], "'--profile'"),
        (["--count", "0"], "Invalid value for '--count'"),
        (["--interval", "5x"], "Invalid value for '--interval': expected a duration such as"),
        (["--interval", "0s"], "Invalid value for '--interval': expected a duration above 0"),
        (["--gateway-id", "bad id"], "Invalid value for '--gateway-id'"),
        (["--base-port", "65530", "--count", "10"], "Invalid value for '--base-port'"),
        (["--unit-id", "256"], "Invalid value for '--unit-id'"),
    ],
)
def test_sim_rejects_bad_options(args: list[str], expected: str) -> None:
    result = CliRunner().invoke(sim_app(), ["sim", *args])
    assert result.exit_code == 2, result.output
    assert expected in flat(result.stderr)


def test_sim_refuses_to_overwrite_a_config(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text("keep me")
    result = CliRunner().invoke(sim_app(), ["sim", "--base-port", "0", "--write-config", str(path)])
    assert result.exit_code == 2
    assert "'--write-config'" in flat(result.stderr)
    assert "--force" in flat(result.stderr)
    assert path.read_text() == "keep me"


def test_serve_writes_config_and_serves_until_stopped(tmp_path: Path) -> None:
    async def scenario() -> None:
        profiles = [SimProfile("sdm630", PROFILES["sdm630"])]
        stop = asyncio.Event()
        started: asyncio.Future[ModbusSimulator] = asyncio.get_running_loop().create_future()
        path = tmp_path / "gw.toml"
        task = asyncio.create_task(
            serve(
                fleet(profiles, 2, 1),
                host="127.0.0.1",
                base_port=0,
                settings=GatewaySettings(),
                config_path=path,
                stop=stop,
                started=started,
            ),
            name="test:sim",
        )
        sim = await asyncio.wait_for(started, 10)
        config = await asyncio.to_thread(load_config, path)
        for device in config.devices:
            assert isinstance(device, ModbusTcpDevice)
            assert device.port == sim[device.name].port
            async with build_driver(device) as driver:
                samples = await driver.poll()
            assert all(sim[device.name].was_served(s.metric, s.value) for s in samples)
        stop.set()
        await asyncio.wait_for(task, 10)
        device = config.devices[0]
        assert isinstance(device, ModbusTcpDevice)
        with pytest.raises(DeviceUnreachable):
            async with build_driver(device):
                pass

    asyncio.run(scenario())


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_sim_command_serves_until_signalled(tmp_path: Path, stop_signal: signal.Signals) -> None:
    async def scenario() -> None:
        path = tmp_path / "gw.toml"
        async with sim_process(
            *("--profile", "xy-md02", "--profile", "sdm120", "--count", "3"),
            *("--base-port", "0", "--unit-id", "5", "--write-config", str(path)),
            lines=3,
            stop=stop_signal,
        ) as sim:
            lines = sim.lines
            assert [line[:2] for line in lines] == [
                ["sim-xy-md02-1", "xy-md02"],
                ["sim-sdm120-1", "sdm120"],
                ["sim-xy-md02-2", "xy-md02"],
            ]
            assert all(line[3:] == ["unit", "5"] for line in lines)
            config = await asyncio.to_thread(load_config, path)
            assert [f"{d.host}:{d.port}" for d in config.devices] == [line[2] for line in lines]
            for device in config.devices:
                assert isinstance(device, ModbusTcpDevice)
                async with build_driver(device) as driver:
                    assert len(await driver.poll()) == len(device.profile.metrics)
        assert sim.returncode == 0, sim.stderr
        assert "Traceback" not in sim.stderr
        assert "stopped" in sim.stderr

    asyncio.run(scenario())
