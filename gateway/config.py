"""The gateway's TOML config, parsed once into frozen typed models that reject unknown keys."""

from __future__ import annotations

import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from drivers.profile import Profile, load_profile
from gateway.errors import ConfigError, ConfigIssue
from gateway.units import parse_duration, parse_size
from gateway.validation import issues_from_validation_error

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"  # safe in MQTT topics, file names and task names


def _duration(value: Any) -> Any:
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, bool):
        raise ValueError("expected a duration such as '500ms' or '5s', got a boolean")  # noqa: TRY004 - pydantic reports ValueError
    return value  # plain numbers are seconds


def _size(value: Any) -> Any:
    if isinstance(value, str):
        return parse_size(value)
    if isinstance(value, bool):
        raise ValueError("expected a size such as '64MB' or a number of bytes, got a boolean")  # noqa: TRY004 - pydantic reports ValueError
    return value  # plain numbers are bytes


Seconds = Annotated[float, BeforeValidator(_duration), Field(gt=0, allow_inf_nan=False)]
Bytes = Annotated[int, BeforeValidator(_size), Field(gt=0)]


class Frozen(BaseModel):
    """Base of every config model: immutable, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class TlsConfig(Frozen):
    """TLS towards the broker; client certificate and key are optional (mutual TLS)."""

    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure_skip_verify: bool = False

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file must be given together")
        return self


class MqttConfig(Frozen):
    """Where readings go."""

    host: str = Field(min_length=1)
    port: int = Field(default=1883, ge=1, le=65535)
    keepalive: Seconds = 30.0
    topic_prefix: str = Field(default="streetgate", pattern=r"^[^#+]+$")
    username: str | None = None
    password_file: Path | None = None
    tls: TlsConfig | None = None
    readings_per_message: int = Field(default=500, ge=1, le=10_000)
    max_inflight: int = Field(default=16, ge=1, le=1000)
    publish_timeout: Seconds = 10.0
    reconnect_min: Seconds = 0.5
    reconnect_max: Seconds = 30.0


class Synchronous(StrEnum):
    """SQLite ``PRAGMA synchronous`` for the outbox (WAL mode)."""

    OFF = "off"
    NORMAL = "normal"
    FULL = "full"


class OutboxConfig(Frozen):
    """The SQLite store-and-forward buffer."""

    path: Path
    max_bytes: Bytes = 256 * 1024 * 1024
    commit_interval: Seconds = 0.1
    commit_max_readings: int = Field(default=1000, ge=1, le=100_000)
    synchronous: Synchronous = Synchronous.NORMAL
    queue_size: int = Field(default=10_000, ge=1)

    @field_validator("commit_interval")
    @classmethod
    def _at_most_a_second(cls, value: float) -> float:
        if value > 1.0:
            raise ValueError("commit_interval above 1s keeps readings in memory too long")
        return value


class ModbusTcpDevice(Frozen):
    """A Modbus TCP device (or a Modbus TCP gateway in front of an RS-485 bus)."""

    kind: Literal["modbus_tcp"]
    name: str = Field(pattern=NAME_PATTERN, max_length=64)
    host: str = Field(min_length=1)
    port: int = Field(default=502, ge=1, le=65535)
    unit_id: int = Field(default=1, ge=0, le=255)
    profile: Profile
    interval: Seconds = 10.0
    timeout: Seconds = 1.0

    @field_validator("profile", mode="before")
    @classmethod
    def _load_profile(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str):
            base = (info.context or {}).get("base_dir")
            try:
                return load_profile(value, base)
            except ConfigError as exc:
                raise ValueError(
                    "; ".join(str(i) for i in exc.issues) + f" [{exc.source}]"
                ) from exc
        return value


DeviceConfig = Annotated[ModbusTcpDevice, Field(discriminator="kind")]


class GatewayConfig(Frozen):
    """Everything a gateway needs, from one TOML file."""

    gateway_id: str = Field(pattern=NAME_PATTERN, max_length=64)
    mqtt: MqttConfig
    outbox: OutboxConfig
    devices: tuple[DeviceConfig, ...] = ()

    # A field validator, so the issue is located at "devices" (a model validator has no key path).
    @field_validator("devices")
    @classmethod
    def _unique_device_names(
        cls, devices: tuple[ModbusTcpDevice, ...]
    ) -> tuple[ModbusTcpDevice, ...]:
        names = [d.name for d in devices]
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


def load_config(path: Path) -> GatewayConfig:
    """Read and validate a config file. Raises :class:`ConfigError` naming every problem."""
    source = str(path)
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise ConfigError(source, [ConfigIssue("", f"cannot read file: {exc.strerror}")]) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [ConfigIssue("", f"not valid TOML: {exc}")]) from exc
    return parse_config(data, source, path.parent.resolve())


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
