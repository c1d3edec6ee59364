"""What "making progress" means for each of the gateway's loops, as watchdog probes.

- ``outbox:commit``: while readings wait or a commit runs, commit attempts must finish (a
  disk-full refusal counts: it is retried). A wedged database thread stops them.
- ``forward:mqtt``: while readings wait for the broker, or the link is down, messages must be
  acknowledged or connection attempts must end (in success or failure): every step the
  forwarder takes is bounded by ``publish_timeout``, so silence beyond that is a hang.
- ``poll:…``: each poller, and each self-scheduling source that polls (a Modbus RTU bus), must
  finish a poll, good or failed, at least once per interval or backoff, except while the
  outbox holds producers back (a full disk): then the outbox owes, and killing the gateway
  would lose the readings waiting in memory. Sources that only listen (``scan:ble``) have
  nothing owed: a silent sensor is not a stuck gateway; their tasks are still watched.

Allowances are generous on purpose: a restart costs a reconnect and a few seconds of polling,
a false one every few minutes would cost far more.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from drivers.base import Source
from gateway.config.model import GatewayConfig, MqttConfig
from gateway.core.health import DeviceStatus
from gateway.core.polling import BACKOFF_CAP
from gateway.runtime.scheduler import DevicePoller
from gateway.runtime.watchdog import Probe
from gateway.store.outbox import Outbox
from gateway.uplink.forwarder import Forwarder, ForwarderState

__all__ = [
    "OUTBOX_ALLOWANCE",
    "forwarder_probe",
    "gateway_probes",
    "outbox_probe",
    "poll_allowance",
    "poller_probe",
    "source_probe",
]

#: Seconds a commit may take: a large one with a WAL checkpoint on a slow SD card takes a few.
OUTBOX_ALLOWANCE = 60.0


def outbox_probe(outbox: Outbox, allowance: float = OUTBOX_ALLOWANCE) -> Probe:
    """The group-commit loop and its database thread."""
    return Probe("outbox:commit", allowance, outbox.progress)


def forwarder_probe(forwarder: Forwarder, outbox: Outbox, mqtt: MqttConfig) -> Probe:
    """The MQTT forwarder, while it owes the broker readings or is (re)connecting."""
    stats = forwarder.stats

    def progress() -> tuple[object, ...] | None:
        owed = outbox.last_seq > outbox.acked_seq
        if stats.state is ForwarderState.CONNECTED and not owed:
            return None
        return (stats.state, stats.messages_published, stats.connects, stats.connection_failures)

    # A connection attempt, or a PUBACK, takes at most publish_timeout; a wait between
    # attempts at most reconnect_max.
    allowance = max(60.0, 3 * (mqtt.publish_timeout + mqtt.reconnect_max))
    return Probe("forward:mqtt", allowance, progress)


def poll_allowance(interval: float) -> float:
    """How long a poller may go without finishing a poll: two backoff ceilings and a minute."""
    return 2 * max(interval, BACKOFF_CAP) + 60.0


def _polls(statuses: Iterable[DeviceStatus]) -> int:
    return sum(s.polls_ok + s.polls_failed for s in statuses)


def _polls_unless_held(statuses: Iterable[DeviceStatus], outbox: Outbox) -> int | None:
    return None if outbox.backpressure else _polls(statuses)


def poller_probe(task_name: str, poller: DevicePoller, interval: float, outbox: Outbox) -> Probe:
    """One polled device."""
    statuses = [poller.status]
    return Probe(task_name, poll_allowance(interval), lambda: _polls_unless_held(statuses, outbox))


def source_probe(source: Source, longest_interval: float, outbox: Outbox) -> Probe | None:
    """A self-scheduling source that polls (``poll:…``); None for one that only listens."""
    if not source.task_name.startswith("poll:"):
        return None
    statuses: Mapping[str, DeviceStatus] = source.statuses
    return Probe(
        source.task_name,
        poll_allowance(longest_interval),
        lambda: _polls_unless_held(statuses.values(), outbox),
    )


def longest_interval(config: GatewayConfig) -> float:
    """The longest poll interval of any device or RTU unit (0 without any)."""
    intervals = [0.0]
    for device in config.devices:
        intervals += [unit.interval for unit in getattr(device, "units", ())]
        interval = getattr(device, "interval", None)
        if isinstance(interval, float):
            intervals.append(interval)
    return max(intervals)


def gateway_probes(
    config: GatewayConfig,
    outbox: Outbox,
    forwarder: Forwarder,
    pollers: Iterable[tuple[str, DevicePoller, float]],
    sources: Iterable[Source],
) -> list[Probe]:
    """Every probe of a running gateway; ``pollers`` as (task name, poller, interval)."""
    probes = [outbox_probe(outbox), forwarder_probe(forwarder, outbox, config.mqtt)]
    probes += [poller_probe(name, p, interval, outbox) for name, p, interval in pollers]
    longest = longest_interval(config)
    probes += [p for s in sources if (p := source_probe(s, longest, outbox)) is not None]
    return probes
