"""The checks of ``streetgate doctor``: each a small function returning one :class:`CheckResult`.

Local checks (serial ports, BLE adapter, clock, disk, outbox, the gateway's state file) are plain
blocking functions: doctor is a command-line tool and runs them outside any event loop. The
broker's steps are in :mod:`gateway.diagnostics.broker_probe`, the one read of each device in
:mod:`gateway.diagnostics.device_checks`. Doctor never changes the outbox (it opens it
read-only); these local checks never open a serial port (the device reads do, but not while the
gateway of this config runs and holds it).
"""

from __future__ import annotations

import grp
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.config.devices import (
    BthomeDevice,
    GattDevice,
    RuuviDevice,
    SerialLine,
)
from gateway.config.model import GatewayConfig
from gateway.config.tls_files import pending_tls_files
from gateway.config.transport_security import transport_warnings
from gateway.core.clock import SystemClock
from gateway.core.errors import OutboxDamaged, OutboxMissing, PortUnavailable, StoreError
from gateway.runtime.state_file import current_view, read_state, state_path
from gateway.store.reader import buffer_status, integrity_problems

__all__ = [
    "CheckResult",
    "ble_adapter_check",
    "clock_check",
    "disk_check",
    "gateway_check",
    "local_checks",
    "outbox_check",
    "serial_port_check",
    "serial_port_checks",
    "tls_files_checks",
    "transport_check",
]

#: Free disk below this many disk reserves (outbox.disk_reserve) fails the disk check.
DISK_RESERVES_WANTED = 10
#: ... and below this many bytes when the reserve is off.
DISK_FLOOR = 64 * 1024 * 1024


def _permission_hint(path: str) -> str:
    """Which group to join for ``path`` (serial ports belong to ``dialout`` on Debian)."""
    try:
        group = grp.getgrgid(os.stat(path).st_gid).gr_name
    except (OSError, KeyError):
        group = "dialout"
    return (
        f"the port belongs to group {group}: add the user the gateway runs as to it"
        f" (sudo usermod -aG {group} $USER, then log in again)"
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
    warning: bool = False  # passed, but something needs fixing (shown as WARN)

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
    from drivers.serial.port import resolve_port  # noqa: PLC0415 - imports pyserial

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
        return CheckResult(
            check, False, f"{what}: no permission to open it", _permission_hint(path)
        )
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


def transport_check(config: GatewayConfig) -> CheckResult:
    """Whether the broker connection is encrypted and verified; a warning (not a failure)
    when it is not: the gateway works, but its uplink is open
    (gateway/config/transport_security.py)."""
    warnings = transport_warnings(config.mqtt)
    if not warnings:
        return CheckResult("transport", True, "TLS, broker certificate verified")
    return CheckResult(
        "transport",
        True,
        "; ".join(w.message for w in warnings),
        "; ".join(w.hint for w in warnings),
        warning=any(w.serious for w in warnings),
    )


def tls_files_checks(config: GatewayConfig, config_file: Path) -> list[CheckResult]:
    """The TLS files the config names: one failed check per file not there yet (a first
    install), with the command that makes or installs it; one pass when all are there."""
    tls = config.mqtt.tls
    if tls is None:
        return []
    pending = pending_tls_files(tls, config_file)
    if not pending:
        names = [str(p) for p in (tls.key_file, tls.cert_file, tls.ca_file) if p is not None]
        return [CheckResult("tls:files", True, f"present: {', '.join(names)}")]
    return [
        CheckResult(
            f"tls:{p.key.rsplit('.', 1)[-1]}", False, f"{p.key} {p.path} does not exist yet", p.fix
        )
        for p in pending
    ]


def local_checks(
    config: GatewayConfig,
) -> Iterator[Callable[[], CheckResult | list[CheckResult] | None]]:
    """The local checks in report order, as thunks (so a caller can show progress per check)."""
    yield lambda: transport_check(config)
    yield lambda: serial_port_checks(config)
    yield lambda: ble_adapter_check(config)
    yield clock_check
    yield lambda: disk_check(config)
    yield lambda: outbox_check(config)
    yield lambda: gateway_check(config)
