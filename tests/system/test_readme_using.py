"""README "Using it": the three commands a developer types first, run as written."""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def using_it_commands() -> list[list[str]]:
    section = README.read_text("utf-8").split("## Using it\n", 1)[1].split("\n##", 1)[0]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    lines = [shlex.split(line, comments=True) for line in block.splitlines()]
    return [line for line in lines if line and line[0] == "streetgate"]


def as_module(command: list[str]) -> list[str]:
    return [sys.executable, "-m", "gateway", *command[1:]]


def test_sim_run_and_validate_as_the_readme_shows(tmp_path: Path) -> None:
    sim_cmd, run_cmd, validate_cmd = using_it_commands()
    assert [sim_cmd[1], run_cmd[1], validate_cmd[1]] == ["sim", "run", "validate"]
    with subprocess.Popen(
        as_module(sim_cmd),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as sim:
        try:
            assert sim.stderr is not None
            for line in sim.stderr:
                if line.startswith("serving"):
                    break
            else:
                raise AssertionError("streetgate sim did not start")
            assert (tmp_path / "gw.toml").exists()
            with subprocess.Popen(
                as_module(run_cmd), cwd=tmp_path, stderr=subprocess.PIPE, text=True
            ) as gateway:
                time.sleep(4)
                gateway.send_signal(signal.SIGTERM)
                _, log = gateway.communicate(timeout=20)
            assert gateway.returncode == 0, log
            assert log.count("starting -> ok") == 3, log  # every simulated meter was read
            result = subprocess.run(
                as_module(validate_cmd), cwd=tmp_path, capture_output=True, text=True, check=False
            )
            assert result.returncode == 0, result.stderr
            assert result.stdout.startswith("ok: gw.toml")
        finally:
            sim.send_signal(signal.SIGTERM)
            sim.communicate(timeout=10)
