"""``streetgate doctor``'s device lines: one real read of each device, against the simulators."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from drivers.ble.common import BleBackends
from drivers.profile import load_profile
from gateway.cli.exit_codes import ExitCode
from gateway.cli.main import app
from gateway.config.model import load_config
from gateway.core.errors import ModbusExceptionCode
from gateway.diagnostics.device_checks import (
    BUDGET_CAP,
    BUDGET_FLOOR,
    DeviceCheckSetup,
    device_check_setup,
    device_checks,
    read_budget,
)
from gateway.diagnostics.doctor import CheckResult
from gateway.runtime.state_file import state_path, write_state
from simulator.ble import BleSimulator, SimBthome, SimGattPeripheral
from simulator.broker import free_port
from simulator.modbus_rtu_server import ModbusRtuSimulator
from simulator.modbus_server import DeviceSpec, ModbusSimulator
from simulator.serial_sensors import Sds011Sim
from tests.support.sim_thread import in_thread

HEAD = (
    'gateway_id = "gw"\n[mqtt]\nhost = "127.0.0.1"\nport = {port}\n[outbox]\npath = "outbox.db"\n'
)


def write_config(tmp_path: Path, devices: str) -> Path:
    path = tmp_path / "gw.toml"
    path.write_text(HEAD.format(port=free_port()) + devices)
    return path


def modbus_tcp(name: str, port: int, *, unit_id: int = 1, profile: str = "sdm120") -> str:
    return (
        f'\n[[devices]]\nkind = "modbus_tcp"\nname = "{name}"\nhost = "127.0.0.1"\n'
        f'port = {port}\nunit_id = {unit_id}\nprofile = "{profile}"\ntimeout = "500ms"\n'
    )


def doctor(config: Path, *extra: str) -> Result:
    return CliRunner().invoke(app, ["doctor", "-c", str(config), "--timeout", "1", *extra])


def device_lines(result: Result) -> dict[str, dict[str, Any]]:
    data = json.loads(result.stdout)
    return {c["name"]: c for c in data["checks"] if c["name"].startswith("device:")}


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never says a word."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server.getsockname()[1]


def test_budget_comes_from_the_device_timeout_within_bounds() -> None:
    assert read_budget(1.0, 3) == 4.0
    assert read_budget(0.1, 1) == BUDGET_FLOOR
    assert read_budget(30.0, 5) == BUDGET_CAP


def test_two_of_three_modbus_tcp_devices_unreachable(tmp_path: Path, silent_server: int) -> None:
    specs = [DeviceSpec("meter", load_profile("sdm120"))]
    with in_thread(lambda: ModbusSimulator(specs)) as sim:
        config = write_config(
            tmp_path,
            modbus_tcp("meter", sim["meter"].port)
            + modbus_tcp("meter-2", free_port())
            + modbus_tcp("meter-3", silent_server),
        )
        text = doctor(config)
        result = doctor(config, "--json")
        voltages = sim["meter"].served("voltage")
    assert text.exit_code == ExitCode.FAILURE
    lines = text.stdout.splitlines()
    ok = next(line for line in lines if "device:meter " in line)
    assert ok.startswith("PASS")
    value = float(ok.split("voltage = ")[1].split()[0])
    assert any(value == pytest.approx(v, rel=1e-5) for v in voltages)
    assert "devices: 1 of 3 read, 2 failed" in text.stderr
    assert "device:meter-2" in text.stderr.splitlines()[-1]
    found = device_lines(result)
    assert list(found) == ["device:meter", "device:meter-2", "device:meter-3"]
    refused = found["device:meter-2"]
    assert not refused["ok"]
    assert "connection refused" in refused["detail"]
    assert "nothing listens" in refused["hint"]
    silent = found["device:meter-3"]
    assert not silent["ok"]
    assert "connected, but no answer" in silent["detail"]
    assert "unit_id" in silent["hint"]


def test_modbus_exception_and_wrong_unit_id_hints(tmp_path: Path) -> None:
    specs = [
        DeviceSpec("meter", load_profile("sdm120")),
        DeviceSpec("env", load_profile("xy-md02"), unit_id=3),
    ]
    with in_thread(lambda: ModbusSimulator(specs)) as sim:
        sim["meter"].fail_with(ModbusExceptionCode.ILLEGAL_DATA_ADDRESS)
        config = write_config(
            tmp_path,
            modbus_tcp("meter", sim["meter"].port)
            + modbus_tcp("env", sim["env"].port, unit_id=9, profile="xy-md02"),
        )
        found = device_lines(doctor(config, "--json"))
    meter = found["device:meter"]
    assert "ILLEGAL_DATA_ADDRESS" in meter["detail"]
    assert "profile 'sdm120'" in meter["hint"]
    env = found["device:env"]  # the simulator answers like a TCP gateway with no such unit
    assert "GATEWAY_TARGET_NO_RESPONSE" in env["detail"]
    assert "unit 9" in env["hint"]
    assert "unit_id" in env["hint"]


def rtu_bus(path: str, units: list[tuple[str, int, str]]) -> str:
    text = (
        f'\n[[devices]]\nkind = "modbus_rtu"\nname = "bus"\nport = "{path}"\n'
        'baudrate = 19200\ntimeout = "300ms"\n'
    )
    for name, unit_id, profile in units:
        text += f'[[devices.units]]\nname = "{name}"\nunit_id = {unit_id}\nprofile = "{profile}"\n'
    return text


def test_rtu_units_ok_silent_and_crc_errors(tmp_path: Path) -> None:
    units = [
        DeviceSpec("env", load_profile("xy-md02"), unit_id=3),
        DeviceSpec("meter", load_profile("sdm120"), unit_id=7),
        DeviceSpec("noisy", load_profile("xy-md02"), unit_id=5),
        DeviceSpec("babble", load_profile("xy-md02"), unit_id=6),
    ]
    with in_thread(lambda: ModbusRtuSimulator(units)) as sim:
        sim["meter"].go_silent()
        sim["noisy"].answer_bad_crc()
        sim["babble"].answer_garbage()
        config = write_config(
            tmp_path,
            rtu_bus(
                sim.path,
                [
                    ("env", 3, "xy-md02"),
                    ("meter", 7, "sdm120"),
                    ("noisy", 5, "xy-md02"),
                    ("babble", 6, "xy-md02"),
                ],
            ),
        )
        found = device_lines(doctor(config, "--json"))
        temperatures = sim["env"].served("temperature")
    env = found["device:env"]
    assert env["ok"], env
    assert "temperature = " in env["detail"]
    shown = float(env["detail"].split("temperature = ")[1].split()[0])
    assert any(shown == pytest.approx(t, rel=1e-5) for t in temperatures)
    meter = found["device:meter"]
    assert not meter["ok"]
    assert "slave id" in meter["hint"]
    assert "baudrate 19200" in meter["hint"]
    noisy = found["device:noisy"]
    assert not noisy["ok"]
    assert "CRC" in noisy["hint"]
    babble = found["device:babble"]
    assert not babble["ok"]
    assert "bad frame" in babble["detail"]
    assert "two devices share unit id 6" in babble["hint"]


def test_ports_held_by_the_running_gateway_are_skipped_not_fought_for(tmp_path: Path) -> None:
    units = [DeviceSpec("env", load_profile("xy-md02"), unit_id=3)]
    with (
        in_thread(lambda: ModbusRtuSimulator(units)) as sim,
        in_thread(lambda: Sds011Sim("pm")) as pm,
    ):
        config = write_config(
            tmp_path,
            rtu_bus(sim.path, [("env", 3, "xy-md02")])
            + f'\n[[devices]]\nkind = "sds011"\nname = "pm"\nport = "{pm.path}"\n',
        )
        state = {
            "format": 1,
            "running": True,
            "pid": os.getpid(),
            "updated_unix": time.time(),
            "interval_s": 5.0,
        }
        write_state(state_path(tmp_path / "outbox.db"), state)
        running = doctor(config)
        held = device_lines(doctor(config, "--json"))
        untouched = sim["env"].served("temperature")
        write_state(state_path(tmp_path / "outbox.db"), state | {"running": False})
        free = device_lines(doctor(config, "--json"))
    assert untouched == ()  # the bus was not opened while the gateway holds it
    for name in ("device:env", "device:pm"):
        assert held[name]["skipped"], held[name]
        assert f"held by the running gateway (pid {os.getpid()})" in held[name]["detail"]
        assert free[name]["ok"], free[name]
        assert not free[name]["skipped"]
    assert "devices: 0 of 2 read, 2 skipped" in running.stderr
    assert "pm2_5 = " in free["device:pm"]["detail"]


def test_ble_devices_skip_with_the_reason_without_an_adapter(tmp_path: Path) -> None:
    config = write_config(
        tmp_path, '\n[[devices]]\nkind = "ruuvi"\nname = "tag"\nmac = "AA:BB:CC:DD:EE:FF"\n'
    )
    found = device_lines(doctor(config, "--json"))
    tag = found["device:tag"]
    assert tag["skipped"], tag  # this machine has no Bluetooth adapter: not a device failure
    assert "no usable Bluetooth adapter" in tag["detail"]
    cfg = load_config(config)
    setup = device_check_setup(cfg, system_bus=tmp_path / "no-bus")
    assert setup.ble_problem is not None


def test_ble_devices_heard_through_the_simulated_adapter(tmp_path: Path) -> None:
    sim = BleSimulator()
    sim.add(SimBthome("climate", "A4:C1:38:00:00:01"))
    door = SimGattPeripheral("door", "A4:C1:38:00:00:02", [])
    backends = BleBackends(sim.scanner_backend, sim.client_backend)
    devices = (
        '\n[[devices]]\nkind = "bthome"\nname = "climate"\nmac = "A4:C1:38:00:00:01"\n'
        '\n[[devices]]\nkind = "ble_gatt"\nname = "door"\nmac = "A4:C1:38:00:00:02"\n'
        '[[devices.characteristics]]\nuuid = "00002a6e-0000-1000-8000-00805f9b34fb"\n'
        'metric = "temperature"\n'
        '\n[[devices]]\nkind = "ruuvi"\nname = "gone"\nmac = "A4:C1:38:00:00:03"\n'
    )
    cfg = load_config(write_config(tmp_path, devices))
    setup = DeviceCheckSetup(None, None, 1.0, backends)

    async def main() -> list[CheckResult]:
        async def air() -> None:
            while True:
                sim.broadcast()
                sim.transmit(door.mac, door.name, b"\x02\x01\x06")
                await asyncio.sleep(0.1)

        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(air(), name="test:air")
            results = await device_checks(cfg, setup)
            task.cancel()
        return results

    found = {c.name: c for c in asyncio.run(main())}
    assert found["device:climate"].ok
    assert "battery = " in found["device:climate"].detail
    assert found["device:door"].ok
    assert "heard" in found["device:door"].detail
    assert "not connected" in found["device:door"].detail
    assert door.connect_attempts == 0  # listened for, never connected to
    gone = found["device:gone"]
    assert not gone.ok
    assert "scan ble" in gone.hint


def test_no_devices_flag_reads_nothing(tmp_path: Path) -> None:
    config = write_config(tmp_path, modbus_tcp("meter", free_port()))
    found = device_lines(doctor(config, "--json", "--no-devices"))
    assert found == {}


def test_a_port_another_program_holds_fails_with_who_to_look_for(tmp_path: Path) -> None:
    import serial  # type: ignore[import-untyped]  # noqa: PLC0415 - only this test holds a port

    with in_thread(lambda: Sds011Sim("pm")) as pm:
        path = pm.path
        config = write_config(
            tmp_path, f'\n[[devices]]\nkind = "sds011"\nname = "pm"\nport = "{path}"\n'
        )
        with serial.Serial(path, exclusive=True):  # another program, not the gateway
            found = device_lines(doctor(config, "--json"))
    line = found["device:pm"]
    assert not line["ok"]
    assert not line["skipped"]
    assert f"another program holds {path}" in line["hint"]
    assert "fuser -v" in line["hint"]
