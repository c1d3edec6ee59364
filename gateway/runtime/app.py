"""Wires the gateway together: outbox, forwarder and one poller per device, each a named task."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from drivers import build_driver, build_sources
from drivers.base import Source
from drivers.ble.counters import counters_path
from gateway.config.devices import POLLED_TYPES, deadband_rules
from gateway.config.model import GatewayConfig
from gateway.config.transport_security import insecure_flags, transport_warnings
from gateway.core.clock import SystemClock
from gateway.core.deadband import DeadbandFilter
from gateway.runtime.health_report import HealthReporter
from gateway.runtime.history import History
from gateway.runtime.metrics import MetricsServer
from gateway.runtime.notify import Notifier
from gateway.runtime.progress_probes import gateway_probes
from gateway.runtime.reload import ReloadRecord
from gateway.runtime.scheduler import DevicePoller
from gateway.runtime.state_file import StateFileWriter, state_path
from gateway.runtime.status_page import StatusPage, page_token_path
from gateway.runtime.watchdog import Watchdog, heartbeat_path
from gateway.store.outbox import Outbox
from gateway.store.outbox_files import OutboxLock
from gateway.uplink.forwarder import Forwarder, health_topic

if TYPE_CHECKING:
    from drivers.ble.common import BleBackends
    from gateway.management.commands import CommandServer

log = logging.getLogger(__name__)


@dataclass
class Gateway:
    """A running gateway's parts, for status reporting and tests."""

    config: GatewayConfig
    outbox: Outbox
    forwarder: Forwarder
    pollers: dict[str, DevicePoller] = field(default_factory=dict)
    sources: list[Source] = field(default_factory=list)
    health: HealthReporter | None = None
    metrics: MetricsServer | None = None
    history: History = field(default_factory=History)  # the status page's charts
    deadbands: DeadbandFilter = field(default_factory=lambda: DeadbandFilter({}))


@asynccontextmanager
async def pipeline(
    config: GatewayConfig,
    commands: CommandServer | None = None,
    outbox_lock: OutboxLock | None = None,
) -> AsyncIterator[tuple[Outbox, Forwarder]]:
    """The store-and-forward half: an open outbox with its commit loop and the forwarder.

    On exit both tasks are cancelled and the outbox commits what is still pending.
    ``outbox_lock``: the outbox's lock, held by the caller; None: the outbox takes it.
    """
    async with Outbox(config.outbox, lock=outbox_lock) as outbox:
        # Reading TLS and password files is disk I/O: keep it off the event loop.
        forwarder = await asyncio.to_thread(Forwarder, config, outbox)
        if commands is not None:
            commands.attach(forwarder)  # subscribes before the first connection
        async with asyncio.TaskGroup() as tg:
            tasks = [
                tg.create_task(forwarder.run(), name="forward:mqtt"),
                tg.create_task(outbox.run(), name="outbox:commit"),
            ]
            try:
                yield outbox, forwarder
            finally:
                for task in tasks:
                    task.cancel()


