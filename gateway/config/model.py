"""The gateway's TOML config, parsed once into frozen typed models that reject unknown keys."""

from __future__ import annotations

import os
import tomllib
import unicodedata
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BeforeValidator,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from gateway.config.devices import DeviceConfig, ModbusTcpDevice, device_names
from gateway.config.environment import overlay
from gateway.config.management import ManagementConfig
from gateway.config.metrics import MetricsConfig
from gateway.core.config_types import (
    DURATION_OR_ZERO_JSON_SCHEMA,
    NAME_PATTERN,
    Bytes,
    BytesOrZero,
    Frozen,
    Seconds,
)
from gateway.core.errors import ConfigError, ConfigIssue
from gateway.core.safe_files import MAX_CONFIG_BYTES, read_config_file
from gateway.core.units import parse_duration
from gateway.core.validation import issues_from_validation_error

__all__ = [
    "NAME_PATTERN",
    "BrokerAddress",
    "DeviceConfig",
    "GatewayConfig",
    "ManagementConfig",
    "ModbusTcpDevice",
    "MqttConfig",
    "MqttProtocol",
    "OutboxConfig",
    "PayloadCompression",
    "PayloadFormat",
    "Synchronous",
    "TlsConfig",
    "config_document",
    "config_from_bytes",
    "load_config",
    "parse_config",
]


class TlsConfig(Frozen):
    """TLS towards the broker; client certificate and key are optional (mutual TLS)."""

    ca_file: Path = Field(
        description="CA certificate(s) the broker's certificate must chain to (PEM); relative "
        "paths are relative to the config file's folder."
    )
    cert_file: Path | None = Field(
        default=None,
        description="This gateway's client certificate (PEM), for mutual TLS; give key_file too.",
    )
    key_file: Path | None = Field(
        default=None,
        description="The private key of cert_file (PEM), owned by the service user, mode 0600.",
    )
    insecure_skip_verify: bool = Field(
        default=False,
        description="Do not check the broker's certificate or host name: for a test bench only "
        "(validate, doctor and the log warn).",
    )

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file must be given together")
        return self


class PayloadFormat(StrEnum):
    """How readings messages are encoded (docs/mqtt.md)."""

    STREETGATE = "streetgate"  # streetgate's own JSON envelope
    SENML = "senml"  # a SenML pack, RFC 8428 (gateway/uplink/senml.py)
    COMPACT = "compact"  # CBOR groups + a retained metadata message (gateway/uplink/compact.py)


class PayloadCompression(StrEnum):
    """How compact readings messages are compressed (docs/mqtt.md, "Compact payload")."""

    NONE = "none"
    DEFLATE = "deflate"  # raw deflate primed with the metadata's dictionary
    ZSTD = "zstd"  # a zstd frame primed with the metadata's dictionary


def _zero_or_duration(value: Any) -> Any:
    if isinstance(value, str):
        return 0.0 if value.strip() == "0" else parse_duration(value)
    if isinstance(value, bool):
        raise ValueError("expected a duration such as '5m', or 0, got a boolean")  # noqa: TRY004 - pydantic reports ValueError
    return value


class MqttProtocol(StrEnum):
    """The MQTT version spoken to the broker."""

    V311 = "3.1.1"
    V5 = "5"  # the broker is told the largest packet the gateway takes (docs/mqtt.md)


#: The MQTT port when none is given.
DEFAULT_PORT = 1883


class BrokerAddress(Frozen):
    """One broker of ``mqtt.brokers``: a table ``{host, port}`` or a ``"host:port"`` string."""

    host: str = Field(min_length=1, description="The broker's host name or IP address.")
    port: int = Field(default=DEFAULT_PORT, ge=1, le=65535, description="The broker's TCP port.")

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        return parse_broker(value) if isinstance(value, str) else value


