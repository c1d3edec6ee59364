"""Modbus RTU: pure frames against published ones, and a bus of simulated units on a real pty."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from drivers import build_sources
from drivers.modbus.codec import decode_block, plan_reads
from drivers.modbus.errors import PymodbusErrors
from drivers.modbus.rtu import ModbusRtuBusDriver, RtuBusPoller
from drivers.modbus.rtu_frame import (
    ExceptionReply,
    ReadReply,
    ReadRequest,
    check_reply,
    crc16,
    decode_frame,
    decode_read_request,
    decode_reply,
    encode_exception_reply,
    encode_read_reply,
    encode_read_request,
    exchange_wire_time,
    frame_gap,
    reply_length,
    request_length,
)
from drivers.profile import Profile, load_profile
from gateway.config.devices import ModbusRtuBus
from gateway.config.model import OutboxConfig, load_config, parse_config
from gateway.core.clock import SystemClock
from gateway.core.errors import (
    BadFrame,
    ChecksumError,
    ConfigError,
    DeviceError,
    DeviceTimeout,
    FrameError,
    ModbusExceptionCode,
    ModbusExceptionResponse,
    PortUnavailable,
)
from gateway.core.health import Health
from gateway.core.model import Reading
from gateway.store.outbox import Outbox
from gateway.uplink.envelope import encode_reading
from simulator.modbus_rtu_server import ModbusRtuSimulator, SimulatedRtuUnit
from simulator.modbus_server import DeviceSpec
from simulator.rtu_cli import ConfigBus, bus_toml
from tests.simulator.test_simulator import flat, sim_app
from tests.support.gateway_rig import running_gateway
from tests.support.mosquitto import Mosquitto
from tests.support.simcli import sim_process
from tests.support.waiting import until
from tests.system.test_end_to_end import platform, stop

SDM120 = load_profile("sdm120")
XY_MD02 = load_profile("xy-md02")

# --- pure frames ---------------------------------------------------------------------------

# Published frames (Eastron SDM120 and XY-MD02 register maps, a Renke weather station).
WORKED_REQUESTS = [
    ("01 04 00 00 00 02 71 CB", ReadRequest(1, 4, 0x0000, 2)),  # SDM120 voltage
    ("01 04 00 48 00 02 F1 DD", ReadRequest(1, 4, 0x0048, 2)),  # SDM120 import kWh
    ("02 03 01 F4 00 0F 45 F3", ReadRequest(2, 3, 0x01F4, 15)),  # weather station, 15 HRs
    ("01 04 00 01 00 01 60 0A", ReadRequest(1, 4, 0x0001, 1)),  # XY-MD02 temperature
    ("01 04 00 01 00 02 20 0B", ReadRequest(1, 4, 0x0001, 2)),  # XY-MD02 T + RH
]


@pytest.mark.parametrize(("wire", "request_"), WORKED_REQUESTS)
def test_worked_requests_encode_and_decode(wire: str, request_: ReadRequest) -> None:
    frame = bytes.fromhex(wire)
    assert encode_read_request(request_) == frame
    assert decode_read_request(frame) == request_
    assert request_length(frame) == 8


def test_sdm120_voltage_reply_decodes_to_230_1_volts() -> None:
    frame = bytes.fromhex("01 04 04 43 66 19 9A 85 E4")
    reply = decode_reply(frame)
    assert reply == ReadReply(1, 4, (0x4366, 0x199A))
    assert encode_read_reply(1, 4, [0x4366, 0x199A]) == frame
    assert reply_length(frame) == 9
    voltage = next(m for m in SDM120.metrics if m.address == 0)
    (block,) = plan_reads([voltage])
    (sample,) = decode_block(block, reply.registers)
    assert (sample.metric, sample.value, sample.unit) == (voltage.name, 230.1, "V")


def test_xy_md02_reply_decodes_temperature_and_humidity() -> None:
    reply = decode_reply(bytes.fromhex("01 04 04 01 31 02 22 2A CE"))
    assert isinstance(reply, ReadReply)
    (block,) = plan_reads(XY_MD02.metrics)
    assert sorted((s.value, s.unit) for s in decode_block(block, reply.registers)) == [
        (30.5, "Cel"),
        (54.6, "%RH"),
    ]


def test_crc_is_sent_low_byte_first() -> None:
    assert crc16(bytes.fromhex("01 04 00 00 00 02")) == 0xCB71
    assert crc16(b"123456789") == 0x4B37  # the CRC-16/MODBUS check value


def test_exception_reply_round_trip() -> None:
    frame = encode_exception_reply(1, 4, 2)
    assert frame == bytes.fromhex("01 84 02 C2 C1")
    assert decode_reply(frame) == ExceptionReply(1, 4, 2)
    assert check_reply(frame, ReadRequest(1, 4, 0, 2)) == ExceptionReply(1, 4, 2)


def test_bad_crc_is_a_checksum_error_naming_both_crcs() -> None:
    with pytest.raises(ChecksumError, match="CRC e585 does not match the frame's e485"):
        decode_reply(bytes.fromhex("01 04 04 43 66 19 9A 85 E5"))


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        ("02 04 04 43 66 19 9A", "unit 2, the request was for unit 1"),
        ("01 03 04 43 66", "function code 0x03 to a request with function 4"),
        ("01 04 06 43 66", "announces 6 data bytes for 2 registers"),
        ("01 04 04 43 66 19 9A 85 E5", "CRC"),
    ],
)
def test_check_reply_rejects_what_cannot_be_the_answer(wire: str, message: str) -> None:
    with pytest.raises(FrameError, match=message):
        check_reply(bytes.fromhex(wire), ReadRequest(1, 4, 0, 2))


def test_check_reply_waits_for_the_whole_answer() -> None:
    frame = bytes.fromhex("01 04 04 43 66 19 9A 85 E4")
    request = ReadRequest(1, 4, 0, 2)
    assert all(check_reply(frame[:n], request) is None for n in range(len(frame)))
    assert check_reply(frame + b"\x00\xff", request) == ReadReply(1, 4, (0x4366, 0x199A))


def test_frame_gap_is_3_5_characters_of_11_bits_or_1_75_ms() -> None:
    assert frame_gap(9600) == pytest.approx(3.5 * 11 / 9600)
    assert frame_gap(19200) == pytest.approx(2.005e-3, abs=1e-6)
    assert frame_gap(38400) == frame_gap(115200) == 1.75e-3
    # SDM120 voltage at 19,200 8N1: 8 + 9 bytes of 10 bits, plus two gaps.
    assert exchange_wire_time(8, 9, 19200) == pytest.approx(17 * 10 / 19200 + 2 * 3.5 * 11 / 19200)


def test_encoders_refuse_what_no_frame_can_carry() -> None:
    with pytest.raises(ValueError, match=r"count must be 1\.\.125"):
        ReadRequest(1, 4, 0, 126)
    with pytest.raises(ValueError, match="function 3 or 4"):
        ReadRequest(1, 6, 0, 1)
    with pytest.raises(ValueError, match=r"1\.\.125 registers"):
        encode_read_reply(1, 4, [])
    with pytest.raises(ValueError, match=r"0\.\.65535"):
        encode_read_reply(1, 4, [0x10000])


_DECODERS = [decode_frame, decode_reply, decode_read_request, request_length, reply_length]


@given(st.binary(max_size=300))
def test_random_bytes_only_ever_raise_frame_error(data: bytes) -> None:
    for decode in _DECODERS:
        with suppress(FrameError):
            decode(data)
    with suppress(FrameError):
        check_reply(data, ReadRequest(1, 4, 0, 2))


@given(
    st.integers(1, 247),
    st.sampled_from([3, 4]),
    st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=125),
    st.data(),
)
def test_replies_round_trip_and_any_corrupted_byte_is_caught(
    unit: int, function: int, registers: list[int], data: st.DataObject
) -> None:
    frame = encode_read_reply(unit, function, registers)
    request = ReadRequest(unit, function, 0, len(registers))
    assert decode_reply(frame) == ReadReply(unit, function, tuple(registers))
    assert check_reply(frame, request) == ReadReply(unit, function, tuple(registers))
    at = data.draw(st.integers(0, len(frame) - 1))
    flip = data.draw(st.integers(1, 255))
    mutated = bytearray(frame)
    mutated[at] ^= flip
    with pytest.raises(ChecksumError):  # CRC-16 catches every error within one byte
        decode_frame(bytes(mutated))
    with pytest.raises(FrameError):
        check_reply(bytes(mutated), request)


@given(st.integers(0, 255), st.sampled_from([3, 4]), st.integers(0, 0xFFFF), st.data())
def test_requests_round_trip(unit: int, function: int, address: int, data: st.DataObject) -> None:
    count = data.draw(st.integers(1, min(125, 0x10000 - address)))
    request = ReadRequest(unit, function, address, count)
    assert decode_read_request(encode_read_request(request)) == request


# --- the bus through the simulator ---------------------------------------------------------

BAUD = 115200  # fast, so scenarios stay short; the benchmark runs 19,200


def specs(*entries: tuple[str, Profile, int]) -> list[DeviceSpec]:
    return [DeviceSpec(name, profile, unit_id) for name, profile, unit_id in entries]


class Recorder:
    """A sink in front of the outbox that notes when each unit's readings arrived."""

    def __init__(self, outbox: Outbox | None = None) -> None:
        self.outbox = outbox
        self.times: dict[str, list[float]] = defaultdict(list)
        self.readings: list[Reading] = []

    async def __call__(self, readings: Sequence[Reading]) -> None:
        self.times[readings[0].device].append(time.monotonic())
        self.readings += readings
        if self.outbox is not None:
            await self.outbox.put_many(readings)


