"""What answers on the broker's port when MQTT CONNECT fails: a broker that refused (and why),
or something that is no MQTT broker at all (HTTP, SSH, TLS where plain was expected, silence).

``streetgate doctor`` uses it to give the hint that fits: the credentials hint only when the
broker really refused the credentials. :func:`connect_packet` and :func:`classify` are pure;
:func:`probe` sends one MQTT 3.1.1 CONNECT and reads at most ``MAX_ANSWER`` bytes of the answer
(what comes back is hostile: bounded, and shown only as printable ASCII, cut short).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "BANNER_SHOWN",
    "CONNACK_BAD_CLIENT_ID",
    "CONNACK_BAD_VERSION",
    "CONNACK_CODES",
    "CONNACK_NOT_AUTHORISED",
    "MAX_ANSWER",
    "Answer",
    "AnswerKind",
    "classify",
    "connect_packet",
    "probe",
    "second_look",
    "speaks_tls",
]

#: Bytes of the answer read at most: enough for a CONNACK, a banner or a TLS record header.
MAX_ANSWER = 256
#: Characters of a banner shown.
BANNER_SHOWN = 40

_DISCONNECT = b"\xe0\x00"

#: CONNACK return codes of MQTT 3.1.1 (section 3.2.2.3).
CONNACK_CODES = {
    0: "accepted",
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorised",
}
CONNACK_BAD_VERSION = 1
CONNACK_BAD_CLIENT_ID = 2
CONNACK_NOT_AUTHORISED = 5
#: The codes that mean "who are you": the credentials (or their absence) were refused.
CREDENTIAL_CODES = frozenset({4, 5})


class AnswerKind(StrEnum):
    """What came back for an MQTT CONNECT."""

    CONNACK = "connack"  # an MQTT broker answered (accepted, or refused with .code)
    HTTP = "http"  # "HTTP/1.1 400 Bad Request" and the like
    SSH = "ssh"  # an SSH server's banner
    TLS = "tls"  # a TLS record (an alert or a handshake): the port speaks TLS
    CLOSED = "closed"  # the connection closed without a byte
    SILENT = "silent"  # no byte within the timeout, connection still open
    OTHER = "other"  # bytes, but none of the above


@dataclass(frozen=True, slots=True)
class Answer:
    """The first bytes back for an MQTT CONNECT, judged."""

    kind: AnswerKind
    code: int | None = None  # the CONNACK return code
    banner: str = ""  # printable start of what came back (HTTP, SSH, other)

    @property
    def refused(self) -> bool:
        """A broker answered and refused the connection."""
        return self.kind is AnswerKind.CONNACK and self.code != 0

    @property
    def refused_credentials(self) -> bool:
        """A broker refused for bad credentials or none (not authorised)."""
        return self.kind is AnswerKind.CONNACK and self.code in CREDENTIAL_CODES

    def describe(self) -> str:
        """For a doctor line: what came back."""
        if self.kind is AnswerKind.CONNACK:
            name = CONNACK_CODES.get(self.code or 0, "an unknown code")
            return f"the MQTT broker answered CONNACK {self.code} ({name})"
        if self.kind is AnswerKind.TLS:
            return "a TLS server answered (a TLS record, not MQTT)"
        if self.kind is AnswerKind.CLOSED:
            return "the connection was closed without an answer"
        if self.kind is AnswerKind.SILENT:
            return "no answer to MQTT CONNECT"
        what = {AnswerKind.HTTP: "an HTTP server", AnswerKind.SSH: "an SSH server"}.get(
            self.kind, "something that is not MQTT"
        )
        return f"{what} answered: {self.banner!r}"


def _utf8(text: str) -> bytes:
    data = text.encode()
    if len(data) > 0xFFFF:
        raise ValueError("an MQTT string has at most 65535 bytes")
    return len(data).to_bytes(2, "big") + data


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def connect_packet(
    client_id: str, username: str | None = None, password: str | None = None, keepalive: int = 10
) -> bytes:
    """An MQTT 3.1.1 CONNECT (clean session) with optional user name and password."""
    flags = 0x02
    payload = _utf8(client_id)
    if username is not None:
        flags |= 0x80
        payload += _utf8(username)
        if password is not None:
            flags |= 0x40
            payload += _utf8(password)
    variable = _utf8("MQTT") + bytes([4, flags]) + keepalive.to_bytes(2, "big")
    body = variable + payload
    return b"\x10" + _remaining_length(len(body)) + body


def _printable(data: bytes) -> str:
    """The first line of ``data``, cut short, anything but printable ASCII as '.'."""
    line = data.split(b"\n", 1)[0].rstrip(b"\r")[:BANNER_SHOWN]
    return "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in line)


def classify(data: bytes, *, closed: bool) -> Answer:
    """Judge the first bytes back for a CONNECT (``closed``: the peer closed the connection)."""
    if not data:
        return Answer(AnswerKind.CLOSED if closed else AnswerKind.SILENT)
    if data[0] == 0x20 and len(data) >= 4 and data[1] == 0x02:
        return Answer(AnswerKind.CONNACK, code=data[3])
    if data.startswith(b"HTTP/") or data.lstrip()[:9].lower().startswith((b"<!doctype", b"<html")):
        # an HTTP/0.9-style answer (Python's http.server to a request line without a
        # version) is only the HTML body
        return Answer(AnswerKind.HTTP, banner=_printable(data))
    if data.startswith(b"SSH-"):
        return Answer(AnswerKind.SSH, banner=_printable(data))
    if data[0] in (0x15, 0x16) and len(data) >= 2 and data[1] == 0x03:
        return Answer(AnswerKind.TLS)
    return Answer(AnswerKind.OTHER, banner=_printable(data))


async def _read_answer(reader: asyncio.StreamReader, wait: float) -> tuple[bytes, bool]:
    """Up to MAX_ANSWER bytes: until a CONNACK's 4 bytes, a line, EOF or ``wait`` seconds."""
    data = b""
    closed = False
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while len(data) < MAX_ANSWER:
        left = deadline - loop.time()
        if left <= 0:
            break
        try:
            async with asyncio.timeout(left):
                chunk = await reader.read(MAX_ANSWER - len(data))
        except TimeoutError:
            break
        except OSError:  # reset by the peer (ssl.SSLError is an OSError)
            closed = True
            break
        if not chunk:
            closed = True
            break
        data += chunk
        if (data[0] == 0x20 and len(data) >= 4) or b"\n" in data or data[0] in (0x15, 0x16):
            break
    return data, closed


