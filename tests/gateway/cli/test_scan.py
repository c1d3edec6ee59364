"""`streetgate scan serial|modbus`: the pure scan functions, the real drivers against the TCP and
RTU simulators, and the commands through CliRunner."""

from __future__ import annotations

import asyncio
import json
import re
import tomllib
from pathlib import Path

import pytest
from pydantic import TypeAdapter
from serial.tools.list_ports_common import ListPortInfo  # type: ignore[import-untyped]
from typer.testing import CliRunner

from drivers.ble.discovery import BleFound, toml_snippet
from drivers.profile import load_profile
from gateway.cli import scan as scan_cli
from gateway.cli.exit_codes import ExitCode
from gateway.cli.main import app
from gateway.config.devices import BthomeDevice, RuuviDevice
from gateway.core.errors import AdapterUnavailable
from gateway.core.model import Sample
from gateway.diagnostics.scan import (
    RtuProber,
    TcpProber,
    by_id_links,
    parse_units,
    plausible,
    profile_fit,
    scan_modbus,
    serial_ports,
    shipped_profiles,
)
from simulator.ble import BleSimulator, SimBthome, SimRuuvi
from simulator.modbus_rtu_server import ModbusRtuSimulator
from simulator.modbus_server import DeviceSpec, ModbusSimulator
from tests.support.readme_examples import readme_commands
from tests.support.sim_thread import in_thread

runner = CliRunner()

SDM120 = load_profile("sdm120")
XY_MD02 = load_profile("xy-md02")


def port(
    device: str, vid: int | None = None, pid: int | None = None, **fields: str
) -> ListPortInfo:
    info = ListPortInfo(device, skip_link_detection=True)
    info.vid, info.pid = vid, pid
    for key, value in fields.items():
        setattr(info, key, value)
    return info


# --- serial ---------------------------------------------------------------------------------


def test_usb_ports_get_the_shortest_spec_that_picks_exactly_them() -> None:
    ports = [
        port(
            "/dev/ttyUSB1",
            0x0403,
            0x6001,
            serial_number="A10KX2Z1",
            manufacturer="FTDI",
            product="FT232R USB UART",
            location="1-1.2:1.0",
        ),
        port("/dev/ttyUSB0", 0x0403, 0x6001, serial_number="B77QQ"),
        port("/dev/ttyACM0", 0x2341, 0x0043),
        port("/dev/ttyAMA0"),
    ]
    links = {"/dev/ttyUSB1": "/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A10KX2Z1-if00-port0"}
    entries = {e.device: e for e in serial_ports(lambda: ports, links)}
    assert list(entries) == sorted(entries)
    ftdi = entries["/dev/ttyUSB1"]
    assert ftdi.spec == "usb:0403:6001:A10KX2Z1"  # two FTDIs attached: the serial is needed
    assert ftdi.by_id == links["/dev/ttyUSB1"]
    assert ftdi.as_dict()["usb_id"] == "0403:6001"
    assert entries["/dev/ttyACM0"].spec == "usb:2341:0043"  # the only one of its kind
    assert entries["/dev/ttyAMA0"].spec == "/dev/ttyAMA0"
    assert entries["/dev/ttyAMA0"].spec_note == "not a USB port: use the path"


def test_twin_adapters_without_serials_fall_back_to_the_by_id_link_or_path() -> None:
    ports = [port("/dev/ttyUSB0", 0x1A86, 0x7523), port("/dev/ttyUSB1", 0x1A86, 0x7523)]
    links = {"/dev/ttyUSB0": "/dev/serial/by-path/x"}
    entries = serial_ports(lambda: ports, links)
    assert [e.spec for e in entries] == ["/dev/serial/by-path/x", "/dev/ttyUSB1"]
    assert all("share this USB identity" in (e.spec_note or "") for e in entries)


def test_by_id_links_resolve_to_their_targets(tmp_path: Path) -> None:
    target = tmp_path / "ttyUSB0"
    target.touch()
    (tmp_path / "by-id").mkdir()
    (tmp_path / "by-id" / "usb-FTDI-if00").symlink_to(target)
    assert by_id_links(tmp_path / "by-id") == {
        str(target): str(tmp_path / "by-id" / "usb-FTDI-if00")
    }
    assert by_id_links(tmp_path / "missing") == {}