@asynccontextmanager
async def running(poller: RtuBusPoller) -> AsyncIterator[None]:
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(poller.run(), name=poller.task_name)
        try:
            yield
        finally:
            task.cancel()


def test_every_reading_reaches_the_outbox_as_served(tmp_path: Path) -> None:
    async def scenario() -> None:
        units = specs(("meter-1", SDM120, 1), ("meter-2", SDM120, 2), ("th-7", XY_MD02, 7))
        async with (
            ModbusRtuSimulator(units, baudrate=BAUD) as sim,
            Outbox(OutboxConfig(path=tmp_path / "outbox.db")) as outbox,
        ):
            bus = sim.gateway_config("cabinet-bus", timeout=0.2, interval=0.1)
            (poller,) = build_sources([bus], outbox.put_many, SystemClock())
            assert isinstance(poller, RtuBusPoller)
            assert poller.task_name == "poll:modbus_rtu:cabinet-bus"
            async with running(poller):
                await until(lambda: all(s.polls_ok >= 3 for s in poller.statuses.values()))
            await outbox._flush()
            rows = await outbox.read_batch(0, outbox.last_seq, 10_000)
        bodies = [json.loads(encode_reading(r)) for r in rows]
        per_device: dict[str, set[str]] = defaultdict(set)
        for body in bodies:
            unit = sim[body["device"]]
            assert unit.was_served(body["metric"], body["value"]), body
            per_device[body["device"]].add(body["metric"])
        for unit in sim:
            assert per_device[unit.name] == {m.name for m in unit.profile.metrics}
            status = poller.statuses[unit.name]
            assert status.health is Health.OK
            assert status.polls_failed == 0
            assert unit.requests == status.polls_ok * len(unit.plan)  # one request per block
        assert sim.frames_ignored == 0

    asyncio.run(scenario())


