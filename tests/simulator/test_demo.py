"""The README's demo: `streetgate demo` shows readings from every simulated device."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from simulator.demo import quality_notes, watch_hint


def test_demo_prints_readings_of_every_device_and_exits_cleanly(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "demo", "--duration", "4", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "readings as the broker receives them" in result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("#")]
    devices = {line.split()[2] for line in lines}
    assert devices == {"demo-sdm120-1", "demo-sdm630-2", "demo-xy-md02-3"}
    seqs = [int(re.match(r"#(\d+)", line).group(1)) for line in lines]
    assert seqs == list(range(1, len(seqs) + 1))
    assert (tmp_path / "outbox.db").exists()


def test_ctrl_c_stops_the_demo_cleanly(tmp_path: Path) -> None:
    """Ctrl-C in a terminal signals the whole foreground process group, mosquitto included:
    the demo must still stop in order (no traceback because its broker vanished first)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "demo", "--workdir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a shell gives a foreground job
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("#20 "):
                break
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "Error" not in err


def test_clock_unsynced_is_explained_once_where_it_first_shows() -> None:
    said: set[str] = set()
    good = [{"quality": "good"}]
    unsynced = [{"quality": "good"}, {"quality": "clock_unsynced"}]
    assert quality_notes(good, said) == []
    [note] = quality_notes(unsynced, said)
    assert note.startswith("demo: clock_unsynced: the gateway could not confirm")
    assert "synchronised by NTP" in note
    assert "stored and sent all the same" in note
    assert quality_notes(unsynced, said) == []  # once


def test_the_watch_hint_names_the_package_when_mosquitto_sub_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert "sudo apt-get install mosquitto-clients" in watch_hint(1883)
    assert watch_hint(1883).startswith("demo: watch it yourself: mosquitto_sub -p 1883 -t '#' -v")