def test_scan_serial_on_this_machine_exits_ok_with_a_list() -> None:
    result = runner.invoke(app, ["scan", "serial", "--json"])
    assert result.exit_code == ExitCode.OK, result.output
    ports = json.loads(result.stdout)
    assert isinstance(ports, list)
    if not ports:
        assert "no serial ports found" in result.stderr


def test_format_serial_ends_each_port_with_its_config_line() -> None:
    entries = serial_ports(lambda: [port("/dev/ttyUSB0", 0x0403, 0x6001, serial_number="A1")])
    text = scan_cli.format_serial(entries)
    assert text.splitlines()[0].startswith("/dev/ttyUSB0  usb 0403:6001")
    assert 'config: port = "usb:0403:6001"' in text


# --- modbus: pure parts ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "units"),
    [("1-4", [1, 2, 3, 4]), ("1,2,5", [1, 2, 5]), ("5, 1-2,2", [1, 2, 5]), ("247", [247])],
)
def test_unit_lists(text: str, units: list[int]) -> None:
    assert parse_units(text) == units


@pytest.mark.parametrize("text", ["0-3", "248", "a", "4-2", ""])
def test_bad_unit_lists(text: str) -> None:
    with pytest.raises(ValueError, match=r"unit ids|expected|backwards"):
        parse_units(text)


def test_plausible_values() -> None:
    assert plausible(0.0)
    assert plausible(230.1)
    assert plausible(-12.5)
    assert not plausible(float("nan"))
    assert not plausible(3.4e38)
    assert not plausible(1.2e-38)


# --- modbus over TCP ------------------------------------------------------------------------


def test_tcp_scan_finds_the_unit_and_ranks_the_right_profile_first() -> None:
    async def scenario() -> None:
        async with ModbusSimulator(
            [DeviceSpec("meter", SDM120, unit_id=3), DeviceSpec("th", XY_MD02, unit_id=2)]
        ) as sim:
            seen: list[int] = []
            meter = await scan_modbus(
                TcpProber(sim.host, sim["meter"].port, 0.2),
                [1, 2, 3, 4],
                shipped_profiles(),
                seen.append,
            )
            assert seen == [1, 2, 3, 4]
            assert [u.unit_id for u in meter] == [3]  # GATEWAY_TARGET_NO_RESPONSE: nobody
            assert meter[0].answer == "registers"
            assert meter[0].best == "sdm120"
            # Only unit 2: for other ids the simulator checks the address against its own
            # register map before answering GATEWAY_TARGET_NO_RESPONSE, so sdm120's reads get
            # ILLEGAL_DATA_ADDRESS there (a real TCP gateway answers the GATEWAY_* code).
            th = await scan_modbus(
                TcpProber(sim.host, sim["th"].port, 0.2), [2], shipped_profiles()
            )
            assert [u.unit_id for u in th] == [2]
            assert (
                th[0].answer == "exception 2 ILLEGAL_DATA_ADDRESS"
            )  # sdm120's reads, probed first
            assert [f.profile for f in th[0].fits] == ["xy-md02"]
            assert {f.profile for f in th[0].misfits} >= {"sdm120"}

    asyncio.run(scenario())


def test_scan_modbus_command_against_the_tcp_simulator() -> None:
    with in_thread(lambda: ModbusSimulator([DeviceSpec("meter", SDM120, unit_id=1)])) as sim:
        args = ["scan", "modbus", "--host", sim.host, "--port", str(sim["meter"].port)]
        result = runner.invoke(app, [*args, "--units", "1-3", "--json"])
        assert result.exit_code == ExitCode.OK, result.output
        found = json.loads(result.stdout)
        assert [u["unit_id"] for u in found] == [1]
        assert found[0]["best_profile"] == "sdm120"
        assert "at most 0.6 s" in result.stderr
        text = runner.invoke(app, [*args, "--units", "1,2"])
        assert text.exit_code == ExitCode.OK, text.output
        assert text.stdout.startswith("unit 1: answered with registers\n")
        assert 'profile = "sdm120"' in text.stdout
        assert "unit 2" not in text.stdout
        nobody = runner.invoke(app, [*args, "--units", "5"])
        assert nobody.exit_code == ExitCode.OK
        assert nobody.stdout == ""
        assert "no unit answered" in nobody.stderr


