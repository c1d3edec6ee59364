"""Simulated serial sensors: real frames, plausible values, commands honoured, faults, the CLI."""

from __future__ import annotations

import asyncio
import os
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from drivers import build_driver
from drivers.serial import pms5003 as pms
from drivers.serial import sds011 as sds
from drivers.serial.line import LineFormat, decode_line
from drivers.serial.link import SerialLink
from gateway.config.devices import LineSensor, Pms5003Device, Sds011Device
from gateway.config.model import load_config, parse_config
from simulator.cli import GatewaySettings, serve
from simulator.serial_sensors import Fault, LineDeviceSim, Pms5003Sim, Sds011Sim
from tests.simulator.test_simulator import flat, sim_app
from tests.support.simcli import sim_process

HOUR = range(0, 3600, 15)


def test_sds011_frames_carry_plausible_changing_values() -> None:
    sim = Sds011Sim("pm-1", seed=3)
    frames = [sim.measurement(t) for t in HOUR]
    again = Sds011Sim("other-name", seed=3)
    assert [again.measurement(t) for t in HOUR] == frames  # the seed decides
    seen = set()
    for frame, values in frames:
        decoded = sds.decode_measurement(frame)
        assert (decoded.pm2_5, decoded.pm10) == (values["pm2_5"], values["pm10"])
        assert decoded.device_id == sim.device_id
        assert 0 <= values["pm2_5"] <= values["pm10"] <= 150
        seen.add(values["pm2_5"])
    assert len(seen) > 50  # it changes, smoothly but visibly


def test_pms5003_frames_carry_consistent_masses_and_counts() -> None:
    sim = Pms5003Sim("pms-1")
    for t in HOUR:
        frame, values = sim.measurement(t)
        m = pms.decode_measurement(frame)
        assert {k: float(getattr(m, k)) for k in values} == values
        assert m.pm1_0 <= m.pm2_5 <= m.pm10
        assert (m.pm1_0_cf1, m.pm2_5_cf1, m.pm10_cf1) >= (m.pm1_0, m.pm2_5, m.pm10)
        assert m.n0_3 >= m.n0_5 >= m.n1_0 >= m.n5_0 >= m.n10
        assert m.n2_5 >= m.n5_0
        # No 42 4D inside a frame: the stream parser's resync has nothing to trip on.
        assert pms.MAGIC not in frame[1:]


def test_line_device_lines_match_its_own_pattern() -> None:
    sim = LineDeviceSim("wx-1")
    fmt = LineFormat.build(sim.PATTERN, sim.fields)
    for t in HOUR:
        line, values = sim.measurement(t)
        assert line.endswith(b"\r\n")
        samples = decode_line(line[:-2].decode("ascii"), fmt)
        assert {s.metric: s.value for s in samples} == values
        assert 5 <= values["temperature"] <= 30
        assert 30 <= values["humidity"] <= 95
        assert 1000 <= values["pressure"] <= 1030


async def read_frames(link: SerialLink, stream: sds.Sds011Stream, n: int) -> list[sds.Frame]:
    frames: list[sds.Frame] = []
    async with asyncio.timeout(3):
        while len(frames) < n:
            frames += stream.feed(await link.read())
    return frames


def test_sds011_sim_honours_mode_sleep_and_period_commands() -> None:
    async def scenario() -> None:
        async with Sds011Sim("pm-1", period=0.02) as sim:
            link = SerialLink("test", Sds011Device(kind="sds011", name="t", port=sim.path))
            await link.open()
            try:
                stream = sds.Sds011Stream()
                assert all(
                    isinstance(f, sds.Measurement) for f in await read_frames(link, stream, 3)
                )
                await link.write(sds.set_reporting_mode(sds.ReportingMode.QUERY))
                frames = await read_frames(link, stream, 1)
                while not isinstance(frames[-1], sds.Reply):  # measurements sent meanwhile
                    frames = await read_frames(link, stream, 1)
                assert frames[-1] == sds.Reply(sds.Command.REPORTING_MODE, b"\x01\x01\x00", 0x1234)
                await asyncio.sleep(0.05)  # a frame on its way when the mode changed
                sent = sim.frames_sent
                await asyncio.sleep(0.1)
                assert sim.frames_sent == sent  # query mode: silent until asked
                await link.write(sds.query_data(device_id=0x9999))  # another sensor's id
                await link.write(sds.query_data())
                (answer,) = await read_frames(link, stream, 1)
                assert isinstance(answer, sds.Measurement)
                assert sim.was_sent("pm2_5", answer.pm2_5)
                await link.write(sds.set_working(False) + sds.query_data())
                (reply,) = await read_frames(link, stream, 1)
                assert reply == sds.Reply(sds.Command.SLEEP_WORK, b"\x01\x00\x00", 0x1234)
                await link.write(sds.set_working_period(7))
                (reply,) = await read_frames(link, stream, 1)
                assert isinstance(reply, sds.Reply)
                assert (reply.command, reply.value) == (sds.Command.WORKING_PERIOD, 7)
                assert sim.working_period == 7
                assert not sim.working
                bad = bytearray(sds.query_data())
                bad[17] ^= 1
                await link.write(bytes(bad))
                await asyncio.sleep(0.05)
                assert sim.commands_rejected == 1
            finally:
                await link.close()

    asyncio.run(scenario())