def parse_broker(text: str) -> dict[str, Any]:
    """``"host"``, ``"host:port"`` or ``"[v6]:port"`` as a broker table (ValueError if not)."""
    text = text.strip()
    host, sep, port = text.rpartition(":") if not text.endswith("]") else ("", "", "")
    if not sep or (host.count(":") and not host.startswith("[")):
        host, port = text, ""  # no port given (or a bare IPv6 address)
    host = host.removeprefix("[").removesuffix("]")
    if not host:
        raise ValueError(f"expected 'host' or 'host:port', got {text!r}")
    if not port:
        return {"host": host}
    if not port.isdigit():
        raise ValueError(f"expected 'host:port' with a port number, got {text!r}")
    return {"host": host, "port": int(port)}


def _broker_list(value: Any) -> Any:
    # An environment variable (STREETGATE_MQTT_BROKERS) holds the list as "a:1883,b:1883".
    if isinstance(value, str):
        return [part for part in value.split(",") if part.strip()]
    return value


#: Most brokers in ``mqtt.brokers``.
MAX_BROKERS = 16

#: Longest ``mqtt.session_expiry`` (MQTT 5): a week of queued commands is plenty.
MAX_SESSION_EXPIRY = 7 * 86_400.0

#: ``mqtt.session_expiry`` when ``protocol = "5"`` and none is given.
DEFAULT_SESSION_EXPIRY = 300.0


