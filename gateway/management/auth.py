"""The gate in front of the command queue when ``[management]`` names a command key.

:class:`CommandGuard` decodes a payload, checks its signature and time window
(gateway/management/signing.py) and refuses a nonce it has seen (``replayed``), all before the
command is parsed further or queued. Seen nonces are kept until their ``ts`` leaves the
window, at most :data:`MAX_NONCES` of them, in memory and in a small file beside the outbox
(``<outbox>.nonces.json``, mode 0600), so a restart within the window does not forget them.
When the limit is reached the oldest nonce is forgotten and its ``ts`` becomes a floor: a
command signed at or before it is refused as ``stale``, so forgetting never opens a replay.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.config.management import ManagementConfig
from gateway.core.errors import CommandRejected, ErrorCode
from gateway.core.key_files import read_private_file, write_atomically
from gateway.management.protocol import MAX_COMMAND_BYTES
from gateway.management.signing import verify_command

log = logging.getLogger(__name__)

__all__ = ["MAX_NONCES", "CommandGuard", "NonceLedger", "nonces_path"]

#: Nonces remembered at most (the file then holds about 50 kB; the platform sends far fewer
#: commands to one gateway within the window).
MAX_NONCES = 1024

#: The nonce file is never read beyond this (MAX_NONCES entries fit easily).
_MAX_FILE_BYTES = 256 * 1024


def nonces_path(outbox_path: Path) -> Path:
    """Where the gateway using ``outbox_path`` keeps the nonces of signed commands."""
    return outbox_path.with_name(outbox_path.name + ".nonces.json")


@dataclass
class NonceLedger:
    """Nonces seen within the window: ``nonce -> ts``, and the floor below which all are stale.

    Pure bookkeeping; :class:`CommandGuard` loads and saves it.
    """

    max_skew: float
    capacity: int = MAX_NONCES
    seen: dict[str, int] = field(default_factory=dict)
    floor: int | None = None  # the ts of the newest nonce forgotten for room

    def expire(self, now: float) -> None:
        """Forget nonces whose ts left the window (their commands are refused as stale now)."""
        for nonce in [n for n, ts in self.seen.items() if ts + self.max_skew < now]:
            del self.seen[nonce]
        if self.floor is not None and self.floor + self.max_skew < now:
            self.floor = None

    def check(self, nonce: str, ts: int) -> ErrorCode | None:
        """Why (nonce, ts) must be refused, or None if it is new."""
        if nonce in self.seen:
            return ErrorCode.REPLAYED
        if self.floor is not None and ts <= self.floor:
            return ErrorCode.STALE
        return None

    def add(self, nonce: str, ts: int) -> None:
        """Remember a nonce; beyond ``capacity`` the oldest is forgotten and raises the floor."""
        self.seen[nonce] = ts
        while len(self.seen) > self.capacity:
            oldest = min(self.seen, key=self.seen.__getitem__)
            self.floor = max(self.floor or 0, self.seen.pop(oldest))

    def to_json(self) -> bytes:
        """The file's content."""
        return json.dumps({"v": 1, "floor": self.floor, "seen": self.seen}).encode()

    def load_json(self, data: bytes) -> None:
        """Take what a file held; ValueError if it is not a nonce file."""
        document = json.loads(data)
        seen, floor = document.get("seen"), document.get("floor")
        if not isinstance(seen, dict) or not (floor is None or type(floor) is int):
            raise ValueError("not a streetgate nonce file")
        for nonce, ts in seen.items():
            if type(ts) is not int:
                raise ValueError("not a streetgate nonce file")
            self.add(nonce, ts)
        if floor is not None:
            self.floor = max(self.floor or 0, floor)


class CommandGuard:
    """Verifies signed commands for one gateway run; see the module docstring."""

    def __init__(self, management: ManagementConfig, gateway_id: str, outbox_path: Path) -> None:
        key = management.command_key
        if key is None:
            raise ValueError("[management] has no command key")
        self._key = Ed25519PublicKey.from_public_bytes(key)
        self._required = management.require_signed
        self._max_skew = management.max_clock_skew
        self._gateway_id = gateway_id
        self._path = nonces_path(outbox_path)
        self._ledger = NonceLedger(management.max_clock_skew)
        self._loaded = False
        self._lock = asyncio.Lock()
        log.info(
            "remote commands: %s (key %s, window %gs)",
            "only signed ones run" if self._required else "signed ones checked, unsigned run",
            management.command_key_file,
            self._max_skew,
        )

    async def check(self, payload: bytes) -> bytes:
        """The command to parse (signing fields removed), or :class:`CommandRejected`.

        An unsigned command passes unchanged when signatures are not required.
        """
        data = _decode(payload)
        if "sig" not in data and not self._required:
            return payload
        signed = verify_command(data, self._key, self._gateway_id, self._max_skew)
        async with self._lock:
            if not self._loaded:
                await asyncio.to_thread(self._load)
            now = time.time()
            self._ledger.expire(now)
            refused = self._ledger.check(signed.nonce, signed.ts)
            if refused is not None:
                message = (
                    f"nonce {signed.nonce} was already used: a signed command runs once; "
                    "sign it again (same id) to retry"
                    if refused is ErrorCode.REPLAYED
                    else f"ts {signed.ts} is not newer than nonces this gateway had to forget"
                )
                raise CommandRejected(
                    refused,
                    message,
                    command_id=_str(signed.command.get("id")),
                    command=_str(signed.command.get("command")),
                )
            self._ledger.add(signed.nonce, signed.ts)
            try:  # on disk before the command can run (and restart the gateway)
                await asyncio.to_thread(write_atomically, self._path, self._ledger.to_json(), 0o600)
            except OSError as exc:
                log.warning("cannot save signed-command nonces to %s: %s", self._path, exc)
        return json.dumps(signed.command, ensure_ascii=False).encode("utf-8")

    def _load(self) -> None:
        self._loaded = True
        try:
            data = read_private_file(self._path, _MAX_FILE_BYTES)
            if data is not None:
                self._ledger.load_json(data)
        except (OSError, ValueError) as exc:
            # Without the file a replay inside the window could pass: refuse everything
            # signed before now, which only costs the platform a re-signed retry.
            self._ledger.floor = int(time.time())
            log.warning(
                "cannot read signed-command nonces %s (%s): commands signed before now are "
                "refused as stale",
                self._path,
                exc,
            )


def _decode(payload: bytes) -> dict[str, Any]:
    if len(payload) > MAX_COMMAND_BYTES:
        raise CommandRejected(
            ErrorCode.BAD_PAYLOAD, f"payload of {len(payload)} bytes; at most {MAX_COMMAND_BYTES}"
        )
    try:
        data = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CommandRejected(ErrorCode.BAD_PAYLOAD, f"payload is not UTF-8 JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise CommandRejected(
            ErrorCode.BAD_REQUEST, f"expected a JSON object, got {type(data).__name__}"
        )
    return data


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None
