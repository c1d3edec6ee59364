"""SDS011, PMS5003 and line-protocol drivers against simulated sensors on virtual serial ports."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from drivers import build_driver
from drivers.base import Driver
from drivers.serial import sds011 as sds
from drivers.serial.frame_stats import BadReason
from drivers.serial.sensors import LineSensorDriver, Pms5003Driver, Sds011Driver
from gateway.config.devices import LineField, LineSensor, Pms5003Device, Sds011Device
from gateway.config.model import OutboxConfig, parse_config
from gateway.core.clock import SystemClock
from gateway.core.errors import (
    BadFrame,
    ChecksumError,
    ConfigError,
    DeviceTimeout,
    PortUnavailable,
)
from gateway.core.health import Health
from gateway.runtime.app import Gateway, run_gateway
from gateway.runtime.scheduler import DevicePoller
from gateway.store.outbox import Outbox
from gateway.uplink.envelope import encode_reading
from gateway.uplink.forwarder import readings_topic
from simulator.pty import VirtualSerialPort
from simulator.serial_sensors import (
    Fault,
    LineDeviceSim,
    Pms5003Sim,
    Sds011Sim,
    SerialSensorSim,
)
from tests.support.mosquitto import Mosquitto
from tests.support.subscriber import Subscriber
from tests.support.waiting import until

PERIOD = 0.03  # the simulated sensors report ~30 times a second: tests stay short

SDS_METRICS = {"pm2_5": "ug/m3", "pm10": "ug/m3"}
PMS_METRICS = {"pm1_0": "ug/m3", "pm2_5": "ug/m3", "pm10": "ug/m3"} | dict.fromkeys(
    ("n0_3", "n0_5", "n1_0", "n2_5", "n5_0", "n10"), "/0.1L"
)
LINE_METRICS = {"temperature": "Cel", "humidity": "%RH", "pressure": "hPa"}


def make_sim(kind: str) -> SerialSensorSim:
    if kind == "sds011":
        return Sds011Sim("pm-1", period=PERIOD)
    if kind == "sds011-query":
        return Sds011Sim("pm-1", period=PERIOD, mode=sds.ReportingMode.QUERY)
    if kind == "pms5003":
        return Pms5003Sim("pms-1", period=PERIOD)
    return LineDeviceSim("wx-1", period=PERIOD)


def config_of(
    sim: SerialSensorSim, interval: float = 0.1, timeout: float = 0.3
) -> Sds011Device | Pms5003Device | LineSensor:
    assert isinstance(sim, Sds011Sim | Pms5003Sim | LineDeviceSim)
    return sim.gateway_config(interval=interval, timeout=timeout)


METRICS = {
    "sds011": SDS_METRICS,
    "sds011-query": SDS_METRICS,
    "pms5003": PMS_METRICS,
    "line": LINE_METRICS,
}


def test_build_driver_picks_the_serial_drivers() -> None:
    port = "/dev/ttyUSB0"
    sds_cfg = Sds011Device(kind="sds011", name="a", port=port)
    pms_cfg = Pms5003Device(kind="pms5003", name="b", port=port)
    line_cfg = LineSensor(
        kind="line", name="c", port=port, pattern=r"(?P<v>\d+)", fields={"v": LineField()}
    )
    assert isinstance(build_driver(sds_cfg), Sds011Driver)
    assert isinstance(build_driver(pms_cfg), Pms5003Driver)
    line = build_driver(line_cfg)
    assert isinstance(line, LineSensorDriver)
    assert line.name == "c"


# -- end to end: simulator → driver → DevicePoller → SQLite outbox ------------------------------


@asynccontextmanager
async def polled(
    drivers: Sequence[Driver], tmp_path: Path, interval: float = 0.1
) -> AsyncIterator[tuple[Outbox, dict[str, DevicePoller]]]:
    """Real pollers writing into a real outbox, as gateway/runtime/app.py wires them."""
    config = OutboxConfig.model_validate(
        {"path": tmp_path / "outbox.db", "commit_interval": "50ms", "disk_reserve": 0}
    )
    async with Outbox(config) as outbox:
        clock = SystemClock()
        pollers = {
            d.name: DevicePoller(d, interval, outbox.put_many, clock, rng=random.Random(7))
            for d in drivers
        }
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(outbox.run(), name="test:outbox")]
            tasks += [tg.create_task(p.run(), name=f"test:poll:{n}") for n, p in pollers.items()]
            try:
                yield outbox, pollers
            finally:
                for task in tasks:
                    task.cancel()


async def stored(outbox: Outbox) -> list[dict[str, Any]]:
    await outbox._flush()
    readings = await outbox.read_batch(0, outbox.last_seq, 100_000)
    return [json.loads(encode_reading(r)) for r in readings]


@pytest.mark.parametrize("kind", ["sds011", "sds011-query", "pms5003", "line"])
def test_values_reach_the_outbox_exactly_as_the_sensor_sent_them(kind: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with make_sim(kind) as sim:
            driver = build_driver(config_of(sim, timeout=1.0))
            async with polled([driver], tmp_path) as (outbox, pollers):
                status = pollers[driver.name].status
                await until(lambda: status.polls_ok >= 5)
                readings = await stored(outbox)
            assert status.health is Health.OK
            assert status.polls_failed == 0
        metrics = METRICS[kind]
        assert len(readings) >= 5 * len(metrics)
        for reading in readings:
            assert reading["device"] == sim.name
            assert reading["unit"] == metrics[reading["metric"]]
            assert sim.was_sent(reading["metric"], reading["value"]), reading
        per_metric = Counter(r["metric"] for r in readings)
        assert set(per_metric) == set(metrics)
        assert len(set(per_metric.values())) == 1  # every poll carries every metric
        if kind == "sds011-query":
            queries = [
                c
                for c in sim.commands
                if isinstance(c, sds.CommandFrame) and c.command == sds.Command.QUERY_DATA
            ]
            assert len(queries) >= status.polls_ok

    asyncio.run(scenario())


# -- bad frames: exact accounting, no good frame lost -------------------------------------------


@pytest.mark.parametrize("kind", ["sds011", "pms5003", "line"])
@pytest.mark.parametrize("fault", [Fault.CHECKSUM, Fault.TRUNCATE, Fault.GARBAGE])
def test_faulty_frames_are_counted_and_no_good_frame_is_lost(kind: str, fault: Fault) -> None:
    bad_expected, lost = {Fault.CHECKSUM: (6, 0), Fault.TRUNCATE: (6, 0), Fault.GARBAGE: (0, 0)}[
        fault
    ]
    if kind == "line" and fault is Fault.GARBAGE:
        bad_expected = 6  # a line sensor's noise is a line of its own
    if kind == "line" and fault is Fault.TRUNCATE:
        # A line has no header to resync on: six cut lines and the next one arrive as one line.
        bad_expected, lost = 1, 1

    async def scenario() -> None:
        async with make_sim(kind) as sim:
            driver = build_driver(config_of(sim))
            assert isinstance(driver, Sds011Driver | Pms5003Driver | LineSensorDriver)
            async with driver:
                await driver.poll()
                # Start counting at a quiet moment: every frame sent so far has arrived.
                await until(lambda: driver.frame_stats.frames >= sim.frames_sent)
                before = driver.frame_stats.copy()
                sent, bad_sent = sim.frames_sent, sim.bad_frames_sent
                noise, bad_bytes = sim.garbage_bytes_sent, sim.bad_bytes_sent
                sim.inject(fault, count=6)
                await until(lambda: sim.fault is None)
                intact_after = 3 + (6 if fault is Fault.GARBAGE else 0)
                await until(lambda: sim.frames_sent >= sent + intact_after)
                good = sim.frames_sent - sent
                # Every intact frame arrives; a truncated one never takes the next with it.
                await until(lambda: driver.frame_stats.frames - before.frames == good - lost)
                samples = await driver.poll()
                assert all(sim.was_sent(s.metric, s.value) for s in samples)
            new = driver.frame_stats.since(before)
            assert new.frames == good - lost
            assert new.bad_frames == bad_expected
            assert sim.bad_frames_sent - bad_sent == (6 if bad_expected else 0)
            if kind != "line":
                skipped = sim.garbage_bytes_sent - noise + sim.bad_bytes_sent - bad_bytes
                assert new.skipped_bytes == skipped
                if fault is Fault.CHECKSUM:
                    assert set(new.bad) == {BadReason.CHECKSUM}

    asyncio.run(scenario())


def test_only_bad_frames_is_bad_frame_and_silence_is_a_timeout() -> None:
    async def scenario() -> None:
        async with Sds011Sim("pm-1", period=PERIOD) as sim:
            driver = Sds011Driver(sim.gateway_config(timeout=0.3))
            sim.inject(Fault.CHECKSUM)
            await asyncio.sleep(0.05)  # a frame on its way is flushed when the port opens
            async with driver:
                with pytest.raises(BadFrame) as bad:
                    await driver.poll()
            assert bad.value.device == "pm-1"
            assert isinstance(bad.value.reason, ChecksumError)
            sim.inject(Fault.SILENCE)
            await asyncio.sleep(0.05)
            async with driver:
                with pytest.raises(DeviceTimeout, match=r"no sds011 frame within 0\.3 s"):
                    await driver.poll()
            sim.heal()
            async with driver:
                assert len(await driver.poll()) == 2

    asyncio.run(scenario())


def test_bytes_that_never_form_a_frame_suggest_a_wrong_baud_rate() -> None:
    async def scenario() -> None:
        async with VirtualSerialPort() as port:
            config = Sds011Device(kind="sds011", name="pm-x", port=port.path, timeout=0.3)
            async with Sds011Driver(config) as driver:

                async def noise() -> None:
                    while True:  # what 9600-baud frames look like read at 4800 baud
                        await port.write(bytes([0x0F, 0xF0, 0x3C, 0x00, 0xFF]))
                        await asyncio.sleep(0.02)

                task = asyncio.create_task(noise(), name="test:noise")
                try:
                    with pytest.raises(BadFrame, match="wrong baud rate"):
                        await driver.poll()
                finally:
                    task.cancel()
                assert driver.frame_stats.bad_frames == 0
                assert driver.frame_stats.skipped_bytes > 0

    asyncio.run(scenario())


# -- health through the real DevicePoller, next to a healthy device ------------------------------


def test_faults_change_health_while_the_other_device_keeps_being_polled(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with (
            Sds011Sim("pm-1", period=PERIOD) as faulty,
            Pms5003Sim("pms-1", period=PERIOD) as healthy,
        ):
            drivers = [build_driver(config_of(faulty)), build_driver(config_of(healthy))]
            async with polled(drivers, tmp_path) as (_, pollers):
                bad, good = pollers["pm-1"].status, pollers["pms-1"].status
                await until(lambda: bad.health is Health.OK and good.health is Health.OK)

                async def phase(fault: Fault | None, error: str) -> None:
                    failed, polled_ok = bad.errors_by_kind[error], good.polls_ok
                    if fault is None:
                        faulty.unplug()
                    else:
                        faulty.inject(fault)
                    await until(lambda: bad.errors_by_kind[error] >= failed + 2)
                    await until(lambda: good.polls_ok >= polled_ok + 3)  # not held up
                    assert bad.health in (Health.DEGRADED, Health.DOWN)
                    assert good.health is Health.OK
                    faulty.heal()
                    faulty.replug()
                    await until(lambda: bad.health is Health.OK)

                await phase(Fault.CHECKSUM, "BadFrame")
                await phase(Fault.SILENCE, "DeviceTimeout")
                await phase(None, "PortUnavailable")  # unplugged, then plugged back in
                assert good.polls_failed == 0
                assert "pm-1" in (bad.last_error or "")

    asyncio.run(scenario())


# -- the port ------------------------------------------------------------------------------------


def test_unplugging_fails_the_poll_at_once_and_reentering_finds_the_port_again() -> None:
    async def scenario() -> None:
        async with LineDeviceSim("wx-1", period=PERIOD) as sim:
            driver = LineSensorDriver(sim.gateway_config(timeout=2.0))
            async with driver:
                await driver.poll()
                sim.unplug()
                started = time.monotonic()

                async def poll_until_it_fails() -> None:
                    while True:  # a frame may have arrived before the port went
                        await driver.poll()

                with pytest.raises(PortUnavailable) as caught:
                    await poll_until_it_fails()
                assert time.monotonic() - started < 1.0  # not after the 2 s timeout
                assert isinstance(caught.value, ConnectionError)
            with pytest.raises(PortUnavailable, match="No such file or directory"):
                async with driver:
                    pytest.fail("entered without a port")
            sim.replug()  # a new pty behind the same link
            async with driver:
                assert {s.metric for s in await driver.poll()} == set(LINE_METRICS)

    asyncio.run(scenario())


def test_a_port_in_use_is_unavailable_and_misuse_is_a_runtime_error() -> None:
    async def scenario() -> None:
        async with Pms5003Sim("pms-1", period=PERIOD) as sim:
            first = Pms5003Driver(sim.gateway_config())
            second = Pms5003Driver(sim.gateway_config())
            async with first:
                with pytest.raises(PortUnavailable, match="exclusively lock"):
                    await second.__aenter__()
                with pytest.raises(RuntimeError, match="entered twice"):
                    await first.__aenter__()
            with pytest.raises(RuntimeError, match="outside"):
                await first.poll()

    asyncio.run(scenario())


def test_rfc2217_ports_are_refused_with_a_clear_error() -> None:
    async def scenario() -> None:
        config = Pms5003Device(kind="pms5003", name="p", port="rfc2217://127.0.0.1:1")
        with pytest.raises(PortUnavailable, match="socket://host:port"):
            async with Pms5003Driver(config):
                pass

    asyncio.run(scenario())


def test_a_sensor_behind_a_tcp_serial_server_is_read_through_a_socket_url() -> None:
    frame = bytes.fromhex("aa c0 8c 00 94 00 bc f9 d5 ab")
    heard = bytearray()

    async def scenario() -> None:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            heard.extend(await reader.read(100))  # the driver's wake and mode questions
            writer.write(b"\x07" + frame[:4])
            await writer.drain()
            writer.write(frame[4:] + frame)
            await writer.drain()
            await reader.read()  # until the driver hangs up
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            url = f"socket://127.0.0.1:{port}"
            config = Sds011Device(kind="sds011", name="pm-net", port=url, timeout=0.3)
            async with Sds011Driver(config) as driver:
                samples = await driver.poll()
            assert [(s.metric, s.value) for s in samples] == [("pm2_5", 14.0), ("pm10", 14.8)]
            assert driver.frame_stats.frames == 2
            assert driver.frame_stats.skipped_bytes == 1

    asyncio.run(scenario())
    assert heard.startswith(sds.set_working(True))


# -- protocol behaviour ------------------------------------------------------------------------


def test_sds011_is_set_to_the_configured_mode_only_when_it_differs() -> None:
    async def scenario() -> None:
        async with Sds011Sim("pm-1", period=PERIOD) as sim:
            sim.working_period = 5  # someone left it measuring every 5 minutes
            config = sim.gateway_config(timeout=0.5).model_copy(update={"mode": "query"})
            driver = Sds011Driver(config)
            async with driver:
                assert len(await driver.poll()) == 2
            assert sim.mode is sds.ReportingMode.QUERY
            assert sim.working_period == 0

            def settings() -> list[sds.CommandFrame]:
                return [
                    c
                    for c in sim.commands
                    if isinstance(c, sds.CommandFrame)
                    and c.data[0] == 1
                    and c.command != sds.Command.SLEEP_WORK
                ]

            assert len(settings()) == 2
            async with driver:  # already right: nothing is written to the sensor's flash
                await driver.poll()
            assert len(settings()) == 2

    asyncio.run(scenario())


def test_pms5003_left_in_passive_mode_is_switched_to_active() -> None:
    async def scenario() -> None:
        async with Pms5003Sim("pms-1", period=PERIOD) as sim:
            sim.active = False
            async with Pms5003Driver(sim.gateway_config(timeout=0.5)) as driver:
                samples = await driver.poll()
            assert sim.active
            assert {s.metric for s in samples} == set(PMS_METRICS)

    asyncio.run(scenario())


def test_line_sensor_with_a_pattern_from_the_config() -> None:
    async def scenario() -> None:
        async with VirtualSerialPort() as port:
            config = parse_config(
                {
                    "gateway_id": "gw",
                    "mqtt": {"host": "localhost"},
                    "outbox": {"path": "/tmp/unused.db"},
                    "devices": [
                        {
                            "kind": "line",
                            "name": "noise-1",
                            "port": port.path,
                            "pattern": r"LAeq=(?P<laeq>\d+) LAmax=(?P<lamax>\d+)",
                            "fields": {
                                "laeq": {"unit": "dB", "scale": 0.1},
                                "lamax": {"unit": "dB", "scale": 0.1, "offset": -0.5},
                            },
                            "timeout": "500ms",
                        }
                    ],
                },
                "test",
            ).devices[0]
            assert isinstance(config, LineSensor)
            async with build_driver(config) as driver:
                await port.write(b"boot v1.2\r\nLAeq=6\r\nLAeq=0573 LAmax=0811\r\n")
                samples = await driver.poll()
                assert [(s.metric, s.value, s.unit) for s in samples] == [
                    ("laeq", 57.3, "dB"),
                    ("lamax", 80.6, "dB"),
                ]
                assert isinstance(driver, LineSensorDriver)
                assert driver.frame_stats.bad == {BadReason.NO_MATCH: 2}

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"pattern": r"(?P<v>\d+"}, "pattern is not a valid regular expression"),
        ({"pattern": r"(?P<v>\d+) (?P<w>\d+)"}, "named groups ['v', 'w'] must be exactly"),
        ({"fields": {}}, "at least 1 item"),
        ({"encoding": "klingon"}, "unknown text encoding 'klingon'"),
        ({"fields": {"v": {"scale": "x"}}}, "fields.v.scale"),
    ],
)
def test_line_sensor_config_mistakes_are_named(change: dict[str, Any], expected: str) -> None:
    device = {
        "kind": "line",
        "name": "l",
        "port": "/dev/ttyUSB0",
        "pattern": r"(?P<v>\d+)",
        "fields": {"v": {}},
    } | change
    document = {
        "gateway_id": "gw",
        "mqtt": {"host": "localhost"},
        "outbox": {"path": "/tmp/unused.db"},
        "devices": [device],
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(document, "gateway.toml")
    text = str(caught.value)
    assert "devices[0]" in text or "devices.0" in text, text
    assert expected in text, text


# -- the whole gateway ---------------------------------------------------------------------------


def test_the_gateway_polls_serial_sensors_and_forwards_their_readings(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with (
            Sds011Sim("pm-1", period=PERIOD) as pm,
            Pms5003Sim("pms-1", period=PERIOD) as pms,
            LineDeviceSim("wx-1", period=PERIOD) as wx,
        ):
            sims: dict[str, SerialSensorSim] = {"pm-1": pm, "pms-1": pms, "wx-1": wx}
            config = parse_config(
                {
                    "gateway_id": "serial-gw",
                    "mqtt": {"host": mosquitto.host, "port": mosquitto.port},
                    "outbox": {"path": str(tmp_path / "outbox.db"), "commit_interval": "50ms"},
                    "devices": [
                        config_of(sim, interval=0.2, timeout=0.5).model_dump()
                        for sim in sims.values()
                    ],
                },
                "test",
            )
            platform = Subscriber(mosquitto.host, mosquitto.port, readings_topic(config))
            stop = asyncio.Event()
            started: asyncio.Future[Gateway] = asyncio.get_running_loop().create_future()
            readings = platform.delivery.readings
            async with asyncio.TaskGroup() as tg:
                listener = tg.create_task(platform.run(), name="test:platform")
                await asyncio.wait_for(platform.subscribed.wait(), 10)
                tg.create_task(run_gateway(config, stop, started), name="test:gateway")
                gateway = await asyncio.wait_for(started, 10)
                await until(
                    lambda: all(
                        sum(r["device"] == name for r in readings) >= 3 * len(METRICS[kind])
                        for name, kind in (
                            ("pm-1", "sds011"),
                            ("pms-1", "pms5003"),
                            ("wx-1", "line"),
                        )
                    ),
                    timeout=15,
                )
                statuses = {name: p.status for name, p in gateway.pollers.items()}
                stop.set()
                listener.cancel()
        assert all(s.health is Health.OK and s.polls_failed == 0 for s in statuses.values())
        for reading in readings:
            assert sims[reading["device"]].was_sent(reading["metric"], reading["value"]), reading

    asyncio.run(scenario())
