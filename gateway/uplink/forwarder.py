"""The MQTT forwarder: publishes the outbox in sequence order, QoS 1, and acks what the broker has.

Delivery contract (docs/mqtt.md): at least once, in sequence order; a reading is deleted from the
outbox only after the broker's PUBACK for the message carrying it. After any failure the
connection is dropped and the next broker of ``mqtt.brokers`` is tried at once; after a round
of them all, with capped exponential backoff and jitter (:class:`BrokerRotation`). Publishing
restarts at the first unacknowledged reading, so a duplicate always carries a sequence number
the platform has already seen. A lost connection ends the session at once (the session watches
the client), not when the pending publishes time out.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import aiomqtt
from paho.mqtt.client import MQTT_CLEAN_START_FIRST_ONLY
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway import __version__
from gateway.config.model import (
    BrokerAddress,
    GatewayConfig,
    MqttConfig,
    MqttProtocol,
    PayloadCompression,
    PayloadFormat,
    TlsConfig,
)
from gateway.core.backoff import next_delay
from gateway.core.cancelling import raise_if_cancelled
from gateway.core.errors import (
    BrokerUnavailable,
    ConfigError,
    ConfigIssue,
    ForwardError,
    UnsafeKeyFile,
)
from gateway.core.key_files import unsafe_mode
from gateway.core.model import StoredRow
from gateway.core.safe_files import (
    MAX_PASSWORD_BYTES,
    MAX_TLS_BYTES,
    check_config_file,
    read_config_file,
)
from gateway.uplink.boundary import mqtt_errors
from gateway.uplink.compact import CompactEncoder, Compression, ContentType, Metadata
from gateway.uplink.envelope import build_message
from gateway.uplink.inbound import MAX_COMMAND_BYTES, Inbound, InboundLimits
from gateway.uplink.senml import build_pack
from gateway.uplink.source import ReadingSource

log = logging.getLogger(__name__)


class ForwarderState(StrEnum):
    """Where the uplink is."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    WAITING = "waiting"  # backing off before the next connection attempt


def readings_topic(config: GatewayConfig) -> str:
    """Topic readings are published to."""
    return f"{config.mqtt.topic_prefix}/{config.gateway_id}/readings"


def meta_topic(config: GatewayConfig) -> str:
    """Retained topic with the compact format's metadata (see docs/mqtt.md, "Compact payload")."""
    return f"{config.mqtt.topic_prefix}/{config.gateway_id}/meta"


def health_topic(config: GatewayConfig) -> str:
    """Retained topic with the gateway's health report (see docs/mqtt.md)."""
    return f"{config.mqtt.topic_prefix}/{config.gateway_id}/health"


def status_topic(config: GatewayConfig) -> str:
    """Retained topic with the gateway's online/offline state (birth and last will)."""
    return f"{config.mqtt.topic_prefix}/{config.gateway_id}/status"


def command_topic(config: GatewayConfig) -> str:
    """Topic the gateway takes commands on (see docs/mqtt.md, "Commands")."""
    return f"{config.mqtt.topic_prefix}/{config.gateway_id}/cmd"


def reply_topic(config: GatewayConfig) -> str:
    """Topic the gateway answers commands on."""
    return f"{config.mqtt.topic_prefix}/{config.gateway_id}/reply"


#: Called with the payload and retain flag of each message that arrives on a subscribed topic.
MessageHandler = Callable[[bytes, bool], Awaitable[None]]


def status_message(state: str, **extra: object) -> bytes:
    """Payload of the retained status topic."""
    return json.dumps(
        {"state": state, "version": __version__, "ts": round(time.time(), 3), **extra},
        separators=(",", ":"),
    ).encode()


