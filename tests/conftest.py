"""Shared fixtures: a real mosquitto per test that asks for one."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from blockbuster import blockbuster_ctx

from drivers.profile import builtin_profiles, load_profile
from tests.support.mosquitto import Mosquitto


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


# Shipped profiles are read once per process; read them before any test's event loop runs.
for _name in builtin_profiles():
    load_profile(_name)


@pytest.fixture(autouse=True)
def no_blocking_calls_on_the_event_loop() -> Iterator[None]:
    """Fail a test in which the runtime (gateway, drivers) blocks a running event loop."""
    with blockbuster_ctx(["gateway", "drivers"]):
        yield


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB filesystem (tmpfs), so the outbox meets a full disk for real."""
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"the disk-full test mounts a tmpfs and needs root: {result.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)
