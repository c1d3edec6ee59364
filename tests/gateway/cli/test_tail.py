"""``streetgate tail``: readings of a real gateway process (broker down, so they stay stored)."""

from __future__ import annotations

import json
import math
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from drivers.profile import load_profile
from gateway.cli.exit_codes import ExitCode
from gateway.cli.main import app
from gateway.cli.tail import format_reading
from gateway.core.errors import OutboxMissing
from gateway.core.model import Quality, StoredReading
from gateway.store.reader import BufferStatus, buffer_status
from simulator.broker import free_port
from simulator.modbus_server import DeviceSpec, ModbusSimulator
from tests.support.gateway_rig import gateway_process
from tests.support.readme_examples import readme_commands
from tests.support.sim_thread import in_thread

METRICS = len(load_profile("sdm120").metrics)


def write_config(tmp_path: Path, port: int, name: str = "meter") -> Path:
    config = tmp_path / "gw.toml"
    config.write_text(
        'gateway_id = "tail-gw"\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {free_port()}\n'  # nobody listens: readings stay
        '[outbox]\npath = "outbox.db"\ncommit_interval = "20ms"\n'
        f'[[devices]]\nkind = "modbus_tcp"\nname = "{name}"\nhost = "127.0.0.1"\nport = {port}\n'
        'profile = "sdm120"\ninterval = "200ms"\n'
    )
    return config


def wait_for_readings(outbox: Path, count: int, timeout: float = 15) -> BufferStatus:
    deadline = time.monotonic() + timeout
    while True:
        try:
            status = buffer_status(outbox)
            if status.depth >= count:
                return status
        except OutboxMissing:
            pass
        assert time.monotonic() < deadline, "the gateway stored no readings"
        time.sleep(0.1)


@contextmanager
def running_gateway(tmp_path: Path) -> Iterator[Path]:
    """A simulated meter and a gateway process polling it every 200 ms."""
    specs = [DeviceSpec("meter", load_profile("sdm120"))]
    with in_thread(lambda: ModbusSimulator(specs)) as sim:
        config = write_config(tmp_path, sim["meter"].port)
        with gateway_process(config):
            wait_for_readings(tmp_path / "outbox.db", 1)
            yield config


def tail(config: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["tail", "-c", str(config), *args])


def test_json_lines_in_seq_order_as_the_gateway_stores_them(tmp_path: Path) -> None:
    with running_gateway(tmp_path) as config:
        wanted = 3 * METRICS  # three polls: the tail has to wait for some of them
        result = tail(config, "--json", "--from-seq", "1", "--count", str(wanted))
        new = tail(config, "--json", "--count", "2")  # from now on only
        stored = buffer_status(tmp_path / "outbox.db")
    assert result.exit_code == 0, result.stderr
    readings = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["seq"] for r in readings] == list(range(1, wanted + 1))
    assert {r["device"] for r in readings} == {"meter"}
    assert {"seq", "device", "metric", "value", "unit", "ts", "quality"} <= set(readings[0])
    assert "note: tail: the gateway is" not in result.stderr  # it is running
    assert new.exit_code == 0, new.stderr
    later = [json.loads(line)["seq"] for line in new.stdout.splitlines()]
    assert len(later) == 2
    assert later[0] > wanted
    assert later[1] == later[0] + 1
    assert stored.last_seq is not None
    assert stored.last_seq >= later[1]


def test_text_lines_of_one_device_and_a_stopped_gateway(tmp_path: Path) -> None:
    with running_gateway(tmp_path) as config:
        wait_for_readings(tmp_path / "outbox.db", METRICS)
    result = tail(config, "--device", "meter", "--from-seq", "1", "--count", str(METRICS))
    assert result.exit_code == 0, result.stderr
    assert "note: tail: the gateway is not running" in result.stderr
    lines = [line.split() for line in result.stdout.splitlines()]
    assert [int(line[0]) for line in lines] == list(range(1, METRICS + 1))
    assert all(line[2] == "meter" for line in lines)
    assert all(line[1].endswith("Z") for line in lines)
    assert {line[6] for line in lines} <= {"good", "clock_unsynced"}
    voltage = next(line for line in lines if line[3] == "voltage")
    assert voltage[5] == "V"
    float(voltage[4])


def test_format_reading() -> None:
    reading = StoredReading(7, "m", "v", 230.1, "V", 1_795_765_512_120, Quality.GOOD)
    assert format_reading(reading) == "7 2026-11-27T07:45:12.120Z m v 230.1 V good"
    nan = reading._replace(value=math.nan, unit="", quality=Quality.CLOCK_UNSYNCED)
    assert format_reading(nan) == "7 2026-11-27T07:45:12.120Z m v - - clock_unsynced"


def test_damaged_outbox(tmp_path: Path) -> None:
    config = write_config(tmp_path, 502)
    (tmp_path / "outbox.db").write_bytes(b"not a database" * 200)
    result = tail(config, "--count", "1")
    assert result.exit_code == ExitCode.DAMAGED
    assert "damaged" in result.stderr


def _interrupted(command: list[str], cwd: Path) -> tuple[int, str]:
    """Run a command that follows forever; Ctrl-C (SIGINT) once it printed a line."""
    with subprocess.Popen(
        [sys.executable, "-m", "gateway", *command], cwd=cwd, stdout=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
    return proc.returncode, first


def test_the_readme_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    commands = readme_commands("Checking on site: doctor, read, tail")
    assert {c[1] for c in commands} == {"doctor", "read", "tail"}
    specs = [DeviceSpec("meter-1", load_profile("sdm120"))]
    monkeypatch.chdir(tmp_path)  # gw.toml is relative
    with in_thread(lambda: ModbusSimulator(specs)) as sim:
        write_config(tmp_path, sim["meter-1"].port, "meter-1")
        with gateway_process(tmp_path / "gw.toml"):
            wait_for_readings(tmp_path / "outbox.db", 1)
            for command in commands:
                assert command[0] == "streetgate"
                if command[1] == "tail" and "--count" not in command:
                    status, first = _interrupted(command[1:], tmp_path)
                    assert status == 0
                    assert " meter-1 " in first
                    continue
                result = CliRunner().invoke(app, command[1:])
                if command[1] == "doctor":  # the broker is down here: its checks fail
                    assert result.exit_code == ExitCode.FAILURE, result.stderr
                    assert "broker:tcp" in result.stdout
                    # The state file shows the running gateway, with its uplink down.
                    assert re.search(r"PASS +gateway +running \(pid \d+\)", result.stdout) or (
                        "--json" in command and '"name": "gateway", "ok": true' in result.stdout
                    )
                else:
                    assert result.exit_code == 0, (command, result.stderr)
                    assert "voltage" in result.stdout


def test_without_an_outbox_it_waits_and_ctrl_c_ends_it(tmp_path: Path) -> None:
    config = write_config(tmp_path, 502)
    with subprocess.Popen(
        [sys.executable, "-m", "gateway", "tail", "-c", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stderr is not None
        assert "note: tail: the gateway is not running" in proc.stderr.readline()
        assert "yet; waiting for the gateway to create it" in proc.stderr.readline()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert out == ""
    assert "stopped after 0 reading(s)" in err
    assert not (tmp_path / "outbox.db").exists()
