"""``streetgate read DEVICE``: one poll through the real driver, against the simulators."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner, Result

from drivers.profile import load_profile
from gateway.cli.exit_codes import ExitCode
from gateway.cli.main import app
from gateway.core.errors import ModbusExceptionCode
from simulator.broker import free_port
from simulator.modbus_rtu_server import ModbusRtuSimulator
from simulator.modbus_server import DeviceSpec, ModbusSimulator
from simulator.serial_sensors import Sds011Sim
from tests.support.sim_thread import in_thread


def write_config(tmp_path: Path, devices: str) -> Path:
    path = tmp_path / "gw.toml"
    path.write_text(
        'gateway_id = "gw"\n[mqtt]\nhost = "127.0.0.1"\n[outbox]\npath = "outbox.db"\n' + devices
    )
    return path


def modbus_tcp(name: str, port: int) -> str:
    return (
        f'\n[[devices]]\nkind = "modbus_tcp"\nname = "{name}"\nhost = "127.0.0.1"\n'
        f'port = {port}\nprofile = "sdm120"\ntimeout = "500ms"\n'
    )


def read(config: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["read", "-c", str(config), *args])


def test_modbus_tcp_device_as_table_and_json(tmp_path: Path) -> None:
    specs = [DeviceSpec("meter", load_profile("sdm120"))]
    with in_thread(lambda: ModbusSimulator(specs)) as sim:
        config = write_config(tmp_path, modbus_tcp("meter", sim["meter"].port))
        table = read(config, "meter")
        as_json = read(config, "meter", "--json")
        voltages = sim["meter"].served("voltage")
    assert table.exit_code == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["metric", "value", "unit"]
    voltage = next(line.split() for line in lines if line.startswith("voltage "))
    assert voltage[2] == "V"
    assert float(voltage[1]) in voltages
    assert as_json.exit_code == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert data["device"] == "meter"
    assert data["ts"].endswith("Z")
    metrics = {r["metric"]: r for r in data["readings"]}
    assert metrics["voltage"]["unit"] == "V"
    assert metrics["voltage"]["value"] in voltages
    assert set(metrics) == {m.name for m in load_profile("sdm120").metrics}


def test_protocol_error_is_a_failure(tmp_path: Path) -> None:
    specs = [DeviceSpec("meter", load_profile("sdm120"))]
    with in_thread(lambda: ModbusSimulator(specs)) as sim:
        sim["meter"].fail_with(ModbusExceptionCode.ILLEGAL_DATA_ADDRESS)
        result = read(write_config(tmp_path, modbus_tcp("meter", sim["meter"].port)), "meter")
    assert result.exit_code == ExitCode.FAILURE
    assert result.stdout == ""
    assert result.stderr.startswith("error: read: meter: ")
    assert "ILLEGAL_DATA_ADDRESS" in result.stderr.upper().replace(" ", "_")


def test_unreachable_device(tmp_path: Path) -> None:
    result = read(write_config(tmp_path, modbus_tcp("meter", free_port())), "meter")
    assert result.exit_code == ExitCode.UNREACHABLE
    assert result.stdout == ""
    assert result.stderr.startswith("error: read: meter: ")


def test_unknown_device_lists_the_configured_ones(tmp_path: Path) -> None:
    config = write_config(tmp_path, modbus_tcp("meter", 502) + modbus_tcp("meter-2", 503))
    result = read(config, "lamp")
    assert result.exit_code == ExitCode.NOT_FOUND
    assert "no device 'lamp'" in result.stderr
    assert "configured: meter, meter-2" in result.stderr


def test_a_unit_on_an_rtu_bus(tmp_path: Path) -> None:
    units = [
        DeviceSpec("env", load_profile("xy-md02"), unit_id=3),
        DeviceSpec("meter", load_profile("sdm120"), unit_id=7),
    ]
    with in_thread(lambda: ModbusRtuSimulator(units)) as sim:
        config = write_config(
            tmp_path,
            f'\n[[devices]]\nkind = "modbus_rtu"\nname = "bus"\nport = "{sim.path}"\n'
            'baudrate = 19200\ntimeout = "500ms"\n'
            '[[devices.units]]\nname = "env"\nunit_id = 3\nprofile = "xy-md02"\n'
            '[[devices.units]]\nname = "meter"\nunit_id = 7\nprofile = "sdm120"\n',
        )
        result = read(config, "env", "--json")
        temperatures = sim["env"].served("temperature")
        bus = read(config, "bus")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    metrics = {r["metric"]: r["value"] for r in data["readings"]}
    assert set(metrics) == {"temperature", "humidity"}
    assert metrics["temperature"] in temperatures
    assert bus.exit_code == ExitCode.NOT_FOUND  # a bus is read one unit at a time
    assert "configured: env, meter" in bus.stderr


def test_a_serial_sensor(tmp_path: Path) -> None:
    with in_thread(lambda: Sds011Sim("pm")) as sim:
        config = write_config(
            tmp_path, f'\n[[devices]]\nkind = "sds011"\nname = "pm"\nport = "{sim.path}"\n'
        )
        result = read(config, "pm")
    assert result.exit_code == 0, result.stderr
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()[1:]}
    assert set(rows) == {"pm2_5", "pm10"}
    assert rows["pm10"][1] == "ug/m3"


def test_a_missing_serial_port_is_unreachable(tmp_path: Path) -> None:
    config = write_config(
        tmp_path, '\n[[devices]]\nkind = "sds011"\nname = "pm"\nport = "/dev/ttyUSB97"\n'
    )
    result = read(config, "pm")
    assert result.exit_code == ExitCode.UNREACHABLE
    assert "/dev/ttyUSB97" in result.stderr


def test_a_passive_ble_sensor_without_adapter_is_unreachable(tmp_path: Path) -> None:
    config = write_config(
        tmp_path, '\n[[devices]]\nkind = "ruuvi"\nname = "tag"\nmac = "AA:BB:CC:DD:EE:FF"\n'
    )
    result = read(config, "tag", "--timeout", "5")
    assert result.exit_code == ExitCode.UNREACHABLE  # this machine has no Bluetooth adapter
    assert result.stderr.splitlines()[-1].startswith("error: read: tag: ")


def test_a_gatt_device_without_adapter_is_unreachable(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        '\n[[devices]]\nkind = "ble_gatt"\nname = "door"\nmac = "AA:BB:CC:DD:EE:01"\n'
        'timeout = "2s"\nconnect_attempts = 1\n[[devices.characteristics]]\n'
        'uuid = "00002a6e-0000-1000-8000-00805f9b34fb"\nmetric = "temperature"\n',
    )
    result = read(config, "door")
    assert result.exit_code == ExitCode.UNREACHABLE  # this machine has no Bluetooth adapter
    assert "door" in result.stderr
