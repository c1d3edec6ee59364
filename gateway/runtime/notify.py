"""systemd's notify protocol, spoken directly: one datagram per message on ``$NOTIFY_SOCKET``.

Under a ``Type=notify`` unit systemd passes the path of a Unix datagram socket in
``NOTIFY_SOCKET`` (a leading ``@`` means a name in the abstract namespace) and, with
``WatchdogSec=``, the watchdog period in ``WATCHDOG_USEC`` (and ``WATCHDOG_PID``, the process it
is meant for). Messages are newline-separated ``KEY=VALUE`` assignments: ``READY=1``,
``STATUS=...``, ``WATCHDOG=1``, ``RELOADING=1``, ``STOPPING=1`` (see sd_notify(3)). Outside
systemd every call is a no-op, so the gateway runs the same way from a terminal, in a
container or in tests.

The socket is non-blocking: a notification systemd cannot take at once (its queue full) is
dropped and reported as False, never a reason to hold up the event loop. It is opened once and
kept open: a process whose file descriptors are all taken (a flood of connections) still pings
the watchdog. It is closed when the notifier is (:meth:`Notifier.close`) or collected.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

__all__ = ["Notifier", "watchdog_interval"]


def _address(value: str) -> str | bytes | None:
    """The socket address ``NOTIFY_SOCKET`` names; None when it names none we can use."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()  # abstract namespace
    if value.startswith("/"):
        return value
    return None  # e.g. vsock:… (virtual machines): not for a gateway


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Seconds between watchdog pings (half of ``WATCHDOG_USEC``), None when none are wanted.

    ``WATCHDOG_PID``, when given, must be this process: a child that inherited the variables
    must not ping for its parent.
    """
    usec = environ.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    owner = environ.get("WATCHDOG_PID", "")
    if owner and (not owner.isdigit() or int(owner) != pid):
        return None
    return int(usec) / 1_000_000 / 2


@dataclass
class Notifier:
    """Sends notifications to the service manager; inert when there is none.

    Build it with :meth:`from_environ` early (before anything changes the environment).
    ``sent`` counts delivered messages, ``lost`` those the socket refused.
    """

    address: str | bytes | None
    watchdog: float | None = None  # seconds between pings, None: no watchdog
    sent: int = 0
    lost: int = 0
    _sock: socket.socket | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def from_environ(
        cls, environ: Mapping[str, str] | None = None, pid: int | None = None
    ) -> Notifier:
        """The notifier systemd's variables describe (inert without ``NOTIFY_SOCKET``)."""
        env = os.environ if environ is None else environ
        me = os.getpid() if pid is None else pid
        raw = env.get("NOTIFY_SOCKET", "")
        address = _address(raw) if raw else None
        if raw and address is None:
            log.warning("NOTIFY_SOCKET=%s is not a Unix socket path; not notifying", raw)
        return cls(address, watchdog_interval(env, me) if address is not None else None)

    @property
    def active(self) -> bool:
        """Whether a service manager listens."""
        return self.address is not None

    def notify(self, **fields: str) -> bool:
        """Send one message (``notify(READY="1", STATUS="up")``); False if it was not sent."""
        if self.address is None:
            return False
        message = "\n".join(f"{key}={value}" for key, value in fields.items()).encode()
        try:
            self._socket().sendto(message, self.address)
        except OSError as exc:
            self.lost += 1
            if self.lost == 1 or self.lost % 100 == 0:
                log.warning("cannot notify the service manager (%d lost): %s", self.lost, exc)
            return False
        self.sent += 1
        return True

    def _socket(self) -> socket.socket:
        """The socket, opened at the first message (again after a failed open)."""
        if self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            sock.setblocking(False)
            self._sock = sock
            weakref.finalize(self, sock.close)  # closed with the notifier, without a warning
        return self._sock

    def close(self) -> None:
        """Close the socket (a later message opens it again)."""
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def ready(self, status: str) -> bool:
        """The service is up (``READY=1``), with a status line for ``systemctl status``."""
        return self.notify(READY="1", STATUS=_one_line(status))

    def status(self, status: str) -> bool:
        """A new status line."""
        return self.notify(STATUS=_one_line(status))

    def ping(self) -> bool:
        """Keep the watchdog from firing (``WATCHDOG=1``)."""
        return self.notify(WATCHDOG="1")

    def reloading(self, status: str = "restarting") -> bool:
        """The service restarts in-process (``RELOADING=1``); ``READY=1`` follows when it is up
        again. ``MONOTONIC_USEC`` is what systemd 253 and later ask to go with it."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify(RELOADING="1", MONOTONIC_USEC=str(usec), STATUS=_one_line(status))

    def stopping(self, status: str = "stopping") -> bool:
        """The service is shutting down (``STOPPING=1``)."""
        return self.notify(STOPPING="1", STATUS=_one_line(status))


def _one_line(text: str) -> str:
    return " ".join(text.split())
