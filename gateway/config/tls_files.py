"""The gateway's TLS files on a first install: where they go, and which are still pending.

On site the files come in an order the rest of the config does not wait for: the key and its
CSR are made on the gateway (``streetgate creds init``), the platform signs the CSR, then the
certificate and the CA are installed (``streetgate creds install``). So:

- :func:`read_tls_setup` reads only ``gateway_id`` and ``[mqtt.tls]`` from a config that may
  still be incomplete (install.sh's skeleton has an empty ``gateway_id`` and ``mqtt.host``),
  with the ``STREETGATE_*`` variables laid over it, paths resolved against the file's folder.
- :func:`pending_tls_files` lists the TLS files a config names that do not exist yet, each
  with the command that makes or installs it. ``validate``, ``doctor``, ``init`` and ``run``
  print the same lines.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import TypeAdapter, ValidationError

from gateway.config.environment import overlay
from gateway.config.model import GatewayConfig, TlsConfig, config_document
from gateway.core.errors import ConfigError, ConfigIssue
from gateway.core.safe_files import MAX_CONFIG_BYTES, read_config_file
from gateway.core.validation import issues_from_validation_error

__all__ = [
    "DEFAULT_TLS_NAMES",
    "PendingFile",
    "TlsSetup",
    "check_gateway_id",
    "default_tls_paths",
    "pending_tls_files",
    "read_tls_setup",
]

#: Where ``streetgate init`` and install.sh's skeleton put the TLS files: ``tls/`` beside the
#: config (``/etc/streetgate/tls/``, which install.sh gives to the service user, mode 0700).
DEFAULT_TLS_NAMES = {
    "ca_file": "tls/ca.crt",
    "cert_file": "tls/gateway.crt",
    "key_file": "tls/gateway.key",
}


def default_tls_paths(config_file: Path) -> dict[str, Path]:
    """The default TLS file paths for a config at ``config_file`` (absolute)."""
    folder = Path(os.path.abspath(config_file)).parent
    return {key: folder / name for key, name in DEFAULT_TLS_NAMES.items()}


@dataclass(frozen=True, slots=True)
class TlsSetup:
    """What ``streetgate creds`` needs from a config that may not be complete yet."""

    gateway_id: str | None  # None: the config has none yet (or an invalid one)
    gateway_id_problem: str | None  # why the config's gateway_id is not valid (None: it is)
    tls: TlsConfig | None  # paths resolved against the config's folder; None: no [mqtt.tls]


def _document(path: Path, environ: Mapping[str, str]) -> dict[str, Any]:
    raw = read_config_file(path, "", MAX_CONFIG_BYTES)
    return overlay(config_document(raw, str(path)), environ, GatewayConfig).data


#: The rule of GatewayConfig.gateway_id, to check one on its own.
_GATEWAY_ID: TypeAdapter[str] = TypeAdapter(
    Annotated[str, GatewayConfig.model_fields["gateway_id"]]
)


def check_gateway_id(value: object) -> str | None:
    """Why ``value`` is not a valid gateway id (None: it is one)."""
    try:
        _GATEWAY_ID.validate_python(value)
    except ValidationError as exc:
        return "; ".join(i.message for i in issues_from_validation_error(exc))
    return None


def read_tls_setup(path: Path, environ: Mapping[str, str] | None = None) -> TlsSetup:
    """``gateway_id`` and ``[mqtt.tls]`` of the config at ``path``, even if the rest is not
    complete. ConfigError when the file cannot be read or ``[mqtt.tls]`` itself is invalid."""
    data = _document(path, os.environ if environ is None else environ)
    mqtt = data.get("mqtt")
    table = mqtt.get("tls") if isinstance(mqtt, dict) else None
    tls: TlsConfig | None = None
    if table is not None:
        try:
            tls = TlsConfig.model_validate(table)
        except ValidationError as exc:
            issues = [
                ConfigIssue(f"mqtt.tls.{i.location}" if i.location else "mqtt.tls", i.message)
                for i in issues_from_validation_error(exc)
            ]
            raise ConfigError(str(path), issues) from exc
        base = Path(os.path.abspath(path)).parent

        def resolve(p: Path) -> Path:
            return p if p.is_absolute() else base / p

        tls = tls.model_copy(
            update={
                "ca_file": resolve(tls.ca_file),
                "cert_file": tls.cert_file and resolve(tls.cert_file),
                "key_file": tls.key_file and resolve(tls.key_file),
            }
        )
    value = data.get("gateway_id", "")
    problem = check_gateway_id(value)
    return TlsSetup(
        gateway_id=value if problem is None else None,
        gateway_id_problem=problem if value != "" else "the config sets none yet",
        tls=tls,
    )


@dataclass(frozen=True, slots=True)
class PendingFile:
    """A TLS file the config names that does not exist yet, and how to make or install it."""

    key: str  # "mqtt.tls.ca_file"
    path: Path
    fix: str  # "install it with `streetgate creds install ...`"

    def __str__(self) -> str:
        return f"{self.key} {self.path} does not exist yet: {self.fix}"


def pending_tls_files(tls: TlsConfig | None, config_file: Path | str | None) -> list[PendingFile]:
    """The TLS files of ``tls`` that do not exist, in the order they are made on site (key,
    certificate, CA). ``config_file`` goes into the commands (``-c CONFIG`` when None)."""
    if tls is None:
        return []
    where = f"-c {config_file}" if config_file is not None else "-c CONFIG"
    missing = {
        key: path
        for key, path in (
            ("key_file", tls.key_file),
            ("cert_file", tls.cert_file),
            ("ca_file", tls.ca_file),
        )
        if path is not None and not os.path.lexists(path)
    }
    cert = " --cert SIGNED.crt" if "cert_file" in missing else ""
    ca = " --ca CA.crt" if "ca_file" in missing else ""
    pending = []
    for key, path in missing.items():
        if key == "key_file":
            fix = (
                f"make it with `streetgate creds init {where}` (it also writes the certificate"
                " signing request to send to the platform)"
            )
        elif key == "cert_file":
            csr = tls.key_file.with_suffix(".csr") if tls.key_file is not None else None
            request = csr if csr is not None and csr.exists() else "the certificate signing request"
            fix = (
                f"send {request} to the platform, then install the certificate it signs with"
                f" `streetgate creds install {where}{cert}{ca}`"
            )
        else:
            fix = f"install it with `streetgate creds install {where}{cert}{ca}`"
        pending.append(PendingFile(f"mqtt.tls.{key}", path, fix))
    return pending