class MqttConfig(Frozen):
    """Where readings go: one broker (``host``/``port``) or a list tried in order (``brokers``)."""

    host: str | None = Field(
        default=None,
        min_length=1,
        description="The broker's host name or IP address (one broker; or give brokers).",
    )
    # DEFAULT_PORT with a host
    port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="The broker's TCP port (1883 when not given): usually 8883 with TLS.",
    )
    brokers: (
        Annotated[
            tuple[BrokerAddress, ...],
            BeforeValidator(_broker_list),
            Field(max_length=MAX_BROKERS),
        ]
        | None
    ) = Field(
        default=None,
        description='Instead of host/port: brokers tried in order, "host:port" strings or '
        'tables (sticky failover, docs/mqtt.md); STREETGATE_MQTT_BROKERS takes "a:1883,b:1883".',
    )
    keepalive: Seconds = Field(
        default=30.0, description="MQTT keep-alive: how soon a silent connection is noticed."
    )
    # checked by _topic_prefix_rules
    topic_prefix: str = Field(
        default="streetgate",
        description="First level(s) of every topic: `<prefix>/<gateway_id>/...` (docs/mqtt.md); "
        "no wildcards, no leading '$', no empty level, at most 128 bytes.",
    )
    username: str | None = Field(
        default=None, min_length=1, description="MQTT user name, if the broker asks for one."
    )
    password_file: Path | None = Field(
        default=None,
        description="File holding the MQTT password on its first line (mode 0600); never "
        "the password itself in the config.",
    )
    tls: TlsConfig | None = Field(
        default=None, description="TLS towards the broker; plain TCP when absent."
    )
    readings_per_message: int = Field(
        default=500, ge=1, le=10_000, description="Most readings one MQTT message carries."
    )
    max_inflight: int = Field(
        default=16,
        ge=1,
        le=1000,
        description="Messages published and not yet acknowledged (PUBACK) at once.",
    )
    publish_timeout: Seconds = Field(
        default=10.0,
        description="How long a message may wait for its PUBACK before the connection is "
        "dropped and made again; also bounds connecting.",
    )
    reconnect_min: Seconds = Field(
        default=0.5, description="First wait before connecting again after a lost connection."
    )
    # the longest a returning broker waits for this gateway
    reconnect_max: Seconds = Field(
        default=5.0,
        description="Longest wait between connection attempts (the wait doubles, with jitter).",
    )
    # health is also published at once when it changes
    health_interval: Seconds = Field(
        default=60.0,
        description="How often the health message is published; also at once on a change.",
    )
    payload_format: PayloadFormat = Field(
        default=PayloadFormat.STREETGATE,
        description="How readings are encoded: streetgate's JSON envelope, a SenML pack "
        "(RFC 8428) or the compact binary form; docs/mqtt.md.",
    )
    # compact payloads only
    compression: PayloadCompression = Field(
        default=PayloadCompression.NONE,
        description="Compression of compact payloads (none, deflate, zstd); compact only.",
    )
    protocol: MqttProtocol = Field(
        default=MqttProtocol.V311,
        description="MQTT version spoken to the broker: 3.1.1, or 5 (the broker is told the "
        "largest packet the gateway takes, keeps the command session across outages).",
    )
    # MQTT 5 only: how long the broker keeps the gateway's session (its command subscription
    # and the commands queued for it) after the connection is lost; 0: a clean start each time.
    session_expiry: (
        Annotated[
            float,
            BeforeValidator(_zero_or_duration),
            Field(ge=0, le=MAX_SESSION_EXPIRY),
            DURATION_OR_ZERO_JSON_SCHEMA,
        ]
        | None
    ) = Field(
        default=None,
        description="MQTT 5 only: how long the broker keeps the session (the command "
        "subscription and commands queued) after a lost connection; a duration, 0: a clean "
        "start each time; default 5m with protocol 5. At most 7 days.",
    )

    @model_validator(mode="before")
    @classmethod
    def _one_way_to_name_brokers(cls, data: Any) -> Any:
        if isinstance(data, dict) and "brokers" in data:
            given = [f"mqtt.{key}" for key in ("host", "port") if key in data]
            if given:
                raise ValueError(
                    f"{' and '.join(given)} and mqtt.brokers are both given: use mqtt.brokers"
                    ' for a list of brokers (e.g. brokers = ["a:1883", "b:1883"]), or'
                    " mqtt.host/mqtt.port for one broker, not both"
                )
        elif isinstance(data, dict) and "host" in data and "port" not in data:
            data = {**data, "port": DEFAULT_PORT}  # shown as set in `config show`, as before
        return data

    @model_validator(mode="after")
    def _some_broker(self) -> MqttConfig:
        if self.brokers is not None and not self.brokers:
            raise ValueError("mqtt.brokers is empty: name at least one broker")
        if self.host is None and not self.brokers:
            alone = f" (mqtt.port = {self.port} is given without a host)" if self.port else ""
            raise ValueError(
                "no broker: give mqtt.host (and mqtt.port) for one broker, or mqtt.brokers"
                f" for a list{alone}"
            )
        if self.session_expiry is not None and self.protocol is not MqttProtocol.V5:
            raise ValueError('mqtt.session_expiry needs mqtt.protocol = "5" (MQTT 3.1.1 has none)')
        return self

    @property
    def endpoints(self) -> tuple[BrokerAddress, ...]:
        """The brokers to try, in order: ``brokers``, or the one ``host``/``port``."""
        if self.brokers:
            return self.brokers
        assert self.host is not None  # _some_broker
        return (BrokerAddress(host=self.host, port=self.port or DEFAULT_PORT),)

    @property
    def session_expiry_s(self) -> float:
        """The MQTT 5 session expiry in effect: 0 (clean session) with MQTT 3.1.1."""
        if self.protocol is not MqttProtocol.V5:
            return 0.0
        return DEFAULT_SESSION_EXPIRY if self.session_expiry is None else self.session_expiry

    @field_validator("topic_prefix")
    @classmethod
    def _topic_prefix_rules(cls, value: str) -> str:
        problem = topic_prefix_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _compression_needs_compact(self) -> MqttConfig:
        if (
            self.compression is not PayloadCompression.NONE
            and self.payload_format is not PayloadFormat.COMPACT
        ):
            raise ValueError(
                f"compression = {self.compression.value!r} needs payload_format = 'compact' "
                f"(got {self.payload_format.value!r}): JSON payloads are sent as they are"
            )
        return self