def tls_context(mqtt: MqttConfig) -> ssl.SSLContext | None:
    """TLS context for the broker connection (None for plain TCP)."""
    if mqtt.tls is None:
        return None
    tls = mqtt.tls
    check_tls_files(tls)
    try:
        context = ssl.create_default_context(cafile=str(tls.ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise ForwardError(_tls_problem("mqtt.tls.ca_file", tls.ca_file, exc)) from exc
    if tls.cert_file is not None and tls.key_file is not None:
        _refuse_unsafe_key(tls.key_file)
        try:
            context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
        except (OSError, ssl.SSLError) as exc:
            where = f"mqtt.tls.cert_file/key_file ({tls.cert_file}, {tls.key_file})"
            raise ForwardError(f"{where}: cannot load the client certificate: {exc}") from exc
    if tls.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def read_password(path: Path) -> str:
    """The MQTT password from ``mqtt.password_file``: a regular file of at most 4 kB."""
    data = read_config_file(path, "mqtt.password_file", MAX_PASSWORD_BYTES)
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise ConfigError(
            str(path), [ConfigIssue("", "mqtt.password_file: not UTF-8 text")]
        ) from exc


def check_tls_files(tls: TlsConfig) -> None:
    """ssl loads the TLS files by path: check first that each is a regular file of bounded size
    (ConfigError). A missing one is left to ssl, which names it."""
    for key, path in (
        ("mqtt.tls.ca_file", tls.ca_file),
        ("mqtt.tls.cert_file", tls.cert_file),
        ("mqtt.tls.key_file", tls.key_file),
    ):
        if path is not None and path.exists():
            check_config_file(path, key, MAX_TLS_BYTES)


def _refuse_unsafe_key(path: Path) -> None:
    try:
        mode = unsafe_mode(path)
    except OSError:
        return  # load_cert_chain says what is wrong with a missing or unreadable file
    if mode is not None:
        raise UnsafeKeyFile("mqtt.tls.key_file", path, mode)


def _tls_problem(key: str, path: Path, exc: Exception) -> str:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return f"{key} = {path}: cannot load it as a PEM CA certificate file: {reason}"


#: MQTT 5 Maximum Packet Size the gateway announces in CONNECT: a command's payload limit plus
#: room for the fixed header, the topic and the properties. The broker never sends a larger
#: packet, so a larger command never reaches the gateway's memory.
MAX_INCOMING_PACKET = MAX_COMMAND_BYTES + 4096


def connect_properties(session_expiry: float = 0.0) -> Properties:
    """The MQTT 5 CONNECT properties: the Maximum Packet Size the gateway accepts and, when
    ``session_expiry`` > 0, how many seconds the broker keeps the session after a disconnect."""
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call] # paho
    properties.MaximumPacketSize = MAX_INCOMING_PACKET
    if session_expiry > 0:
        properties.SessionExpiryInterval = math.ceil(session_expiry)
    return properties


def expiry_properties(seconds: float) -> Properties:
    """MQTT 5 PUBLISH properties: the broker drops the message (a retained one too) once it is
    ``seconds`` old (rounded up to whole seconds, at least 1)."""
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call] # paho
    properties.MessageExpiryInterval = max(1, math.ceil(seconds))
    return properties


class BrokerRotation:
    """Which broker to try next and how long to wait first: a pure policy, no I/O.

    Sticky: the gateway stays on a broker that works. After a session ends (lost or never
    made) the next broker in the list is tried at once; once every broker has been tried
    since the last working connection or the last wait, the gateway backs off
    (gateway/core/backoff.py) before the next round. The backoff grows while whole rounds
    fail and starts from the bottom again after a round in which a connection was made.
    """

    def __init__(self, brokers: Sequence[BrokerAddress]) -> None:
        if not brokers:
            raise ValueError("a rotation needs at least one broker")
        self.brokers = tuple(brokers)
        self.index = 0
        self.attempt = 0  # rounds failed in a row, for the backoff
        self._tried = 0  # sessions since the last working connection or wait
        self._connected_this_round = False

    @property
    def current(self) -> BrokerAddress:
        """The broker to use now."""
        return self.brokers[self.index]

    def ended(self, *, connected: bool) -> bool:
        """A session with the current broker ended (``connected``: it had connected). Moves to
        the next broker; True when a round is complete and the caller must back off first."""
        if connected:
            self._tried = 0
            self._connected_this_round = True
        self._tried += 1
        self.index = (self.index + 1) % len(self.brokers)
        return self._tried >= len(self.brokers)

    def delay(self, rng: random.Random, base: float, cap: float) -> float:
        """Seconds to wait at the end of a round; starts the next round."""
        if self._connected_this_round:
            self.attempt = 0
        seconds = next_delay(self.attempt, rng, base, cap)
        self.attempt += 1
        self._tried = 0
        self._connected_this_round = False
        return seconds


