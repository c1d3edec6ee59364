"""Signed commands (docs/mqtt.md#signed-commands): the platform's signing side and the check.

Pure functions over plain JSON objects and ``cryptography`` Ed25519 keys; importable without
the gateway runtime, so the platform can use this module (or reimplement it from the docs).

A signed command is the command object plus four fields:

- ``gateway``: the target gateway id (required when signed: a command signed for one gateway
  cannot be replayed at another);
- ``ts``: the signer's Unix time in whole seconds (an integer);
- ``nonce``: at least 96 random bits as lowercase hex (24 to 64 digits);
- ``sig``: the base64 (standard alphabet, padded) Ed25519 signature over :func:`canonical`,
  the UTF-8 JSON of every other field with ``sort_keys=True``, ``separators=(",", ":")``,
  ``ensure_ascii=False`` and no NaN or infinity.

:func:`verify_command` checks structure, signature, target and time window, in that order,
and returns the command object without the signing fields; it raises
:class:`~gateway.command_protocol.CommandRejected` with ``unsigned``, ``bad_request``,
``bad_signature``, ``wrong_gateway`` or ``stale``. Nonces already seen (``replayed``) are the
caller's to remember (gateway/management/auth.py).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.core.errors import CommandRejected, ErrorCode

__all__ = [
    "NONCE_BYTES",
    "SIGNING_FIELDS",
    "Signed",
    "canonical",
    "sign_command",
    "verify_command",
]

#: Random bytes in a nonce made by :func:`sign_command` (128 bits; at least 96 are required).
NONCE_BYTES = 16

#: The fields a signature adds to a command object (``gateway`` is kept: commands may carry it).
SIGNING_FIELDS = ("ts", "nonce", "sig")

_NONCE = re.compile(r"[0-9a-f]{24,64}")


@dataclass(frozen=True, slots=True)
class Signed:
    """A command whose signature verified: the command object, and its ``ts`` and ``nonce``."""

    command: dict[str, Any]
    ts: int
    nonce: str


def canonical(fields: dict[str, Any]) -> bytes:
    """The exact bytes signed: the UTF-8 JSON of every field except ``sig``, keys sorted."""
    body = {key: value for key, value in fields.items() if key != "sig"}
    return json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def sign_command(
    private_key: Ed25519PrivateKey,
    command: dict[str, Any],
    gateway_id: str,
    now: float | None = None,
) -> bytes:
    """``command`` (``{"id", "command", "args"}``) signed for ``gateway_id``, ready to publish.

    ``now`` (Unix seconds) is for tests; a fresh random nonce is drawn every time, so signing the
    same command twice gives two payloads that are each accepted once.
    """
    clash = sorted(set(command) & set(SIGNING_FIELDS))
    if clash:
        raise ValueError(f"command already has signing field(s) {clash}")
    if command.get("gateway", gateway_id) != gateway_id:
        raise ValueError(f"command is addressed to {command['gateway']!r}, not {gateway_id!r}")
    fields = {
        **command,
        "gateway": gateway_id,
        "ts": int(time.time() if now is None else now),
        "nonce": secrets.token_hex(NONCE_BYTES),
    }
    signature = private_key.sign(canonical(fields))
    fields["sig"] = base64.b64encode(signature).decode("ascii")
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def verify_command(
    data: dict[str, Any],
    public_key: Ed25519PublicKey,
    gateway_id: str,
    max_skew: float,
    now: float | None = None,
) -> Signed:
    """Check a decoded signed command; raise :class:`CommandRejected` saying what is wrong.

    ``max_skew`` (seconds) bounds how far ``ts`` may be from ``now`` either way.
    """
    command_id = data.get("id") if isinstance(data.get("id"), str) else None
    name = data.get("command") if isinstance(data.get("command"), str) else None

    def reject(code: ErrorCode, message: str) -> CommandRejected:
        return CommandRejected(code, message, command_id=command_id, command=name)

    if "sig" not in data:
        raise reject(
            ErrorCode.UNSIGNED,
            "unsigned command refused: this gateway runs only commands signed with the "
            "platform's command key (fields gateway, ts, nonce, sig)",
        )
    sig, ts, nonce, target = data["sig"], data.get("ts"), data.get("nonce"), data.get("gateway")
    if not isinstance(sig, str):
        raise reject(ErrorCode.BAD_REQUEST, "sig: expected a base64 Ed25519 signature")
    if isinstance(ts, bool) or not isinstance(ts, int) or not 0 <= ts < 2**53:
        raise reject(ErrorCode.BAD_REQUEST, "ts: expected the signing time, whole Unix seconds")
    if not isinstance(nonce, str) or not _NONCE.fullmatch(nonce):
        raise reject(ErrorCode.BAD_REQUEST, "nonce: expected 24 to 64 lowercase hex digits")
    if not isinstance(target, str):
        raise reject(ErrorCode.BAD_REQUEST, "gateway: a signed command must name its gateway")
    try:
        signature = base64.b64decode(sig, validate=True)
        signed = canonical(data)
    except (binascii.Error, ValueError) as exc:  # bad base64; NaN or infinity in the command
        raise reject(ErrorCode.BAD_SIGNATURE, f"signature does not verify: {exc}") from exc
    try:
        public_key.verify(signature, signed)
    except InvalidSignature as exc:
        raise reject(
            ErrorCode.BAD_SIGNATURE,
            "signature does not verify with this gateway's command key (tampered, or signed "
            "with another key)",
        ) from exc
    if target != gateway_id:
        raise reject(
            ErrorCode.WRONG_GATEWAY, f"signed for gateway {target!r}; this is {gateway_id!r}"
        )
    current = time.time() if now is None else now
    if abs(current - ts) > max_skew:
        age = current - ts
        when = f"{age:.0f}s old" if age > 0 else f"{-age:.0f}s in the future"
        raise reject(
            ErrorCode.STALE,
            f"ts is {when}; accepted within {max_skew:g}s of this gateway's clock ({current:.0f})",
        )
    command = {key: value for key, value in data.items() if key not in SIGNING_FIELDS}
    return Signed(command, ts, nonce)
