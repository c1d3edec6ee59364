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

A local reload (``systemctl reload``: SIGHUP, :meth:`Supervisor.request_reload`) re-reads the
file and validates it as a start would. An invalid file changes nothing: every issue is logged
by key and recorded (:class:`~gateway.runtime.reload.ReloadRecord`: health report, ``streetgate
status``, ``/metrics``), and the gateway keeps running on the config it has. A valid file (an
unchanged one too: the TLS, password and profile files it names are read again, e.g. a renewed
certificate) is put on the same trial as a ``config-set`` (its ``.previous`` is the file the
gateway was running on) and the gateway restarts in-process with it: every part is rebuilt, so
anything the site owns (broker, TLS, credentials, paths, devices) may change, and no reading
is lost (pending ones are committed at the stop). Repeated signals coalesce into one reload; a
reload and a ``config-set`` never run at once (:attr:`Supervisor.config_lock`). systemd hears
``RELOADING=1`` when a reload starts and ``READY=1`` when it is done.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.config.change import (
    ChangeOrigin,
    ChangeState,
    PendingChange,
    clear_marker,
    previous_path,
    read_marker,
    rejected_path,
    roll_back,
    stage_reload,
    start_trial,
)
from gateway.config.model import GatewayConfig, config_from_bytes, load_config
from gateway.core.errors import CommandRejected, ConfigError, ErrorCode
from gateway.core.safe_files import MAX_CONFIG_BYTES, read_config_file
from gateway.management.commands import CommandServer
from gateway.management.protocol import ReplyStatus
from gateway.runtime.app import Gateway, run_gateway
from gateway.runtime.notify import Notifier
from gateway.runtime.reload import ReloadRecord, ReloadResult, check_file
from gateway.store.outbox_files import OutboxLock

if TYPE_CHECKING:
    from drivers.ble.common import BleBackends

log = logging.getLogger(__name__)

__all__ = ["RELOAD_CONFIRM_TIMEOUT", "Supervisor"]

#: A reload made while the broker was reachable must reach it again within this, or the
#: previous file is put back (as a config-set's default confirm_timeout).
RELOAD_CONFIRM_TIMEOUT = 60.0


