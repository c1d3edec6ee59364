"""The status page a technician opens at the cabinet: ``/``, its assets and ``/api/status``.

Served by the metrics listener (gateway/runtime/metrics.py: same connection cap and timeouts)
whenever ``[metrics]`` is configured. Read-only: GET only, anything else is 405. The page
(gateway/runtime/page/: HTML, CSS, JS, no CDN) polls ``/api/status`` every 2 s and
``/api/history`` every 30 s; both are documented in docs/status-page.md.

Access: a loopback client is served as ``/metrics`` always was. A client beyond loopback (only
possible with ``[metrics] allow_remote = true``, a local-only setting) must show the access
token kept in ``<outbox>.page-token`` (0600, made by ``streetgate page token``): as
``?token=`` once (answered with a cookie, ``HttpOnly; SameSite=Strict``, and a redirect that
drops it from the address), the cookie, or ``Authorization: Bearer``. No token shown: 401; a
wrong one, or none set on the gateway: 403. Tokens are compared in constant time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import math
import os
import secrets
import stat
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import parse_qs

from gateway.core.key_files import write_atomically
from gateway.runtime.history import History

# Only a type here: the forwarder loads aiomqtt, which ``streetgate page`` does without.
if TYPE_CHECKING:
    from gateway.uplink.forwarder import ForwarderStats

__all__ = [
    "ASSETS",
    "COOKIE",
    "Response",
    "StatusPage",
    "asset_bytes",
    "create_token",
    "is_loopback",
    "page_token_path",
    "read_token",
    "status_document",
]

#: Security headers on every answer of the listener.
SECURITY_HEADERS = (
    (
        "Content-Security-Policy",
        "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
)
NO_STORE = (("Cache-Control", "no-store"),)

#: Path → (file in gateway/runtime/page/, content type).
ASSETS = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/page.js": ("page.js", "text/javascript; charset=utf-8"),
    "/page.css": ("page.css", "text/css; charset=utf-8"),
    "/favicon.svg": ("favicon.svg", "image/svg+xml"),
}
JSON_TYPE = "application/json"
COOKIE = "streetgate_token"
TOKEN_MAX_BYTES = 256


class Response(NamedTuple):
    """One answer: status line text, body, content type and extra headers."""

    status: str
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()


def page_token_path(outbox_path: Path) -> Path:
    """Where the page's access token is kept: beside the outbox, in the state directory."""
    return outbox_path.with_name(outbox_path.name + ".page-token")


def create_token(path: Path) -> str:
    """A new random token written to ``path`` with mode 0600 (replacing any old one)."""
    token = secrets.token_urlsafe(32)
    write_atomically(path, (token + "\n").encode(), 0o600)
    return token


def read_token(path: Path) -> str | None:
    """The token in ``path``; None when there is none, or the file is not a private regular
    file (a token others can read is no secret: it is refused, not used). Blocking."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or stat.S_IMODE(info.st_mode) & 0o077:
            return None
        token = os.read(fd, TOKEN_MAX_BYTES + 1)
    finally:
        os.close(fd)
    if len(token) > TOKEN_MAX_BYTES:
        return None
    text = token.decode("ascii", "replace").strip()
    return text or None


def is_loopback(peer: str | None) -> bool:
    """Whether a client address is this machine's loopback (IPv4-mapped IPv6 included)."""
    if peer is None:
        return False
    try:
        address = ipaddress.ip_address(peer.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


@cache
def _asset(name: str) -> bytes:
    return (files("gateway.runtime") / "page" / name).read_bytes()


def load_assets() -> dict[str, bytes]:
    """Every asset's bytes by path (read once per process). Blocking: call it in a thread."""
    return {path: _asset(name) for path, (name, _) in ASSETS.items()}


def asset_bytes() -> int:
    """What the page costs to load, in bytes (HTML, CSS and JS, uncompressed)."""
    return sum(len(body) for body in load_assets().values())


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _iso(unix: float | None) -> str | None:
    if unix is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(unix))


def _age(now: float, unix: float | None) -> float | None:
    return None if unix is None else round(max(0.0, now - unix), 1)