def test_scan_modbus_usage_and_unreachable_exits() -> None:
    both = runner.invoke(app, ["scan", "modbus", "--host", "h", "--serial", "/dev/x"])
    assert both.exit_code == ExitCode.USAGE
    assert "exactly one of" in both.stderr
    bad = runner.invoke(app, ["scan", "modbus", "--host", "127.0.0.1", "--units", "0-9"])
    assert bad.exit_code == ExitCode.USAGE
    baud = runner.invoke(app, ["scan", "modbus", "--serial", "/dev/x", "--baud", "1234"])
    assert baud.exit_code == ExitCode.USAGE
    with in_thread(lambda: ModbusSimulator([DeviceSpec("gone", SDM120)])) as sim:
        free_port = sim["gone"].port
    refused = runner.invoke(
        app, ["scan", "modbus", "--host", "127.0.0.1", "--port", str(free_port), "--units", "1"]
    )
    assert refused.exit_code == ExitCode.UNREACHABLE, refused.output
    assert "cannot reach 127.0.0.1" in refused.stderr
    missing = runner.invoke(app, ["scan", "modbus", "--serial", "/nonexistent/tty", "--units", "1"])
    assert missing.exit_code == ExitCode.UNREACHABLE, missing.output


# --- modbus over RTU ------------------------------------------------------------------------


def test_rtu_scan_finds_every_unit_with_its_profile_and_skips_silent_ids() -> None:
    async def scenario() -> None:
        units = [DeviceSpec("meter", SDM120, 1), DeviceSpec("th", XY_MD02, 3)]
        async with ModbusRtuSimulator(units, baudrate=115200) as sim:
            ids = [1, 2, 3, 4]
            prober = RtuProber(sim.path, ids, baudrate=115200, timeout=0.1)
            found = await scan_modbus(prober, ids, shipped_profiles())
        assert [u.unit_id for u in found] == [1, 3]
        assert [u.best for u in found] == ["sdm120", "xy-md02"]
        assert found[1].answer.startswith("exception 2")

    asyncio.run(scenario())


# --- BLE --------------------------------------------------------------------------------------

KEY = bytes.fromhex("231d39c1d7cc1ab1aee224cd096db932")


def test_ble_scan_decodes_known_formats_and_suggests_config_entries() -> None:
    sim = BleSimulator()
    plain = SimBthome("Kitchen TH", "A4:C1:38:00:00:01")
    sealed = SimBthome("sealed", "A4:C1:38:00:00:02", key=KEY)
    tag = SimRuuvi("Ruuvi 884F", "CB:B8:33:4C:88:4F")
    for device in (plain, sealed, tag):
        sim.add(device)

    async def scenario() -> list[BleFound]:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(sim.air(0.02, rounds=5), name="air")
            return await scan_cli.scan_ble(0.15, backend=sim.scanner_backend)

    found = {f.address: f for f in asyncio.run(scenario())}
    assert set(found) == {plain.mac, sealed.mac, tag.mac}
    th = found[plain.mac]
    assert th.format == "bthome"
    assert th.rssi == -60
    assert set(th.values) == {"battery", "temperature", "humidity"}
    assert th.values["temperature"] == plain.sent[-1].values["temperature"]
    assert found[sealed.mac].format == "bthome-encrypted"
    assert found[sealed.mac].note == "encrypted (needs key)"
    assert not found[sealed.mac].values
    ruuvi = found[tag.mac]
    assert ruuvi.format == "ruuvi"
    assert ruuvi.values["pressure"] == tag.sent[-1].values["pressure"]
    # The suggested entries are valid device configs.
    for heard in found.values():
        entry = tomllib.loads(toml_snippet(heard).replace('"..."', f'"{KEY.hex()}"'))
        config = TypeAdapter(BthomeDevice | RuuviDevice).validate_python(entry["devices"][0])
        assert config.mac == heard.mac
    text = scan_cli.format_ble(list(found.values()))
    assert 'kind = "ruuvi"' in text
    assert "encrypted (needs key)" in text
    assert json.loads(json.dumps([f.as_dict() for f in found.values()]))