def publish_properties(content_type: str) -> Properties:
    """The MQTT 5 PUBLISH properties of a readings or metadata message: its content type."""
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call] # paho
    properties.ContentType = content_type
    return properties


#: Each payload format's content type (compact: ContentType.compact(compression)).
CONTENT_TYPES = {
    PayloadFormat.STREETGATE: ContentType.STREETGATE.value,
    PayloadFormat.SENML: ContentType.SENML.value,
}

_COMPRESSION = {
    PayloadCompression.NONE: Compression.NONE,
    PayloadCompression.DEFLATE: Compression.DEFLATE,
    PayloadCompression.ZSTD: Compression.ZSTD,
}


def _refused(code: object) -> bool:
    """Whether a SUBACK return code (an int, or paho's ReasonCode) says the broker refused."""
    value = getattr(code, "value", code)
    return isinstance(value, int) and value >= 0x80  # 0x80 and up: MQTT failure codes


@dataclass
class ForwarderStats:
    """Counters the status shows."""

    state: ForwarderState = ForwarderState.CONNECTING
    connects: int = 0
    connection_failures: int = 0
    messages_published: int = 0
    readings_published: int = 0
    last_error: str | None = None
    connected_since: float | None = None  # Unix time the current connection was made
    broker: str | None = None  # host:port in use, or being tried
    failovers: int = 0  # connections made to another broker than the one before
    last_ack_unix: float | None = None  # Unix time the broker last acknowledged readings
    # Incoming messages (commands) dropped unread, by reason (gateway/uplink/inbound.py).
    incoming_dropped: dict[str, int] = field(default_factory=dict)


