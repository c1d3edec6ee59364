"""What a local reload (``systemctl reload``, SIGHUP) found: the check of the file and the record.

:func:`check_file` reads the config file once (bounded, no symlink surprises) and validates it
exactly as a start does (gateway/config/model.py ``config_from_bytes``: the ``STREETGATE_*``
variables laid over it), so a file that passes is one the gateway will start with. The
supervisor (gateway/runtime/supervisor.py) acts on the result; :class:`ReloadRecord` keeps what
happened for the health report, ``streetgate status`` and ``/metrics``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from gateway.config.model import GatewayConfig, config_from_bytes
from gateway.core.errors import ConfigError
from gateway.core.safe_files import MAX_CONFIG_BYTES, read_config_file

__all__ = ["FileCheck", "ReloadRecord", "ReloadResult", "check_file"]


class ReloadResult(StrEnum):
    """How one reload ended."""

    APPLIED = "applied"  # running on the file as it is now (confirmed)
    INVALID = "invalid"  # the file does not validate: still running on the previous config
    REFUSED = "refused"  # not now (a remote change is on trial): still running as before
    ROLLED_BACK = "rolled_back"  # valid, but did not run or reach the broker: previous back


@dataclass(frozen=True, slots=True)
class FileCheck:
    """The config file as a reload read it: its bytes and the config, or every issue."""

    raw: bytes
    config: GatewayConfig | None
    issues: tuple[tuple[str, str], ...] = ()  # (key, message); the key "" is the whole file


def check_file(path: Path) -> FileCheck:
    """Read and validate the config file as a start would. Blocking: run it in a thread."""
    try:
        raw = read_config_file(path, "", MAX_CONFIG_BYTES)
    except ConfigError as exc:
        return FileCheck(b"", None, tuple((i.location, i.message) for i in exc.issues))
    try:
        return FileCheck(raw, config_from_bytes(raw, path))
    except ConfigError as exc:
        return FileCheck(raw, None, tuple((i.location, i.message) for i in exc.issues))


@dataclass
class ReloadRecord:
    """Reloads since the process started, by result, and the last one (kept across restarts)."""

    counts: dict[ReloadResult, int] = field(default_factory=lambda: dict.fromkeys(ReloadResult, 0))
    last_result: ReloadResult | None = None
    last_unix: float | None = None
    last_message: str | None = None
    last_issues: list[dict[str, str]] = field(default_factory=list)

    def record(
        self,
        result: ReloadResult,
        message: str,
        issues: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """One reload ended with ``result``."""
        self.counts[result] += 1
        self.last_result = result
        self.last_unix = time.time()
        self.last_message = message
        self.last_issues = [{"key": key, "message": text} for key, text in issues]

    def report(self) -> dict[str, Any]:
        """The health report's ``reload`` part (docs/mqtt.md)."""
        return {
            "counts": {result.value: n for result, n in self.counts.items()},
            "last": None
            if self.last_result is None
            else {
                "result": self.last_result.value,
                "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.last_unix or 0)),
                "message": self.last_message,
                "issues": list(self.last_issues),
            },
        }
