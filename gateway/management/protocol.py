"""The command and reply payloads of ``<prefix>/<gateway_id>/cmd`` and ``.../reply`` (docs/mqtt.md).

Pure functions: :func:`parse_command` turns a payload into a :class:`Command` or raises
:class:`CommandRejected` naming what is wrong (and the command's id, when it could be read);
:func:`reply_payload` builds every reply.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from gateway.uplink.inbound import MAX_COMMAND_BYTES

__all__ = [
    "MAX_COMMAND_BYTES",
    "Command",
    "CommandRejected",
    "ErrorCode",
    "ReplyStatus",
    "parse_command",
    "reply_payload",
]


class ReplyStatus(StrEnum):
    """A reply's ``status``."""

    OK = "ok"  # done; ``result`` holds the answer
    ACCEPTED = "accepted"  # will be done (restart, config-set): a later reply may follow
    APPLIED = "applied"  # config-set: the gateway reached the broker with the new config
    ROLLED_BACK = "rolled_back"  # config-set: the previous config was restored (``error``)
    ERROR = "error"  # not done; ``error`` says why


class ErrorCode(StrEnum):
    """``error.code`` in a reply."""

    BAD_PAYLOAD = "bad_payload"  # not UTF-8 JSON, or too large
    BAD_REQUEST = "bad_request"  # JSON, but not a command object (id, command, args)
    WRONG_GATEWAY = "wrong_gateway"  # addressed to another gateway
    RETAINED = "retained"  # a retained command would run again on every reconnect
    UNKNOWN_COMMAND = "unknown_command"
    BAD_ARGS = "bad_args"  # the command's args are missing or of the wrong type
    BUSY = "busy"  # the command queue is full, or a config change is still pending
    NOT_FOUND = "not_found"  # no such device
    UNSUPPORTED = "unsupported"  # the device or gateway cannot do this
    DEVICE_ERROR = "device_error"  # the device could not be read
    TIMEOUT = "timeout"
    INVALID_CONFIG = "invalid_config"  # config-set: the new config does not validate
    LOCAL_ONLY = "local_only"  # config-set: a key that may be changed on site only
    WRITE_FAILED = "write_failed"  # config-set: the config file could not be written
    ROLLED_BACK = "rolled_back"  # config-set: see ReplyStatus.ROLLED_BACK
    INTERNAL = "internal"  # a bug: the gateway logged it
    # [management] require_signed (docs/mqtt.md#signed-commands):
    UNSIGNED = "unsigned"  # no signature, and this gateway requires one
    BAD_SIGNATURE = "bad_signature"  # does not verify with the configured command key
    STALE = "stale"  # ts outside the accepted window (too old, or from the future)
    REPLAYED = "replayed"  # this nonce was already used


@dataclass(frozen=True, slots=True)
class Command:
    """One command as the platform sent it."""

    id: str
    command: str
    args: dict[str, Any] = field(default_factory=dict)


class CommandRejected(Exception):
    """A payload that cannot be run; replied to with ``code`` and ``message``."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        command_id: str | None = None,
        command: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.command_id = command_id
        self.command = command
        self.details = details or {}


def parse_command(payload: bytes, gateway_id: str, *, retained: bool = False) -> Command:
    """The command in ``payload``; raises :class:`CommandRejected` saying what is wrong."""
    if len(payload) > MAX_COMMAND_BYTES:
        raise CommandRejected(
            ErrorCode.BAD_PAYLOAD, f"payload of {len(payload)} bytes; at most {MAX_COMMAND_BYTES}"
        )
    try:
        data = json.loads(payload.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise CommandRejected(ErrorCode.BAD_PAYLOAD, f"payload is not UTF-8: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise CommandRejected(ErrorCode.BAD_PAYLOAD, f"payload is not JSON: {exc}") from exc
    except RecursionError as exc:
        raise CommandRejected(ErrorCode.BAD_PAYLOAD, "payload is nested too deeply") from exc
    if not isinstance(data, dict):
        raise CommandRejected(
            ErrorCode.BAD_REQUEST, f"expected a JSON object, got {type(data).__name__}"
        )
    command_id = data.get("id")
    name = data.get("command")
    if not isinstance(command_id, str) or not command_id:
        raise CommandRejected(
            ErrorCode.BAD_REQUEST,
            "id: expected a non-empty string",
            command=name if isinstance(name, str) else None,
        )
    if not isinstance(name, str) or not name:
        raise CommandRejected(
            ErrorCode.BAD_REQUEST, "command: expected a non-empty string", command_id=command_id
        )

    def reject(code: ErrorCode, message: str) -> CommandRejected:
        return CommandRejected(code, message, command_id=command_id, command=name)

    unknown = sorted(set(data) - {"id", "command", "args", "gateway"})
    if unknown:
        raise reject(
            ErrorCode.BAD_REQUEST,
            f"unknown key(s) {unknown}; expected id, command, args, gateway",
        )
    target = data.get("gateway")
    if target is not None and target != gateway_id:
        raise reject(
            ErrorCode.WRONG_GATEWAY,
            f"addressed to gateway {target!r}; this is {gateway_id!r}",
        )
    if retained:
        raise reject(
            ErrorCode.RETAINED,
            "retained command refused: it would run again on every reconnect; publish with "
            "retain=false",
        )
    args = data.get("args", {})
    if not isinstance(args, dict):
        raise reject(ErrorCode.BAD_ARGS, f"args: expected an object, got {type(args).__name__}")
    return Command(command_id, name, args)


def reply_payload(
    gateway_id: str,
    command_id: str | None,
    command: str | None,
    status: ReplyStatus,
    *,
    result: Any = None,
    error: CommandRejected | None = None,
) -> bytes:
    """One reply (docs/mqtt.md): ``result`` for ok/accepted/applied, ``error`` otherwise."""
    reply: dict[str, Any] = {
        "id": command_id,
        "gateway": gateway_id,
        "command": command,
        "status": status.value,
        "ts": round(time.time(), 3),
    }
    if error is not None:
        reply["error"] = {"code": error.code.value, "message": error.message, **error.details}
    else:
        reply["result"] = result
    return json.dumps(reply, separators=(",", ":"), allow_nan=False).encode()