async def run_gateway(
    config: GatewayConfig,
    stop: asyncio.Event,
    started: asyncio.Future[Gateway] | None = None,
    ble: BleBackends | None = None,
    *,
    notifier: Notifier | None = None,
    commands: CommandServer | None = None,
    will_restart: Callable[[], bool] = lambda: False,
    outbox_lock: OutboxLock | None = None,
    reloads: ReloadRecord | None = None,
) -> None:
    """Run until ``stop`` is set; then stop polling, commit what is pending, and close.

    ``ble`` injects bleak backends (the BLE simulator's, in tests); None: the platform's.
    ``notifier`` talks to systemd (gateway/runtime/notify.py); None: the one the environment names.
    ``commands``: take remote commands (gateway/management/commands.py); None: no command topic.
    ``will_restart``: whether a stop is a restart (systemd hears RELOADING, not STOPPING).
    ``outbox_lock``: the outbox's lock if the caller holds it (gateway/store/outbox_files.py).
    ``reloads``: what local reloads did (the supervisor's, kept across restarts), for the report.
    """
    notifier = notifier or Notifier.from_environ()
    clock = SystemClock()
    for warning in transport_warnings(config.mqtt):
        level = logging.WARNING if warning.serious else logging.INFO
        log.log(level, "insecure: %s; %s", warning.message, warning.hint)
    async with pipeline(config, commands, outbox_lock) as (outbox, forwarder):
        gateway = Gateway(config, outbox, forwarder)
        # Readings within their deadband are held back before the outbox: never given a seq.
        gateway.deadbands = DeadbandFilter(deadband_rules(config.devices))
        store = gateway.deadbands.sink(outbox.put_many) if gateway.deadbands else outbox.put_many
        # With the status page (served by the metrics listener), readings also feed its charts
        # (every reading polled, also those the deadbands hold back).
        sink = store if config.metrics is None else gateway.history.tap(store)
        polled = [d for d in config.devices if isinstance(d, POLLED_TYPES)]
        for device in polled:
            gateway.pollers[device.name] = DevicePoller(
                build_driver(device, ble=ble),
                device.interval,
                sink,
                clock,
                # Devices with one interval poll together: their answers arrive as one burst
                # that the outbox commits as soon as it ends (QUIET_COMMIT), so a kill loses
                # little, and one loop wake-up serves many answers. Spreading first polls
                # over the interval cost 3 points of CPU at 200 devices and lost more per kill.
                phase=0.0,
            )
        gateway.sources = build_sources(
            config.devices,
            sink,
            clock,
            ble=ble,
            ble_counters=counters_path(config.outbox.path),
        )
        gateway.deadbands.bind(
            {n: p.status for n, p in gateway.pollers.items()}
            | {n: st for source in gateway.sources for n, st in source.statuses.items()}
        )
        async with asyncio.TaskGroup() as tg:
            tasks = [
                tg.create_task(poller.run(), name=f"poll:{device.kind}:{device.name}")
                for device, poller in zip(polled, gateway.pollers.values(), strict=True)
            ]
            tasks += [tg.create_task(s.run(), name=s.task_name) for s in gateway.sources]
            gateway.health = HealthReporter(
                config.gateway_id,
                outbox,
                forwarder,
                statuses=[{n: p.status for n, p in gateway.pollers.items()}]
                + [s.statuses for s in gateway.sources],
                topic=health_topic(config),
                interval=config.mqtt.health_interval,
                clock=clock,
                insecure=insecure_flags(config.mqtt),
                reload=(reloads or ReloadRecord()).report,
            )
            tasks.append(tg.create_task(gateway.health.run(), name="status:health"))
            # For `streetgate buffer status`, which runs in another process.
            state_file = StateFileWriter(
                state_path(config.outbox.path), gateway.health.snapshot, forwarder.stats
            )
            tasks.append(tg.create_task(state_file.run(), name="status:state-file"))
            # systemd's watchdog and the container health check: only while loops progress.
            watchdog = Watchdog(
                notifier,
                gateway_probes(
                    config,
                    outbox,
                    forwarder,
                    [
                        (f"poll:{d.kind}:{d.name}", p, d.interval)
                        for d, p in zip(polled, gateway.pollers.values(), strict=True)
                    ],
                    gateway.sources,
                ),
                heartbeat=heartbeat_path(config.outbox.path),
                tasks=lambda: tasks,
                describe=lambda: _status_line(gateway),
            )
            tasks.append(tg.create_task(watchdog.run(), name="status:watchdog"))
            if commands is not None:
                tasks.append(tg.create_task(commands.run(gateway), name="mgmt:commands"))
            if config.metrics is not None:
                page = StatusPage(
                    gateway.health.snapshot,
                    forwarder.stats,
                    ", ".join(str(b) for b in config.mqtt.endpoints),
                    gateway.history,
                    page_token_path(config.outbox.path),
                )
                gateway.metrics = MetricsServer(config.metrics, gateway.health.snapshot, page)
                tasks.append(tg.create_task(gateway.metrics.run(), name="status:metrics"))
            log.info(
                "gateway %s running: %d device(s), broker %s",
                config.gateway_id,
                len(config.devices),
                ", ".join(str(b) for b in config.mqtt.endpoints),
            )
            notifier.ready(_status_line(gateway))
            if started is not None:
                started.set_result(gateway)
            await stop.wait()
            log.info("stopping: pending readings are committed before exit")
            if will_restart():
                notifier.reloading("restarting: committing pending readings")
            else:
                notifier.stopping("stopping: committing pending readings")
            for task in tasks:
                task.cancel()
    # Pollers stop first; leaving pipeline() then stops the forwarder and the commit loop, and
    # the outbox commits whatever the pollers handed over before they stopped.


def _status_line(gateway: Gateway) -> str:
    """One line for ``systemctl status``."""
    outbox = gateway.outbox
    return (
        f"{len(gateway.config.devices)} device(s); broker {gateway.forwarder.stats.state}; "
        f"{outbox.last_seq - outbox.acked_seq} reading(s) to forward"
    )
