"""Release files on disk: the Ed25519 release key pair, and signed firmware bundles (.tar).

A bundle is an uncompressed tar with ``manifest.json``, ``manifest.sig`` (raw 64-byte Ed25519
signature over the manifest's exact bytes) and ``files/<device path>`` for every file in the
manifest. :func:`open_bundle` checks the signature before it believes anything in the manifest,
then every file's size and SHA-256, and returns the files in memory (nothing is extracted).
It is read bounded: headers and sizes are checked against the limits before any data is
read, and no file's content is read before the signature verified.
The private key is written with mode 0600 from its first byte and refused when others may read
it (:mod:`gateway.key_files`, like the gateway's TLS key); the public key is for every deployer.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from firmware.bundle import (
    MAX_FILES,
    Manifest,
    check_files,
    check_path,
    key_id,
    manifest_bytes,
    parse_manifest,
    sign,
    signature_valid,
)
from gateway.core.errors import (
    BundleError,
    ManifestError,
    ReleaseKeyError,
    SignatureInvalid,
    UnsafeReleaseKey,
)
from gateway.core.key_files import unsafe_mode, write_atomically

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
MAX_MANIFEST_BYTES = 256 * 1024  # MAX_FILES entries of about 150 bytes, with room to spare
_SIGNATURE_BYTES = 64
_MAX_MEMBERS = MAX_FILES + 2  # the files, the manifest and its signature
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


class _Clamped:
    """A read-only view of an open file that never reads past the size it had when opened.

    tarfile reads what a header claims in one call (a pax header, a long name, a member):
    a claim of 1.5 GB in a 2 KB file must not become a 1.5 GB buffer.
    """

    def __init__(self, file: BinaryIO, size: int) -> None:
        self._file = file
        self._size = size

    def read(self, n: int | None = -1) -> bytes:
        left = max(0, self._size - self._file.tell())
        return self._file.read(left if n is None or n < 0 else min(n, left))

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()


def _open_regular(path: Path) -> tuple[BinaryIO, int]:
    """``path`` opened for reading if it is a regular file of at most MAX_BUNDLE_BYTES."""
    try:
        # O_NONBLOCK: a FIFO given as the bundle must not hang the open
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise BundleError(path, "does not exist") from exc
    except OSError as exc:
        raise BundleError(path, f"cannot be read: {exc.strerror}") from exc
    file = os.fdopen(fd, "rb")
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        file.close()
        raise BundleError(path, "is not a regular file (a bundle is a .tar file)")
    if st.st_size > MAX_BUNDLE_BYTES:
        file.close()
        raise BundleError(path, f"is {st.st_size} bytes; a bundle is at most {MAX_BUNDLE_BYTES}")
    return file, st.st_size


def _headers(path: Path, tar: tarfile.TarFile, file_size: int) -> dict[str, tarfile.TarInfo]:
    """Every member's header, each size checked against the limits; no member data is read."""
    members: dict[str, tarfile.TarInfo] = {}
    total = 0
    for info in tar:
        name = info.name
        if len(members) >= _MAX_MEMBERS:
            raise BundleError(
                path, f"has more than {_MAX_MEMBERS} members (at most {MAX_FILES} files)"
            )
        if info.issparse():
            raise BundleError(path, f"member {name!r} is a sparse file; a bundle holds plain files")
        if not info.isreg():
            raise BundleError(path, f"member {name!r} is not a regular file")
        if name in members:
            raise BundleError(path, f"member {name!r} appears twice")
        if info.offset_data + info.size > file_size:
            raise BundleError(
                path, f"member {name!r} claims {info.size} bytes, more than the file holds"
            )
        total += info.size
        if total > MAX_BUNDLE_BYTES:
            raise BundleError(path, f"members hold more than {MAX_BUNDLE_BYTES} bytes together")
        members[name] = info
    return members


def _read(path: Path, tar: tarfile.TarFile, info: tarfile.TarInfo) -> bytes:
    extracted = tar.extractfile(info)
    if extracted is None:  # pragma: no cover - regular members always extract
        raise BundleError(path, f"member {info.name!r} cannot be read")
    return extracted.read(info.size)


def open_bundle(path: Path, release_key: Ed25519PublicKey) -> VerifiedBundle:
    """Read ``path``, verify its signature with ``release_key``, then every file's hash.

    Bounded and in order: the headers first (every size checked against the limits, sparse
    members refused), then only the manifest and its signature; file contents are read only
    once the signature verified and each size matches the signed manifest.

    Raises SignatureInvalid when the signature does not verify (nothing in the manifest is
    trusted then), BundleError for any other problem.
    """
    file, size = _open_regular(path)
    try:
        clamped: BinaryIO = _Clamped(file, size)  # type: ignore[assignment] # what tarfile uses
        with file, tarfile.open(fileobj=clamped, mode="r:") as tar:
            return _verified(path, tar, _headers(path, tar, size), release_key)
    except BundleError:
        raise
    # a malformed header can surface as any of these from tarfile's parsers
    except (tarfile.TarError, OSError, ValueError, IndexError, EOFError) as exc:
        raise BundleError(path, f"is not a firmware bundle (tar): {exc}") from exc


def _verified(
    path: Path,
    tar: tarfile.TarFile,
    members: dict[str, tarfile.TarInfo],
    release_key: Ed25519PublicKey,
) -> VerifiedBundle:
    manifest_info = members.pop("manifest.json", None)
    signature_info = members.pop("manifest.sig", None)
    if manifest_info is None or signature_info is None:
        raise BundleError(path, "has no manifest.json and manifest.sig (not a signed bundle)")
    if manifest_info.size > MAX_MANIFEST_BYTES:
        raise BundleError(
            path, f"manifest.json is {manifest_info.size} bytes; at most {MAX_MANIFEST_BYTES}"
        )
    if signature_info.size != _SIGNATURE_BYTES:
        raise BundleError(
            path, f"manifest.sig is {signature_info.size} bytes; an Ed25519 signature is 64"
        )
    manifest_data = _read(path, tar, manifest_info)
    if not signature_valid(manifest_data, _read(path, tar, signature_info), release_key):
        raise SignatureInvalid(
            path,
            "manifest signature does not verify against the release key"
            f" {key_id(release_key)}: not signed with it, or changed after signing",
        )
    strays = sorted(name for name in members if not name.startswith("files/"))
    if strays:
        raise BundleError(path, f"unexpected members {strays} (expected only files/...)")
    try:
        manifest = parse_manifest(manifest_data)
    except ManifestError as exc:
        raise BundleError(path, str(exc)) from exc
    for name, info in members.items():
        entry = manifest.files.get(name.removeprefix("files/"))
        if entry is not None and info.size != entry.size:
            raise BundleError(
                path,
                f"{name.removeprefix('files/')}: {info.size} bytes in the bundle,"
                f" the manifest says {entry.size}",
            )
    files = {name.removeprefix("files/"): _read(path, tar, info) for name, info in members.items()}
    try:
        check_files(manifest, files)
    except ManifestError as exc:
        raise BundleError(path, str(exc)) from exc
    return VerifiedBundle(path, manifest, manifest_data, files)
