"""Throwaway certificates for TLS tests, and a mosquitto that requires them.

:func:`make_pki` makes a CA, a server certificate for 127.0.0.1 and a client certificate
(``CN=tls-gw``) signed by it (tests/support/cert_authority.py); :func:`tls_mosquitto` runs a
mosquitto
that requires client certificates signed by that CA.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.cert_authority import CertificateAuthority
from tests.support.mosquitto import Mosquitto

__all__ = ["make_pki", "tls_mosquitto"]


def make_pki(directory: Path, *, client_cn: str = "tls-gw", days: float = 2) -> Path:
    """Write ca.crt, server.crt/key (for IP 127.0.0.1), client.crt/key into ``directory``."""
    ca = CertificateAuthority()
    ca.write_ca(directory / "ca.crt")
    ca.server_files(directory)
    ca.client_files(directory, client_cn, days)
    return directory


def tls_mosquitto(workdir: Path, pki: Path) -> Mosquitto:
    """A (not yet started) mosquitto with TLS that requires a client certificate from ``pki``."""
    return Mosquitto(
        workdir,
        listener_options=(
            f"cafile {pki / 'ca.crt'}\ncertfile {pki / 'server.crt'}\n"
            f"keyfile {pki / 'server.key'}\nrequire_certificate true\n"
            "use_identity_as_username true\n"
        ),
    )
