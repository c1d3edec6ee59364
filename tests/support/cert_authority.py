"""A throwaway certificate authority for tests, made with ``cryptography`` (no openssl needed)."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CertificateAuthority", "pem"]


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def pem(cert: x509.Certificate) -> bytes:
    """A certificate as PEM bytes."""
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class CertificateAuthority:
    """A P-256 CA that signs CSRs (with chosen validity or CN) and server certificates."""

    def __init__(self, name: str = "streetgate test CA") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )

    def write_ca(self, path: Path) -> Path:
        """The CA certificate as a PEM file."""
        path.write_bytes(pem(self.cert))
        return path

    def sign(
        self,
        csr: x509.CertificateSigningRequest,
        *,
        days: float = 365,
        start: dt.timedelta = dt.timedelta(hours=-1),
        cn: str | None = None,
    ) -> x509.Certificate:
        """A client certificate for the CSR's key (subject from the CSR unless ``cn`` is given)."""
        now = dt.datetime.now(dt.UTC)
        subject = _name(cn) if cn is not None else csr.subject
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(csr.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now + start)
            .not_valid_after(now + start + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(self.key, hashes.SHA256())
        )

    def server_files(self, directory: Path, ip: str = "127.0.0.1") -> tuple[Path, Path]:
        """A server certificate and key for ``ip`` (written to directory), for mosquitto."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(ip))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        cert_file, key_file = directory / "server.crt", directory / "server.key"
        cert_file.write_bytes(pem(cert))
        key_file.write_bytes(_key_pem(key))
        key_file.chmod(0o600)
        return cert_file, key_file

    def client_files(self, directory: Path, cn: str, days: float = 2) -> tuple[Path, Path]:
        """A client certificate (``CN=cn``) and its key, written to directory."""
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(_name(cn))
            .sign(key, hashes.SHA256())
        )
        cert_file, key_file = directory / "client.crt", directory / "client.key"
        cert_file.write_bytes(pem(self.sign(csr, days=days)))
        key_file.write_bytes(_key_pem(key))
        key_file.chmod(0o600)
        return cert_file, key_file
