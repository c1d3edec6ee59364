"""The checks of ``streetgate doctor``: each a small function returning one :class:`CheckResult`.

Local checks (serial ports, BLE adapter, clock, disk, outbox, the gateway's state file) are plain
blocking functions: doctor is a command-line tool and runs them outside any event loop. The broker
is checked step by step (:func:`broker_checks`): DNS, TCP connect, TLS handshake with the
certificates' validity, MQTT CONNECT, then a publish read back on the gateway's own topic
``<prefix>/<gateway_id>/doctor/<random>``. Each step has its own result and timing; after a
failed step the later ones are reported as skipped. Doctor never changes the outbox (it opens it
read-only) and connects with its own client id, so a running gateway is not disturbed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt

from gateway.buffer_store import OutboxDamaged, OutboxMissing, buffer_status, integrity_problems
from gateway.clock import SystemClock
from gateway.config import GatewayConfig
from gateway.config_devices import (
    BthomeDevice,
    GattDevice,
    RuuviDevice,
    SerialLine,
)
from gateway.errors import PortUnavailable, StoreError, StreetgateError
from gateway.forwarder import tls_context
from gateway.state_file import current_view, read_state, state_path

__all__ = [
    "BrokerSetup",
    "CheckResult",
    "ble_adapter_check",
    "broker_checks",
    "broker_setup",
    "clock_check",
    "disk_check",
    "gateway_check",
    "local_checks",
    "outbox_check",
    "serial_port_check",
    "serial_port_checks",
]

#: Free disk below this many disk reserves (outbox.disk_reserve) fails the disk check.
DISK_RESERVES_WANTED = 10
#: ... and below this many bytes when the reserve is off.
DISK_FLOOR = 64 * 1024 * 1024
#: Certificates expiring within this many days are reported (still a pass).
EXPIRY_WARNING_DAYS = 14

_DIALOUT_HINT = (
    "add the user the gateway runs as to the port's group: sudo usermod -aG dialout $USER"
    " (then log in again)"
)


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One line of the doctor's report."""

    name: str
    ok: bool
    detail: str
    hint: str = ""  # what to do when it failed (or when something is worth knowing)
    skipped: bool = False  # not run because an earlier step failed (counts as not failed)
    duration_ms: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` form."""
        return asdict(self)


# -- serial ports ---------------------------------------------------------------------------


def _serial_devices(config: GatewayConfig) -> list[tuple[str, str]]:
    """(config entry name, port spec) of everything on a serial line."""
    return [(d.name, d.port) for d in config.devices if isinstance(d, SerialLine)]


def _usb_identity(path: str) -> str:
    """``usb:VID:PID serial S`` of the port behind ``path`` (by-id links followed), or ''."""
    from serial.tools.list_ports import comports  # type: ignore[import-untyped]  # noqa: PLC0415

    real = os.path.realpath(path)
    for port in comports():
        if os.path.realpath(port.device) == real and port.vid is not None:
            serial = f" serial {port.serial_number}" if port.serial_number else ""
            return f"usb:{port.vid:04x}:{port.pid:04x}{serial}"
    return ""


def serial_port_check(name: str, spec: str) -> CheckResult:
    """Is the configured port there, which adapter is it, may this user open it?"""
    from drivers.serial_port import resolve_port  # noqa: PLC0415 - imports pyserial

    check = f"serial:{name}"
    try:
        path = resolve_port(spec, name)
    except PortUnavailable as exc:
        return CheckResult(
            check, False, str(exc), "plug in the USB serial adapter, or fix the port in the config"
        )
    if "://" in path:
        return CheckResult(check, True, f"{path}: a remote port (reached when the gateway runs)")
    if not os.path.exists(path):
        listed = (
            sorted(str(p) for p in Path("/dev/serial/by-id").glob("*"))
            if os.path.isdir("/dev/serial/by-id")
            else []
        )
        found = (
            f"; attached: {', '.join(listed)}" if listed else "; no USB serial adapter is attached"
        )
        return CheckResult(
            check,
            False,
            f"{path} does not exist{found}",
            "plug in the adapter (check `streetgate scan serial` or `ls /dev/serial/by-id`) and"
            " prefer its /dev/serial/by-id/... name in the config",
        )
    via = f" -> {os.path.realpath(path)}" if os.path.realpath(path) != path else ""
    identity = _usb_identity(path)
    what = f"{spec}{via}" + (f" ({identity})" if identity else "")
    if not os.access(path, os.R_OK | os.W_OK):
        return CheckResult(check, False, f"{what}: no permission to open it", _DIALOUT_HINT)
    return CheckResult(check, True, f"{what}: present, may be opened")


def serial_port_checks(config: GatewayConfig) -> list[CheckResult]:
    """One check per configured serial port (none when no device is on a serial line)."""
    return [serial_port_check(name, spec) for name, spec in _serial_devices(config)]


# -- BLE adapter ----------------------------------------------------------------------------


def ble_adapter_check(config: GatewayConfig, sysfs: Path = Path("/sys")) -> CheckResult | None:
    """Is there a Bluetooth adapter (``/sys/class/bluetooth/hci*``), not blocked by rfkill?

    None when no BLE device is configured.
    """
    ble = [d.name for d in config.devices if isinstance(d, BthomeDevice | RuuviDevice | GattDevice)]
    if not ble:
        return None
    root = sysfs / "class" / "bluetooth"
    adapters = sorted(p for p in root.glob("hci*") if ":" not in p.name) if root.is_dir() else []
    if not adapters:
        return CheckResult(
            "ble:adapter",
            False,
            f"no Bluetooth adapter ({root}/hci* absent); needed by {', '.join(ble)}",
            "plug in a USB Bluetooth adapter or enable the onboard one (on a Pi: no"
            " dtoverlay=disable-bt in /boot/config.txt), then check with `bluetoothctl list`",
        )
    blocked = [a.name for a in adapters if _rfkill_blocked(a)]
    names = ", ".join(a.name for a in adapters)
    if len(blocked) == len(adapters):
        return CheckResult(
            "ble:adapter",
            False,
            f"{names}: blocked by rfkill",
            "sudo rfkill unblock bluetooth",
        )
    return CheckResult("ble:adapter", True, f"{names} present (for {', '.join(ble)})")


def _rfkill_blocked(adapter: Path) -> bool:
    for soft in adapter.glob("rfkill*/soft"):
        try:
            if soft.read_text().strip() == "1":
                return True
        except OSError:
            continue
    return False


# -- clock, disk, outbox, gateway ------------------------------------------------------------


def clock_check(clock: SystemClock | None = None) -> CheckResult:
    """Does the kernel consider the wall clock synchronised (NTP)?"""
    clock = clock or SystemClock()
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if clock.synchronised():
        return CheckResult("clock", True, f"synchronised ({now})")
    return CheckResult(
        "clock",
        False,
        f"not synchronised ({now}); readings are stored as quality clock_unsynced",
        "check `timedatectl`: enable an NTP client (systemd-timesyncd or chrony) and let it"
        " reach its NTP server (UDP 123)",
    )


def _existing_parent(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.is_dir():
            return candidate
    return Path("/")


def disk_check(config: GatewayConfig) -> CheckResult:
    """Free space where the outbox lives: at least ``DISK_RESERVES_WANTED`` disk reserves."""
    folder = _existing_parent(config.outbox.path.parent)
    usage = shutil.disk_usage(folder)
    reserve = config.outbox.disk_reserve
    wanted = DISK_RESERVES_WANTED * reserve if reserve else DISK_FLOOR
    detail = f"{usage.free / 1e6:,.0f} MB free of {usage.total / 1e6:,.0f} MB at {folder}"
    if usage.free < wanted:
        return CheckResult(
            "disk",
            False,
            f"{detail}; below {wanted / 1e6:,.0f} MB",
            "free some space (e.g. sudo journalctl --vacuum-size=50M, old files) or lower"
            " outbox.max_bytes",
        )
    note = ""
    if usage.free < config.outbox.max_bytes:
        note = f"; less than outbox.max_bytes ({config.outbox.max_bytes / 1e6:,.0f} MB)"
    return CheckResult("disk", True, detail + note)


def _age(seconds: float) -> str:
    s = max(0, round(seconds))
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    return f"{s // 3600}h"


def outbox_check(config: GatewayConfig) -> CheckResult:
    """The outbox opens read-only, passes SQLite's quick_check; its depth and oldest reading."""
    path = config.outbox.path
    try:
        status = buffer_status(path)
        problems = integrity_problems(path)
    except OutboxMissing:
        if os.access(_existing_parent(path.parent), os.W_OK):
            return CheckResult("outbox", True, f"{path}: not created yet (the gateway creates it)")
        return CheckResult(
            "outbox",
            False,
            f"{path}: missing, and its folder is not writable",
            "create the folder and give it to the user the gateway runs as",
        )
    except OutboxDamaged as exc:
        return CheckResult(
            "outbox",
            False,
            str(exc),
            "copy the file off if its readings matter; the gateway moves it aside at its next"
            " start and begins a fresh outbox",
        )
    except StoreError as exc:
        return CheckResult("outbox", False, str(exc), "run doctor as the user the gateway runs as")
    if problems:
        return CheckResult(
            "outbox",
            False,
            f"{path}: quick_check: {problems[0]}",
            "copy the file off; the gateway quarantines a damaged outbox at its next start",
        )
    depth = f"{status.depth:,} readings waiting"
    if status.oldest_ts_ms is not None:
        depth += f", oldest {_age(time.time() - status.oldest_ts_ms / 1000)} old"
    share = 100 * status.used_bytes / config.outbox.max_bytes
    return CheckResult("outbox", True, f"{path}: quick_check ok, {depth}, {share:.1f}% full")


def gateway_check(config: GatewayConfig) -> CheckResult:
    """Is a gateway running on this outbox (its state file), and is its uplink connected?"""
    path = state_path(config.outbox.path)
    try:
        state = read_state(path)
    except ValueError:
        state = {}
    if state is None:
        return CheckResult("gateway", True, "no state file: the gateway has not run here yet")
    view = current_view(path)
    if not view.running:
        return CheckResult(
            "gateway",
            False,
            view.reason,
            "start it (systemctl start streetgate, or streetgate run -c CONFIG)",
        )
    fwd = view.forwarder or {}
    uplink = str(fwd.get("state", "unknown"))
    error = (
        f", last error: {fwd['last_error']}"
        if uplink != "connected" and fwd.get("last_error")
        else ""
    )
    return CheckResult("gateway", True, f"{view.reason}, uplink {uplink}{error}")


def local_checks(
    config: GatewayConfig,
) -> Iterator[Callable[[], CheckResult | list[CheckResult] | None]]:
    """The local checks in report order, as thunks (so a caller can show progress per check)."""
    yield lambda: serial_port_checks(config)
    yield lambda: ble_adapter_check(config)
    yield clock_check
    yield lambda: disk_check(config)
    yield lambda: outbox_check(config)
    yield lambda: gateway_check(config)


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


def broker_setup(config: GatewayConfig, timeout: float = 5.0) -> BrokerSetup:
    """Read the TLS files and the password file for the broker steps (blocking)."""
    mqtt = config.mqtt
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
            password = mqtt.password_file.read_text("utf-8").strip()
        except OSError as exc:
            problem = (
                problem or f"cannot read mqtt.password_file {mqtt.password_file}: {exc.strerror}"
            )
    token = secrets.token_hex(4)
    return BrokerSetup(
        host=mqtt.host,
        port=mqtt.port,
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
            with contextlib.suppress(aiomqtt.MqttError):
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
        return CheckResult(
            "broker:tls",
            False,
            f"TLS handshake failed: {_connect_error(exc, setup)}",
            "does the broker speak TLS on this port (usually 8883)?",
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
            await client.__aenter__()
    except (aiomqtt.MqttError, OSError, TimeoutError) as exc:
        hint = "check mqtt.username and mqtt.password_file against the broker's accounts"
        if setup.tls is not None:
            hint = (
                "if the broker requires a client certificate, set mqtt.tls.cert_file and"
                " key_file to one signed by the CA it trusts (streetgate creds); " + hint
            )
        return CheckResult(
            "broker:mqtt-connect",
            False,
            f"CONNECT failed: {_connect_error(exc, setup)}",
            hint,
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
            await client.subscribe(setup.topic, qos=1)
            await client.publish(setup.topic, payload, qos=1)
            async for message in client.messages:
                if message.payload == payload:
                    break
        ok = True
        detail = f"published to {setup.topic} and read it back"
    except (aiomqtt.MqttError, TimeoutError) as exc:
        ok = False
        detail = f"{setup.topic}: {_connect_error(exc, setup)}"
    finally:
        with contextlib.suppress(aiomqtt.MqttError):
            await client.__aexit__(None, None, None)
    hint = (
        ""
        if ok
        else "the broker's ACL must let this gateway publish and subscribe under"
        f" {setup.topic.rsplit('/', 2)[0]}/#"
    )
    return CheckResult("broker:publish-readback", ok, detail, hint, duration_ms=_ms(start))