def status_document(
    snapshot: dict[str, Any],
    uplink: ForwarderStats,
    broker: str,
    history: History,
    now: float | None = None,
) -> dict[str, Any]:
    """``/api/status``: the health snapshot reshaped for the page, with each metric's last value.

    ``now``: Unix time the ages are counted to (default: the current time).
    """
    now = time.time() if now is None else now
    box = snapshot["outbox"]
    fwd = snapshot["forwarder"]
    metrics: dict[str, list[dict[str, Any]]] = {}
    for (device, metric), series in history.series.items():
        metrics.setdefault(device, []).append(
            {
                "name": metric,
                "unit": series.unit,
                "value": _finite(series.last_value),
                "age_s": _age(now, series.last_ts_ms / 1000),
            }
        )
    devices = [
        {
            "name": name,
            "health": dev["health"],
            "last_ok": dev["last_ok"],
            "last_ok_age_s": None if dev["last_ok"] is None else _age(now, _unix(dev["last_ok"])),
            "consecutive_failures": dev["consecutive_failures"],
            "polls_ok": dev["polls_ok"],
            "polls_failed": dev["polls_failed"],
            "errors": dev["errors"],
            "last_error": dev["last_error"],
            "metrics": metrics.get(name, []),
        }
        for name, dev in snapshot["devices"].items()
    ]
    return {
        "gateway": snapshot["gateway"],
        "version": snapshot["version"],
        "ts": snapshot["ts"],
        "uptime_s": snapshot["uptime_s"],
        "clock_synchronised": snapshot["clock_synchronised"],
        "insecure": snapshot["insecure"],
        "uplink": {
            "state": fwd["state"],
            "broker": uplink.broker or broker,  # the one in use; else the configured list
            "failovers": uplink.failovers,
            "connected_since": _iso(uplink.connected_since),
            "connected_for_s": _age(now, uplink.connected_since),
            "last_ack": _iso(uplink.last_ack_unix),
            "last_ack_age_s": _age(now, uplink.last_ack_unix),
            "connects": fwd["connects"],
            "connection_failures": fwd["connection_failures"],
            "readings_published": fwd["readings_published"],
            "last_error": fwd["last_error"],
        },
        "outbox": {
            "backlog": box["depth"],
            "oldest_age_s": box["oldest_age_s"],
            "bytes": box["bytes"],
            "max_bytes": box["max_bytes"],
            "dropped": box["dropped"],
            "purged": box["purged"],
            "disk_full": box["disk_full"],
        },
        "devices": devices,
    }


def _unix(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def history_document(history: History) -> dict[str, Any]:
    """``/api/history``: every metric's last hour, one value (or null) per step, oldest first."""
    series = []
    for (device, metric), one in history.series.items():
        end, values = one.points()
        series.append(
            {
                "device": device,
                "metric": metric,
                "unit": one.unit,
                "end": end,
                "values": [None if v is None else _finite(v) for v in values],
            }
        )
    return {"step_s": history.step_s, "points": history.points, "series": series}


def _headers(head: bytes) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in head.split(b"\r\n")[1:]:
        name, sep, value = line.decode("latin-1").partition(":")
        if sep:
            found[name.strip().lower()] = value.strip()
    return found


def _cookie(header: str) -> str | None:
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name == COOKIE:
            return value
    return None


def _same(shown: str, token: str) -> bool:
    return hmac.compare_digest(shown.encode("utf-8", "replace"), token.encode())


class StatusPage:
    """Answers the page's paths and checks access for clients beyond loopback."""

    def __init__(
        self,
        snapshot: Callable[[], Awaitable[dict[str, Any]]],
        uplink: ForwarderStats,
        broker: str,
        history: History,
        token_path: Path | None,
    ) -> None:
        self._snapshot = snapshot
        self._uplink = uplink
        self._broker = broker
        self._history = history
        self._token_path = token_path
        self._assets: dict[str, bytes] | None = None
        self.served = 0  # /api/status answers, for the benchmark and tests

    def handles(self, path: str) -> bool:
        """Whether ``path`` is one of the page's."""
        return path in ASSETS or path in {"/api/status", "/api/history"}

    async def check_access(self, target: str, head: bytes, peer: str | None) -> Response | None:
        """None when the request may be served; else the refusal (or the cookie redirect)."""
        if is_loopback(peer):
            return None
        token = None
        if self._token_path is not None:
            with contextlib.suppress(OSError):
                token = await asyncio.to_thread(read_token, self._token_path)
        path, _, query = target.partition("?")
        headers = _headers(head)
        shown_query = parse_qs(query).get("token", [None])[0]
        bearer = headers.get("authorization", "")
        shown = (
            shown_query
            or (bearer[7:].strip() if bearer[:7].lower() == "bearer " else None)
            or _cookie(headers.get("cookie", ""))
        )
        if shown is None:
            return Response(
                "401 Unauthorized",
                b"an access token is needed beyond loopback: open /?token=... "
                b"(on the gateway: streetgate page token -c CONFIG)\n",
                headers=(("WWW-Authenticate", 'Bearer realm="streetgate"'),),
            )
        if token is None:
            return Response(
                "403 Forbidden",
                b"no access token is set on this gateway: "
                b"create one on site with streetgate page token -c CONFIG\n",
            )
        if not _same(shown, token):
            return Response("403 Forbidden", b"wrong access token\n")
        if shown_query is not None:
            # Keep the token out of the address bar and history: a cookie, then the page.
            cookie = f"{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/"
            return Response(
                "303 See Other",
                b"",
                headers=(("Location", path or "/"), ("Set-Cookie", cookie), *NO_STORE),
            )
        return None

    async def answer(self, path: str) -> Response:
        """The answer to ``GET path`` (a path :meth:`handles`)."""
        if path == "/api/status":
            doc = status_document(await self._snapshot(), self._uplink, self._broker, self._history)
            self.served += 1
            return Response("200 OK", _json(doc), JSON_TYPE, NO_STORE)
        if path == "/api/history":
            return Response("200 OK", _json(history_document(self._history)), JSON_TYPE, NO_STORE)
        if self._assets is None:
            self._assets = await asyncio.to_thread(load_assets)
        return Response(
            "200 OK", self._assets[path], ASSETS[path][1], (("Cache-Control", "no-cache"),)
        )


def _json(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()
