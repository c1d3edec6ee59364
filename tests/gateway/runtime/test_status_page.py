"""The status page's endpoints: content, access beyond loopback, methods and headers."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from gateway.config.metrics import MetricsConfig
from gateway.core.model import Reading
from gateway.management.remote_scope import refused_changes
from gateway.runtime.history import History
from gateway.runtime.metrics import MetricsServer
from gateway.runtime.status_page import (
    COOKIE,
    StatusPage,
    asset_bytes,
    create_token,
    history_document,
    is_loopback,
    page_token_path,
    read_token,
    status_document,
)
from gateway.uplink.forwarder import ForwarderStats
from tests.support.mosquitto import free_port
from tests.support.snapshots import snapshot

REMOTE = "192.0.2.7"  # TEST-NET-1: never contacted, only named as a peer


def filled_history() -> History:
    history = History()
    now_ms = int(time.time() * 1000)
    for i in range(5):
        history.record(
            [
                Reading("meter-1", "voltage", 230.0 + i, "V", now_ms - (4 - i) * 30_000),
                Reading("meter-1", "energy", 1234.5, "kWh", now_ms - (4 - i) * 30_000),
            ]
        )
    return history


def page(token_path: Path | None = None, history: History | None = None) -> StatusPage:
    async def snap() -> dict[str, Any]:
        return snapshot()

    uplink = ForwarderStats(connected_since=time.time() - 60, last_ack_unix=time.time() - 2)
    return StatusPage(
        snap, uplink, "mqtt.city.example:8883", history or filled_history(), token_path
    )


def test_the_status_document_has_what_the_technician_looks_for() -> None:
    uplink = ForwarderStats(connected_since=1000.0, last_ack_unix=1090.0)
    doc = status_document(snapshot(), uplink, "broker:8883", filled_history(), now=1100.0)
    assert doc["gateway"] == "cabinet-12"
    assert doc["clock_synchronised"] is True
    assert doc["uplink"] == {
        "state": "connected",
        "broker": "broker:8883",
        "failovers": 0,
        "connected_since": "1970-01-01T00:16:40Z",
        "connected_for_s": 100.0,
        "last_ack": "1970-01-01T00:18:10Z",
        "last_ack_age_s": 10.0,
        "connects": 2,
        "connection_failures": 1,
        "readings_published": 400,
        "last_error": "connection lost",
    }
    assert doc["outbox"]["backlog"] == 12
    assert doc["outbox"]["oldest_age_s"] == 4.5
    assert doc["outbox"]["dropped"] == 0
    devices = {d["name"]: d for d in doc["devices"]}
    assert set(devices) == {"meter-1", "climate-1", "door-1"}
    assert devices["door-1"]["health"] == "down"
    assert devices["door-1"]["errors"] == {"DeviceUnreachable": 4, "ProtocolError": 1}
    assert devices["door-1"]["last_ok"] is None
    assert devices["door-1"]["metrics"] == []
    voltage = devices["meter-1"]["metrics"][0]
    assert (voltage["name"], voltage["value"], voltage["unit"]) == ("voltage", 234.0, "V")
    json.dumps(doc, allow_nan=False)


def test_the_history_document_has_one_value_per_step() -> None:
    doc = history_document(filled_history())
    assert doc["step_s"] == 30
    voltage = next(s for s in doc["series"] if s["metric"] == "voltage")
    assert len(voltage["values"]) == 120
    assert [v for v in voltage["values"] if v is not None] == [230.0, 231.0, 232.0, 233.0, 234.0]


@pytest.mark.parametrize(
    ("peer", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.3.4.5", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        (REMOTE, False),
        ("::ffff:192.0.2.7", False),
        ("fe80::1%eth0", False),
        (None, False),
        ("garbage", False),
    ],
)
def test_loopback_is_told_by_the_peer_address(peer: str | None, loopback: bool) -> None:
    assert is_loopback(peer) is loopback


def test_the_token_file_is_private_and_read_back(tmp_path: Path) -> None:
    path = page_token_path(tmp_path / "outbox.db")
    assert path.name == "outbox.db.page-token"
    assert read_token(path) is None
    token = create_token(path)
    assert len(token) >= 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_token(path) == token
    os.chmod(path, 0o644)
    assert read_token(path) is None  # readable by others: no secret, not used
    os.chmod(path, 0o600)
    assert create_token(path) != token


def request(target: str, *headers: str, method: str = "GET") -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: gw", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_beyond_loopback_the_token_is_needed(tmp_path: Path) -> None:
    token_path = page_token_path(tmp_path / "outbox.db")
    server = MetricsServer(MetricsConfig(), snapshot_fn(), page(token_path))

    def answer(target: str, *headers: str, peer: str = REMOTE) -> Any:
        return asyncio.run(server._answer(request(target, *headers), peer))

    # No token set on the gateway yet.
    assert answer("/api/status").status.startswith("401")
    assert answer("/api/status", "Authorization: Bearer x").status.startswith("403")
    token = create_token(token_path)
    for target in ("/", "/api/status", "/metrics", "/page.js", "/nope"):
        refused = answer(target)
        assert refused.status.startswith("401"), target
        assert ("WWW-Authenticate", 'Bearer realm="streetgate"') in refused.headers
    assert answer("/api/status", "Authorization: Bearer wrong").status.startswith("403")
    assert answer("/api/status", f"Cookie: {COOKIE}=wrong").status.startswith("403")
    assert answer("/?token=wrong").status.startswith("403")
    assert answer("/api/status", f"Authorization: Bearer {token}").status == "200 OK"
    assert answer("/metrics", f"Authorization: bearer {token}").status == "200 OK"
    assert answer("/api/status", f"Cookie: a=b; {COOKIE}={token}").status == "200 OK"
    # ?token= once: a cookie the page's scripts cannot read, and the address without it.
    redirect = answer(f"/?token={token}")
    assert redirect.status == "303 See Other"
    headers = dict(redirect.headers)
    assert headers["Location"] == "/"
    assert headers["Set-Cookie"] == f"{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/"
    # Loopback needs none, as /metrics never did.
    assert answer("/api/status", peer="127.0.0.1").status == "200 OK"
    assert answer("/metrics", peer="::1").status == "200 OK"


def snapshot_fn() -> Callable[[], Awaitable[dict[str, Any]]]:
    async def snap() -> dict[str, Any]:
        return snapshot()

    return snap


@asynccontextmanager
async def serving(tmp_path: Path) -> AsyncIterator[int]:
    port = free_port()
    server = MetricsServer(
        MetricsConfig(listen=f"127.0.0.1:{port}"),
        snapshot_fn(),
        page(page_token_path(tmp_path / "outbox.db")),
    )
    task = asyncio.create_task(server.run(), name="test:metrics")
    await asyncio.wait_for(server.listening.wait(), 5)
    try:
        yield port
    finally:
        task.cancel()


async def http(port: int, target: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request(target, method=method))
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    assert int(headers["Content-Length"]) == len(body)
    return int(lines[0].split(" ")[1]), headers, body


def test_over_loopback_the_page_is_served_read_only_with_safe_headers(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(tmp_path) as port:
            status, headers, body = await http(port, "/")
            assert status == 200
            assert headers["Content-Type"] == "text/html; charset=utf-8"
            assert b'<script src="/page.js"' in body
            for target, kind in (
                ("/page.js", "text/javascript"),
                ("/page.css", "text/css"),
                ("/favicon.svg", "image/svg+xml"),
            ):
                status, headers, _ = await http(port, target)
                assert (status, headers["Content-Type"].split(";")[0]) == (200, kind)
            status, headers, body = await http(port, "/api/status")
            assert status == 200
            assert headers["Content-Type"] == "application/json"
            assert headers["Cache-Control"] == "no-store"
            assert json.loads(body)["gateway"] == "cabinet-12"
            status, headers, body = await http(port, "/api/history")
            assert status == 200
            assert headers["Cache-Control"] == "no-store"
            for target in ("/", "/api/status", "/metrics", "/nope"):
                _, headers, _ = await http(port, target)
                assert headers["Content-Security-Policy"].startswith("default-src 'self'")
                assert headers["X-Content-Type-Options"] == "nosniff"
            for method in ("POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"):
                for target in ("/", "/api/status", "/metrics"):
                    status, headers, _ = await http(port, target, method=method)
                    assert status == 405, (method, target)
                    assert headers["Allow"] == "GET"
            assert (await http(port, "/nope"))[0] == 404
            assert (await http(port, "/api/status/../../etc/passwd"))[0] == 404

    asyncio.run(scenario())


def test_the_assets_are_small_and_local() -> None:
    size = asset_bytes()
    assert size < 16_000, size
    page_js = (Path(__file__).parents[3] / "gateway/runtime/page/page.js").read_text()
    html = (Path(__file__).parents[3] / "gateway/runtime/page/index.html").read_text()
    for text in (page_js, html):
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in text


def test_a_remote_config_set_can_never_open_the_page_to_the_network(tmp_path: Path) -> None:
    current = {
        "gateway_id": "g",
        "mqtt": {"host": "h"},
        "outbox": {"path": "o.db"},
        "metrics": {"listen": "127.0.0.1:9464"},
    }
    for metrics in (
        {"listen": "127.0.0.1:9464", "allow_remote": True},
        {"listen": "0.0.0.0:9464", "allow_remote": True},
        {"listen": "127.0.0.1:9464", "page_token_file": "/tmp/mine"},
    ):
        refusals = refused_changes(current, current | {"metrics": metrics}, tmp_path / "gw.toml")
        assert refusals, metrics
        assert all(r.key.startswith("metrics") for r in refusals)
        assert all("local-only" in r.message for r in refusals)
    without = {k: v for k, v in current.items() if k != "metrics"}
    refusals = refused_changes(without, current, tmp_path / "gw.toml")
    assert refusals  # turning the listener (and so the page) on is local-only too
    assert all(r.key.startswith("metrics") for r in refusals)
