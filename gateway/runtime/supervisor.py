"""The loop around the gateway: restarts it in-process on request and settles remote config changes.

``streetgate run`` runs :meth:`Supervisor.run`. A ``restart`` or ``config-set`` command stops
the running gateway (pending readings are committed, as at any stop) and the loop loads the
config file again and starts a new one, in the same process: systemd and anything else
watching the PID see no restart.

A config change on trial (gateway/config/change.py) is confirmed when the forwarder reaches the
broker before the change's deadline: the marker is removed and the platform gets ``applied``.
Otherwise the previous file is restored and the gateway restarts with it, then reports
``rolled_back`` with the reason once connected. The same happens when the new config fails to
start, or when a gateway finds a change that was already on trial at its start (it stopped or
crashed meanwhile).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.config.change import (
    ChangeState,
    PendingChange,
    clear_marker,
    previous_path,
    read_marker,
    roll_back,
    start_trial,
)
from gateway.config.model import GatewayConfig, load_config
from gateway.core.errors import CommandRejected, ConfigError, ErrorCode
from gateway.management.commands import CommandServer
from gateway.management.protocol import ReplyStatus
from gateway.runtime.app import Gateway, run_gateway
from gateway.runtime.notify import Notifier
from gateway.store.outbox_files import OutboxLock

if TYPE_CHECKING:
    from drivers.ble.common import BleBackends

log = logging.getLogger(__name__)

__all__ = ["Supervisor"]


class Supervisor:
    """Runs the gateway from ``config_path`` until :meth:`shutdown`; restarts it on request."""

    def __init__(
        self,
        config_path: Path,
        *,
        ble: BleBackends | None = None,
        on_started: Callable[[Gateway], None] | None = None,
    ) -> None:
        self._path = config_path
        self._ble = ble
        self._on_started = on_started
        self._stop = asyncio.Event()
        self._shutdown = False
        self.starts = 0
        self._lock: OutboxLock | None = None
        # One notifier for every start: systemd hears RELOADING=1 and READY=1 around an
        # in-process restart, and STOPPING=1 only when the process really stops.
        self._notifier = Notifier.from_environ()

    @property
    def config_path(self) -> Path:
        """The config file the gateway runs from (config-set rewrites it)."""
        return self._path

    def request_restart(self, reason: str) -> None:
        """Stop the running gateway; the loop starts it again with the config file as it is."""
        log.warning("restarting the gateway: %s", reason)
        self._stop.set()

    def shutdown(self) -> None:
        """Stop the gateway and the loop (SIGTERM, SIGINT)."""
        self._shutdown = True
        self._stop.set()

    async def run(self) -> None:
        """Start the gateway, again after every restart request, until :meth:`shutdown`.

        The outbox's lock is taken first (before a pending change is settled) and held across
        in-process restarts: a second gateway on the same outbox refuses (OutboxLocked).
        """
        self._lock = await asyncio.to_thread(self._take_lock, None)
        try:
            await self._loop()
        finally:
            self._lock.release()
            self._lock = None

    def _take_lock(self, outbox_path: Path | None) -> OutboxLock:
        """The lock of ``outbox_path`` (None: of the outbox the config file names), held."""
        if outbox_path is None:
            outbox_path = self._outbox_path()
        lock = OutboxLock(outbox_path)
        lock.acquire()
        return lock

    def _outbox_path(self) -> Path:
        """The outbox the config names; with a remote change pending and a config that does
        not load, the one the previous config names (the change will be rolled back)."""
        try:
            return load_config(self._path).outbox.path
        except ConfigError:
            previous = previous_path(self._path)
            if read_marker(self._path) is None or not previous.exists():
                raise
            return load_config(previous).outbox.path

    async def _loop(self) -> None:
        while not self._shutdown:
            self._stop = asyncio.Event()
            config, change = await asyncio.to_thread(self._prepare)
            assert self._lock is not None
            if config.outbox.path != self._lock.outbox_path:  # edited on site, then restarted
                moved = await asyncio.to_thread(self._take_lock, config.outbox.path)
                self._lock.release()
                self._lock = moved
            try:
                await self._run_once(config, change)
            except Exception as exc:
                if change is None or change.state is not ChangeState.PENDING:
                    raise
                # The new config validated but the gateway cannot run with it (a TLS file
                # it names, a port it cannot open): go back to the one that worked.
                reason = f"the gateway failed to run with the new config: {_first_error(exc)}"
                log.error(  # noqa: TRY400 - the reason says it all; no traceback
                    "config-set %s: %s; rolling back", change.command_id, reason
                )
                await asyncio.to_thread(roll_back, self._path, change, reason)

    def _prepare(self) -> tuple[GatewayConfig, PendingChange | None]:
        """Settle what an earlier run left, then load the config. Blocking: run in a thread."""
        path = self._path
        change = read_marker(path)
        if change is not None and change.state is ChangeState.PENDING:
            if change.trial_started:
                reason = "the gateway stopped or crashed before the new config was confirmed"
                change = roll_back(path, change, reason)
            elif time.time() > change.deadline_unix:
                reason = (
                    "the confirm deadline passed before the gateway started with the new config"
                )
                change = roll_back(path, change, reason)
            else:
                change = start_trial(path, change)
        try:
            config = load_config(path)
        except ConfigError as exc:
            if change is None or change.state is not ChangeState.PENDING:
                raise
            change = roll_back(path, change, f"the new config does not load: {exc}")
            config = load_config(path)
        self.starts += 1
        return config, change

    async def _run_once(self, config: GatewayConfig, change: PendingChange | None) -> None:
        commands = CommandServer(config, self)
        started: asyncio.Future[Gateway] = asyncio.get_running_loop().create_future()
        async with asyncio.TaskGroup() as tg:
            gateway = tg.create_task(
                run_gateway(
                    config,
                    self._stop,
                    started,
                    self._ble,
                    notifier=self._notifier,
                    commands=commands,
                    will_restart=lambda: not self._shutdown,
                    outbox_lock=self._lock,
                ),
                name="gateway",
            )
            settle = tg.create_task(
                self._settle(started, config, change, commands), name="mgmt:settle-config"
            )
            gateway.add_done_callback(lambda _: settle.cancel())

    async def _settle(
        self,
        started: asyncio.Future[Gateway],
        config: GatewayConfig,
        change: PendingChange | None,
        commands: CommandServer,
    ) -> None:
        gateway = await started
        if self._on_started is not None:
            self._on_started(gateway)
        if change is None:
            return
        if change.state is ChangeState.ROLLED_BACK:
            rejected = CommandRejected(ErrorCode.ROLLED_BACK, change.reason or "rolled back")
            await commands.report(
                change.command_id, "config-set", ReplyStatus.ROLLED_BACK, error=rejected
            )
            await asyncio.to_thread(clear_marker, self._path)
            return
        forwarder = gateway.forwarder
        try:
            async with asyncio.timeout(max(0.0, change.deadline_unix - time.time())):
                await forwarder.connected.wait()
        except TimeoutError:
            brokers = ", ".join(str(b) for b in config.mqtt.endpoints)
            reason = f"no connection to the broker {brokers} within {change.confirm_timeout:g}s"
            if forwarder.stats.last_error:
                reason += f" (last error: {forwarder.stats.last_error})"
            log.error(  # noqa: TRY400 - the reason says it all; no traceback
                "config-set %s: %s; rolling back", change.command_id, reason
            )
            await asyncio.to_thread(roll_back, self._path, change, reason)
            self.request_restart(f"config-set {change.command_id} rolled back")
            return
        await asyncio.to_thread(clear_marker, self._path)
        log.info("config-set %s: applied", change.command_id)
        await commands.report(
            change.command_id,
            "config-set",
            ReplyStatus.APPLIED,
            result={"broker": str(forwarder.broker)},
        )


def _first_error(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        return _first_error(exc.exceptions[0])
    return str(exc) or type(exc).__name__
