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

from gateway.core.errors import CommandRejected, ErrorCode
from gateway.uplink.inbound import MAX_COMMAND_BYTES

__all__ = [
    "MAX_COMMAND_BYTES",
    "Command",
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


@dataclass(frozen=True, slots=True)
class Command:
    """One command as the platform sent it."""

    id: str
    command: str
    args: dict[str, Any] = field(default_factory=dict)


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
