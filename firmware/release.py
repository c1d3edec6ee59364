"""Release files on disk: the Ed25519 release key pair, and signed firmware bundles (.tar).

A bundle is an uncompressed tar with ``manifest.json``, ``manifest.sig`` (raw 64-byte Ed25519
signature over the manifest's exact bytes) and ``files/<device path>`` for every file in the
manifest. :func:`open_bundle` checks the signature before it believes anything in the manifest,
then every file's size and SHA-256, and returns the files in memory (nothing is extracted).
The private key is written with mode 0600 from its first byte and refused when others may read
it (:mod:`gateway.key_files`, like the gateway's TLS key); the public key is for every deployer.
"""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from firmware.bundle import (
    Manifest,
    ManifestError,
    check_files,
    check_path,
    key_id,
    manifest_bytes,
    parse_manifest,
    sign,
    signature_valid,
)
from gateway.errors import BundleError, ReleaseKeyError, SignatureInvalid, UnsafeReleaseKey
from gateway.key_files import unsafe_mode, write_atomically

__all__ = [
    "DEFAULT_SOURCE",
    "KeyPair",
    "VerifiedBundle",
    "collect_files",
    "load_private_key",
    "load_public_key",
    "make_key_pair",
    "open_bundle",
    "write_bundle",
]

#: Where the node firmware's device files live in the installed package.
DEFAULT_SOURCE = Path(__file__).resolve().parent / "node"
MAX_BUNDLE_BYTES = 4 * 1024 * 1024  # far more than any MicroPython board's flash filesystem
_SKIPPED_DIRS = {"__pycache__"}


@dataclass(frozen=True, slots=True)
class KeyPair:
    """Where ``make_key_pair`` wrote the keys, and the key's id (as in manifests)."""

    private_file: Path
    public_file: Path
    key_id: str


@dataclass(frozen=True, slots=True)
class VerifiedBundle:
    """A bundle whose signature and files checked out; ``files`` maps device path -> bytes."""

    path: Path
    manifest: Manifest
    manifest_data: bytes  # the exact signed bytes
    files: dict[str, bytes]


def make_key_pair(private_file: Path, *, force: bool = False) -> KeyPair:
    """Write a new Ed25519 key pair: ``private_file`` (0600) and ``private_file.pub`` (0644).

    Refuses (FileExistsError) to replace an existing private key unless ``force``.
    """
    public_file = private_file.with_name(private_file.name + ".pub")
    if private_file.exists() and not force:
        raise FileExistsError(private_file)
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    private_file.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(private_file, private_pem, 0o600)
    write_atomically(public_file, public_pem, 0o644)
    return KeyPair(private_file, public_file, key_id(key.public_key()))


def _read_key_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise ReleaseKeyError(path, "does not exist") from exc
    except OSError as exc:
        raise ReleaseKeyError(path, f"cannot be read: {exc.strerror}") from exc


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """The release signing key; refused when group or others may access the file."""
    data = _read_key_file(path)
    mode = unsafe_mode(path)
    if mode is not None:
        raise UnsafeReleaseKey(
            path, f"is readable by others (mode {mode:04o}); fix it with: chmod 600 {path}"
        )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ReleaseKeyError(path, "is not an unencrypted PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ReleaseKeyError(path, "is not an Ed25519 private key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """The release key that bundles must be signed with (PEM, as ``node keygen`` writes it)."""
    data = _read_key_file(path)
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise ReleaseKeyError(path, "is not a PEM public key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ReleaseKeyError(path, "is not an Ed25519 public key")
    return key


def collect_files(source: Path) -> dict[str, bytes]:
    """The device files under ``source``: regular files, without caches and hidden files."""
    if not source.is_dir():
        raise BundleError(source, "is not a directory of firmware files")
    files: dict[str, bytes] = {}
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if any(part.startswith(".") or part in _SKIPPED_DIRS for part in relative.parts):
            continue
        if path.suffix == ".pyc" or path.is_dir():
            continue
        if path.is_symlink() or not path.is_file():
            raise BundleError(path, "is not a regular file (links are not copied to boards)")
        try:
            files[check_path(relative.as_posix())] = path.read_bytes()
        except ManifestError as exc:
            raise BundleError(source, str(exc)) from exc
    if not files:
        raise BundleError(source, "holds no files")
    return files


def write_bundle(source: Path, version: str, private_key: Ed25519PrivateKey, out: Path) -> Manifest:
    """Sign the files under ``source`` as release ``version`` into the tar ``out``."""
    files = collect_files(source)
    try:
        manifest = manifest_bytes(version, files, private_key.public_key())
    except ManifestError as exc:
        raise BundleError(source, str(exc)) from exc
    members = {"manifest.json": manifest, "manifest.sig": sign(manifest, private_key)}
    members |= {f"files/{path}": data for path, data in files.items()}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(out, buffer.getvalue(), 0o644)
    return parse_manifest(manifest)


def _members(path: Path) -> dict[str, bytes]:
    try:
        size = path.stat().st_size
    except FileNotFoundError as exc:
        raise BundleError(path, "does not exist") from exc
    except OSError as exc:
        raise BundleError(path, f"cannot be read: {exc.strerror}") from exc
    if size > MAX_BUNDLE_BYTES:
        raise BundleError(path, f"is {size} bytes; a bundle is at most {MAX_BUNDLE_BYTES}")
    members: dict[str, bytes] = {}
    try:
        with tarfile.open(path, mode="r:") as tar:
            for info in tar:
                if not info.isfile():
                    raise BundleError(path, f"member {info.name!r} is not a regular file")
                if info.name in members:
                    raise BundleError(path, f"member {info.name!r} appears twice")
                extracted = tar.extractfile(info)
                if extracted is None:  # pragma: no cover - isfile() members always extract
                    raise BundleError(path, f"member {info.name!r} cannot be read")
                members[info.name] = extracted.read()
    except (tarfile.TarError, OSError) as exc:
        raise BundleError(path, f"is not a firmware bundle (tar): {exc}") from exc
    return members


def open_bundle(path: Path, release_key: Ed25519PublicKey) -> VerifiedBundle:
    """Read ``path``, verify its signature with ``release_key``, then every file's hash.

    Raises SignatureInvalid when the signature does not verify (nothing in the manifest is
    trusted then), BundleError for any other problem.
    """
    members = _members(path)
    manifest_data = members.pop("manifest.json", None)
    signature = members.pop("manifest.sig", None)
    if manifest_data is None or signature is None:
        raise BundleError(path, "has no manifest.json and manifest.sig (not a signed bundle)")
    if not signature_valid(manifest_data, signature, release_key):
        raise SignatureInvalid(
            path,
            "manifest signature does not verify against the release key"
            f" {key_id(release_key)}: not signed with it, or changed after signing",
        )
    strays = sorted(name for name in members if not name.startswith("files/"))
    if strays:
        raise BundleError(path, f"unexpected members {strays} (expected only files/...)")
    files = {name.removeprefix("files/"): data for name, data in members.items()}
    try:
        manifest = parse_manifest(manifest_data)
        check_files(manifest, files)
    except ManifestError as exc:
        raise BundleError(path, str(exc)) from exc
    return VerifiedBundle(path, manifest, manifest_data, files)
