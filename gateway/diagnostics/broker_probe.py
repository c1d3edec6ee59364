"""The broker steps of ``streetgate doctor``: DNS, TCP, TLS, MQTT CONNECT, publish and read back.

Each step is its own :class:`gateway.doctor.CheckResult` with its timing; after a failed step the
later ones are reported as skipped. The doctor connects with its own client id
(``<gateway_id>-doctor-<random>``), so a running gateway keeps its session, and publishes only on
``<prefix>/<gateway_id>/doctor/<random>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiomqtt

from gateway.config.model import BrokerAddress, GatewayConfig
from gateway.core.errors import BrokerUnavailable, ConfigError, StreetgateError
from gateway.diagnostics.doctor import CheckResult
from gateway.diagnostics.port_probe import (
    CONNACK_BAD_CLIENT_ID,
    CONNACK_BAD_VERSION,
    CONNACK_NOT_AUTHORISED,
    Answer,
    AnswerKind,
    probe,
    second_look,
)
from gateway.uplink.boundary import mqtt_errors
from gateway.uplink.forwarder import read_password, tls_context

__all__ = [
    "EXPIRY_WARNING_DAYS",
    "BrokerSetup",
    "broker_checks",
    "broker_setup",
    "connect_hint",
]

#: Certificates expiring within this many days are reported (still a pass).
EXPIRY_WARNING_DAYS = 14


# -- the broker, step by step ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BrokerSetup:
    """What the broker steps need, prepared outside the event loop (files are read here)."""

    host: str
    port: int
    topic: str  # the doctor's own topic, under the gateway's prefix
    identifier: str  # not the gateway's client id: a running gateway keeps its session
    username: str | None
    password: str | None
    tls: ssl.SSLContext | None
    tls_problem: str | None  # the TLS files could not be loaded
    tls_verified: bool
    client_cert_expiry: float | None  # Unix time the client certificate expires
    timeout: float


def broker_setup(
    config: GatewayConfig, timeout: float = 5.0, broker: BrokerAddress | None = None
) -> BrokerSetup:
    """Read the TLS files and the password file for the broker steps (blocking); for
    ``broker`` (default: the first of ``mqtt.brokers``)."""
    mqtt = config.mqtt
    broker = broker or mqtt.endpoints[0]
    tls: ssl.SSLContext | None = None
    problem: str | None = None
    expiry: float | None = None
    if mqtt.tls is not None:
        try:
            tls = tls_context(mqtt)
        except StreetgateError as exc:
            problem = str(exc)
        if mqtt.tls.cert_file is not None:
            expiry = _cert_expiry(mqtt.tls.cert_file)
    password: str | None = None
    if mqtt.password_file is not None:
        try:
            password = read_password(mqtt.password_file)
        except ConfigError as exc:
            problem = problem or "; ".join(str(issue) for issue in exc.issues)
    token = secrets.token_hex(4)
    return BrokerSetup(
        host=broker.host,
        port=broker.port,
        topic=f"{mqtt.topic_prefix}/{config.gateway_id}/doctor/{token}",
        identifier=f"{config.gateway_id}-doctor-{token}",
        username=mqtt.username,
        password=password,
        tls=tls,
        tls_problem=problem,
        tls_verified=not (mqtt.tls is not None and mqtt.tls.insecure_skip_verify),
        client_cert_expiry=expiry,
        timeout=timeout,
    )


def _cert_expiry(path: Path) -> float | None:
    from cryptography import x509  # noqa: PLC0415

    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None  # loading the chain reports what is wrong with the file
    return cert.not_valid_after_utc.timestamp()


def _ms(start: float) -> float:
    return round((time.monotonic() - start) * 1000, 1)


def _expires(unix: float) -> tuple[str, bool]:
    """'expires 2027-01-01 (in 35 days)' and whether that is soon (or past)."""
    days = (unix - time.time()) / 86400
    when = datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%d")
    if days < 0:
        return f"expired {when}", True
    return f"expires {when} (in {days:.0f} days)", days < EXPIRY_WARNING_DAYS


_VERIFY_HINTS = (
    ("expired", "the broker's certificate has expired: renew it on the broker"),
    ("not yet valid", "this gateway's clock is probably wrong: check `timedatectl`"),
    ("hostname", "mqtt.host must be a name (or IP) in the broker certificate's subjectAltName"),
    ("ip address mismatch", "mqtt.host must be an IP in the broker certificate's subjectAltName"),
)


def _verify_hint(message: str) -> str:
    lowered = message.lower()
    for needle, hint in _VERIFY_HINTS:
        if needle in lowered:
            return hint
    return "mqtt.tls.ca_file must be the CA that signed the broker's certificate (chain)"


def _connect_error(exc: BaseException, setup: BrokerSetup) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {setup.timeout:g}s"
    if isinstance(exc, ConnectionRefusedError):
        return f"refused: nothing listens on {setup.host}:{setup.port}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _skipped(names: list[str], because: str) -> list[CheckResult]:
    return [CheckResult(n, True, f"skipped ({because})", skipped=True) for n in names]


async def broker_checks(setup: BrokerSetup) -> AsyncIterator[CheckResult]:
    """DNS, TCP, TLS (when configured), MQTT CONNECT, publish-and-read-back: one result each."""
    steps = ["broker:dns", "broker:tcp"]
    steps += ["broker:tls"] if setup.tls is not None or setup.tls_problem else []
    steps += ["broker:mqtt-connect", "broker:publish-readback"]
    session = _Session()
    run: dict[str, Callable[[], Awaitable[CheckResult]]] = {
        "broker:dns": lambda: _dns(setup),
        "broker:tcp": lambda: _tcp(setup),
        "broker:tls": lambda: _tls(setup),
        "broker:mqtt-connect": lambda: _mqtt_connect(setup, session),
        "broker:publish-readback": lambda: _readback(setup, session),
    }
    try:
        for i, step in enumerate(steps):
            result = await run[step]()
            yield result
            if not result.ok:
                for skipped in _skipped(steps[i + 1 :], f"{step} failed"):
                    yield skipped
                return
    finally:
        if session.client is not None:  # the caller stopped between CONNECT and read-back
            with contextlib.suppress(BrokerUnavailable), mqtt_errors(setup.host, setup.port):
                await session.client.__aexit__(None, None, None)


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close a probe connection; the broker may already have dropped it (TLS alerts)."""
    writer.close()
    with contextlib.suppress(OSError):  # ssl.SSLError is an OSError
        await writer.wait_closed()


