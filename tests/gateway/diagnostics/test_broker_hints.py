"""``streetgate doctor`` pointed at ports that are not (or not quite) the MQTT broker it expects:
the hint fits what answered. Real sockets: an HTTP server, an SSH-like banner, a TLS server, a
port that closes at once, real mosquitto with and without a password file."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gateway.cli.main import app
from gateway.diagnostics.port_probe import AnswerKind, classify, connect_packet
from tests.support.mosquitto import Mosquitto
from tests.support.pki import make_pki
from tests.support.sim_thread import in_thread

CREDENTIALS_HINT = "check mqtt.username and mqtt.password_file"


def write_config(tmp_path: Path, port: int, extra: str = "") -> Path:
    path = tmp_path / "gw.toml"
    path.write_text(
        f'gateway_id = "gw"\n[mqtt]\nhost = "127.0.0.1"\nport = {port}\n{extra}\n'
        '[outbox]\npath = "outbox.db"\n'
    )
    return path


def broker_lines(config: Path) -> dict[str, dict[str, Any]]:
    result = CliRunner().invoke(app, ["doctor", "-c", str(config), "--timeout", "1", "--json"])
    data = json.loads(result.stdout)
    return {c["name"]: c for c in data["checks"] if c["name"].startswith("broker:")}


# -- pure ----------------------------------------------------------------------------------


def test_connect_packet_is_mqtt_311() -> None:
    assert connect_packet("a") == bytes.fromhex("100d00044d5154540402000a000161")
    with_creds = connect_packet("a", "u", "p")
    assert with_creds[9] == 0x02 | 0x80 | 0x40  # clean session, user name, password
    assert with_creds.endswith(b"\x00\x01u\x00\x01p")


@pytest.mark.parametrize(
    ("data", "closed", "kind", "code"),
    [
        (b"\x20\x02\x00\x05", False, AnswerKind.CONNACK, 5),
        (b"\x20\x02\x00\x00", False, AnswerKind.CONNACK, 0),
        (b"HTTP/1.1 400 Bad Request\r\nServer: x\r\n", False, AnswerKind.HTTP, None),
        (b"<!DOCTYPE HTML>\n<html>", True, AnswerKind.HTTP, None),
        (b"SSH-2.0-OpenSSH_9.2p1\r\n", False, AnswerKind.SSH, None),
        (b"\x15\x03\x03\x00\x02\x02\x46", True, AnswerKind.TLS, None),
        (b"", True, AnswerKind.CLOSED, None),
        (b"", False, AnswerKind.SILENT, None),
        (b"220 smtp ready\r\n", False, AnswerKind.OTHER, None),
    ],
)
def test_classify(data: bytes, closed: bool, kind: AnswerKind, code: int | None) -> None:
    answer = classify(data, closed=closed)
    assert answer.kind is kind
    assert answer.code == code


def test_a_banner_is_shown_cut_short_and_printable() -> None:
    answer = classify(b"HTTP/1.1 200 \x1b[31mOK" + b"x" * 500 + b"\r\nmore", closed=False)
    assert "\x1b" not in answer.banner
    assert len(answer.banner) <= 40
    assert "more" not in answer.banner


# -- real sockets --------------------------------------------------------------------------


@contextlib.contextmanager
def http_server() -> Iterator[int]:
    class Handler(BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="test:http", daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


class _Server:
    """An asyncio TCP server that greets with ``banner`` (or closes at once), optionally TLS."""

    def __init__(self, banner: bytes | None, tls: ssl.SSLContext | None = None) -> None:
        self.banner = banner
        self.tls = tls
        self.port = 0

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if self.banner is not None:
                writer.write(self.banner)
                await writer.drain()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(5):
                        await reader.read(1024)
        except OSError:
            pass
        finally:
            writer.close()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[_Server]:
        server = await asyncio.start_server(self._client, "127.0.0.1", 0, ssl=self.tls)
        self.port = server.sockets[0].getsockname()[1]
        async with server:
            yield self


def test_an_http_server_is_named_not_a_credentials_problem(tmp_path: Path) -> None:
    with http_server() as port:
        found = broker_lines(write_config(tmp_path, port))
    connect = found["broker:mqtt-connect"]
    assert not connect["ok"]
    assert "HTTP server" in connect["hint"]
    assert CREDENTIALS_HINT not in connect["hint"]


def test_an_ssh_banner_is_named(tmp_path: Path) -> None:
    banner = b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"
    with in_thread(lambda: _Server(banner).running()) as server:
        found = broker_lines(write_config(tmp_path, server.port))
    connect = found["broker:mqtt-connect"]
    assert "SSH server" in connect["hint"]
    assert "SSH-2.0-OpenSSH_9.2p1" in connect["detail"]
    assert CREDENTIALS_HINT not in connect["hint"]


def test_a_port_that_closes_at_once(tmp_path: Path) -> None:
    with in_thread(lambda: _Server(None).running()) as server:
        found = broker_lines(write_config(tmp_path, server.port))
    connect = found["broker:mqtt-connect"]
    assert "closed the connection" in connect["hint"]
    assert CREDENTIALS_HINT not in connect["hint"]


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    folder = tmp_path / "pki"
    folder.mkdir()
    return make_pki(folder)


def test_a_tls_port_spoken_in_plaintext(tmp_path: Path, pki: Path) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki / "server.crt", pki / "server.key")
    with in_thread(lambda: _Server(b"", context).running()) as server:
        found = broker_lines(write_config(tmp_path, server.port))
    connect = found["broker:mqtt-connect"]
    assert "speaks TLS" in connect["hint"]
    assert "[mqtt.tls]" in connect["hint"]
    assert CREDENTIALS_HINT not in connect["hint"]


def test_a_plain_broker_spoken_to_in_tls(tmp_path: Path, mosquitto: Mosquitto, pki: Path) -> None:
    config = write_config(tmp_path, mosquitto.port, f'[mqtt.tls]\nca_file = "{pki / "ca.crt"}"')
    found = broker_lines(config)
    tls = found["broker:tls"]
    assert not tls["ok"]
    assert "plain MQTT, not TLS" in tls["hint"]
    assert "CONNACK 0" in tls["detail"]


@pytest.fixture
def locked_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    passwords = tmp_path / "passwd"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(passwords), "sensor", "right"],
        check=True,
        capture_output=True,
    )
    passwords.chmod(0o600)
    broker = Mosquitto(tmp_path, listener_options=f"password_file {passwords}\n",
                       allow_anonymous=False)  # fmt: skip
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def test_a_broker_that_wants_credentials_none_configured(
    tmp_path: Path, locked_broker: Mosquitto
) -> None:
    found = broker_lines(write_config(tmp_path, locked_broker.port))
    connect = found["broker:mqtt-connect"]
    assert not connect["ok"]
    assert "CONNACK 5 (not authorised)" in connect["detail"]
    assert connect["hint"] == (
        "the broker wants credentials: set mqtt.username and mqtt.password_file"
    )


def test_wrong_credentials_get_the_credentials_hint(
    tmp_path: Path, locked_broker: Mosquitto
) -> None:
    secret = tmp_path / "mqtt-password"
    secret.write_text("wrong\n")
    secret.chmod(0o600)
    extra = f'username = "sensor"\npassword_file = "{secret}"'
    found = broker_lines(write_config(tmp_path, locked_broker.port, extra))
    connect = found["broker:mqtt-connect"]
    assert not connect["ok"]
    assert connect["hint"].startswith(CREDENTIALS_HINT)
    secret.write_text("right\n")
    found = broker_lines(write_config(tmp_path, locked_broker.port, extra))
    assert found["broker:mqtt-connect"]["ok"], found["broker:mqtt-connect"]
    assert found["broker:publish-readback"]["ok"]
