"""The health figures as OpenMetrics text on a local HTTP endpoint (``[metrics] listen``).

:func:`render` turns a health snapshot (gateway/runtime/health_report.py) into OpenMetrics 1.0
text; the :class:`MetricsServer` serves it for ``GET /metrics``, and the status page
(gateway/runtime/status_page.py: ``/``, ``/api/status``) beside it, with a deliberately small
HTTP/1.1 server (one request per connection, bounded request size and time, a bounded number
of connections at once), owned by the ``status:metrics`` task. It listens on loopback unless
the config allows more (config_metrics.py). A scrape costs one snapshot; between scrapes the
server only waits on its socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from typing import Any

from gateway.config.metrics import MetricsConfig, split_listen
from gateway.runtime.status_page import SECURITY_HEADERS, Response, StatusPage

log = logging.getLogger(__name__)

__all__ = ["CONTENT_TYPE", "MetricsServer", "render"]

CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"

#: A request (line and headers) larger than this, or slower than REQUEST_TIMEOUT, gets a 400.
MAX_REQUEST = 8192
REQUEST_TIMEOUT = 5.0

#: A connection still open this long after it was accepted (a client that does not read the
#: answer) is cut.
CONNECTION_TIMEOUT = 10.0

#: Connections served at once; one more is closed as soon as it is accepted. A scraper needs
#: one. Never more than an eighth of the process's file descriptors (RLIMIT_NOFILE), so a
#: flood of connections leaves the outbox, the broker connection and the devices theirs.
MAX_CONNECTIONS = 32


def connection_cap(max_connections: int = MAX_CONNECTIONS) -> int:
    """Connections to serve at once under this process's file descriptor limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return max_connections
    return max(1, min(max_connections, soft // 8))


#: Every device health state, for the stateset.
HEALTH_STATES = ("starting", "ok", "degraded", "down")
FORWARDER_STATES = ("connecting", "connected", "waiting")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def _number(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def _unix(iso: str | None) -> float | None:
    return None if iso is None else datetime.fromisoformat(iso).timestamp()


class _Family:
    """One metric family: its metadata lines, then its samples."""

    def __init__(self, name: str, kind: str, help_text: str, unit: str = "") -> None:
        self.name = name
        self.lines = [f"# TYPE {name} {kind}", f"# HELP {name} {help_text}"]
        if unit:
            self.lines.append(f"# UNIT {name} {unit}")
        self.suffix = {"counter": "_total", "info": "_info"}.get(kind, "")

    def sample(self, value: float, **labels: str) -> None:
        self.lines.append(f"{self.name}{self.suffix}{_labels(labels)} {_number(value)}")


def _families(snapshot: dict[str, Any]) -> Iterator[_Family]:  # noqa: PLR0915 - one per metric
    gateway = snapshot["gateway"]

    build = _Family("streetgate_build", "info", "Gateway id and software version.")
    build.sample(1, gateway=gateway, version=str(snapshot["version"]))
    yield build
    uptime = _Family("streetgate_uptime_seconds", "gauge", "Seconds since start.", "seconds")
    uptime.sample(snapshot["uptime_s"])
    yield uptime
    clock = _Family(
        "streetgate_clock_synchronised", "gauge", "1 when the wall clock is NTP-synchronised."
    )
    clock.sample(bool(snapshot["clock_synchronised"]))
    yield clock

    fwd = snapshot["forwarder"]
    state = _Family("streetgate_forwarder_state", "stateset", "Where the MQTT uplink is.")
    for name in FORWARDER_STATES:
        state.sample(fwd["state"] == name, streetgate_forwarder_state=name)
    yield state
    if fwd.get("broker"):
        broker = _Family(
            "streetgate_forwarder_broker", "info", "The broker in use (or being tried)."
        )
        broker.sample(1, broker=str(fwd["broker"]))
        yield broker
    for key, help_text in (
        ("failovers", "Connections made to another broker than the one before."),
        ("connects", "Connections made to the broker."),
        ("connection_failures", "Connections lost or refused."),
        ("messages_published", "Readings messages acknowledged by the broker."),
        ("readings_published", "Readings acknowledged by the broker."),
    ):
        counter = _Family(f"streetgate_forwarder_{key}", "counter", help_text)
        counter.sample(fwd.get(key, 0))  # failovers: absent from older snapshots
        yield counter

    box = snapshot["outbox"]
    depth = _Family("streetgate_outbox_readings", "gauge", "Readings in the outbox, not yet acked.")
    depth.sample(box["depth"])
    yield depth
    size = _Family("streetgate_outbox_bytes", "gauge", "Bytes the outbox uses.", "bytes")
    size.sample(box["bytes"])
    yield size
    cap = _Family("streetgate_outbox_max_bytes", "gauge", "The outbox's size limit.", "bytes")
    cap.sample(box["max_bytes"])
    yield cap
    age = _Family(
        "streetgate_outbox_oldest_age_seconds",
        "gauge",
        "Age of the oldest reading in the outbox (absent when empty).",
        "seconds",
    )
    if box["oldest_age_s"] is not None:
        age.sample(box["oldest_age_s"])
    yield age
    for key, help_text in (
        ("dropped", "Readings dropped because the outbox was full."),
        ("purged", "Undelivered readings deleted by a technician."),
    ):
        counter = _Family(f"streetgate_outbox_{key}_readings", "counter", help_text)
        counter.sample(box[key])
        yield counter

    devices: dict[str, dict[str, Any]] = snapshot["devices"]
    health = _Family("streetgate_device_health", "stateset", "Each device's health.")
    last_ok = _Family(
        "streetgate_device_last_ok_timestamp_seconds",
        "gauge",
        "Unix time of the device's last successful poll (absent before the first).",
        "seconds",
    )
    polls = _Family("streetgate_device_polls", "counter", "Polls by result (ok, failed).")
    errors = _Family("streetgate_device_errors", "counter", "Failed polls by kind of error.")
    failing = _Family(
        "streetgate_device_consecutive_failures", "gauge", "Failed polls in a row (0: last ok)."
    )
    overruns = _Family(
        "streetgate_device_overruns", "counter", "Poll slots skipped: a poll outlasted them."
    )
    dropped = _Family(
        "streetgate_device_dropped", "counter", "Input refused by reason (replay: old BLE counter)."
    )
    suppressed = _Family(
        "streetgate_device_suppressed",
        "counter",
        "Readings not stored: within the deadband of the last stored value.",
    )
    for name, dev in devices.items():
        for state_name in HEALTH_STATES:
            health.sample(
                dev["health"] == state_name, device=name, streetgate_device_health=state_name
            )
        stamp = _unix(dev["last_ok"])
        if stamp is not None:
            last_ok.sample(stamp, device=name)
        polls.sample(dev["polls_ok"], device=name, result="ok")
        polls.sample(dev["polls_failed"], device=name, result="failed")
        for kind, count in sorted(dev["errors"].items()):
            errors.sample(count, device=name, kind=kind)
        failing.sample(dev["consecutive_failures"], device=name)
        overruns.sample(dev["overruns"], device=name)
        for reason, count in sorted(dev.get("dropped", {}).items()):
            dropped.sample(count, device=name, reason=reason)
        suppressed.sample(dev.get("suppressed", 0), device=name)
    yield from (health, last_ok, polls, errors, failing, overruns, dropped, suppressed)

    reload = snapshot.get("reload")
    if reload is not None:  # gateway/runtime/reload.py
        reloads = _Family(
            "streetgate_config_reloads",
            "counter",
            "Config reloads (SIGHUP) by result: applied, invalid, refused, rolled_back.",
        )
        for result, count in sorted(reload["counts"].items()):
            reloads.sample(count, result=result)
        yield reloads


def render(snapshot: dict[str, Any]) -> str:
    """OpenMetrics text for one health snapshot, ending with ``# EOF``."""
    lines = [line for family in _families(snapshot) for line in family.lines]
    return "\n".join([*lines, "# EOF"]) + "\n"


class MetricsServer:
    """Serves ``GET /metrics``; run ``run()`` as a task (``status:metrics``)."""

    def __init__(
        self,
        config: MetricsConfig,
        snapshot: Callable[[], Awaitable[dict[str, Any]]],
        page: StatusPage | None = None,
    ) -> None:
        self._host, self._port = split_listen(config.listen)
        self._snapshot = snapshot
        self._page = page  # None: /metrics only
        self.port: int | None = None  # the bound port (the configured one, or a free one for 0)
        self.listening = asyncio.Event()
        self.scrapes = 0
        self.max_connections = connection_cap()
        # Connections still reading their request, oldest first; then those being answered.
        self._reading: OrderedDict[int, asyncio.StreamWriter] = OrderedDict()
        self._answering: set[int] = set()
        self.evicted = 0  # connections cut to make room: the oldest still reading its request
        self.refused = 0  # connections closed at once: every open one was being answered

    @property
    def open_connections(self) -> int:
        """Connections being served now."""
        return len(self._reading) + len(self._answering)

    async def run(self) -> None:
        """Listen until cancelled."""
        try:
            server = await asyncio.start_server(
                self._serve,
                self._host,
                self._port,
                limit=MAX_REQUEST,
                # asyncio accepts up to `backlog` connections at a time before serving any:
                # keep that batch (file descriptors held before the cap is checked) small.
                backlog=self.max_connections,
            )
        except OSError as exc:
            # Metrics are for looking; readings must flow on without them.
            log.error("metrics: cannot listen on %s:%d: %s", self._host, self._port, exc.strerror)  # noqa: TRY400 - the reason is the message
            return
        self.port = server.sockets[0].getsockname()[1]
        log.info("metrics on http://%s:%d/metrics", self._host, self.port)
        self.listening.set()
        async with server:
            await server.serve_forever()

    def _make_room(self) -> bool:
        """At the cap, cut the connection that has waited longest for its request (a slow or
        idle client; a scraper sends its request at once). False when there is none to cut."""
        if self.open_connections < self.max_connections:
            return True
        if self._reading:
            _, oldest = self._reading.popitem(last=False)
            oldest.transport.abort()
            self.evicted += 1
            count, what = self.evicted, "cutting the oldest idle one"
        else:
            self.refused += 1
            count, what = self.refused, "refusing new ones"
        if count == 1 or count % 1000 == 0:
            log.warning(
                "metrics: %d connections open; %s (%d so far)", self.max_connections, what, count
            )
        return bool(self.open_connections < self.max_connections)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._make_room():
            writer.transport.abort()
            return
        key = id(writer)
        self._reading[key] = writer
        try:
            async with asyncio.timeout(CONNECTION_TIMEOUT):
                await self._serve_one(reader, writer, key)
        except TimeoutError:
            writer.transport.abort()  # the client does not take the answer
        finally:
            self._reading.pop(key, None)
            self._answering.discard(key)

    async def _serve_one(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: int
    ) -> None:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            head = None
        except ConnectionError:
            head = None
            self._reading.pop(key, None)
        if self._reading.pop(key, None) is None:
            writer.transport.abort()  # cut to make room, or gone
            return
        self._answering.add(key)
        if head is None:
            answer = Response("400 Bad Request", b"bad request\n", "text/plain")
        else:
            peer = writer.get_extra_info("peername")
            answer = await self._answer(head, peer[0] if peer else None)
        status, body, content_type, extra = answer
        headers = "".join(f"{k}: {v}\r\n" for k, v in (*SECURITY_HEADERS, *extra))
        try:
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\n{headers}Connection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(self, head: bytes, peer: str | None) -> Response:
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split(" ")
        if len(parts) != 3:
            return Response("400 Bad Request", b"bad request line\n", "text/plain")
        method, target, _ = parts
        path = target.split("?", 1)[0]
        if self._page is not None:
            # Beyond loopback, everything (also /metrics) needs the page's access token.
            refused = await self._page.check_access(target, head, peer)
            if refused is not None:
                return refused
        page = self._page is not None and self._page.handles(path)
        if path != "/metrics" and not page:
            return Response("404 Not Found", b"try /metrics\n", "text/plain")
        if method != "GET":
            return Response(
                "405 Method Not Allowed", b"GET only\n", "text/plain", (("Allow", "GET"),)
            )
        if self._page is not None and page:
            return await self._page.answer(path)
        text = render(await self._snapshot())
        self.scrapes += 1
        return Response("200 OK", text.encode(), CONTENT_TYPE)
