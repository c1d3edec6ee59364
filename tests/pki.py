"""Throwaway certificates for TLS tests, made with the openssl command line.

:func:`make_pki` makes a CA, a server certificate for 127.0.0.1 and a client certificate
(``CN=tls-gw``) signed by it; :func:`tls_mosquitto` runs a mosquitto that requires client
certificates signed by that CA.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.mosquitto import Mosquitto

__all__ = ["make_pki", "openssl", "tls_mosquitto"]

_EC = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(directory: Path, *, client_cn: str = "tls-gw", days: int = 2) -> Path:
    """Write ca.crt/key, server.crt/key (for IP 127.0.0.1), client.crt/key into ``directory``."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make test certificates (apt-get install openssl)")
    d = directory
    openssl(
        "req", "-x509", *_EC, "-keyout", "ca.key", "-out", "ca.crt", "-days", str(days),
        "-subj", "/CN=streetgate test CA", cwd=d,
    )  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name, cn in (("server", "127.0.0.1"), ("client", client_cn)):
        openssl(
            "req", *_EC, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}",
            cwd=d,
        )  # fmt: skip
        extra = ["-extfile", "san.ext"] if name == "server" else []
        openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.crt", "-days", str(days), *extra, cwd=d,
        )  # fmt: skip
    for key in d.glob("*.key"):
        key.chmod(0o600)
    return d


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