def test_pms5003_sim_answers_mode_read_and_sleep_commands() -> None:
    async def scenario() -> None:
        async with Pms5003Sim("pms-1", period=0.02) as sim:
            link = SerialLink("test", Pms5003Device(kind="pms5003", name="t", port=sim.path))
            await link.open()
            stream = pms.Pms5003Stream()

            async def next_frame() -> pms.Frame:
                async with asyncio.timeout(3):
                    while True:
                        for frame in stream.feed(await link.read()):
                            return frame

            try:
                assert isinstance(await next_frame(), pms.Measurement)
                await link.write(pms.set_passive())
                while (frame := await next_frame()) != pms.Reply(pms.Command.MODE, 0):
                    assert isinstance(frame, pms.Measurement)
                await link.write(pms.read_passive())
                assert isinstance(await next_frame(), pms.Measurement)
                await link.write(pms.set_working(False))
                assert await next_frame() == pms.Reply(pms.Command.SLEEP, 0)
                assert not sim.working
            finally:
                await link.close()

    asyncio.run(scenario())


def test_faults_last_for_their_count_and_heal() -> None:
    sim = Sds011Sim("pm-1")
    sim.inject(Fault.CHECKSUM, count=2)
    assert [sim._take_fault(), sim._take_fault(), sim._take_fault()] == [
        Fault.CHECKSUM,
        Fault.CHECKSUM,
        None,
    ]
    sim.inject(Fault.SILENCE)
    assert {sim._take_fault() for _ in range(10)} == {Fault.SILENCE}
    sim.heal()
    assert sim.fault is None
    with pytest.raises(ValueError, match="count must be at least 1"):
        sim.inject(Fault.TRUNCATE, count=0)


def test_unplug_removes_the_link_and_replug_points_it_at_a_new_pty() -> None:
    async def scenario() -> None:
        async with LineDeviceSim("wx-1") as sim:
            link = Path(sim.path)
            first = sim.pty_path
            assert os.readlink(link) == first
            sim.unplug()
            assert not await asyncio.to_thread(link.exists)
            assert not sim.plugged
            sim.replug()
            assert sim.plugged
            assert os.readlink(link) == sim.pty_path  # (the kernel may reuse the number)
        assert not await asyncio.to_thread(link.parent.exists)  # its temporary folder is gone

    asyncio.run(scenario())


def test_config_entries_load_and_match_the_sims() -> None:
    async def scenario() -> None:
        async with (
            Sds011Sim("pm-1", mode=sds.ReportingMode.QUERY) as a,
            Pms5003Sim("pms-1") as b,
            LineDeviceSim("wx-1") as c,
        ):
            lines = ['gateway_id = "gw"', "[mqtt]", 'host = "h"', "[outbox]", 'path = "o.db"']
            for sim in (a, b, c):
                lines += sim.config_toml(2.5)
            config = parse_config(tomllib.loads("\n".join(lines)), "test")
            assert [d.model_dump() for d in config.devices] == [
                a.gateway_config(interval=2.5, timeout=3.0).model_dump(),
                b.gateway_config(interval=2.5, timeout=5.0).model_dump(),
                c.gateway_config(interval=2.5, timeout=5.0).model_dump(),
            ]
            line = config.devices[2]
            assert isinstance(line, LineSensor)
            assert line.fields["pressure"].scale == 0.01

    asyncio.run(scenario())


def test_serve_writes_a_config_the_gateway_polls(tmp_path: Path) -> None:
    async def scenario() -> None:
        stop = asyncio.Event()
        started: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        path = tmp_path / "gw.toml"
        task = asyncio.create_task(
            serve(
                [],
                host="127.0.0.1",
                base_port=0,
                settings=GatewaySettings(),
                config_path=path,
                stop=stop,
                started=started,  # type: ignore[arg-type]
                serial=["sds011", "sds011-query", "pms5003", "line"],
            ),
            name="test:sim",
        )
        await asyncio.wait_for(started, 10)
        config = await asyncio.to_thread(load_config, path)
        assert [(d.kind, d.name) for d in config.devices] == [
            ("sds011", "sim-sds011-1"),
            ("sds011", "sim-sds011-query-1"),
            ("pms5003", "sim-pms5003-1"),
            ("line", "sim-line-1"),
        ]
        for device in config.devices:
            assert isinstance(device, Sds011Device | Pms5003Device | LineSensor)
            async with build_driver(device) as driver:
                assert await driver.poll()
        stop.set()
        await asyncio.wait_for(task, 10)

    asyncio.run(scenario())


def test_sim_command_prints_each_serial_port(tmp_path: Path) -> None:
    async def scenario() -> None:
        path = tmp_path / "gw.toml"
        async with sim_process(
            *("--serial", "sds011", "--serial", "line", "--write-config", str(path)), lines=2
        ) as sim:
            lines = sim.lines
            assert [line[:2] for line in lines] == [
                ["sim-sds011-1", "sds011"],
                ["sim-line-1", "line"],
            ]
            for line in lines:
                assert os.readlink(line[2]) == line[3].strip("()")
            config = await asyncio.to_thread(load_config, path)
            assert [d.port for d in config.devices] == [line[2] for line in lines]
        assert sim.returncode == 0, sim.stderr
        assert "serving 2 device(s); Ctrl-C to stop" in sim.stderr

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--serial", "sds012"], "Invalid value for '--serial': expected one of sds011"),
        (["--serial", "sds011", "--rtu"], "cannot be combined with --rtu"),
    ],
)
def test_sim_rejects_bad_serial_options(args: list[str], expected: str) -> None:
    result = CliRunner().invoke(sim_app(), ["sim", *args])
    assert result.exit_code == 2, result.output
    assert expected in flat(result.stderr)