async def _dns(setup: BrokerSetup) -> CheckResult:
    start = time.monotonic()
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(setup.timeout):
            infos = await loop.getaddrinfo(setup.host, setup.port, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError) as exc:
        reason = _connect_error(exc, setup) if isinstance(exc, TimeoutError) else str(exc)
        return CheckResult(
            "broker:dns",
            False,
            f"{setup.host}: cannot resolve ({reason})",
            "check mqtt.host's spelling and this machine's DNS (/etc/resolv.conf;"
            f" try `getent hosts {setup.host}`)",
            duration_ms=_ms(start),
        )
    addresses = sorted({str(info[4][0]) for info in infos})
    return CheckResult(
        "broker:dns", True, f"{setup.host} -> {', '.join(addresses)}", duration_ms=_ms(start)
    )


async def _tcp(setup: BrokerSetup) -> CheckResult:
    start = time.monotonic()
    try:
        async with asyncio.timeout(setup.timeout):
            _, writer = await asyncio.open_connection(setup.host, setup.port)
    except (OSError, TimeoutError) as exc:
        return CheckResult(
            "broker:tcp",
            False,
            f"{setup.host}:{setup.port}: {_connect_error(exc, setup)}",
            "is the broker running and is mqtt.port right (1883 plain, 8883 TLS)? A firewall on"
            f" the way? Try `nc -vz {setup.host} {setup.port}`",
            duration_ms=_ms(start),
        )
    peer = writer.get_extra_info("peername")
    await _close(writer)
    where = f" ({peer[0]})" if peer else ""
    return CheckResult(
        "broker:tcp", True, f"connected to {setup.host}:{setup.port}{where}", duration_ms=_ms(start)
    )


