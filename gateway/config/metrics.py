"""The ``[metrics]`` config table: where the local OpenMetrics endpoint listens (off if absent)."""

from __future__ import annotations

import ipaddress

from pydantic import Field, model_validator

from gateway.core.config_types import Frozen

__all__ = ["MetricsConfig", "split_listen"]


def split_listen(listen: str) -> tuple[str, int]:
    """``"127.0.0.1:9464"`` or ``"[::1]:9464"`` as (host, port); ValueError saying what is wrong."""
    host, sep, port_text = listen.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"expected host:port such as '127.0.0.1:9464', got {listen!r}")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is not a TCP port (1-65535)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, port


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class MetricsConfig(Frozen):
    """An HTTP endpoint serving ``GET /metrics`` for a local scraper (Prometheus, an agent)."""

    listen: str = Field(
        default="127.0.0.1:9464",
        description="host:port of GET /metrics and the status page; [::1]:9464 for IPv6.",
    )
    # The endpoint has no authentication: listening beyond loopback must be asked for.
    allow_remote: bool = Field(
        default=False,
        description="Allow a listen address beyond loopback (the page then needs its token: "
        "streetgate page token).",
    )

    @model_validator(mode="after")
    def _checked(self) -> MetricsConfig:
        host, _ = split_listen(self.listen)
        if not self.allow_remote and not _loopback(host):
            raise ValueError(
                f"listen = {self.listen!r} is not a loopback address; the endpoint has no "
                "authentication: set allow_remote = true to serve it beyond this machine"
            )
        return self
