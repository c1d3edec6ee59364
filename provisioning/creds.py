"""The gateway's TLS client credentials: private key and CSR, installing the signed certificate.

The private key is made on the gateway and never leaves it: ``init_credentials`` writes it with
mode 0600 from the first byte and a certificate signing request (subject CN = the gateway id)
next to it for the city's CA. ``install_certificate`` checks what comes back (same public key,
CN, chains to the CA, valid now) before it replaces anything; ``install_ca`` installs a CA alone
(a broker without client certificates). Nothing here returns or prints key material. Errors
are ``CredsError`` subclasses saying what failed; the CLI maps them to exit codes.

The functions take the gateway id and ``[mqtt.tls]`` rather than a whole config, so they work
on a first install, before the rest of the config is filled in
(gateway/config/tls_files.py: ``read_tls_setup``). Files given to them must be regular files
of at most 1 MB; what they write is 0600 (the key) or 0644, and when root writes into a folder
that belongs to another user (``/etc/streetgate/tls``, the service user's), the new file is
given to that user too, so the service can read the key root made for it.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TypeAlias

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from gateway.config.model import TlsConfig
from gateway.core.errors import (
    ConfigError,
    CredsError,
    CredsFileMissing,
    CredsNotConfigured,
    CredsPermissionDenied,
    CredsWouldOverwrite,
)
from gateway.core.key_files import unsafe_mode, write_atomically
from gateway.core.safe_files import MAX_TLS_BYTES, read_config_file

__all__ = [
    "EXPIRY_WARNING_DAYS",
    "CertificateInfo",
    "InitResult",
    "KeyType",
    "check_certificate",
    "describe_certificate",
    "init_credentials",
    "install_ca",
    "install_certificate",
]

EXPIRY_WARNING_DAYS = 30
_MAX_CHAIN = 5


class KeyType(StrEnum):
    """Private key algorithms; EC P-256 is small and fast on a Pi, RSA for older CAs."""

    EC = "ec"
    RSA = "rsa"


PrivateKey: TypeAlias = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True, slots=True)
class InitResult:
    """Where ``init_credentials`` put the key and the CSR."""

    key_file: Path
    csr_file: Path
    configured: bool  # the key is where the config's mqtt.tls.key_file points


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    """What ``creds show`` reports about the installed certificate and key."""

    cert_file: Path
    subject: str
    common_name: str | None
    issuer: str
    serial: str
    not_before: dt.datetime
    not_after: dt.datetime
    days_left: int
    key_file: Path
    key_mode: str | None  # "0600"; None when there is no key file
    key_mode_ok: bool
    key_matches: bool | None  # None when the key could not be read

    @property
    def expired(self) -> bool:
        """Past not-after (``days_left`` is negative)."""
        return self.days_left < 0


def _read(path: Path, what: str) -> bytes:
    """A file given to or named for creds: a regular file of at most 1 MB (safe_files)."""
    if not path.exists():
        raise CredsFileMissing(f"{what} {path} does not exist")
    try:
        return read_config_file(path, what, MAX_TLS_BYTES)
    except ConfigError as exc:
        why = "; ".join(issue.message for issue in exc.issues)
        if not os.access(path, os.R_OK):
            raise CredsPermissionDenied(f"cannot read {what} {path}: permission denied") from exc
        raise CredsError(f"{what} {path}: {why}") from exc


def _give_to_folder_owner(path: Path) -> None:
    """Root writing into another user's folder (the service user's tls/): the file is theirs."""
    if os.geteuid() != 0:
        return
    folder = path.parent.stat()
    if folder.st_uid != 0:
        # Not following a link: the folder's owner could swap the file for a link to
        # /etc/shadow between our rename and this chown, and would be given that instead.
        os.chown(path, folder.st_uid, folder.st_gid, follow_symlinks=False)


def _write(path: Path, data: bytes, mode: int, what: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomically(path, data, mode)
        _give_to_folder_owner(path)
    except PermissionError as exc:
        raise CredsPermissionDenied(f"cannot write {what} {path}: permission denied") from exc
    except OSError as exc:
        raise CredsError(f"cannot write {what} {path}: {exc.strerror}") from exc


def _generate_key(key_type: KeyType) -> PrivateKey:
    if key_type is KeyType.RSA:
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    return ec.generate_private_key(ec.SECP256R1())


def _csr(key: PrivateKey, gateway_id: str) -> x509.CertificateSigningRequest:
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, gateway_id)]))
        .sign(key, hashes.SHA256())
    )


def init_credentials(
    gateway_id: str,
    tls: TlsConfig | None,
    key_type: KeyType = KeyType.EC,
    directory: Path | None = None,
    *,
    force: bool = False,
) -> InitResult:
    """Make a new private key (mode 0600) and a CSR for it; refuse to replace a key unless forced.

    The key goes to ``mqtt.tls.key_file`` (or ``directory/<gateway id>.key``), the CSR next to it.
    """
    if directory is not None:
        key_file = directory / f"{gateway_id}.key"
    elif tls is not None and tls.key_file is not None:
        key_file = tls.key_file
    else:
        raise CredsNotConfigured(
            "the config sets no mqtt.tls.key_file: add [mqtt.tls] ca_file, cert_file and"
            " key_file, or give --dir",
        )
    csr_file = key_file.with_suffix(".csr")
    if key_file.exists() and not force:
        raise CredsWouldOverwrite(
            f"{key_file} already exists: not replacing a private key (give --force to make a new"
            " one; the certificate issued for the old key then stops working)",
        )
    key = _generate_key(key_type)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),  # the gateway starts unattended
    )
    csr_pem = _csr(key, gateway_id).public_bytes(serialization.Encoding.PEM)
    _write(key_file, key_pem, 0o600, "the private key")
    _write(csr_file, csr_pem, 0o644, "the CSR")
    configured = tls is not None and tls.key_file == key_file
    return InitResult(key_file=key_file, csr_file=csr_file, configured=configured)


def _load_certs(data: bytes, path: Path, what: str) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise CredsError(f"{path}: not a PEM {what}") from exc
    return certs


def _common_name(name: x509.Name) -> str | None:
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not values:
        return None
    value = values[0].value
    return value if isinstance(value, str) else value.decode()


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _chains_to(
    leaf: x509.Certificate, intermediates: list[x509.Certificate], roots: list[x509.Certificate]
) -> bool:
    current = leaf
    for _ in range(_MAX_CHAIN):
        if any(_issued_by(current, root) for root in roots):
            return True
        parent = next((c for c in intermediates if _issued_by(current, c)), None)
        if parent is None or parent == current:
            return False
        current = parent
    return False


def _public_key_pem(key: object) -> bytes:
    public = key.public_key()  # type: ignore[attr-defined]
    pem: bytes = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem


def _load_private_key(key_file: Path) -> PrivateKey:
    data = _read(key_file, "the private key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise CredsError(f"{key_file}: not an unencrypted PEM private key") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise CredsError(f"{key_file}: only EC and RSA keys are supported")
    return key


def check_certificate(
    cert_pem: bytes,
    ca_pem: bytes,
    *,
    cert_source: Path,
    ca_source: Path,
    key_file: Path,
    gateway_id: str,
    now: dt.datetime,
) -> x509.Certificate:
    """The leaf certificate if it is for this key and gateway, chains to the CA, is valid now."""
    certs = _load_certs(cert_pem, cert_source, "certificate")
    roots = _load_certs(ca_pem, ca_source, "CA certificate")
    leaf = certs[0]
    key = _load_private_key(key_file)
    if _public_key_pem(leaf) != _public_key_pem(key):
        raise CredsError(
            f"{cert_source} is not for the private key {key_file} (the public keys differ):"
            " was it signed from this gateway's CSR?",
        )
    cn = _common_name(leaf.subject)
    if cn != gateway_id:
        raise CredsError(
            f"{cert_source} is for CN={cn}, not for this gateway ({gateway_id})",
        )
    if not _chains_to(leaf, certs[1:], roots):
        raise CredsError(
            f"{cert_source} (issuer {leaf.issuer.rfc4514_string()}) was not issued by the CA"
            f" in {ca_source}",
        )
    if now < leaf.not_valid_before_utc:
        raise CredsError(
            f"{cert_source} is not valid before {leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
            " (is this machine's clock right?)",
        )
    if now > leaf.not_valid_after_utc:
        raise CredsError(
            f"{cert_source} expired on {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC",
        )
    return leaf


def _configured_paths(tls: TlsConfig | None) -> tuple[TlsConfig, Path, Path]:
    if tls is None or tls.cert_file is None or tls.key_file is None:
        raise CredsNotConfigured(
            "the config sets no client certificate: add [mqtt.tls] ca_file, cert_file and key_file",
        )
    return tls, tls.cert_file, tls.key_file


def install_certificate(
    gateway_id: str, tls: TlsConfig | None, cert: Path, ca: Path | None, now: dt.datetime
) -> tuple[x509.Certificate, list[Path]]:
    """Check ``cert`` (and ``ca``), then write them to mqtt.tls.cert_file (and ca_file).

    Returns the certificate and the configured paths now holding what was given.
    """
    tls, cert_file, key_file = _configured_paths(tls)
    ca_source = ca if ca is not None else tls.ca_file
    cert_pem = _read(cert, "the certificate")
    ca_pem = _read(ca_source, "the CA certificate")
    mode = _key_mode(key_file)
    if mode is not None and mode & 0o077:
        raise CredsPermissionDenied(
            f"the private key {key_file} is readable by others (mode {mode:04o});"
            f" fix it with: chmod 600 {key_file}",
        )
    leaf = check_certificate(
        cert_pem,
        ca_pem,
        cert_source=cert,
        ca_source=ca_source,
        key_file=key_file,
        gateway_id=gateway_id,
        now=now,
    )
    installed = []
    if ca is not None and ca.resolve() != tls.ca_file.resolve():
        _write(tls.ca_file, ca_pem, 0o644, "the CA certificate")
        installed.append(tls.ca_file)
    if cert.resolve() != cert_file.resolve():
        _write(cert_file, cert_pem, 0o644, "the certificate")
    installed.append(cert_file)
    return leaf, installed


def _key_mode(key_file: Path) -> int | None:
    try:
        return key_file.stat().st_mode & 0o777
    except OSError:
        return None


def install_ca(tls: TlsConfig | None, ca: Path, now: dt.datetime) -> list[x509.Certificate]:
    """Check ``ca`` (PEM certificates, valid now; an installed client certificate must chain to
    it), then write it to mqtt.tls.ca_file. For a CA that comes without a client certificate."""
    if tls is None:
        raise CredsNotConfigured(
            "the config has no [mqtt.tls]: add it with ca_file (streetgate init --tls-pending"
            " writes it)",
        )
    ca_pem = _read(ca, "the CA certificate")
    roots = _load_certs(ca_pem, ca, "CA certificate")
    for root in roots:
        if now > root.not_valid_after_utc:
            raise CredsError(
                f"{ca}: the CA certificate {root.subject.rfc4514_string()} expired on"
                f" {root.not_valid_after_utc:%Y-%m-%d %H:%M} UTC",
            )
    if tls.cert_file is not None and tls.cert_file.exists():
        chain = _load_certs(_read(tls.cert_file, "the certificate"), tls.cert_file, "certificate")
        if not _chains_to(chain[0], chain[1:], roots):
            raise CredsError(
                f"the installed certificate {tls.cert_file} was not issued by the CA in {ca}:"
                " the broker would refuse this gateway",
            )
    if ca.resolve() != tls.ca_file.resolve():
        _write(tls.ca_file, ca_pem, 0o644, "the CA certificate")
    return roots


def describe_certificate(tls: TlsConfig | None, now: dt.datetime) -> CertificateInfo:
    """The installed certificate and the state of its key (nothing secret)."""
    _, cert_file, key_file = _configured_paths(tls)
    leaf = _load_certs(_read(cert_file, "the certificate"), cert_file, "certificate")[0]
    mode = _key_mode(key_file)
    try:
        key_matches: bool | None = _public_key_pem(leaf) == _public_key_pem(
            _load_private_key(key_file)
        )
    except CredsError:
        key_matches = None
    try:
        mode_ok = unsafe_mode(key_file) is None
    except OSError:
        mode_ok = False
    return CertificateInfo(
        cert_file=cert_file,
        subject=leaf.subject.rfc4514_string(),
        common_name=_common_name(leaf.subject),
        issuer=leaf.issuer.rfc4514_string(),
        serial=f"{leaf.serial_number:x}",
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        days_left=(leaf.not_valid_after_utc - now).days,
        key_file=key_file,
        key_mode=f"{mode:04o}" if mode is not None else None,
        key_mode_ok=mode is not None and mode_ok,
        key_matches=key_matches,
    )
