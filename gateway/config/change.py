"""Remote config changes on disk: atomic writes, the previous file, and the pending-change marker.

A ``config-set`` command writes the new config over the old one atomically (temporary file,
fsync, rename, fsync of the directory), editing it so that the technician's comments and layout
stay (:func:`edited_config`), keeping the old one byte for byte as ``<config>.previous``, and
leaves a marker ``<config>.pending.json`` that records the command id and a deadline. The
gateway then restarts with the new config; the change is confirmed when it reaches the broker
(CONNACK) before the deadline. If it does not, or if the gateway stopped or crashed while the
change was on trial, the previous file is put back and the marker says ``rolled_back`` with the
reason, which the gateway reports once it is connected again.

A local reload (``systemctl reload``, SIGHUP; gateway/runtime/supervisor.py) goes through the
same trial: the technician has already written the file, so :func:`stage_reload` only keeps the
bytes the gateway was running on as ``.previous`` and writes the marker. Its rollback keeps the
technician's edit as ``<config>.rejected`` before putting the previous file back. Everything
here blocks: call it in a thread.
"""

from __future__ import annotations

import contextlib
import json
import logging
import stat
import time
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from tomlkit.exceptions import TOMLKitError

from gateway.config.toml_write import dumps, edit
from gateway.core.key_files import PRIVATE_MODE, write_atomically

log = logging.getLogger(__name__)

__all__ = [
    "ChangeOrigin",
    "ChangeState",
    "PendingChange",
    "atomic_write",
    "clear_marker",
    "edited_config",
    "marker_path",
    "merge_patch",
    "previous_path",
    "read_marker",
    "rejected_path",
    "roll_back",
    "stage_change",
    "stage_reload",
    "start_trial",
    "write_marker",
]


class ChangeState(StrEnum):
    """Where a remote config change is."""

    PENDING = "pending"  # written; waiting for the gateway to reach the broker with it
    ROLLED_BACK = "rolled_back"  # the previous config is back; to be reported


class ChangeOrigin(StrEnum):
    """Who changed the config: the platform (a reply is owed) or the site (a reload)."""

    CONFIG_SET = "config-set"
    RELOAD = "reload"


@dataclass(frozen=True, slots=True)
class PendingChange:
    """The marker's content."""

    command_id: str  # the config-set command's id; "reload-<n>" for a local reload
    state: ChangeState
    deadline_unix: float
    confirm_timeout: float
    trial_started: bool = False  # a gateway has started with the new config
    reason: str | None = None  # why it was rolled back
    origin: ChangeOrigin = ChangeOrigin.CONFIG_SET
    # Confirmed only by reaching the broker (a reload made while no broker was reachable is
    # confirmed by starting: a network outage is no reason to undo the technician's edit).
    needs_broker: bool = True


def marker_path(config_path: Path) -> Path:
    """Where the pending-change marker of ``config_path`` lives."""
    return config_path.with_name(config_path.name + ".pending.json")


def previous_path(config_path: Path) -> Path:
    """Where the config before the last remote change is kept."""
    return config_path.with_name(config_path.name + ".previous")


def rejected_path(config_path: Path) -> Path:
    """Where a reloaded file that was rolled back is kept for the technician."""
    return config_path.with_name(config_path.name + ".rejected")


def atomic_write(path: Path, data: bytes, *, private: bool = False) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new file, whole.

    The config keeps its mode (0600 if new); ``private`` files (``.previous``, which may hold a
    bindkey, and the marker) are 0600 whatever the umask or the config's mode.
    """
    mode = PRIVATE_MODE
    if not private:
        with contextlib.suppress(FileNotFoundError):
            mode = stat.S_IMODE(path.stat().st_mode)
    write_atomically(path, data, mode)


def read_marker(config_path: Path) -> PendingChange | None:
    """The pending change of ``config_path``; None when there is none or it is unreadable."""
    try:
        data = json.loads(marker_path(config_path).read_text("utf-8"))
        return PendingChange(
            command_id=str(data["command_id"]),
            state=ChangeState(data["state"]),
            deadline_unix=float(data["deadline_unix"]),
            confirm_timeout=float(data["confirm_timeout"]),
            trial_started=bool(data.get("trial_started", False)),
            reason=data.get("reason"),
            origin=ChangeOrigin(data.get("origin", ChangeOrigin.CONFIG_SET)),
            needs_broker=bool(data.get("needs_broker", True)),
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        # A damaged marker cannot say which change it was about; the previous file stays.
        return None


def write_marker(config_path: Path, change: PendingChange) -> None:
    """Write the marker atomically."""
    atomic_write(marker_path(config_path), json.dumps(asdict(change)).encode(), private=True)


def clear_marker(config_path: Path) -> None:
    """The change is settled: remove the marker."""
    marker_path(config_path).unlink(missing_ok=True)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge key by key, ``null`` removes, others replace."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def edited_config(current: bytes, document: dict[str, Any]) -> bytes:
    """The config file ``current`` rewritten to hold ``document``, keeping its comments and
    layout (gateway/config/toml_write.py ``edit``); written afresh if that cannot be done."""
    try:
        return edit(current.decode("utf-8"), document).encode()
    except (UnicodeDecodeError, ValueError, TOMLKitError) as exc:
        log.warning("the config's comments and layout could not be kept (%s); writing it anew", exc)
        return dumps(document).encode()


def stage_change(
    config_path: Path, document: dict[str, Any], command_id: str, confirm_timeout: float
) -> PendingChange:
    """Keep the current file as ``.previous``, write ``document`` in its place, mark it pending."""
    current = config_path.read_bytes()
    atomic_write(previous_path(config_path), current, private=True)
    change = PendingChange(
        command_id=command_id,
        state=ChangeState.PENDING,
        deadline_unix=time.time() + confirm_timeout,
        confirm_timeout=confirm_timeout,
    )
    # The marker goes first: a crash between the two writes then rolls back to the same file.
    write_marker(config_path, change)
    atomic_write(config_path, edited_config(current, document))
    return change


def stage_reload(
    config_path: Path,
    running: bytes,
    reload_id: str,
    confirm_timeout: float,
    *,
    needs_broker: bool,
) -> PendingChange:
    """Put a file the technician edited on trial: ``running`` (the bytes the gateway runs on)
    is kept as ``.previous``; the file itself is left as it is."""
    atomic_write(previous_path(config_path), running, private=True)
    change = PendingChange(
        command_id=reload_id,
        state=ChangeState.PENDING,
        deadline_unix=time.time() + confirm_timeout,
        confirm_timeout=confirm_timeout,
        origin=ChangeOrigin.RELOAD,
        needs_broker=needs_broker,
    )
    write_marker(config_path, change)
    return change


def start_trial(config_path: Path, change: PendingChange) -> PendingChange:
    """Record that a gateway is starting with the new config (a second start means a crash)."""
    started = replace(change, trial_started=True)
    write_marker(config_path, started)
    return started


def roll_back(config_path: Path, change: PendingChange, reason: str) -> PendingChange:
    """Put the previous config back and mark the change rolled back, with ``reason``.

    The file of a reload is the technician's work: it is kept as ``.rejected`` (0600) first.
    """
    if change.origin is ChangeOrigin.RELOAD:
        with contextlib.suppress(FileNotFoundError):
            atomic_write(rejected_path(config_path), config_path.read_bytes(), private=True)
    atomic_write(config_path, previous_path(config_path).read_bytes())
    rolled = replace(change, state=ChangeState.ROLLED_BACK, reason=reason)
    write_marker(config_path, rolled)
    return rolled
