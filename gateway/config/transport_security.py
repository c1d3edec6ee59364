"""What is insecure about a config's broker connection: one pure function, shown everywhere.

The gateway logs it at start, ``streetgate validate`` and ``doctor`` print it, and the health
report carries the flags (``"insecure": [...]``) so the platform sees which gateways to fix.

Flags, most severe first:

- ``tls_unverified``: ``mqtt.tls.insecure_skip_verify = true``; the link is encrypted, but
  anyone on the path can pose as the broker and read everything, the password included.
- ``plaintext``: no ``[mqtt.tls]`` and a broker that is not on this machine; readings, commands
  and the MQTT password cross the network in clear.
- ``plaintext_loopback``: no ``[mqtt.tls]``, broker on loopback (127.0.0.0/8, ::1,
  ``localhost``): nothing leaves the machine on this hop, so only worth knowing (a local bridge
  must protect the next one).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum

from gateway.config.model import MqttConfig

__all__ = ["Insecure", "TransportWarning", "insecure_flags", "is_loopback", "transport_warnings"]


class Insecure(StrEnum):
    """One way the broker connection is not protected (the health report's flag)."""

    TLS_UNVERIFIED = "tls_unverified"
    PLAINTEXT = "plaintext"
    PLAINTEXT_LOOPBACK = "plaintext_loopback"


@dataclass(frozen=True, slots=True)
class TransportWarning:
    """A flag with what it means and what to do; ``serious`` is False for loopback only."""

    flag: Insecure
    message: str
    hint: str
    serious: bool = True


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine without a lookup (127.0.0.0/8, ::1, localhost)."""
    name = host.strip().rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


def transport_warnings(mqtt: MqttConfig) -> list[TransportWarning]:
    """What is insecure about connecting to ``mqtt``'s brokers (empty: verified TLS).

    TLS settings apply to every broker of ``mqtt.brokers``; without TLS the link is only
    loopback-plaintext when every broker is on this machine.
    """
    endpoints = mqtt.endpoints
    names = ", ".join(str(b) for b in endpoints)
    where = f"broker {names}" if len(endpoints) == 1 else f"brokers {names}"
    if mqtt.tls is not None:
        if not mqtt.tls.insecure_skip_verify:
            return []
        whose = f"{where}'s certificate is" if len(endpoints) == 1 else f"{where}: certificates are"
        return [
            TransportWarning(
                Insecure.TLS_UNVERIFIED,
                f"mqtt.tls.insecure_skip_verify = true: the {whose} NOT"
                " verified; anyone on the network path can pose as the broker",
                "set mqtt.tls.insecure_skip_verify = false and mqtt.tls.ca_file to the CA"
                " that signed the broker's certificate",
            )
        ]
    remote = [b for b in endpoints if not is_loopback(b.host)]
    if not remote:
        return [
            TransportWarning(
                Insecure.PLAINTEXT_LOOPBACK,
                f"plaintext MQTT (no [mqtt.tls]) to the {where} on this machine",
                "fine for a local broker; protect its bridge to the platform with TLS",
                serious=False,
            )
        ]
    secret = " and the MQTT password" if mqtt.password_file is not None else ""
    remote_names = ", ".join(str(b) for b in remote)
    where = f"broker {remote_names}" if len(remote) == 1 else f"brokers {remote_names}"
    return [
        TransportWarning(
            Insecure.PLAINTEXT,
            f"plaintext MQTT (no [mqtt.tls]) to the {where}: readings, commands{secret} cross"
            " the network unencrypted and unauthenticated",
            "add [mqtt.tls] with ca_file (the broker's CA), usually port = 8883",
        )
    ]


def insecure_flags(mqtt: MqttConfig) -> list[str]:
    """The health report's ``insecure`` list: the flags' values (empty when secure)."""
    return [w.flag.value for w in transport_warnings(mqtt)]
