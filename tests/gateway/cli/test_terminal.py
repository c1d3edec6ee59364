"""``doctor`` and ``tail`` in a real terminal (tmux): what the technician sees, and Ctrl-C."""

from __future__ import annotations

import sys
from pathlib import Path

from drivers.profile import load_profile
from simulator.broker import free_port
from simulator.modbus_server import DeviceSpec, ModbusSimulator
from tests.gateway.cli.test_tail import wait_for_readings, write_config
from tests.support.gateway_rig import gateway_process
from tests.support.sim_thread import in_thread
from tests.support.tmux import Tmux

STREETGATE = [sys.executable, "-m", "gateway"]


def test_doctor_shows_one_line_per_check(tmp_path: Path) -> None:
    config = tmp_path / "gw.toml"
    config.write_text(
        f'gateway_id = "gw"\n[mqtt]\nhost = "127.0.0.1"\nport = {free_port()}\n'
        '[outbox]\npath = "outbox.db"\n'
        '[[devices]]\nkind = "sds011"\nname = "pm"\nport = "/dev/ttyUSB97"\n'
    )
    with Tmux([*STREETGATE, "doctor", "-c", str(config)], tmp_path) as term:
        status = term.exit_status()
        screen = term.screen()
    lines = screen.splitlines()
    assert status == 1, screen
    assert any(line.startswith("PASS  config") for line in lines), screen
    assert any(line.startswith("FAIL  serial:pm") for line in lines), screen
    assert any(line.startswith("FAIL  broker:tcp") for line in lines), screen
    assert any(line.startswith("SKIP  broker:mqtt-connect") for line in lines), screen
    assert any("-> is the broker running" in line for line in lines), screen
    assert "failed: serial:pm" in screen  # the summary (stderr) names what failed
    assert "checking" not in screen  # the spinner is gone once a check is done


def test_tail_shows_readings_and_ends_with_ctrl_c(tmp_path: Path) -> None:
    specs = [DeviceSpec("meter", load_profile("sdm120"))]
    with in_thread(lambda: ModbusSimulator(specs)) as sim:
        config = write_config(tmp_path, sim["meter"].port)
        with gateway_process(config):
            wait_for_readings(tmp_path / "outbox.db", 1)
            with Tmux([*STREETGATE, "tail", "-c", str(config)], tmp_path) as term:
                screen = term.wait_for(" meter voltage ")
                term.keys("C-c")
                status = term.exit_status()
                final = term.screen()
    assert status == 0, final
    line = next(line for line in screen.splitlines() if " meter voltage " in line).split()
    assert line[0].isdigit()
    assert line[5] == "V"
    assert "stopped after" in final
    assert "Traceback" not in final
