"""Remote commands: the platform publishes on ``<prefix>/<gw>/cmd``; replies go to ``.../reply``.

The forwarder hands every message on the command topic to :meth:`CommandServer.offer`, which
answers malformed, misaddressed and retained payloads at once and queues the rest. The queue is
bounded (``COMMAND_QUEUE``); when it is full the command is refused with ``busy``, never dropped
silently. One task (``mgmt:commands``) runs the queued commands one at a time, so a slow
``read-now`` delays later commands but never the readings, which have their own tasks.

A reply echoes the command's ``id``; a command id seen again (a QoS 1 redelivery, or a retry by
the platform) gets the reply it got the first time, without running the command twice; for
``restart`` and ``config-set`` also after a restart (gateway/management/command_ids.py).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
import tomllib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from gateway import __version__
from gateway.config.change import PendingChange, merge_patch, read_marker, stage_change
from gateway.config.effective import effective_config
from gateway.config.environment import overlay
from gateway.config.model import GatewayConfig, parse_config
from gateway.core.errors import CommandRejected, ConfigError, DeviceError, DeviceTimeout, ErrorCode
from gateway.core.safe_files import MAX_CONFIG_BYTES, read_config_file
from gateway.management.auth import CommandGuard
from gateway.management.command_ids import ReplyMemory, replies_path
from gateway.management.protocol import Command, ReplyStatus, parse_command, reply_payload
from gateway.management.remote_scope import refused_changes
from gateway.uplink.forwarder import Forwarder, command_topic, reply_topic

if TYPE_CHECKING:
    from gateway.core.health import DeviceStatus
    from gateway.core.model import Reading

log = logging.getLogger(__name__)

__all__ = ["COMMAND_QUEUE", "CommandServer", "Control"]

#: Commands waiting to run; one more is refused with ``busy``.
COMMAND_QUEUE = 8

#: Replies remembered by command id, to answer a repeated id without running it again.
REMEMBERED_REPLIES = 64

#: read-now waits this long for the device unless the command says otherwise.
READ_NOW_TIMEOUT = 10.0

#: config-set: how long the new config has to reach the broker, unless the command says.
CONFIRM_TIMEOUT = 60.0
CONFIRM_TIMEOUT_RANGE = (1.0, 3600.0)


class Control(Protocol):
    """What the process around the gateway lets commands do (see gateway/runtime/supervisor.py)."""

    @property
    def config_path(self) -> Path | None:
        """The config file the gateway was started from (None: config-set is unsupported)."""
        ...

    def request_restart(self, reason: str) -> None:
        """Stop the gateway and start it again with the config file as it is now."""
        ...

    @property
    def config_lock(self) -> asyncio.Lock:
        """Held while the config file is checked and changed: a remote config-set and a local
        reload (SIGHUP) never run at once."""
        ...


class _Poller(Protocol):
    async def read_now(self) -> list[Reading]: ...


class _Health(Protocol):
    def devices(self) -> dict[str, DeviceStatus]: ...

    async def snapshot(self) -> dict[str, Any]: ...


class Gateway(Protocol):
    """What commands read of the running gateway (gateway.runtime.app.Gateway, the layer above)."""

    @property
    def pollers(self) -> Mapping[str, _Poller]:
        """The devices polled one at a time, by name (read-now)."""
        ...

    @property
    def health(self) -> _Health | None:
        """Device and outbox health (None while the gateway starts)."""
        ...


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a command handler did: the reply's status and result, and what to do after it."""

    status: ReplyStatus
    result: Any
    then: Callable[[], None] | None = None


Handler = Callable[[Command], Awaitable[Outcome]]