def test_silent_unit_costs_its_timeout_and_live_units_keep_their_interval() -> None:
    interval, timeout, run_for = 0.3, 0.2, 3.0

    async def scenario() -> None:
        units = specs(
            ("meter-1", SDM120, 1),
            ("meter-2", SDM120, 2),
            ("th-3", XY_MD02, 3),
            ("dead", SDM120, 9),
        )
        async with ModbusRtuSimulator(units, baudrate=BAUD) as sim:
            sim["dead"].go_silent()
            bus = sim.gateway_config(timeout=timeout, interval=interval)
            sink = Recorder()
            poller = RtuBusPoller(bus, sink, SystemClock(), random.Random(1))
            async with running(poller):
                await asyncio.sleep(run_for)
            for name in ("meter-1", "meter-2", "th-3"):
                times = sink.times[name]
                # The grid holds: as many polls as slots, none skipped ...
                assert len(times) == pytest.approx(run_for / interval, abs=1), name
                assert poller.statuses[name].overruns == 0
                gaps = [b - a for a, b in itertools.pairwise(times)]
                # ... and a poll is late by at most one dead unit's timeout, never drifts.
                assert max(gaps) < interval + timeout + 0.05, (name, gaps)
                assert sum(gaps) / len(gaps) == pytest.approx(interval, abs=0.02), name
            dead = poller.statuses["dead"]
            assert dead.health is Health.DOWN
            assert dead.errors_by_kind == {"DeviceTimeout": dead.polls_failed}
            # Backed off: fewer attempts than slots, each costing one request (its first block).
            assert 3 <= sim["dead"].requests == dead.polls_failed < run_for / interval - 2

    asyncio.run(scenario())


