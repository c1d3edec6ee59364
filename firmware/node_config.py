"""``node.json``, the node's own config at the board's root: one frozen model, validated once.

The firmware reads exactly these keys (the contract with firmware/node)::

    {"schema": 1, "node_id": "pole-17-aq", "sample_interval_s": 10,
     "modbus": {"enabled": true, "unit_id": 1, "baudrate": 9600},
     "ble": {"enabled": false, "interval_s": 5, "key": null}}
"""

from __future__ import annotations

import json
import secrets
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gateway.config.devices import BAUD_RATES
from gateway.core.errors import ConfigError
from gateway.core.validation import issues_from_validation_error

__all__ = [
    "BleSettings",
    "ModbusSettings",
    "NodeConfig",
    "generate_ble_key",
    "node_config",
    "node_json",
]

NODE_ID_PATTERN = r"^[a-z0-9-]{1,32}$"
BLE_KEY_PATTERN = r"^[0-9a-f]{32}$"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, populate_by_name=True)


class ModbusSettings(_Frozen):
    """The node as a Modbus RTU unit on the cabinet's RS-485 bus."""

    enabled: bool = True
    unit_id: int = Field(default=1, ge=1, le=247)
    baudrate: int = 9600

    @field_validator("baudrate")
    @classmethod
    def _standard_rate(cls, value: int) -> int:
        if value not in BAUD_RATES:
            raise ValueError(f"expected one of the standard baud rates {list(BAUD_RATES)}")
        return value


class BleSettings(_Frozen):
    """BTHome v2 advertisements; ``key`` (32 hex digits) turns on AES-CCM encryption."""

    enabled: bool = False
    interval_s: int = Field(default=5, ge=1, le=3600)
    key: str | None = Field(default=None, pattern=BLE_KEY_PATTERN)


class NodeConfig(_Frozen):
    """What ``node deploy`` writes to the board as ``node.json``."""

    schema_version: Literal[1] = Field(default=1, alias="schema")
    node_id: str = Field(pattern=NODE_ID_PATTERN)
    sample_interval_s: int = Field(default=10, ge=1, le=86400)
    modbus: ModbusSettings = ModbusSettings()
    ble: BleSettings = BleSettings()


def generate_ble_key() -> str:
    """A fresh BTHome AES-128 key, 32 lowercase hex digits."""
    return secrets.token_hex(16)


def node_config(data: dict[str, object], source: str = "node.json") -> NodeConfig:
    """Validate ``data`` (node.json's shape); every problem is reported in one ConfigError."""
    try:
        return NodeConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, issues_from_validation_error(exc)) from exc


def node_json(config: NodeConfig) -> bytes:
    """The bytes of ``node.json``: the contract's keys in the contract's order."""
    return (json.dumps(config.model_dump(by_alias=True), indent=1) + "\n").encode()