async def _tls(setup: BrokerSetup) -> CheckResult:
    if setup.tls is None:
        return CheckResult(
            "broker:tls",
            False,
            setup.tls_problem or "no TLS context",
            "fix mqtt.tls in the config (the files must exist and be PEM)",
        )
    start = time.monotonic()
    try:
        async with asyncio.timeout(setup.timeout):
            _, writer = await asyncio.open_connection(
                setup.host, setup.port, ssl=setup.tls, server_hostname=setup.host
            )
    except ssl.SSLCertVerificationError as exc:
        message = exc.verify_message or str(exc)
        return CheckResult(
            "broker:tls",
            False,
            f"the broker's certificate is not valid: {message}",
            _verify_hint(message),
            duration_ms=_ms(start),
        )
    except (OSError, TimeoutError) as exc:
        # What the port says in plaintext, without the credentials: they go only over TLS.
        plain = await probe(setup.host, setup.port, setup.timeout, client_id=setup.identifier)
        seen = f"; in plaintext, {plain.describe()}" if plain is not None else ""
        return CheckResult(
            "broker:tls",
            False,
            f"TLS handshake failed: {_connect_error(exc, setup)}{seen}",
            _tls_failed_hint(plain, setup),
            duration_ms=_ms(start),
        )
    ssl_object = writer.get_extra_info("ssl_object")
    peer = writer.get_extra_info("peercert") or {}
    await _close(writer)
    parts = [(ssl_object.version() if ssl_object is not None else None) or "TLS"]
    hint = ""
    if not setup.tls_verified:
        parts.append("server certificate NOT verified (insecure_skip_verify)")
        hint = "set mqtt.tls.insecure_skip_verify = false once the CA file is right"
    elif peer.get("notAfter"):
        text, soon = _expires(ssl.cert_time_to_seconds(peer["notAfter"]))
        parts.append(f"server certificate valid for {setup.host}, {text}")
        hint = "renew the broker's certificate soon" if soon else ""
    if setup.client_cert_expiry is not None:
        text, soon = _expires(setup.client_cert_expiry)
        parts.append(f"client certificate {text}")
        if setup.client_cert_expiry < time.time():
            return CheckResult(
                "broker:tls",
                False,
                ", ".join(parts),
                "renew the gateway's certificate (streetgate creds)",
                duration_ms=_ms(start),
            )
        hint = hint or ("renew the gateway's certificate soon (streetgate creds)" if soon else "")
    return CheckResult("broker:tls", True, ", ".join(parts), hint, duration_ms=_ms(start))


_NO_WORD = (AnswerKind.CLOSED, AnswerKind.SILENT)
_PORTS = "MQTT: 1883, MQTT over TLS: 8883"


_CERT_HINT = (
    "if the broker requires a client certificate, set mqtt.tls.cert_file and key_file to one"
    " signed by the CA it trusts (streetgate creds)"
)
#: Hints for a refusal that is not about credentials, by CONNACK code.
_REFUSAL_HINTS = {
    CONNACK_BAD_VERSION: "the broker refuses MQTT 3.1.1: if it speaks only MQTT 5, set"
    ' mqtt.protocol = "5"',
    CONNACK_BAD_CLIENT_ID: "the broker rejects the client id: check its client id rules",
}
#: Hints for a port that is no MQTT broker, by what it said; {where} and {ports} filled in.
_NOT_MQTT_HINTS = {
    AnswerKind.HTTP: "{where} is an HTTP server, not an MQTT broker: check mqtt.host and"
    " mqtt.port ({ports}; websocket listeners are not supported)",
    AnswerKind.SSH: "{where} is an SSH server, not an MQTT broker: check mqtt.host and"
    " mqtt.port ({ports})",
    AnswerKind.TLS: "{where} speaks TLS: add [mqtt.tls] with the broker's CA (ca_file), or use"
    " the broker's plain port (usually 1883)",
    AnswerKind.SILENT: "nothing on {where} answers MQTT: check mqtt.port ({ports})",
    AnswerKind.CLOSED: "{where} closed the connection at once: not an MQTT broker, or one that"
    " drops this client (a connection limit, a ban): check mqtt.port ({ports}) and the"
    " broker's log",
    AnswerKind.OTHER: "something that is not an MQTT broker answers on {where}: check mqtt.host"
    " and mqtt.port ({ports})",
}


def _connack_hint(answer: Answer, setup: BrokerSetup) -> str:
    if answer.refused_credentials:
        if setup.username is None:
            wants = "the broker wants credentials: set mqtt.username and mqtt.password_file"
            return f"{wants}; or, {_CERT_HINT}" if setup.tls is not None else wants
        accounts = "check mqtt.username and mqtt.password_file against the broker's accounts"
        if answer.code == CONNACK_NOT_AUTHORISED:
            accounts += " (and that the broker lets this user connect)"
        return accounts
    if answer.refused:
        return _REFUSAL_HINTS.get(
            answer.code or 0, "the broker is up but takes no connections now: check its log"
        )
    return "the broker accepts a CONNECT, but the session failed: check the broker's log"