#: Longest ``mqtt.topic_prefix``, in UTF-8 bytes (MQTT allows 65,535 for a whole topic).
TOPIC_PREFIX_MAX_BYTES = 128


def topic_prefix_problem(prefix: str) -> str | None:
    """Why ``prefix`` cannot start the gateway's topics (MQTT 3.1.1/5 topic rules), or None."""
    try:
        size = len(prefix.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate, e.g. from a non-UTF-8 environment variable
        return "must be valid UTF-8 text"
    control = next((c for c in prefix if unicodedata.category(c) == "Cc"), None)
    rules = (
        (not prefix, "must not be empty"),
        (
            size > TOPIC_PREFIX_MAX_BYTES,
            f"must be at most {TOPIC_PREFIX_MAX_BYTES} bytes of UTF-8, not {size}",
        ),
        (
            control is not None,
            f"must not contain control characters (found U+{ord(control or ' '):04X})",
        ),
        ("#" in prefix or "+" in prefix, "must not contain the MQTT wildcards '#' or '+'"),
        (
            prefix.startswith("$"),
            "must not start with '$' (topics such as $SYS belong to the broker)",
        ),
        (
            prefix.startswith("/") or prefix.endswith("/"),
            "must not start or end with '/' (an empty topic level)",
        ),
    )
    return next((message for broken, message in rules if broken), None)


class Synchronous(StrEnum):
    """SQLite ``PRAGMA synchronous`` for the outbox (WAL mode)."""

    OFF = "off"
    NORMAL = "normal"
    FULL = "full"


class OutboxConfig(Frozen):
    """The SQLite store-and-forward buffer."""

    path: Path = Field(
        description="The SQLite outbox file (readings waiting for the broker); relative paths "
        "are relative to the config file's folder."
    )
    max_bytes: Bytes = Field(
        default=256 * 1024 * 1024,
        description="Largest the outbox may grow; when full, the oldest readings are dropped "
        "(and counted).",
    )
    commit_interval: Seconds = Field(
        default=0.05,
        description="Readings are written to disk at least this often: what a power cut or "
        "SIGKILL can lose, at most. At most 1s.",
    )
    commit_max_readings: int = Field(
        default=1000, ge=1, le=100_000, description="Most readings written in one transaction."
    )
    synchronous: Synchronous = Field(
        default=Synchronous.NORMAL,
        description="SQLite PRAGMA synchronous (WAL mode); off trades durability for speed "
        "(docs/durability.md).",
    )
    queue_size: int = Field(
        default=10_000,
        ge=1,
        description="Readings waiting in memory to be written; when full, device polls wait "
        "(backpressure, never loss).",
    )
    # Disk space kept in a file beside the outbox and given back when the disk fills up, so
    # the outbox can checkpoint and drop its oldest readings instead of wedging; the WAL is
    # checkpointed before it outgrows half of it. 0 turns it off.
    disk_reserve: BytesOrZero = Field(
        default=8 * 1024 * 1024,
        description="Disk space kept in a file beside the outbox and given back when the disk "
        "fills up, so the outbox can still drop its oldest readings; 0 turns it off.",
    )

    @field_validator("commit_interval")
    @classmethod
    def _at_most_a_second(cls, value: float) -> float:
        if value > 1.0:
            raise ValueError("commit_interval above 1s keeps readings in memory too long")
        return value


class GatewayConfig(Frozen):
    """Everything a gateway needs, from one TOML file."""

    gateway_id: str = Field(
        pattern=NAME_PATTERN,
        max_length=64,
        description="This gateway's id, in every topic and reading: letters, digits, '_', '.', "
        "'-'; unique in the fleet.",
    )
    mqtt: MqttConfig = Field(description="The broker readings go to.")
    outbox: OutboxConfig = Field(description="The SQLite store-and-forward buffer.")
    devices: tuple[DeviceConfig, ...] = Field(
        default=(), description="The devices to read: one [[devices]] table each, by kind."
    )
    # the local OpenMetrics endpoint; off when absent
    metrics: MetricsConfig | None = Field(
        default=None,
        description="The local OpenMetrics endpoint and status page; off when absent.",
    )
    # signed commands; local only (absent: unsigned)
    management: ManagementConfig | None = Field(
        default=None,
        description="Whether remote commands must be signed; absent: unsigned commands run.",
    )

    # A field validator, so the issue is located at "devices" (a model validator has no key path).
    @field_validator("devices")
    @classmethod
    def _unique_device_names(cls, devices: tuple[DeviceConfig, ...]) -> tuple[DeviceConfig, ...]:
        names = [name for d in devices for name in device_names(d)]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"device names must be unique; used more than once: {duplicates}")
        return devices