async def probe(
    host: str,
    port: int,
    wait: float,
    *,
    tls: ssl.SSLContext | None = None,
    client_id: str = "streetgate-doctor",
    username: str | None = None,
    password: str | None = None,
) -> Answer | None:
    """Send one CONNECT and judge the answer; None when no connection (or TLS) could be made.

    A connection the broker accepts is closed with DISCONNECT at once.
    """
    try:
        async with asyncio.timeout(wait):
            reader, writer = await asyncio.open_connection(
                host, port, ssl=tls, server_hostname=host if tls is not None else None
            )
    except (OSError, TimeoutError):
        return None
    try:
        with contextlib.suppress(OSError):
            writer.write(connect_packet(client_id, username, password))
            await writer.drain()
        data, closed = await _read_answer(reader, wait)
        answer = classify(data, closed=closed)
        if answer.kind is AnswerKind.CONNACK and answer.code == 0:
            with contextlib.suppress(OSError):
                writer.write(_DISCONNECT)
                await writer.drain()
        return answer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def speaks_tls(host: str, port: int, wait: float) -> bool:
    """Whether a TLS handshake succeeds on the port (certificate not checked: only the
    protocol matters here)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        async with asyncio.timeout(wait):
            _, writer = await asyncio.open_connection(host, port, ssl=context)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def _ask_http(host: str, port: int, wait: float) -> Answer | None:
    try:
        async with asyncio.timeout(wait):
            reader, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError):
        return None
    try:
        with contextlib.suppress(OSError):
            writer.write(f"HEAD / HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
            await writer.drain()
        data, closed = await _read_answer(reader, wait)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    answer = classify(data, closed=closed)
    return answer if answer.kind is AnswerKind.HTTP else None


async def second_look(host: str, port: int, wait: float) -> Answer | None:
    """For a port that said nothing to a plain CONNECT: does it speak TLS, or HTTP (a web
    server waits for a request line and says nothing to MQTT)? None: neither."""
    if await speaks_tls(host, port, wait):
        return Answer(AnswerKind.TLS)
    return await _ask_http(host, port, wait)
