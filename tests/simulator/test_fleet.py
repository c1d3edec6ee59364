"""``streetgate sim --fleet``: many gateways' devices in one process, a config per gateway."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path

import pytest
import typer
from pymodbus.client import AsyncModbusTcpClient
from typer.testing import CliRunner

from drivers import build_driver
from drivers.profile import load_profile
from gateway.config.model import ModbusTcpDevice, load_config
from simulator.cli import GatewaySettings, serve_fleet, sim
from simulator.fleet import (
    fleet_gateway_id,
    fleet_profile_file,
    load_fleet_profile,
    plan_fleet,
)
from simulator.modbus_server import ModbusSimulator
from tests.support.simcli import sim_process

HOLDING10 = (fleet_profile_file("holding10"), load_fleet_profile("holding10"))
SDM630 = ("sdm630", load_profile("sdm630"))


def free_port_block(size: int) -> int:
    """The first of ``size`` consecutive loopback ports that are all free right now."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first = int(probe.getsockname()[1])
        if first + size > 65535:
            continue
        with contextlib.ExitStack() as stack:
            try:
                for port in range(first, first + size):
                    sock = stack.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return first
    raise RuntimeError(f"no {size} consecutive free ports found")


def test_holding10_is_ten_holding_registers_in_one_request() -> None:
    profile = HOLDING10[1]
    assert [m.name for m in profile.metrics] == [f"r{i}" for i in range(10)]
    assert [m.address for m in profile.metrics] == list(range(10))
    assert {m.function.value for m in profile.metrics} == {"holding"}


