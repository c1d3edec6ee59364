"""Files stay where they belong (issue 12, item 3): attacks through the files a config names.

Someone who can get a config in front of the gateway (a remote change that slipped through, a
copied config, a second gateway started by mistake) tries to make it overwrite, rename or
truncate a file that is not its own, to read an endless file into memory, or to leave readings
and secrets readable by everyone. The gateway runs as its own process (``streetgate run``),
against a real mosquitto where it matters.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from simulator.modbus_server import ModbusSimulator
from tests.support.gateway_rig import running_gateway
from tests.support.mosquitto import Mosquitto
from tests.system.test_end_to_end import fleet, platform
from tests.system.test_end_to_end import write_config as write_fleet_config

pytestmark = pytest.mark.timeout(90)

#: Exit code of a refused outbox (gateway/cli/exit_codes.py: DECLINED).
DECLINED = 8


def write_config(
    tmp_path: Path, port: int = 1, *, outbox: str = "state/outbox.db", **extra: str
) -> Path:
    lines = [
        'gateway_id = "files-gw"',
        "[mqtt]",
        'host = "127.0.0.1"',
        f"port = {port}",
        'reconnect_min = "200ms"',
        'reconnect_max = "1s"',
        *(f'{key} = "{value}"' for key, value in extra.items()),
        "[outbox]",
        f'path = "{outbox}"',
        'commit_interval = "100ms"',
        'disk_reserve = "64KiB"',
    ]
    config = tmp_path / "gw.toml"
    config.write_text("\n".join(lines) + "\n")
    return config


def run_gateway(config: Path, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    """``streetgate run`` that is expected to refuse at start (bounded in time)."""
    return subprocess.run(
        [sys.executable, "-m", "gateway", "run", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and not p.is_symlink()}


# -- outbox.path pointing at somebody else's file ------------------------------------------


def _tls_key(tmp_path: Path) -> Path:
    key = tmp_path / "tls" / "gateway.key"
    key.parent.mkdir()
    key.write_bytes(b"-----BEGIN PRIVATE KEY-----\n" + b"A" * 1200 + b"\n-----END PRIVATE KEY-----")
    key.chmod(0o600)
    return key


@pytest.mark.parametrize("target", ["tls-key", "config-file", "foreign-sqlite"])
def test_outbox_path_at_a_file_that_is_not_an_outbox_is_refused_untouched(
    tmp_path: Path, target: str
) -> None:
    if target == "tls-key":
        victim = _tls_key(tmp_path)
        config = write_config(tmp_path, outbox=str(victim))
    elif target == "config-file":
        config = write_config(tmp_path, outbox="gw.toml")
        victim = config
    else:  # another program's database next to us
        victim = tmp_path / "contacts.db"
        conn = sqlite3.connect(victim)
        conn.execute("CREATE TABLE contacts (name TEXT)")
        conn.commit()
        conn.close()
        config = write_config(tmp_path, outbox=str(victim))
    before = snapshot(victim.parent)
    started = time.monotonic()
    result = run_gateway(config)
    assert time.monotonic() - started < 15
    assert result.returncode == DECLINED, result.stderr
    assert f"outbox {victim}: " in result.stderr
    assert "refusing to use, rename or overwrite it" in result.stderr
    after = snapshot(victim.parent)
    assert after[victim.name] == before[victim.name]  # byte-identical
    assert not [name for name in after if ".corrupt-" in name]  # never renamed aside


def test_outbox_path_as_a_symlink_is_refused_and_the_target_untouched(tmp_path: Path) -> None:
    victim = _tls_key(tmp_path)
    state = tmp_path / "state"
    state.mkdir()
    (state / "outbox.db").symlink_to(victim)
    data = victim.read_bytes()
    result = run_gateway(write_config(tmp_path))
    assert result.returncode == DECLINED, result.stderr
    assert "the outbox is a symlink (to " in result.stderr
    assert victim.read_bytes() == data
    assert (state / "outbox.db").is_symlink()
    assert not list(tmp_path.rglob("*.corrupt-*"))


@pytest.mark.parametrize("companion", [".reserve", "-wal", ".state.json"])
def test_a_companion_symlinked_to_a_victim_leaves_the_victim_untouched(
    tmp_path: Path, companion: str
) -> None:
    victim = _tls_key(tmp_path)
    data = victim.read_bytes()
    state = tmp_path / "state"
    state.mkdir()
    (state / f"outbox.db{companion}").symlink_to(victim)
    result = run_gateway(write_config(tmp_path))
    assert result.returncode == DECLINED, result.stderr
    assert f"outbox.db{companion}" in result.stderr
    assert "symlink" in result.stderr
    assert victim.read_bytes() == data  # not truncated, not filled with zeros


# -- two gateways on one config ------------------------------------------------------------


def test_a_second_gateway_on_the_same_config_refuses_naming_the_first(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async def scenario() -> None:
        async with ModbusSimulator(fleet(), history=1000) as sim, platform(mosquitto) as sub:
            config = write_fleet_config(tmp_path / "gw.toml", mosquitto, sim, interval="200ms")
            async with running_gateway(config) as first:
                await sub.wait_for(30, 30)
                second = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "gateway", "run", "-c", str(config),
                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                )  # fmt: skip
                try:
                    _, err = await asyncio.wait_for(second.communicate(), 20)
                finally:
                    if second.returncode is None:
                        second.kill()
                        await second.wait()
                assert second.returncode == DECLINED, err
                message = err.decode()
                assert f"in use by the gateway with pid {first.pid}" in message
                assert "one gateway per outbox" in message
                seen = len(sub.delivery.distinct())
                await sub.wait_for(seen + 30, 30)  # the first one carries on
                assert first.returncode is None
                first.send_signal(signal.SIGTERM)
                assert await asyncio.wait_for(first.wait(), 15) == 0
            # every sequence number names one reading: nobody handed out the same seq twice
            by_seq: dict[int, set[str]] = {}
            for reading in sub.delivery.readings:
                key = json.dumps({k: reading[k] for k in ("device", "metric", "ts", "value")})
                by_seq.setdefault(reading["seq"], set()).add(key)
            assert by_seq
            assert {seq: keys for seq, keys in by_seq.items() if len(keys) > 1} == {}

    asyncio.run(scenario())


# -- endless and huge files the config names -----------------------------------------------

PROBE = """
import json, resource, sys, time
from pathlib import Path
resource.setrlimit(resource.RLIMIT_AS, (1536 * 2**20, 1536 * 2**20))
from gateway.config.model import load_config
from gateway.core.errors import StreetgateError
from gateway.uplink.forwarder import Forwarder
def peak_kb():
    # VmHWM is this process's own peak; ru_maxrss would carry the forking pytest's over exec
    hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
    return int(hwm.split()[1])