class CommandServer:
    """Takes commands from the forwarder and runs them; run ``run()`` as ``mgmt:commands``."""

    def __init__(self, config: GatewayConfig, control: Control | None = None) -> None:
        self._config = config
        self._control = control
        self._gateway_id = config.gateway_id
        self.topic = command_topic(config)
        self.reply_topic = reply_topic(config)
        self._queue: asyncio.Queue[Command] = asyncio.Queue(maxsize=COMMAND_QUEUE)
        # Lasting replies (restart, config-set) survive a restart: read back in run().
        self._replies = ReplyMemory(replies_path(config.outbox.path), REMEMBERED_REPLIES)
        self._running: set[str] = set()
        self._forwarder: Forwarder | None = None
        self._gateway: Gateway | None = None
        self._started = time.monotonic()
        self._handlers: dict[str, Handler] = {
            "ping": self._ping,
            "read-now": self._read_now,
            "config-get": self._config_get,
            "config-set": self._config_set,
            "restart": self._restart,
            "buffer-status": self._buffer_status,
        }
        self.handled = 0
        management = config.management
        self._guard = (
            CommandGuard(management, config.gateway_id, config.outbox.path)
            if management is not None and management.command_key is not None
            else None
        )

    def attach(self, forwarder: Forwarder) -> None:
        """Subscribe to the command topic on ``forwarder``'s connection (before it runs)."""
        self._forwarder = forwarder
        forwarder.subscribe(self.topic, self.offer)

    # -- intake (runs in the forwarder's receive task: never blocks, never raises) ---------

    @property
    def waiting(self) -> int:
        """Commands queued and not started yet."""
        return self._queue.qsize()

    async def offer(self, payload: bytes, retained: bool) -> None:
        """Reject a bad payload at once, queue a good one (or refuse it with ``busy``)."""
        try:
            await self._offer(payload, retained=retained)
        except Exception:  # the boundary: no payload may stop the forwarder's receive task
            log.exception("command payload could not be handled")

    async def _offer(self, payload: bytes, *, retained: bool) -> None:
        try:
            if self._guard is not None:  # signature, window, nonce: before anything else
                payload = await self._guard.check(payload)
            command = parse_command(payload, self._gateway_id, retained=retained)
        except CommandRejected as exc:
            log.warning("command refused: %s", exc.message)
            await self._publish(self._error(exc.command_id, exc.command, exc))
            return
        remembered = self._replies.get(command.id)
        if remembered is not None:
            await self._publish(remembered)
            return
        if command.command not in self._handlers:
            known = ", ".join(sorted(self._handlers))
            unknown = CommandRejected(
                ErrorCode.UNKNOWN_COMMAND, f"unknown command {command.command!r}; known: {known}"
            )
            await self._publish(self._error(command.id, command.command, unknown))
            return
        if command.id in self._running:
            busy = CommandRejected(
                ErrorCode.BUSY, f"command id {command.id!r} is already queued or running"
            )
            await self._publish(self._error(command.id, command.command, busy))
            return
        try:
            self._queue.put_nowait(command)
        except asyncio.QueueFull:
            busy = CommandRejected(
                ErrorCode.BUSY, f"{COMMAND_QUEUE} commands are waiting; try again later"
            )
            await self._publish(self._error(command.id, command.command, busy))
            return
        self._running.add(command.id)

    # -- the worker ------------------------------------------------------------------------

    async def run(self, gateway: Gateway) -> None:
        """Run queued commands one at a time, until cancelled."""
        self._gateway = gateway
        await self._replies.load()
        while True:
            command = await self._queue.get()
            try:
                # An id answered before the last restart may have come in before load().
                remembered = self._replies.get(command.id)
                if remembered is not None:
                    await self._publish(remembered)
                else:
                    await self._handle(command)
            finally:
                self._running.discard(command.id)

    async def _handle(self, command: Command) -> None:
        handler = self._handlers[command.command]  # unknown commands never get queued
        outcome: Outcome | None = None
        try:
            outcome = await handler(command)
            payload = reply_payload(
                self._gateway_id,
                command.id,
                command.command,
                outcome.status,
                result=outcome.result,
            )
        except CommandRejected as exc:
            outcome = None
            payload = self._error(command.id, command.command, exc)
        except Exception as exc:  # the boundary: a bug in one command must not stop others
            log.exception("command %s (%s) failed", command.command, command.id)
            outcome = None
            internal = CommandRejected(ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}")
            payload = self._error(command.id, command.command, internal)
        await self._remember(command.id, command.command, payload)  # before `then` restarts
        self.handled += 1
        await self._publish(payload)
        if outcome is not None and outcome.then is not None:
            outcome.then()

    async def _remember(self, command_id: str, command: str, payload: bytes) -> None:
        await self._replies.remember(command_id, command, payload)

    def _error(self, command_id: str | None, command: str | None, exc: CommandRejected) -> bytes:
        return reply_payload(
            self._gateway_id,
            command_id,
            command,
            ReplyStatus.ERROR,
            error=exc,
        )

    async def _publish(self, payload: bytes) -> bool:
        if self._forwarder is None:
            return False
        done = await self._forwarder.publish_live(self.reply_topic, payload, retain=False)
        if not done:
            log.warning("could not publish a command reply (no broker connection)")
        return done

    async def report(
        self, command_id: str, command: str, status: ReplyStatus, **fields: Any
    ) -> None:
        """A late reply (config-set applied or rolled back): waits for the broker connection."""
        payload = reply_payload(self._gateway_id, command_id, command, status, **fields)
        await self._remember(command_id, command, payload)
        forwarder = self._forwarder
        if forwarder is None:
            return
        while not await forwarder.publish_live(self.reply_topic, payload, retain=False):
            await forwarder.connected.wait()
            await asyncio.sleep(1.0)  # connected but the publish failed: do not spin

    # -- the commands ----------------------------------------------------------------------

    def _running_gateway(self) -> Gateway:
        if self._gateway is None:
            raise CommandRejected(ErrorCode.UNSUPPORTED, "the gateway is still starting")
        return self._gateway

    async def _ping(self, command: Command) -> Outcome:
        _no_args(command)
        return Outcome(
            ReplyStatus.OK,
            {
                "pong": True,
                "version": __version__,
                "uptime_s": round(time.monotonic() - self._started, 1),
            },
        )

    async def _read_now(self, command: Command) -> Outcome:
        _allow_args(command, {"device", "timeout"})
        name = command.args.get("device")
        if not isinstance(name, str):
            raise CommandRejected(ErrorCode.BAD_ARGS, "args.device: expected a device name")
        timeout = _number(command, "timeout", READ_NOW_TIMEOUT, (0.1, 300.0))
        gateway = self._running_gateway()
        poller = gateway.pollers.get(name)
        if poller is None:
            if gateway.health is not None and name in gateway.health.devices():
                raise CommandRejected(
                    ErrorCode.UNSUPPORTED,
                    f"device {name!r} is read on a shared schedule (BLE advertisements, a "
                    "Modbus RTU bus); read-now polls devices that have their own poll task",
                )
            known = ", ".join(sorted(gateway.pollers)) or "none"
            raise CommandRejected(
                ErrorCode.NOT_FOUND, f"no polled device {name!r}; polled devices: {known}"
            )
        try:
            async with asyncio.timeout(timeout):
                readings = await poller.read_now()
        except TimeoutError as exc:
            raise CommandRejected(
                ErrorCode.TIMEOUT, f"device {name!r}: no poll finished within {timeout:g}s"
            ) from exc
        except DeviceError as exc:
            code = ErrorCode.TIMEOUT if isinstance(exc, DeviceTimeout) else ErrorCode.DEVICE_ERROR
            raise CommandRejected(code, str(exc), details={"kind": type(exc).__name__}) from exc
        return Outcome(
            ReplyStatus.OK,
            {
                "device": name,
                "readings": [
                    {
                        "metric": r.metric,
                        "value": r.value if math.isfinite(r.value) else None,
                        "unit": r.unit,
                        "ts_ms": r.ts_ms,
                        "quality": r.quality.value,
                    }
                    for r in readings
                ],
            },
        )

    async def _config_get(self, command: Command) -> Outcome:
        _no_args(command)
        path = self._control.config_path if self._control is not None else None
        # A profile file may be read to tell it from a shipped one: off the event loop.
        config = await asyncio.to_thread(effective_config, self._config, redact=True)
        return Outcome(
            ReplyStatus.OK, {"path": None if path is None else str(path), "config": config}
        )

    async def _config_set(self, command: Command) -> Outcome:
        _allow_args(command, {"config", "patch", "confirm_timeout"})
        control = self._control
        path = control.config_path if control is not None else None
        if control is None or path is None:
            raise CommandRejected(
                ErrorCode.UNSUPPORTED, "this gateway was not started from a config file"
            )
        confirm = _number(command, "confirm_timeout", CONFIRM_TIMEOUT, CONFIRM_TIMEOUT_RANGE)
        has_config, has_patch = "config" in command.args, "patch" in command.args
        if has_config == has_patch:
            raise CommandRejected(
                ErrorCode.BAD_ARGS,
                "args: give either config (the whole new config) or patch (a JSON merge patch)",
            )
        given = command.args["config" if has_config else "patch"]
        if not isinstance(given, dict):
            key = "config" if has_config else "patch"
            raise CommandRejected(ErrorCode.BAD_ARGS, f"args.{key}: expected an object")
        async with control.config_lock:  # never at once with a local reload
            change = await self._stage(path, command, given, has_config=has_config, confirm=confirm)
        log.warning(
            "config-set %s: %s rewritten; restarting, rollback unless connected within %gs",
            command.id,
            path,
            confirm,
        )
        return Outcome(
            ReplyStatus.ACCEPTED,
            {"confirm_timeout": change.confirm_timeout, "restarting": True},
            then=lambda: control.request_restart(f"config-set {command.id}"),
        )

    async def _stage(
        self,
        path: Path,
        command: Command,
        given: dict[str, Any],
        *,
        has_config: bool,
        confirm: float,
    ) -> PendingChange:
        """Check the change against the file as it is now and write it, marked pending."""
        if await asyncio.to_thread(read_marker, path) is not None:
            raise CommandRejected(
                ErrorCode.BUSY, "an earlier config change is not settled yet; try again later"
            )
        current = await _read_toml(path)
        document = given if has_config else merge_patch(current, given)
        # Before validation, which reads the profile files a device names.
        await asyncio.to_thread(_check_scope, current, document, path)
        await asyncio.to_thread(_validate, document, path, self._gateway_id, given)
        try:
            return await asyncio.to_thread(stage_change, path, document, command.id, confirm)
        except OSError as exc:
            raise CommandRejected(
                ErrorCode.WRITE_FAILED, f"cannot write {path}: {exc.strerror or exc}"
            ) from exc

    async def _restart(self, command: Command) -> Outcome:
        _no_args(command)
        control = self._control
        if control is None:
            raise CommandRejected(ErrorCode.UNSUPPORTED, "this gateway cannot restart itself")
        return Outcome(
            ReplyStatus.ACCEPTED,
            {"restarting": True},
            then=lambda: control.request_restart(f"restart command {command.id}"),
        )

    async def _buffer_status(self, command: Command) -> Outcome:
        _no_args(command)
        gateway = self._running_gateway()
        if gateway.health is None:
            raise CommandRejected(ErrorCode.UNSUPPORTED, "the gateway is still starting")
        snapshot = await gateway.health.snapshot()
        return Outcome(
            ReplyStatus.OK,
            {"outbox": snapshot["outbox"], "forwarder": snapshot["forwarder"]},
        )


