"""A real mosquitto broker on a free loopback port, started and stopped by the tests."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def mosquitto_binary() -> str:
    """Path of mosquitto, or fail the test with what to install."""
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and Path(candidate).exists():
            return candidate
    pytest.fail(
        "mosquitto is not installed: the tests need a real MQTT broker. "
        "Install it with 'sudo apt-get install mosquitto' (scripts/test does this)."
    )


class Mosquitto:
    """One broker process; ``stop()`` and ``start()`` keep the port, as a restart would."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self._workdir = workdir
        self._conf = workdir / f"mosquitto-{self.port}.conf"
        self._log = workdir / f"mosquitto-{self.port}.log"
        self._conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            # Persistent sessions survive a broker restart, so a test subscriber misses nothing
            # published while it was reconnecting.
            "persistence true\n"
            f"persistence_location {workdir}/\n"
            f"persistence_file mosquitto-{self.port}.db\n"
            "max_inflight_messages 0\n"
            "max_queued_messages 0\n"
            "message_size_limit 0\n"
        )
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = mosquitto_binary()
        with self._log.open("ab") as log:
            self._proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                [binary, "-c", str(self._conf)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self._log.read_text()[-2000:]}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.port} within 10s")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