before = peak_kb()
started = time.monotonic()
try:
    config = load_config(Path(sys.argv[1]))
    if config.mqtt.password_file is not None:
        Forwarder(config, None)
    error = None
except StreetgateError as exc:
    error = str(exc)
except MemoryError:
    error = "MemoryError"
print(json.dumps({
    "error": error,
    "seconds": time.monotonic() - started,
    "rss_before_kb": before,
    "rss_peak_kb": peak_kb(),
}))
"""


def _probe(config: Path) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def _config_with_profile(tmp_path: Path, profile: str) -> Path:
    config = write_config(tmp_path)
    with config.open("a") as file:
        file.write(
            "[[devices]]\n"
            'kind = "modbus_tcp"\nname = "meter"\nhost = "127.0.0.1"\nport = 1502\n'
            f'profile = "{profile}"\n'
        )
    return config


@pytest.mark.parametrize("source", ["/dev/zero", "sparse-2GB", "fifo"])
def test_an_endless_or_huge_profile_is_refused_quickly_in_bounded_memory(
    tmp_path: Path, source: str
) -> None:
    if source == "sparse-2GB":
        path = tmp_path / "huge.toml"
        with path.open("wb") as file:
            file.truncate(2 * 1024**3)  # sparse: costs no disk
        expected = "larger than the 262,144 allowed"
    elif source == "fifo":
        path = tmp_path / "pipe.toml"
        os.mkfifo(path)  # nobody writes: opening it would wait for ever
        expected = "not a regular file"
    else:
        path = Path(source)
        expected = "not a regular file"
    figures = _probe(_config_with_profile(tmp_path, str(path)))
    assert figures["error"] is not None
    assert re.search(rf"profile.*{expected}", str(figures["error"])), figures
    assert str(path) in str(figures["error"])
    assert float(figures["seconds"]) < 1.0, figures  # type: ignore[arg-type]
    grown_kb = int(figures["rss_peak_kb"]) - int(figures["rss_before_kb"])  # type: ignore[call-overload]
    assert grown_kb < 20 * 1024, figures


def test_a_password_file_of_dev_zero_is_refused_quickly_in_bounded_memory(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path, username="gw", password_file="/dev/zero")
    figures = _probe(config)
    assert figures["error"] is not None
    assert "mqtt.password_file: not a regular file" in str(figures["error"]), figures
    assert float(figures["seconds"]) < 1.0, figures  # type: ignore[arg-type]
    grown_kb = int(figures["rss_peak_kb"]) - int(figures["rss_before_kb"])  # type: ignore[call-overload]
    assert grown_kb < 20 * 1024, figures
    # and the gateway itself says so and exits with the config's code, instead of growing
    result = run_gateway(config)
    assert result.returncode == 3, result.stderr
    assert "/dev/zero" in result.stderr
    assert "not a regular file" in result.stderr


# -- 0600 whatever the umask ---------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o000, 0o022])
def test_everything_the_gateway_writes_is_0600_whatever_the_umask(
    tmp_path: Path, mosquitto: Mosquitto, umask: int
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    # a damaged streetgate outbox: it is quarantined, and the quarantined copy holds readings
    (state / "outbox.db").write_bytes(b"SQLite format 3\x00" + b"\xff" * 5000)
    config = write_config(tmp_path, mosquitto.port)
    expected = {
        "outbox.db",
        "outbox.db-wal",
        "outbox.db-shm",
        "outbox.db.lock",
        "outbox.db.reserve",
        "outbox.db.state.json",
        "outbox.db.heartbeat.json",
    }

    def present() -> set[str]:
        return {p.name for p in state.iterdir()}

    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "run", "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: os.umask(umask),  # noqa: PLW1509 - no threads in the test process here
    )
    try:
        deadline = time.monotonic() + 30
        while not expected <= present() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert expected <= present()
        assert [n for n in present() if ".corrupt-" in n]
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in state.iterdir()}
        assert {name: mode for name, mode in modes.items() if mode != 0o600} == {}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
