"""The ``[management]`` config table: whether remote commands must be signed, and by which key.

Local only: set in the file or a ``STREETGATE_MANAGEMENT_*`` variable on site, never by a
remote ``config-set``. The key file is checked when the config is loaded (a regular file of at
most a few kB holding a PEM Ed25519 public key), so a wrong path is a config error at start,
not a gateway that silently refuses every command.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from gateway.core.config_types import Frozen, Seconds

__all__ = ["MAX_KEY_FILE_BYTES", "ManagementConfig", "read_command_key"]

#: A PEM Ed25519 public key is 113 bytes; anything much larger is not one.
MAX_KEY_FILE_BYTES = 4096


def read_command_key(path: Path) -> bytes:
    """The raw 32 bytes of the Ed25519 public key in the PEM file ``path``.

    Raises ValueError saying what is wrong: missing, not a regular file, too large, not a PEM
    public key, not Ed25519. A symlink is followed only to a regular file.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as exc:
        raise ValueError(f"cannot open {path}: {exc.strerror}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{path} is not a regular file")
        if info.st_size > MAX_KEY_FILE_BYTES:
            raise ValueError(f"{path} is {info.st_size} bytes; a PEM public key is a few hundred")
        data = os.read(fd, MAX_KEY_FILE_BYTES + 1)
    finally:
        os.close(fd)
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path} is not a PEM public key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path} is not an Ed25519 public key ({type(key).__name__})")  # noqa: TRY004 - pydantic reports ValueError
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


class ManagementConfig(Frozen):
    """How remote commands are authenticated (docs/mqtt.md#signed-commands)."""

    # Refuse every command that is not signed with command_key_file's key (``unsigned``).
    require_signed: bool = Field(
        default=False,
        description="Refuse every remote command that is not signed with command_key_file's key.",
    )
    # The platform's Ed25519 public key (PEM). Set without require_signed, signed commands are
    # checked and unsigned ones still run: the step before requiring signatures.
    command_key_file: Path | None = Field(
        default=None,
        description="The platform's Ed25519 public key (PEM). Without require_signed, signed "
        "commands are checked and unsigned ones still run.",
    )
    # A signed command's ts may be this far from the gateway's clock, either way; its nonce is
    # remembered as long. NTP-synchronised clocks are within a second of each other.
    max_clock_skew: Seconds = Field(
        default=300.0,
        le=3600.0,
        description="How far a signed command's time may be from the gateway's clock, either "
        "way; its nonce is remembered as long. At most 1h.",
    )

    _command_key: bytes | None = PrivateAttr(default=None)

    @field_validator("command_key_file")
    @classmethod
    def _readable_key(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        base: Any = (info.context or {}).get("base_dir")
        path = value if value.is_absolute() or base is None else Path(base) / value
        read_command_key(path)  # ValueError: the issue is reported at this key
        return path

    @model_validator(mode="after")
    def _key_when_required(self) -> ManagementConfig:
        if self.require_signed and self.command_key_file is None:
            raise ValueError(
                "require_signed = true needs command_key_file (the platform's public key; "
                "install it with: streetgate creds command-key install FILE)"
            )
        if self.command_key_file is not None:
            self._command_key = read_command_key(self.command_key_file)
        return self

    @property
    def command_key(self) -> bytes | None:
        """The raw Ed25519 public key read when the config was loaded (None: no key)."""
        return self._command_key