def test_ble_scan_without_an_adapter_is_unreachable() -> None:
    sim = BleSimulator()
    sim.remove_adapter("no_bluetooth")
    with pytest.raises(AdapterUnavailable):
        asyncio.run(scan_cli.scan_ble(0.1, backend=sim.scanner_backend))
    # This machine has no Bluetooth adapter (nor bluetoothd): the real command says so.
    result = runner.invoke(app, ["scan", "ble", "--timeout", "0.1", "--json"])
    assert result.exit_code == ExitCode.UNREACHABLE, result.output
    assert "no usable Bluetooth adapter" in result.stderr
    assert result.stdout == ""


# --- README -----------------------------------------------------------------------------------


def test_the_readme_examples_run() -> None:
    """ "Finding devices" as written, except where the cabinet's devices are: the Modbus TCP
    host and the RS-485 port become simulators (this machine has no USB ports nor adapter)."""
    commands = readme_commands("Finding devices")
    assert {c[2] for c in commands} == {"serial", "modbus", "ble"}
    tcp_specs = [DeviceSpec("meter", SDM120, unit_id=1)]
    rtu_specs = [DeviceSpec("meter", SDM120, 1), DeviceSpec("th", XY_MD02, 3)]
    with (
        in_thread(lambda: ModbusSimulator(tcp_specs)) as tcp,
        in_thread(lambda: ModbusRtuSimulator(rtu_specs, baudrate=19200)) as rtu,
    ):
        for command in commands:
            assert command[:2] == ["streetgate", "scan"]
            args = command[1:]
            if "--host" in args:
                args[args.index("--host") + 1] = tcp.host
                args += ["--port", str(tcp["meter"].port)]
            if "--serial" in args:
                args[args.index("--serial") + 1] = rtu.path
            result = runner.invoke(app, args)
            if command[2] == "ble":
                assert result.exit_code in {ExitCode.OK, ExitCode.UNREACHABLE}, result.output
                continue
            assert result.exit_code == ExitCode.OK, (command, result.output)
            if "--host" in args:
                assert 'profile = "sdm120"' in result.stdout
            if "--serial" in args:
                found = json.loads(result.stdout)
                assert [(u["unit_id"], u["best_profile"]) for u in found] == [
                    (1, "sdm120"),
                    (3, "xy-md02"),
                ]


def test_implausible_values_make_a_misfit_and_stay_valid_json() -> None:
    fit = profile_fit(XY_MD02, [Sample("temperature", float("nan"), "Cel")])
    assert not fit.fits
    assert fit.reason == "implausible values: temperature=nan"
    assert json.loads(json.dumps(fit.as_dict(), allow_nan=False))["values"] == {"temperature": None}


def test_a_value_outside_the_metric_range_rejects_the_profile() -> None:
    fit = profile_fit(
        XY_MD02, [Sample("temperature", -275.9, "Cel"), Sample("humidity", 40, "%RH")]
    )
    assert not fit.fits
    assert fit.reason == "temperature -275.9 °C outside -40..80"
    assert profile_fit(XY_MD02, [Sample("temperature", 21.5, "Cel")]).fits


def test_an_sdm120_is_not_called_an_xy_md02() -> None:
    # A fixed clock: the simulated meter serves the same values on every run, so the low word of
    # its voltage (what xy-md02 reads as a temperature) is the same too, and far outside -40..80.
    meter = [DeviceSpec("meter", SDM120, unit_id=1)]
    with in_thread(lambda: ModbusSimulator(meter, clock=lambda: 0.0)) as sim:
        args = ["scan", "modbus", "--host", sim.host, "--port", str(sim["meter"].port)]
        as_json = runner.invoke(app, [*args, "--units", "1", "--json"])
        text = runner.invoke(app, [*args, "--units", "1"])
    assert as_json.exit_code == ExitCode.OK, as_json.output
    (unit,) = json.loads(as_json.stdout)
    assert unit["best_profile"] == "sdm120"
    assert "xy-md02" not in [f["profile"] for f in unit["fits"]]
    (xy,) = [f for f in unit["misfits"] if f["profile"] == "xy-md02"]
    assert re.fullmatch(r"temperature -?[0-9.e+]+ °C outside -40\.\.80", xy["reason"]), xy
    assert text.exit_code == ExitCode.OK
    assert "also readable as" not in text.stdout
    rejected = next(line for line in text.stdout.splitlines() if "xy-md02" in line)
    assert rejected.startswith("  xy-md02: rejected: temperature ")
    assert rejected.endswith("°C outside -40..80")