FAULTS: dict[str, tuple[Callable[[SimulatedRtuUnit], None], type[DeviceError]]] = {
    "exception": (
        lambda u: u.fail_with(ModbusExceptionCode.DEVICE_BUSY),
        ModbusExceptionResponse,
    ),
    "bad_crc": (lambda u: u.answer_bad_crc(), BadFrame),
    "garbage": (lambda u: u.answer_garbage(), BadFrame),
    "silent": (lambda u: u.go_silent(), DeviceTimeout),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_faulty_unit_gets_a_typed_error_and_the_others_keep_going(fault: str) -> None:
    inject, error = FAULTS[fault]

    async def scenario() -> None:
        units = specs(("meter-1", SDM120, 1), ("meter-2", SDM120, 2), ("th-3", XY_MD02, 3))
        async with ModbusRtuSimulator(units, baudrate=BAUD) as sim:
            bus = sim.gateway_config(timeout=0.1, interval=0.05)
            async with ModbusRtuBusDriver(bus) as driver:
                meter2 = bus.units[1]
                inject(sim["meter-2"])
                with pytest.raises(error) as caught:
                    await driver.read_unit(meter2)
                assert caught.value.device == "meter-2"
                for unit in (bus.units[0], bus.units[2]):
                    assert len(await driver.read_unit(unit)) == len(unit.profile.metrics)
                sim["meter-2"].heal()
                assert len(await driver.read_unit(meter2)) == len(SDM120.metrics)
            exc = caught.value
            if isinstance(exc, ModbusExceptionResponse):
                assert exc.code is ModbusExceptionCode.DEVICE_BUSY
                first = driver.plans["meter-2"][0]
                assert (exc.address, exc.count) == (first.address, first.count)
            if fault == "bad_crc":
                assert isinstance(exc, BadFrame)
                assert isinstance(exc.reason, ChecksumError)
            if fault == "garbage":
                assert isinstance(exc, BadFrame)
                assert not isinstance(exc.reason, ChecksumError)

    asyncio.run(scenario())


def test_health_follows_a_faulty_unit_down_and_back_while_others_stay_ok() -> None:
    async def scenario() -> None:
        units = specs(("meter-1", SDM120, 1), ("meter-2", SDM120, 2))
        async with ModbusRtuSimulator(units, baudrate=BAUD) as sim:
            bus = sim.gateway_config(timeout=0.1, interval=0.05)
            poller = RtuBusPoller(bus, Recorder(), SystemClock(), random.Random(2))
            statuses = poller.statuses
            async with running(poller):
                await until(lambda: statuses["meter-2"].health is Health.OK)
                sim["meter-2"].answer_bad_crc()
                await until(lambda: statuses["meter-2"].health is Health.DEGRADED)
                await until(lambda: statuses["meter-2"].health is Health.DOWN)
                ok_while_down = statuses["meter-1"].polls_ok
                assert statuses["meter-1"].health is Health.OK
                sim["meter-2"].heal()
                await until(lambda: statuses["meter-2"].health is Health.OK)
            assert statuses["meter-2"].errors_by_kind["BadFrame"] >= 3
            assert "CRC" in (statuses["meter-2"].last_error or "")
            assert statuses["meter-1"].polls_ok > ok_while_down
            assert statuses["meter-1"].polls_failed == 0

    asyncio.run(scenario())


def test_unit_id_nobody_has_is_silence() -> None:
    async def scenario() -> None:
        async with ModbusRtuSimulator(specs(("meter-1", SDM120, 1)), baudrate=BAUD) as sim:
            bus = sim.gateway_config(timeout=0.1)
            ghost = bus.units[0].model_copy(update={"name": "ghost", "unit_id": 42})
            bus = bus.model_copy(update={"units": (*bus.units, ghost)})
            async with ModbusRtuBusDriver(bus) as driver:
                with pytest.raises(DeviceTimeout, match="ghost: no answer"):
                    await driver.read_unit(ghost)
                assert len(await driver.read_unit(bus.units[0])) == len(SDM120.metrics)

    asyncio.run(scenario())


def test_unplug_makes_every_unit_port_unavailable_and_replug_recovers() -> None:
    async def scenario() -> None:
        units = specs(("meter-1", SDM120, 1), ("th-2", XY_MD02, 2))
        async with ModbusRtuSimulator(units, baudrate=BAUD) as sim:
            bus = sim.gateway_config(timeout=0.1, interval=0.05)
            poller = RtuBusPoller(bus, Recorder(), SystemClock(), random.Random(3))
            statuses = poller.statuses.values()
            async with running(poller):
                await until(lambda: all(s.health is Health.OK for s in statuses))
                sim.unplug()
                assert not sim.plugged
                assert not await asyncio.to_thread(os.path.lexists, sim.path)  # the link goes too
                await until(lambda: all(s.health is Health.DOWN for s in statuses))
                for status in statuses:
                    assert set(status.errors_by_kind) == {"PortUnavailable"}
                    assert status.last_error is not None
                    assert status.last_error.startswith(f"{status.name}: cannot open {sim.path}")
                sim.replug()  # a new pty (the kernel picks its number) behind the same link
                assert await asyncio.to_thread(os.path.realpath, sim.path) == sim.pty_path
                await until(lambda: all(s.health is Health.OK for s in statuses))
            assert poller.driver.opens == 2

    asyncio.run(scenario())


def test_missing_port_at_start_fails_every_unit_and_names_the_port(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with ModbusRtuSimulator(specs(("meter-1", SDM120, 1)), baudrate=BAUD) as sim:
            bus = sim.gateway_config(interval=0.05)
        missing = str(tmp_path / "ttyUSB9")
        bus = bus.model_copy(update={"port": missing})
        with pytest.raises(PortUnavailable, match=f"cannot open {missing}: No such file"):
            async with ModbusRtuBusDriver(bus):
                pass
        poller = RtuBusPoller(bus, Recorder(), SystemClock(), random.Random(4))
        async with running(poller):
            await until(lambda: poller.statuses["meter-1"].polls_failed >= 2)
        assert poller.statuses["meter-1"].errors_by_kind.keys() == {"PortUnavailable"}

    asyncio.run(scenario())


def test_usb_adapter_that_is_not_attached_is_port_unavailable() -> None:
    async def scenario() -> None:
        async with ModbusRtuSimulator(specs(("meter-1", SDM120, 1)), baudrate=BAUD) as sim:
            bus = sim.gateway_config()
        bus = bus.model_copy(update={"port": "usb:ffff:fffe:NOPE"})
        with pytest.raises(PortUnavailable, match="no serial port usb:ffff:fffe:NOPE"):
            async with ModbusRtuBusDriver(bus):
                pass

    asyncio.run(scenario())


def test_units_due_together_share_an_overloaded_bus_fairly() -> None:
    async def scenario() -> None:
        units = specs(*((f"th-{i}", XY_MD02, i) for i in range(1, 6)))
        async with ModbusRtuSimulator(units, baudrate=BAUD) as sim:
            bus = sim.gateway_config(interval=0.001)  # far more than the bus can carry
            sink = Recorder()
            poller = RtuBusPoller(bus, sink, SystemClock())
            async with running(poller):
                await asyncio.sleep(0.5)
            counts = [len(sink.times[u.name]) for u in sim]
            assert min(counts) >= 10
            assert max(counts) - min(counts) <= 1, counts  # strictly in turn
            order = [r.device for r in sink.readings[::2]]  # two readings per poll
            assert order[:10] == [u.name for u in sim] * 2

    asyncio.run(scenario())


# --- config --------------------------------------------------------------------------------


def bus_config(**overrides: object) -> dict[str, object]:
    bus: dict[str, object] = {
        "kind": "modbus_rtu",
        "name": "cabinet-bus",
        "port": "/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A10K3XYZ-if00-port0",
        "baudrate": 19200,
        "units": [
            {"name": "meter-1", "unit_id": 1, "profile": "sdm120"},
            {"name": "th-1", "unit_id": 7, "profile": "xy-md02", "interval": "30s"},
        ],
    }
    bus.update(overrides)
    return {
        "gateway_id": "gw-1",
        "mqtt": {"host": "localhost"},
        "outbox": {"path": "outbox.db"},
        "devices": [bus],
    }


def test_bus_config_loads_with_defaults() -> None:
    config = parse_config(bus_config(), "gw.toml", Path.cwd())
    (bus,) = config.devices
    assert isinstance(bus, ModbusRtuBus)
    assert (bus.parity, bus.stopbits, bus.timeout) == ("N", 1, 0.5)
    assert [(u.name, u.unit_id, u.interval) for u in bus.units] == [
        ("meter-1", 1, 10.0),
        ("th-1", 7, 30.0),
    ]


@pytest.mark.parametrize(
    ("overrides", "location", "message"),
    [
        (
            {"units": [{"name": "a", "unit_id": 3, "profile": "sdm120"}] * 2},
            "devices[0].units",
            "unit ids must be unique on a bus; used more than once: [3]",
        ),
        (
            {"units": [{"name": "a", "unit_id": 0, "profile": "sdm120"}]},
            "devices[0].units[0].unit_id",
            "greater than or equal to 1",
        ),
        (
            {"units": [{"name": "a", "unit_id": 248, "profile": "sdm120"}]},
            "devices[0].units[0].unit_id",
            "less than or equal to 247",
        ),
        ({"units": []}, "devices[0].units", "at least 1"),
        ({"baudrate": 19201}, "devices[0].baudrate", "standard baud rates"),
        ({"parity": "X"}, "devices[0].parity", "'N', 'E' or 'O'"),
        ({"port": "ttyUSB0"}, "devices[0].port", "pattern"),
        ({"port": "usb:0403"}, "devices[0].port", "pattern"),
    ],
)
def test_bus_config_mistakes_name_the_key(
    overrides: dict[str, object], location: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(bus_config(**overrides), "gw.toml", Path.cwd())
    issues = {issue.location: issue.message for issue in caught.value.issues}
    assert location in issues, issues
    assert message in issues[location]


def test_unit_names_must_not_clash_with_other_devices() -> None:
    data = bus_config(
        units=[
            {"name": "meter-1", "unit_id": 1, "profile": "sdm120"},
            {"name": "meter-1", "unit_id": 2, "profile": "sdm120"},
        ]
    )
    with pytest.raises(ConfigError, match=r"device names must be unique.*meter-1"):
        parse_config(data, "gw.toml", Path.cwd())


def test_port_may_be_any_absolute_path_or_usb_identity() -> None:
    for port in ("/run/rs485", "usb:0403:6001", "usb:0403:6001:A10K3XYZ", "socket://pi:4001"):
        parse_config(bus_config(port=port), "gw.toml", Path.cwd())


def test_simulated_bus_needs_distinct_ids_and_names() -> None:
    with pytest.raises(ValueError, match="unit ids must be unique"):
        ModbusRtuSimulator(specs(("a", SDM120, 1), ("b", SDM120, 1)))
    with pytest.raises(ValueError, match=r"1\.\.247"):
        ModbusRtuSimulator(specs(("a", SDM120, 0)))


# --- streetgate sim --rtu ------------------------------------------------------------------


def test_sim_rtu_serves_a_bus_and_writes_its_config(tmp_path: Path) -> None:
    async def scenario() -> None:
        path = tmp_path / "gw.toml"
        link = tmp_path / "ttyRS485"
        async with sim_process(
            *("--rtu", "--profile", "sdm120", "--profile", "xy-md02", "--count", "3"),
            *("--baud", "38400", "--unit-id", "10", "--link", str(link)),
            *("--write-config", str(path)),
            lines=3,
        ) as sim:
            assert sim.lines == [
                ["sim-sdm120-1", "sdm120", str(link), "unit", "10"],
                ["sim-xy-md02-1", "xy-md02", str(link), "unit", "11"],
                ["sim-sdm120-2", "sdm120", str(link), "unit", "12"],
            ]
            config = await asyncio.to_thread(load_config, path)
            (bus,) = config.devices
            assert isinstance(bus, ModbusRtuBus)
            assert (bus.port, bus.baudrate, bus.parity) == (str(link), 38400, "N")
            assert [(u.name, u.unit_id, u.profile.name) for u in bus.units] == [
                ("sim-sdm120-1", 10, "sdm120"),
                ("sim-xy-md02-1", 11, "xy-md02"),
                ("sim-sdm120-2", 12, "sdm120"),
            ]
            async with ModbusRtuBusDriver(bus) as driver:
                for unit in bus.units:
                    assert len(await driver.read_unit(unit)) == len(unit.profile.metrics)
        text = sim.stderr
        assert sim.returncode == 0, text
        assert f"serving 3 device(s) on {link} (38400 baud 8N1)" in text
        assert "Traceback" not in text
        assert not await asyncio.to_thread(os.path.lexists, link)  # removed when it stops

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--baud", "1234"], "Invalid value for '--baud': expected one of the standard"),
        (["--parity", "X"], "Invalid value for '--parity': expected N, E or O"),
        (["--unit-id", "246", "--count", "3"], "need ids up to 248"),
        (["--unit-id", "0"], "Invalid value for '--unit-id'"),
        (["--turnaround", "-1ms"], "Invalid value for '--turnaround'"),
    ],
)
def test_sim_rtu_rejects_bad_options(args: list[str], expected: str) -> None:
    result = CliRunner().invoke(sim_app(), ["sim", "--rtu", *args])
    assert result.exit_code == 2, result.output
    assert expected in flat(result.stderr)


# --- the shared pymodbus translation -------------------------------------------------------


def test_a_cancel_that_wait_for_swallowed_is_raised_after_the_call() -> None:
    # pymodbus waits for an answer with asyncio.wait_for; on Python 3.11 an answer and a cancel
    # in the same loop iteration make wait_for return the answer and drop the cancel, and a
    # poller cancelled then would never stop (seen as a hung benchmark).
    async def scenario() -> None:
        loop = asyncio.get_running_loop()

        async def request(answer: asyncio.Future[str], errors: PymodbusErrors | None) -> str:
            if errors is None:
                return await asyncio.wait_for(answer, 5)
            with errors:
                return await asyncio.wait_for(answer, 5)

        async def answer_and_cancel(errors: PymodbusErrors | None) -> asyncio.Task[str]:
            answer: asyncio.Future[str] = loop.create_future()
            task = asyncio.create_task(request(answer, errors))
            await asyncio.sleep(0)  # the request is waiting now
            answer.set_result("registers")
            task.cancel()
            await asyncio.wait({task})
            return task

        bare = await answer_and_cancel(None)
        if sys.version_info < (3, 12):
            assert bare.result() == "registers"  # the cancel is lost
        guarded = await answer_and_cancel(PymodbusErrors("meter-1", lambda: True, lambda: None))
        assert guarded.cancelled()

    asyncio.run(scenario())


# --- the whole gateway ---------------------------------------------------------------------


def test_gateway_process_publishes_every_unit_of_a_bus(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async def scenario() -> None:
        units = specs(("meter-1", SDM120, 1), ("meter-2", SDM120, 2), ("th-3", XY_MD02, 3))
        async with (
            ModbusRtuSimulator(units, baudrate=BAUD, history=1000) as sim,
            platform(mosquitto) as sub,
        ):
            config = tmp_path / "gw.toml"
            lines = [
                'gateway_id = "e2e-gw"',
                "[mqtt]",
                'host = "127.0.0.1"',
                f"port = {mosquitto.port}",
                "[outbox]",
                'path = "outbox.db"',
                'commit_interval = "100ms"',
                "",
                *bus_toml(ConfigBus("bus-1", sim.path, BAUD, "N", sim_units(sim)), "200ms"),
            ]
            await asyncio.to_thread(config.write_text, "\n".join(lines) + "\n")
            async with running_gateway(config) as proc:
                await sub.wait_for(sum(len(u.profile.metrics) for u in sim) * 3, 30)
                assert await stop(proc) == 0  # a clean stop: the bus task ends when cancelled
        readings = sub.delivery.readings
        assert sub.delivery.report()["missing"] == 0
        for unit in sim:
            mine = [r for r in readings if r["device"] == unit.name]
            assert {r["metric"] for r in mine} == {m.name for m in unit.profile.metrics}
            assert all(unit.was_served(r["metric"], r["value"]) for r in mine)

    asyncio.run(scenario())


def sim_units(sim: ModbusRtuSimulator) -> tuple[tuple[str, str, int], ...]:
    return tuple((u.name, u.profile.name, u.unit_id) for u in sim)