def test_plan_numbers_gateways_and_keeps_device_names_per_gateway() -> None:
    plan = plan_fleet([HOLDING10, SDM630], gateways=3, devices_per_gateway=3, first=7)
    assert [g.gateway_id for g in plan] == ["fleet-007", "fleet-008", "fleet-009"]
    for gateway in plan:
        assert [d.name for d in gateway.devices] == [
            "sim-holding10-1",
            "sim-sdm630-1",
            "sim-holding10-2",
        ]
        assert [d.profile_ref for d in gateway.devices] == [
            "holding10.toml",
            "sdm630",
            "holding10.toml",
        ]
        assert all(d.spec.name == f"{gateway.gateway_id}.{d.name}" for d in gateway.devices)
    specs = [d.spec.name for g in plan for d in g.devices]
    assert len(set(specs)) == len(specs) == 9


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"gateways": 0, "devices_per_gateway": 1}, "at least 1 gateway"),
        ({"gateways": 1, "devices_per_gateway": 0}, "at least 1 device"),
        ({"gateways": 5, "devices_per_gateway": 1, "first": 996}, "996..1000"),
    ],
)
def test_plan_rejects_bad_sizes(kwargs: dict[str, int], expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        plan_fleet([HOLDING10], **kwargs)
    with pytest.raises(ValueError, match="0"):
        fleet_gateway_id(0)


def test_fleet_of_3_serves_consecutive_ports_and_writes_a_config_each(tmp_path: Path) -> None:
    """Three gateways of one holding10 device and one SDM630: each gateway's config loads,
    points at its own devices, and one register read from each returns what was served."""

    async def scenario() -> None:
        plan = plan_fleet([HOLDING10, SDM630], gateways=3, devices_per_gateway=2)
        base = free_port_block(6)
        stop = asyncio.Event()
        started: asyncio.Future[ModbusSimulator] = asyncio.get_running_loop().create_future()
        settings = GatewaySettings(broker_port=18830, interval=0.5)
        task = asyncio.create_task(
            serve_fleet(
                plan,
                host="127.0.0.1",
                base_port=base,
                settings=settings,
                directory=tmp_path / "fleet",
                stop=stop,
                started=started,
            ),
            name="test:fleet",
        )
        sim = await asyncio.wait_for(started, 20)
        assert sorted(sim.ports.values()) == list(range(base, base + 6))
        read_values = []
        for gateway in plan:
            path = tmp_path / "fleet" / f"{gateway.gateway_id}.toml"
            config = await asyncio.to_thread(load_config, path)
            assert config.gateway_id == gateway.gateway_id
            assert config.mqtt.port == 18830
            assert config.outbox.path == (tmp_path / "fleet" / f"{gateway.gateway_id}.db")
            holding, meter = config.devices
            assert isinstance(holding, ModbusTcpDevice)
            assert isinstance(meter, ModbusTcpDevice)
            assert holding.port == sim[f"{gateway.gateway_id}.sim-holding10-1"].port
            assert meter.port == sim[f"{gateway.gateway_id}.sim-sdm630-1"].port
            # One register, read with a plain Modbus client as any gateway would.
            client = AsyncModbusTcpClient(holding.host, port=holding.port)
            await client.connect()
            try:
                answer = await client.read_holding_registers(3, count=1, device_id=1)
            finally:
                client.close()
            assert not answer.isError()
            value = answer.registers[0]
            assert sim[f"{gateway.gateway_id}.sim-holding10-1"].was_served("r3", value)
            read_values.append(value)
            async with build_driver(meter) as driver:
                samples = await driver.poll()
            assert len(samples) == len(SDM630[1].metrics)
        assert len(set(read_values)) > 1, "gateways' devices should not serve identical values"
        stop.set()
        await asyncio.wait_for(task, 10)

    asyncio.run(scenario())


def sim_app() -> typer.Typer:
    app = typer.Typer()
    app.command("sim")(sim)

    @app.command("other")
    def _other() -> None:  # two commands: typer keeps "sim" as a subcommand name
        pass

    return app


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--fleet", "2"], "--fleet-dir"),
        (["--fleet", "2", "--fleet-dir", "d", "--rtu"], "--rtu"),
        (["--fleet", "2", "--fleet-dir", "d", "--profile", "nope"], "nope"),
        (["--fleet", "5", "--fleet-dir", "d", "--fleet-first", "996"], "996..1000"),
        (["--fleet", "400", "--fleet-dir", "d", "--count", "200"], "lower it or use 0"),
    ],
)
def test_sim_fleet_rejects_bad_options(args: list[str], expected: str) -> None:
    result = CliRunner().invoke(sim_app(), ["sim", *args])
    assert result.exit_code == 2, result.output
    assert expected in " ".join(result.stderr.split())


def test_sim_fleet_refuses_to_overwrite_configs(tmp_path: Path) -> None:
    (tmp_path / "fleet-002.toml").write_text("keep me")
    args = ["sim", "--fleet", "2", "--fleet-dir", str(tmp_path), "--base-port", "0"]
    result = CliRunner().invoke(sim_app(), args)
    assert result.exit_code == 2
    assert "fleet-002.toml" in result.stderr
    assert (tmp_path / "fleet-002.toml").read_text() == "keep me"


def test_sim_fleet_command(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with sim_process(
            *("--fleet", "3", "--profile", "holding10", "--count", "1", "--base-port", "0"),
            *("--fleet-dir", str(tmp_path), "--broker-port", "1884"),
            lines=3,
        ) as sim:
            assert [line[:3] for line in sim.lines] == [
                [f"fleet-00{n}", "sim-holding10-1", "holding10"] for n in (1, 2, 3)
            ]
            for n, line in enumerate(sim.lines, start=1):
                config = await asyncio.to_thread(load_config, tmp_path / f"fleet-00{n}.toml")
                (device,) = config.devices
                assert isinstance(device, ModbusTcpDevice)
                assert f"{device.host}:{device.port}" == line[3]
                assert config.mqtt.port == 1884
                async with build_driver(device) as driver:
                    assert len(await driver.poll()) == 10
        assert sim.returncode == 0, sim.stderr
        assert "Traceback" not in sim.stderr

    asyncio.run(scenario())