def _allow_args(command: Command, allowed: set[str]) -> None:
    unknown = sorted(set(command.args) - allowed)
    if unknown:
        expected = ", ".join(sorted(allowed)) or "none"
        raise CommandRejected(
            ErrorCode.BAD_ARGS, f"unknown args {unknown} for {command.command}; expected {expected}"
        )


def _no_args(command: Command) -> None:
    _allow_args(command, set())


def _number(command: Command, key: str, default: float, bounds: tuple[float, float]) -> float:
    value = command.args.get(key, default)
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise CommandRejected(
            ErrorCode.BAD_ARGS, f"args.{key}: expected seconds from {low:g} to {high:g}"
        )
    return float(value)


async def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data = await asyncio.to_thread(read_config_file, path, "config file", MAX_CONFIG_BYTES)
        return tomllib.loads(data.decode("utf-8"))
    except (ConfigError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CommandRejected(
            ErrorCode.INVALID_CONFIG, f"cannot read the current config {path}: {exc}"
        ) from exc


def _check_scope(current: dict[str, Any], document: dict[str, Any], path: Path) -> None:
    """Refuse a change to a local-only key (gateway/management/remote_scope.py), naming every such
    key."""
    refusals = refused_changes(current, document, path)
    if refusals:
        issues = [{"key": r.key, "message": r.message} for r in refusals]
        log.warning("config-set refused: %s", "; ".join(str(r) for r in refusals))
        raise CommandRejected(
            ErrorCode.LOCAL_ONLY,
            "nothing changed: " + "; ".join(str(r) for r in refusals),
            details={"issues": issues},
        )


def _validate(
    document: dict[str, Any], path: Path, gateway_id: str, given: dict[str, Any] | None = None
) -> None:
    """Refuse a document the gateway would not start with, naming every key that is wrong.

    It is checked as the gateway will load it: with the ``STREETGATE_*`` variables laid over it
    (gateway/config/environment.py). A key that a variable sets cannot be changed here: the variable
    would win after the restart, so the change is refused, naming the variable.
    """
    env = overlay(document, os.environ, GatewayConfig)
    overridden = [
        (key, env.origins[key]) for key in env.origins if _mentions(given or document, key)
    ]
    if overridden:
        issues = [
            {"key": key, "message": f"set by the environment variable {name}; change it there"}
            for key, name in overridden
        ]
        raise CommandRejected(
            ErrorCode.INVALID_CONFIG,
            "nothing changed: " + "; ".join(f"{i['key']}: {i['message']}" for i in issues),
            details={"issues": issues},
        )
    try:
        try:
            config = parse_config(env.data, "config-set", path.parent.resolve())
        except ConfigError as exc:  # a value a variable set is named by the variable
            raise env.error("config-set", exc.issues) from exc
        if env.issues:
            raise env.error("config-set")
    except ConfigError as exc:
        issues = [{"key": i.location, "message": i.message} for i in exc.issues]
        summary = "; ".join(str(i) for i in exc.issues)
        raise CommandRejected(
            ErrorCode.INVALID_CONFIG,
            f"the new config is invalid, nothing changed: {summary}",
            details={"issues": issues},
        ) from exc
    if config.gateway_id != gateway_id:
        raise CommandRejected(
            ErrorCode.INVALID_CONFIG,
            f"gateway_id: cannot be changed remotely ({gateway_id!r} -> {config.gateway_id!r})",
            details={"issues": [{"key": "gateway_id", "message": "cannot be changed remotely"}]},
        )


def _mentions(document: Mapping[str, Any], dotted: str) -> bool:
    """Whether ``document`` sets the key ``dotted`` ("mqtt.host")."""
    node: Any = document
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True