class Forwarder:
    """Publishes the readings of ``source`` (the outbox) to the broker, encoded at publish time
    in ``mqtt.payload_format``; run ``run()`` as a task (``forward:mqtt``)."""

    def __init__(
        self, config: GatewayConfig, source: ReadingSource, rng: random.Random | None = None
    ) -> None:
        self._config = config
        self._mqtt = config.mqtt
        self._source = source
        self._rng = rng or random.Random()
        self._brokers = BrokerRotation(config.mqtt.endpoints)
        self._last_broker: BrokerAddress | None = None  # of the last connection made
        self._topic = readings_topic(config)
        self._status_topic = status_topic(config)
        self._tls = tls_context(config.mqtt)
        self._password = self._read_password()
        self.stats = ForwarderStats()
        self._inbound = Inbound(InboundLimits(), self.stats.incoming_dropped)
        self.connected = asyncio.Event()
        self._live_client: aiomqtt.Client | None = None
        self._subscriptions: dict[str, MessageHandler] = {}
        self._meta_topic = meta_topic(config)
        self._format = config.mqtt.payload_format
        self._compact: CompactEncoder | None = None  # made at the first encode (outbox epoch)
        v5 = config.mqtt.protocol is MqttProtocol.V5
        compression = _COMPRESSION[config.mqtt.compression]
        content_type = (
            ContentType.compact(compression).value
            if self._format is PayloadFormat.COMPACT
            else CONTENT_TYPES[self._format]
        )
        # MQTT 3.1.1 has no properties: the compact header byte says what a payload is.
        self._properties = publish_properties(content_type) if v5 else None
        self._meta_properties = publish_properties(ContentType.META.value) if v5 else None
        self._compression = compression

    def subscribe(self, topic: str, handler: MessageHandler) -> None:
        """Deliver messages on ``topic`` (QoS 1) to ``handler``; call before ``run()`` starts.

        The session is clean, so the broker forgets subscriptions with the connection: they
        are made again on every connection, before the backlog drain starts.
        """
        self._subscriptions[topic] = handler

    def _read_password(self) -> str | None:
        if self._mqtt.password_file is None:
            return None
        return read_password(self._mqtt.password_file)

    @property
    def broker(self) -> BrokerAddress:
        """The broker in use, or the next to be tried."""
        return self._brokers.current

    def _client(self, broker: BrokerAddress) -> aiomqtt.Client:
        # The outbox, not the broker session, is the buffer of readings: a clean session
        # (3.1.1). With MQTT 5 the session may outlive the connection (mqtt.session_expiry) so
        # that the broker keeps the command subscription and queues commands across an outage;
        # readings are still only ever resent from the outbox.
        v5 = self._mqtt.protocol is MqttProtocol.V5
        expiry = self._mqtt.session_expiry_s
        return aiomqtt.Client(
            broker.host,
            broker.port,
            identifier=self._config.gateway_id,
            username=self._mqtt.username,
            password=self._password,
            keepalive=max(1, round(self._mqtt.keepalive)),
            timeout=self._mqtt.publish_timeout,
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            clean_session=None if v5 else True,
            clean_start=(expiry == 0) if v5 else MQTT_CLEAN_START_FIRST_ONLY,
            properties=connect_properties(expiry) if v5 else None,
            # aiomqtt makes its queue with queue_type(maxsize=...); ours checks every message
            # before it is queued (gateway/uplink/inbound.py) and drops, counting, what it refuses.
            queue_type=self._inbound.queue_type,
            max_queued_incoming_messages=self._inbound.limits.queue,
            will=aiomqtt.Will(
                self._status_topic,
                status_message("offline", reason="connection lost"),
                qos=1,
                retain=True,
            ),
            tls_context=self._tls,
            max_inflight_messages=self._mqtt.max_inflight,
            max_queued_outgoing_messages=self._mqtt.max_inflight * 2,
        )

    async def run(self) -> None:
        """Connect, drain, fail over and reconnect with backoff; forever (until cancelled)."""
        while True:
            broker = self._brokers.current
            self.stats.state = ForwarderState.CONNECTING
            self.stats.broker = str(broker)
            try:
                with mqtt_errors(broker.host, broker.port):
                    await self._session(broker)
            except* BrokerUnavailable as group:
                self._lost(broker, group.exceptions[0])
            connected = self.stats.state is ForwarderState.CONNECTED
            self.connected.clear()
            self.stats.connected_since = None
            if not self._brokers.ended(connected=connected):
                log.info("failing over to MQTT broker %s", self._brokers.current)
                continue
            delay = self._brokers.delay(
                self._rng, self._mqtt.reconnect_min, self._mqtt.reconnect_max
            )
            self.stats.state = ForwarderState.WAITING
            self.stats.broker = str(self._brokers.current)
            log.info("reconnecting to %s in %.1fs", self._brokers.current, delay)
            await asyncio.sleep(delay)

    def _lost(self, broker: BrokerAddress, exc: BaseException) -> None:
        self.stats.connection_failures += 1
        self.stats.last_error = str(exc) or type(exc).__name__
        log.warning("MQTT broker %s: %s", broker, self.stats.last_error)

    async def _session(self, broker: BrokerAddress) -> None:
        async with self._client(broker) as client:
            # aiomqtt waits with wait_for, which on Python 3.11 can swallow a cancel (a stop
            # while connecting): give it back after each step, or the session would drain on.
            raise_if_cancelled()
            self.stats.state = ForwarderState.CONNECTED
            self.stats.connects += 1
            self.stats.connected_since = time.time()
            if self._last_broker is not None and self._last_broker != broker:
                self.stats.failovers += 1
            self._last_broker = broker
            birth = status_message("online", epoch=self._source.epoch)
            await client.publish(self._status_topic, birth, qos=1, retain=True)
            if self._compact is not None and self._compact.metadata is not None:
                # Again on every connection: a broker that lost its retained messages, or a
                # metadata message whose PUBACK the last connection never got.
                await self._publish_meta(client, self._compact.metadata)
            for topic in self._subscriptions:
                granted = await client.subscribe(topic, qos=1)
                if any(_refused(code) for code in granted):
                    # Readings matter more than commands: carry on without this topic.
                    log.warning("the broker refused the subscription to %s (check its ACL)", topic)
            raise_if_cancelled()
            self._live_client = client
            self.connected.set()
            log.info("connected to MQTT broker %s", broker)
            try:
                async with asyncio.TaskGroup() as tg:
                    # Also the connection's watch: aiomqtt 2.5 leaves a pending publish waiting
                    # for its timeout when the connection drops, but ends the message iterator
                    # at once (MqttError), which ends this task group and so the drain.
                    tg.create_task(self._receive(client), name="forward:receive")
                    await self._drain(client)
            except asyncio.CancelledError:
                await self._say_goodbye(client)
                raise
            finally:
                self._live_client = None

    async def _receive(self, client: aiomqtt.Client) -> None:
        """Hand each incoming message to its topic's handler, one at a time, in order."""
        async for message in client.messages:
            handler = self._subscriptions.get(message.topic.value)
            if handler is not None and isinstance(message.payload, bytes):
                await handler(message.payload, message.retain)

    async def publish_retained(
        self, topic: str, payload: bytes, *, expires_after: float | None = None
    ) -> bool:
        """Publish a retained QoS 1 message on the live connection; False when there is none.

        For state that only matters while fresh (health): nothing is buffered; a failure here
        is noticed and handled by the connection's own drain loop. ``expires_after``: with
        MQTT 5, the broker drops the message (and forgets it as retained) this many seconds
        later; MQTT 3.1.1 has no expiry.
        """
        return await self.publish_live(topic, payload, retain=True, expires_after=expires_after)

    async def publish_live(
        self, topic: str, payload: bytes, *, retain: bool, expires_after: float | None = None
    ) -> bool:
        """Publish a QoS 1 message on the live connection; False when there is none."""
        client = self._live_client
        if client is None:
            return False
        properties = None
        if expires_after is not None and self._mqtt.protocol is MqttProtocol.V5:
            properties = expiry_properties(expires_after)
        broker = self._brokers.current
        try:
            async with asyncio.timeout(self._mqtt.publish_timeout):
                with mqtt_errors(broker.host, broker.port):
                    await client.publish(
                        topic, payload, qos=1, retain=retain, properties=properties
                    )
        except (BrokerUnavailable, TimeoutError):
            return False
        raise_if_cancelled()  # the caller (health, commands) must stop, not wait on forever
        return True

    def _encode(
        self, historical: bool, readings: Sequence[StoredRow]
    ) -> tuple[Metadata | None, bytes]:
        """The payload of one readings message, and the compact format's new metadata (which
        must reach the broker first) when it changed."""
        epoch = self._source.epoch
        if self._format is PayloadFormat.COMPACT:
            if self._compact is None or self._compact.epoch != epoch:
                # A new outbox is a new sequence: its readings get metadata of their own.
                self._compact = CompactEncoder(self._config.gateway_id, epoch, self._compression)
            return self._compact.encode(historical=historical, readings=readings)
        build = build_pack if self._format is PayloadFormat.SENML else build_message
        gateway = self._config.gateway_id
        return None, build(gateway, epoch=epoch, historical=historical, readings=readings)

    async def _publish_meta(self, client: aiomqtt.Client, meta: Metadata) -> None:
        """Publish the compact metadata, retained, and wait for the broker's PUBACK: a platform
        that subscribes late gets it first, and nothing that needs it is sent before it."""
        await client.publish(
            self._meta_topic,
            meta.to_json(),
            qos=1,
            retain=True,
            properties=self._meta_properties,
        )
        log.info("published compact metadata %s (%d entries)", meta.id, len(meta.entries))

    async def _say_goodbye(self, client: aiomqtt.Client) -> None:
        """On a clean stop, replace the retained 'online' (the will is only sent on a lost link)."""
        broker = self._brokers.current
        try:
            async with asyncio.timeout(2):
                with mqtt_errors(broker.host, broker.port):
                    await client.publish(
                        self._status_topic,
                        status_message("offline", reason="shutdown"),
                        qos=1,
                        retain=True,
                    )
        except (BrokerUnavailable, TimeoutError):
            log.info("could not publish the offline status on shutdown")

    async def _drain(self, client: aiomqtt.Client) -> None:
        """Publish in sequence order with up to ``max_inflight`` messages awaiting PUBACK."""
        source = self._source
        # Restart after the last acknowledged reading; those committed before this connection
        # are historical.
        cursor, backlog_until = source.backlog()
        per_message = self._mqtt.readings_per_message
        inflight: deque[tuple[int, int, asyncio.Task[None]]] = deque()
        # The next message's readings, being read while this one is encoded and sent: a
        # backlog drain otherwise waits for the store's thread for most of its time.
        # (upto, task) for the readings after `cursor`.
        ahead: tuple[int, asyncio.Task[Sequence[StoredRow]]] | None = None
        async with asyncio.TaskGroup() as tg:
            while True:
                while len(inflight) < self._mqtt.max_inflight:
                    historical = cursor < backlog_until
                    if ahead is not None:
                        # Read with the same `historical` (cursor has not moved since); a
                        # live `upto` may be older than now, which only makes it shorter.
                        upto, fetching = ahead
                        ahead = None
                        readings = await fetching
                    else:
                        upto = backlog_until if historical else source.backlog().last_seq
                        readings = await source.fetch(cursor, upto, per_message)
                    if len(readings) == per_message and readings[-1][0] < upto:
                        ahead = (
                            upto,
                            tg.create_task(
                                source.fetch(readings[-1][0], upto, per_message),
                                name="forward:fetch-ahead",
                            ),
                        )
                    if not readings:
                        # Everything up to `upto` is committed, so an empty range was deleted
                        # (dropped, or purged by a technician): move past it, or this loop
                        # would spin on it forever.
                        cursor = max(cursor, upto)
                        break
                    meta, payload = self._encode(historical, readings)
                    if meta is not None:
                        # Acknowledged before any readings that need it are sent.
                        await self._publish_meta(client, meta)
                    last = readings[-1][0]
                    task = tg.create_task(
                        client.publish(self._topic, payload, qos=1, properties=self._properties),
                        name=f"forward:publish:{last}",
                    )
                    inflight.append((last, len(readings), task))
                    cursor = last
                if inflight:
                    waiter = None
                    if len(inflight) < self._mqtt.max_inflight:
                        waiter = tg.create_task(
                            source.wait_committed(cursor), name="forward:wait-data"
                        )
                    head = inflight[0][2]
                    await asyncio.wait(
                        [t for t in (head, waiter) if t is not None],
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                    if waiter is not None and not waiter.done():
                        waiter.cancel()
                    while inflight and inflight[0][2].done():
                        last, count, task = inflight.popleft()
                        task.result()  # raises MqttError if the publish failed
                        source.ack(last)
                        self.stats.messages_published += 1
                        self.stats.readings_published += count
                        self.stats.last_ack_unix = time.time()
                else:
                    await source.wait_committed(cursor)