class Supervisor:
    """Runs the gateway from ``config_path`` until :meth:`shutdown`; restarts it on request."""

    def __init__(
        self,
        config_path: Path,
        *,
        ble: BleBackends | None = None,
        on_started: Callable[[Gateway], None] | None = None,
        reload_confirm_timeout: float = RELOAD_CONFIRM_TIMEOUT,
    ) -> None:
        self._path = config_path
        self._reload_confirm = reload_confirm_timeout
        self._ble = ble
        self._on_started = on_started
        self._stop = asyncio.Event()
        self._shutdown = False
        self.starts = 0
        self._lock: OutboxLock | None = None
        # One notifier for every start: systemd hears RELOADING=1 and READY=1 around an
        # in-process restart, and STOPPING=1 only when the process really stops.
        self._notifier = Notifier.from_environ()
        self._config_lock = asyncio.Lock()
        self._reload_wanted = asyncio.Event()
        self._running_bytes = b""  # the config file as the running gateway loaded it
        self.reloads = ReloadRecord()

    @property
    def config_path(self) -> Path:
        """The config file the gateway runs from (config-set rewrites it)."""
        return self._path

    @property
    def config_lock(self) -> asyncio.Lock:
        """Held while a config-set or a reload checks and stages the file."""
        return self._config_lock

    def request_reload(self) -> None:
        """Re-read the config file (SIGHUP; a signal handler: it only sets a flag, so signals
        that arrive before the reload runs make one reload)."""
        self._reload_wanted.set()

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
                    "%s: %s; rolling back", _named(change), reason
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
            config = self._load()
        except ConfigError as exc:
            if change is None or change.state is not ChangeState.PENDING:
                raise
            change = roll_back(path, change, f"the new config does not load: {exc}")
            config = self._load()
        self.starts += 1
        return config, change

    def _load(self) -> GatewayConfig:
        """Load the config file, remembering its bytes (a reload keeps them as `.previous`)."""
        raw = read_config_file(self._path, "", MAX_CONFIG_BYTES)
        config = config_from_bytes(raw, self._path)
        self._running_bytes = raw
        return config

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
                    reloads=self.reloads,
                ),
                name="gateway",
            )
            settled = asyncio.Event()  # the change this start runs with is decided
            settle = tg.create_task(
                self._settle(started, config, change, commands, settled),
                name="mgmt:settle-config",
            )
            reloads = tg.create_task(self._reloads(started, settled), name="reload:config")
            gateway.add_done_callback(lambda _: (settle.cancel(), reloads.cancel()))

    async def _settle(
        self,
        started: asyncio.Future[Gateway],
        config: GatewayConfig,
        change: PendingChange | None,
        commands: CommandServer,
        settled: asyncio.Event,
    ) -> None:
        try:
            await self._settle_change(started, config, change, commands, settled)
        finally:
            settled.set()

    async def _settle_change(
        self,
        started: asyncio.Future[Gateway],
        config: GatewayConfig,
        change: PendingChange | None,
        commands: CommandServer,
        settled: asyncio.Event,
    ) -> None:
        gateway = await started
        if self._on_started is not None:
            self._on_started(gateway)
        if change is None:
            return
        if change.origin is ChangeOrigin.RELOAD:
            await self._settle_reload(gateway, config, change)
            return
        if change.state is ChangeState.ROLLED_BACK:
            settled.set()  # the report may wait for the broker; a reload is refused meanwhile
            rejected = CommandRejected(ErrorCode.ROLLED_BACK, change.reason or "rolled back")
            await commands.report(
                change.command_id, "config-set", ReplyStatus.ROLLED_BACK, error=rejected
            )
            await asyncio.to_thread(clear_marker, self._path)
            return
        forwarder = gateway.forwarder
        if not await self._reaches_broker(gateway, config, change):
            return
        await asyncio.to_thread(clear_marker, self._path)
        settled.set()
        log.info("config-set %s: applied", change.command_id)
        await commands.report(
            change.command_id,
            "config-set",
            ReplyStatus.APPLIED,
            result={"broker": str(forwarder.broker)},
        )

    # -- local reloads (SIGHUP) -----------------------------------------------------------

    async def _reloads(self, started: asyncio.Future[Gateway], settled: asyncio.Event) -> None:
        """Run the reloads asked for while this gateway runs, one at a time, until one restarts
        it. A reload asked for meanwhile waits for the next start and for the change that start
        tries to be decided (signals in a burst: one reload, then at most one more)."""
        gateway = await started
        await settled.wait()
        while True:
            await self._reload_wanted.wait()
            if self._stop.is_set():
                return  # stopping: the next gateway takes it over
            self._reload_wanted.clear()
            if await self._reload(gateway):
                return

    async def _reload(self, gateway: Gateway) -> bool:
        """One reload; True when the gateway restarts with the new file."""
        path = self._path
        self._notifier.reloading(f"reloading {path}")
        connected = gateway.forwarder.connected.is_set()
        async with self._config_lock:
            result, message, issues = await asyncio.to_thread(self._stage_reload, connected)
        if result is None:
            log.warning("reload: %s", message)
            self.request_restart(f"reload of {path}")
            return True
        log.error("reload: %s", message)
        for key, text in issues:
            log.error("reload: %s: %s: %s", path, key or "(the file)", text)
        self.reloads.record(result, message, issues)
        self._notifier.ready(f"reload {result.value}: {message}")
        return False

    def _stage_reload(
        self, connected: bool
    ) -> tuple[ReloadResult | None, str, tuple[tuple[str, str], ...]]:
        """Check the file; stage it when valid and changed (result None). Blocking: a thread."""
        path = self._path
        pending = read_marker(path)
        if pending is not None:
            return (
                ReloadResult.REFUSED,
                f"{path} not reloaded: the change {pending.command_id} ({pending.origin.value})"
                " is not settled yet; still running on the previous config; reload again later",
                (),
            )
        check = check_file(path)
        if check.config is None:
            count = len(check.issues)
            return (
                ReloadResult.INVALID,
                f"{path} not reloaded: {count} issue(s) in the file; still running on the "
                "previous config",
                check.issues,
            )
        reload_id = f"reload-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
        stage_reload(
            path,
            self._running_bytes,
            reload_id,
            self._reload_confirm,
            needs_broker=connected,
        )
        wait = (
            f"rollback unless it reaches the broker within {self._reload_confirm:g}s"
            if connected
            else "rollback if it fails to start"
        )
        return None, f"{path} is valid ({reload_id}); restarting with it, {wait}", ()

    async def _reaches_broker(
        self, gateway: Gateway, config: GatewayConfig, change: PendingChange
    ) -> bool:
        """Wait until the gateway on a changed config connects, up to the change's deadline;
        False: it did not, the change is rolled back and a restart onto the old config asked."""
        forwarder = gateway.forwarder
        try:
            async with asyncio.timeout(max(0.0, change.deadline_unix - time.time())):
                await forwarder.connected.wait()
        except TimeoutError:
            brokers = ", ".join(str(b) for b in config.mqtt.endpoints)
            reason = f"no connection to the broker {brokers} within {change.confirm_timeout:g}s"
            if forwarder.stats.last_error:
                reason += f" (last error: {forwarder.stats.last_error})"
            named = _named(change)
            log.error("%s: %s; rolling back", named, reason)  # noqa: TRY400 - no traceback
            await asyncio.to_thread(roll_back, self._path, change, reason)
            self.request_restart(f"{named} rolled back")
            return False
        return True

    async def _settle_reload(
        self, gateway: Gateway, config: GatewayConfig, change: PendingChange
    ) -> None:
        """Confirm a reloaded file (running; connected if it has to be) or record its rollback."""
        if change.state is ChangeState.ROLLED_BACK:
            reason = change.reason or "rolled back"
            kept = rejected_path(self._path)
            log.error(
                "reload %s rolled back: %s; running on the previous config; the edited file is "
                "kept as %s",
                change.command_id,
                reason,
                kept,
            )
            self.reloads.record(ReloadResult.ROLLED_BACK, f"{reason}; the edit is kept as {kept}")
            await asyncio.to_thread(clear_marker, self._path)
            return
        if change.needs_broker and not await self._reaches_broker(gateway, config, change):
            return
        await asyncio.to_thread(clear_marker, self._path)
        log.info("reload %s: applied", change.command_id)
        self.reloads.record(ReloadResult.APPLIED, f"{change.command_id} applied")


def _named(change: PendingChange) -> str:
    """How logs name a change: ``config-set <id>`` or ``reload-<time>``."""
    if change.origin is ChangeOrigin.RELOAD:
        return change.command_id
    return f"config-set {change.command_id}"


def _first_error(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        return _first_error(exc.exceptions[0])
    return str(exc) or type(exc).__name__
