"""A local mosquitto on a free loopback port, for the demo, the tests and the benchmarks."""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from pathlib import Path

from gateway.core.errors import BrokerNotInstalled


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def mosquitto_binary() -> str:
    """Path of the mosquitto binary (Debian puts it in /usr/sbin, often not on PATH)."""
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and Path(candidate).exists():
            return candidate
    raise BrokerNotInstalled(
        "mosquitto is not installed; install it with 'sudo apt-get install mosquitto' "
        "(scripts/demo and scripts/test do this for you)"
    )


class LocalMosquitto:
    """One broker process. ``stop()`` then ``start()`` keeps the port, as a restart would.

    ``listener_options`` are mosquitto.conf lines for the listener (TLS files, for example).
    Sessions persist in ``workdir`` so a subscriber with a persistent session misses nothing
    published while it was reconnecting after a broker restart.
    """

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        listener_options: str = "",
        *,
        allow_anonymous: bool = True,
    ) -> None:
        """``allow_anonymous=False``: only clients with credentials (give a ``password_file``
        line in ``listener_options``)."""
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self._conf = workdir / f"mosquitto-{self.port}.conf"
        self._log = workdir / f"mosquitto-{self.port}.log"
        self._conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            f"{listener_options}"
            # Stay the current user: as root mosquitto would otherwise switch to 'mosquitto',
            # which cannot read files in a private temporary folder.
            f"user {getpass.getuser()}\n"
            f"allow_anonymous {'true' if allow_anonymous else 'false'}\n"
            "persistence true\n"
            f"persistence_location {workdir}/\n"
            f"persistence_file mosquitto-{self.port}.db\n"
            "max_inflight_messages 0\n"
            "max_queued_messages 0\n"
        )
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """Process id while running."""
        return None if self._proc is None else self._proc.pid

    def start(self, timeout: float = 10.0) -> None:
        """Start and wait until the port accepts connections."""
        binary = mosquitto_binary()
        with self._log.open("ab") as log:
            self._proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                [binary, "-c", str(self._conf)],
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own session: Ctrl-C in the terminal reaches the whole foreground group,
                # and the broker must outlive its clients until stop() (the demo's shutdown).
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                tail = self._log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"mosquitto exited at start:\n{tail}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on port {self.port} within {timeout}s")

    def stop(self) -> None:
        """Terminate (SIGTERM; SIGKILL after 5 s)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