def parse_config(data: dict[str, Any], source: str, base_dir: Path | None = None) -> GatewayConfig:
    """Validate a parsed config document; relative paths resolve against ``base_dir``."""
    try:
        config = GatewayConfig.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        raise ConfigError(source, issues_from_validation_error(exc)) from exc
    return _resolve_paths(config, base_dir) if base_dir is not None else config


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> GatewayConfig:
    """Read and validate a config file with the ``STREETGATE_*`` variables of ``environ``
    (None: the process's) laid over it (gateway/config/environment.py).

    Raises :class:`ConfigError` naming every problem (a variable's by the variable's name).
    """
    return config_from_bytes(read_config_file(path, "", MAX_CONFIG_BYTES), path, environ)


def config_from_bytes(
    raw: bytes, path: Path, environ: Mapping[str, str] | None = None
) -> GatewayConfig:
    """Validate the bytes read from the config file ``path``, as :func:`load_config` does (a
    reload keeps the bytes it checked, to know later what the gateway runs on)."""
    source = str(path)
    data = config_document(raw, source)
    env = overlay(data, os.environ if environ is None else environ, GatewayConfig)
    try:
        config = parse_config(env.data, source, path.parent.resolve())
    except ConfigError as exc:
        raise env.error(source, exc.issues) from exc
    if env.issues:
        raise env.error(source)
    return config


def config_document(raw: bytes, source: str) -> dict[str, Any]:
    """The TOML table in a config file's bytes; :class:`ConfigError` naming ``source`` when they
    are not UTF-8 or not TOML."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(source, [ConfigIssue("", not_utf8(raw, exc))]) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [ConfigIssue("", f"not valid TOML: {exc}")]) from exc
    return data


def not_utf8(raw: bytes, exc: UnicodeDecodeError) -> str:
    """Where a config file stops being UTF-8, for its ConfigIssue."""
    line = raw.count(b"\n", 0, exc.start) + 1
    return (
        f"not UTF-8 text: byte 0x{raw[exc.start]:02x} at offset {exc.start} (line {line}) cannot"
        " be decoded; save the file as UTF-8"
    )


def _resolve_paths(config: GatewayConfig, base_dir: Path) -> GatewayConfig:
    def resolve(p: Path) -> Path:
        return p if p.is_absolute() else base_dir / p

    outbox = config.outbox.model_copy(update={"path": resolve(config.outbox.path)})
    mqtt = config.mqtt
    if mqtt.tls is not None:
        tls = mqtt.tls
        mqtt = mqtt.model_copy(
            update={
                "tls": tls.model_copy(
                    update={
                        "ca_file": resolve(tls.ca_file),
                        "cert_file": tls.cert_file and resolve(tls.cert_file),
                        "key_file": tls.key_file and resolve(tls.key_file),
                    }
                )
            }
        )
    if mqtt.password_file is not None:
        mqtt = mqtt.model_copy(update={"password_file": resolve(mqtt.password_file)})
    return config.model_copy(update={"outbox": outbox, "mqtt": mqtt})