def connect_hint(answer: Answer | None, setup: BrokerSetup) -> str:
    """The hint for a failed CONNECT, from what the port answered (pure).

    The credentials hint only when the broker refused for credentials: with credentials
    configured, check them; without, the broker wants some.
    """
    if answer is None:
        return "the broker stopped answering between the steps: run doctor again"
    if answer.kind is AnswerKind.CONNACK:
        return _connack_hint(answer, setup)
    kind = answer.kind
    if kind in _NO_WORD and setup.tls is not None:
        return f"the broker dropped the connection after the TLS handshake: {_CERT_HINT}"
    return _NOT_MQTT_HINTS[kind].format(where=f"{setup.host}:{setup.port}", ports=_PORTS)


def _tls_failed_hint(plain: Answer | None, setup: BrokerSetup) -> str:
    """The hint for a failed handshake, from what the port says in plaintext."""
    if plain is not None and plain.kind is AnswerKind.CONNACK:
        return (
            "this port speaks plain MQTT, not TLS: use the broker's TLS port (usually 8883), or"
            " remove [mqtt.tls] for a broker on this machine"
        )
    if plain is not None and plain.kind in (AnswerKind.HTTP, AnswerKind.SSH, AnswerKind.OTHER):
        return connect_hint(plain, setup)
    return "does the broker speak TLS on this port (usually 8883)?"


class _Session:
    """The doctor's MQTT connection, from the CONNECT step to the read-back step."""

    def __init__(self) -> None:
        self.client: aiomqtt.Client | None = None


async def _mqtt_connect(setup: BrokerSetup, session: _Session) -> CheckResult:
    start = time.monotonic()
    client = aiomqtt.Client(
        setup.host,
        setup.port,
        identifier=setup.identifier,
        username=setup.username,
        password=setup.password,
        tls_context=setup.tls,
        timeout=setup.timeout,
    )
    try:
        async with asyncio.timeout(setup.timeout):
            with mqtt_errors(setup.host, setup.port):
                await client.__aenter__()
    except (BrokerUnavailable, OSError, TimeoutError) as exc:
        answer = await probe(
            setup.host,
            setup.port,
            setup.timeout,
            tls=setup.tls,
            client_id=f"{setup.identifier}-probe",
            username=setup.username,
            password=setup.password,
        )
        seen = f"; {answer.describe()}" if answer is not None else ""
        if setup.tls is None and answer is not None and answer.kind in _NO_WORD:
            answer = await second_look(setup.host, setup.port, setup.timeout) or answer
            if answer.kind not in _NO_WORD:
                seen += f"; asked again, {answer.describe()}"
        return CheckResult(
            "broker:mqtt-connect",
            False,
            f"CONNECT failed: {_connect_error(exc, setup)}{seen}",
            connect_hint(answer, setup),
            duration_ms=_ms(start),
        )
    session.client = client
    return CheckResult(
        "broker:mqtt-connect",
        True,
        f"connected as client id {setup.identifier}",
        duration_ms=_ms(start),
    )


async def _readback(setup: BrokerSetup, session: _Session) -> CheckResult:
    client, session.client = session.client, None
    if client is None:
        return CheckResult("broker:publish-readback", False, "not connected")
    start = time.monotonic()
    payload = secrets.token_hex(8).encode()
    try:
        async with asyncio.timeout(setup.timeout):
            with mqtt_errors(setup.host, setup.port):
                await client.subscribe(setup.topic, qos=1)
                await client.publish(setup.topic, payload, qos=1)
                async for message in client.messages:
                    if message.payload == payload:
                        break
        ok = True
        detail = f"published to {setup.topic} and read it back"
    except (BrokerUnavailable, TimeoutError) as exc:
        ok = False
        detail = f"{setup.topic}: {_connect_error(exc, setup)}"
    finally:
        with contextlib.suppress(BrokerUnavailable), mqtt_errors(setup.host, setup.port):
            await client.__aexit__(None, None, None)
    hint = (
        ""
        if ok
        else "the broker's ACL must let this gateway publish and subscribe under"
        f" {setup.topic.rsplit('/', 2)[0]}/#"
    )
    return CheckResult("broker:publish-readback", ok, detail, hint, duration_ms=_ms(start))
