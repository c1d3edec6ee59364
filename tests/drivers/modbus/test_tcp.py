"""The Modbus TCP driver against simulated devices speaking real Modbus TCP on loopback."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from drivers import build_driver
from drivers.modbus.tcp import ModbusTcpDriver
from drivers.profile import Profile, builtin_profiles, load_profile, parse_profile
from gateway.config.model import ModbusTcpDevice
from gateway.core.errors import (
    DeviceError,
    DeviceTimeout,
    DeviceUnreachable,
    ModbusExceptionCode,
    ModbusExceptionResponse,
    ProtocolError,
)
from simulator.modbus_server import DeviceSpec, ModbusSimulator


def one_device(profile: Profile | str, name: str = "dev-1", unit_id: int = 1) -> ModbusSimulator:
    if isinstance(profile, str):
        profile = load_profile(profile)
    return ModbusSimulator([DeviceSpec(name, profile, unit_id)])


# A profile with holding registers, integer types, both word orders and gaps between metrics,
# so the function-code-3 path and the gap registers of a read are exercised too.
MIXED = parse_profile(
    {
        "name": "mixed",
        "max_gap": 4,
        "metrics": [
            {"name": "setpoint", "address": 100, "type": "int16", "scale": 0.5, "unit": "Cel"},
            {"name": "runtime", "address": 103, "type": "uint32", "word_order": "little"},
            {"name": "level", "address": 110, "type": "uint16", "offset": -10.0},
            {"name": "voltage", "address": 0, "function": "input", "type": "float64", "unit": "V"},
            {
                "name": "humidity",
                "address": 6,
                "function": "input",
                "type": "uint16",
                "byte_order": "little",
                "scale": 0.1,
                "unit": "%RH",
            },
        ],
    },
    "test profile",
)


@pytest.mark.parametrize(
    "profile", [*builtin_profiles(), MIXED], ids=lambda p: getattr(p, "name", p)
)
def test_every_decoded_value_was_served_and_one_request_per_block(profile: Profile | str) -> None:
    async def scenario() -> None:
        async with one_device(profile, unit_id=7) as sim:
            device = sim["dev-1"]
            async with ModbusTcpDriver(device.gateway_config(timeout=0.5)) as driver:
                polls = [await driver.poll() for _ in range(3)]
            blocks = len(driver.plan)
            assert device.requests == 3 * blocks
            assert device.connections == 1
            names = [m.name for m in device.profile.metrics]
            units = {m.name: m.unit for m in device.profile.metrics}
            for samples in polls:
                assert sorted(s.metric for s in samples) == sorted(names)
                for sample in samples:
                    assert sample.unit == units[sample.metric]
                    assert device.was_served(sample.metric, sample.value), sample

    asyncio.run(scenario())


def test_plan_is_the_coalesced_one() -> None:
    sdm120 = load_profile("sdm120")
    config = ModbusTcpDevice(kind="modbus_tcp", name="m", host="127.0.0.1", profile=sdm120)
    driver = build_driver(config)
    assert isinstance(driver, ModbusTcpDriver)
    assert driver.name == "m"
    # 0x00-0x25 with gaps, 0x46-0x4B, 0x156-0x157 (max_gap 40, at most 60 registers each)
    assert [(b.address, b.count) for b in driver.plan] == [(0, 38), (0x46, 6), (0x156, 2)]


@pytest.mark.parametrize(
    "code",
    [
        ModbusExceptionCode.ILLEGAL_DATA_ADDRESS,
        ModbusExceptionCode.DEVICE_BUSY,
        ModbusExceptionCode.GATEWAY_TARGET_NO_RESPONSE,
    ],
)
def test_exception_response_carries_code_device_and_request(code: ModbusExceptionCode) -> None:
    async def scenario() -> None:
        async with one_device("sdm630", name="meter-9") as sim:
            device = sim["meter-9"]
            async with ModbusTcpDriver(device.gateway_config(timeout=0.5)) as driver:
                device.fail_with(code)
                with pytest.raises(ModbusExceptionResponse) as caught:
                    await driver.poll()
                device.heal()
                assert len(await driver.poll()) == len(device.profile.metrics)
            error = caught.value
            assert error.code is code
            assert error.device == "meter-9"
            first = driver.plan[0]
            assert (error.address, error.count) == (first.address, first.count)

    asyncio.run(scenario())


@asynccontextmanager
async def raw_device(answer: Callable[[bytes], bytes]) -> AsyncIterator[int]:
    """A hand-written Modbus TCP device: ``answer`` maps a request PDU to a response PDU."""
    handlers: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers[task] = writer
        try:
            while True:
                header = await reader.readexactly(7)  # MBAP: tid, protocol, length, unit
                pdu = await reader.readexactly(int.from_bytes(header[4:6], "big") - 1)
                body = answer(pdu)
                writer.write(header[:4] + (len(body) + 1).to_bytes(2, "big") + header[6:] + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]
        # Let every handler end by itself (cancelling one makes Python 3.11's streams log it).
        for writer in handlers.values():
            writer.transport.abort()
        if handlers:
            await asyncio.wait(handlers, timeout=2)


def raw_config(port: int, profile: str = "xy-md02") -> ModbusTcpDevice:
    return ModbusTcpDevice(
        kind="modbus_tcp",
        name="raw",
        host="127.0.0.1",
        port=port,
        profile=load_profile(profile),
        timeout=0.5,
    )


def test_unknown_exception_code_is_reported_as_unknown() -> None:
    async def scenario() -> None:
        async with raw_device(lambda pdu: bytes([pdu[0] | 0x80, 0x0C])) as port:
            async with ModbusTcpDriver(raw_config(port)) as driver:
                with pytest.raises(ModbusExceptionResponse) as caught:
                    await driver.poll()
        assert caught.value.code is ModbusExceptionCode.UNKNOWN
        assert (caught.value.address, caught.value.count) == (1, 2)

    asyncio.run(scenario())


def test_short_answer_is_a_protocol_error() -> None:
    def one_register_short(pdu: bytes) -> bytes:
        count = int.from_bytes(pdu[3:5], "big") - 1
        return bytes([pdu[0], 2 * count]) + b"\x01\x00" * count

    async def scenario() -> None:
        async with raw_device(one_register_short) as port:
            async with ModbusTcpDriver(raw_config(port)) as driver:
                with pytest.raises(ProtocolError, match="asked for 2 registers at 1, got 1"):
                    await driver.poll()

    asyncio.run(scenario())


def test_slow_device_times_out_and_the_driver_recovers_on_reentry(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        async with one_device("sdm120") as sim:
            device = sim["dev-1"]
            driver = ModbusTcpDriver(device.gateway_config(timeout=0.2))
            device.slow_down(2.0)
            async with driver:
                started = time.monotonic()
                with pytest.raises(DeviceTimeout) as caught:
                    await driver.poll()
                assert 0.15 < time.monotonic() - started < 1.0
                assert isinstance(caught.value, TimeoutError)
                # The connection was dropped, so a late answer cannot be mistaken for another.
                with pytest.raises(DeviceUnreachable):
                    await driver.poll()
            device.heal()
            async with driver:
                samples = await driver.poll()
            assert all(device.was_served(s.metric, s.value) for s in samples)

    with caplog.at_level(logging.DEBUG, logger="pymodbus"):
        asyncio.run(scenario())
    # The timeout was raised, not also logged by pymodbus (with its dump of frames).
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


def test_nothing_listening_is_unreachable_on_enter(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        with socket.socket() as bound:  # bound, never listening: connections are refused
            bound.bind(("127.0.0.1", 0))
            port = bound.getsockname()[1]
            config = raw_config(port)
            driver = ModbusTcpDriver(config)
            started = time.monotonic()
            with pytest.raises(DeviceUnreachable) as caught:
                async with driver:
                    pytest.fail("entered without a device")
            assert time.monotonic() - started < 0.4  # refused at once, no retry loop
            assert caught.value.device == "raw"
            assert isinstance(caught.value, ConnectionError)
            with pytest.raises(RuntimeError, match="outside"):
                await driver.poll()

    with caplog.at_level(logging.INFO, logger="pymodbus"):
        asyncio.run(scenario())
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


def test_device_going_away_mid_run_then_coming_back() -> None:
    async def scenario() -> None:
        async with one_device("sdm630") as sim:
            device = sim["dev-1"]
            port = device.port
            driver = ModbusTcpDriver(device.gateway_config(timeout=0.3))
            async with driver:
                await driver.poll()
                await device.stop()
                with pytest.raises(DeviceError) as caught:
                    await driver.poll()
                assert isinstance(caught.value, DeviceUnreachable)
            with pytest.raises(DeviceUnreachable):
                async with driver:
                    pytest.fail("connected to a stopped device")
            await device.start()
            assert device.port == port
            async with driver:  # the same object, re-entered
                samples = await driver.poll()
            assert len(samples) == len(device.profile.metrics)
            assert all(device.was_served(s.metric, s.value) for s in samples)
            assert device.connections == 2

    asyncio.run(scenario())


def test_entering_twice_is_a_programming_error() -> None:
    async def scenario() -> None:
        async with one_device("xy-md02") as sim:
            driver = ModbusTcpDriver(sim["dev-1"].gateway_config(timeout=0.5))
            async with driver:
                with pytest.raises(RuntimeError, match="entered twice"):
                    await driver.__aenter__()
                assert len(await driver.poll()) == 2

    asyncio.run(scenario())


def test_wrong_unit_id_is_answered_like_a_gateway_with_a_silent_target() -> None:
    async def scenario() -> None:
        async with one_device("sdm120", unit_id=3) as sim:
            config = sim["dev-1"].gateway_config(timeout=0.5).model_copy(update={"unit_id": 4})
            async with ModbusTcpDriver(config) as driver:
                with pytest.raises(ModbusExceptionResponse) as caught:
                    await driver.poll()
            assert caught.value.code is ModbusExceptionCode.GATEWAY_TARGET_NO_RESPONSE
            assert sim["dev-1"].requests == 0

    asyncio.run(scenario())
