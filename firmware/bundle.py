"""Firmware bundle manifests: build, sign and verify them (pure: bytes in, bytes out, no I/O).

A manifest is JSON (``manifest_bytes``)::

    {"schema": 1, "version": "1.2.0", "key_id": "3f1c...",
     "files": {"main.py": {"sha256": "...", "size": 812}, "sgnode/app.py": {...}}}

The signature is Ed25519 over the exact manifest bytes; ``key_id`` names the signing key (the
first 16 hex digits of the SHA-256 of its raw public key) so a refusal can say which key signed.
Paths are relative POSIX paths of plain names; ``node.json`` is the node's own config and is
never part of a release.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.core.errors import ManifestError

__all__ = [
    "BOARD_MANIFEST_PATH",
    "NODE_CONFIG_PATH",
    "FileEntry",
    "Manifest",
    "check_files",
    "check_path",
    "key_id",
    "manifest_bytes",
    "parse_manifest",
    "sha256_hex",
    "sign",
    "signature_valid",
]

SCHEMA = 1
NODE_CONFIG_PATH = "node.json"
#: Where a deploy leaves the release's manifest on the board (what the next deploy replaces).
BOARD_MANIFEST_PATH = "manifest.json"
_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+-]{0,63}$")
MAX_FILES = 512


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One file of a release: its SHA-256 (hex) and size in bytes."""

    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class Manifest:
    """A parsed manifest; ``files`` maps each device path to its entry, sorted by path."""

    version: str
    key_id: str
    files: Mapping[str, FileEntry]

    @property
    def total_size(self) -> int:
        """Bytes of all files together (what a deploy copies, besides node.json)."""
        return sum(entry.size for entry in self.files.values())


def sha256_hex(data: bytes) -> str:
    """The SHA-256 of ``data`` as 64 lowercase hex digits."""
    return hashlib.sha256(data).hexdigest()


def key_id(public_key: Ed25519PublicKey) -> str:
    """A short name for a release key: 16 hex digits of the SHA-256 of its raw bytes."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return sha256_hex(raw)[:16]


def check_path(path: str) -> str:
    """``path`` if it is a relative POSIX path of plain names a board can hold, else raise."""
    parts = path.split("/")
    if not path or len(path) > 200 or not all(_PART.match(part) for part in parts):
        raise ManifestError(
            f"file path {path!r}: expected a relative path of names made of letters, digits,"
            " '_', '.', '-' (no leading '.', no '..', no absolute path)"
        )
    if path in (NODE_CONFIG_PATH, BOARD_MANIFEST_PATH, "manifest.sig"):
        raise ManifestError(f"file path {path!r} is reserved (the node writes or reads it itself)")
    return path


def manifest_bytes(version: str, files: Mapping[str, bytes], signer: Ed25519PublicKey) -> bytes:
    """The manifest for ``files`` (device path -> contents), canonical JSON, ready to sign."""
    if not _VERSION.match(version):
        raise ManifestError(
            f"version {version!r}: expected 1-64 characters of letters, digits, '.', '+', '-'"
        )
    if not files:
        raise ManifestError("a release needs at least one file (main.py)")
    if len(files) > MAX_FILES:
        raise ManifestError(f"{len(files)} files: at most {MAX_FILES} in one release")
    entries = {
        check_path(path): {"sha256": sha256_hex(data), "size": len(data)}
        for path, data in sorted(files.items())
    }
    document = {"schema": SCHEMA, "version": version, "key_id": key_id(signer), "files": entries}
    return (json.dumps(document, indent=1, sort_keys=True) + "\n").encode()


def _entry(path: str, value: Any) -> FileEntry:
    if not isinstance(value, dict) or set(value) != {"sha256", "size"}:
        raise ManifestError(f"files[{path!r}]: expected an object with sha256 and size")
    digest, size = value["sha256"], value["size"]
    if not isinstance(digest, str) or not _HEX64.match(digest):
        raise ManifestError(f"files[{path!r}].sha256: expected 64 lowercase hex digits")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ManifestError(f"files[{path!r}].size: expected a byte count (integer >= 0)")
    return FileEntry(digest, size)


def parse_manifest(data: bytes) -> Manifest:
    """Parse manifest bytes (call only after the signature verified), checking every field."""
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"manifest is not JSON: {exc}") from exc
    expected = {"schema", "version", "key_id", "files"}
    if not isinstance(document, dict) or set(document) != expected:
        raise ManifestError(f"manifest: expected an object with exactly {sorted(expected)}")
    if document["schema"] != SCHEMA:
        raise ManifestError(f"manifest schema {document['schema']!r}: this tool reads {SCHEMA}")
    version, kid, files = document["version"], document["key_id"], document["files"]
    if not isinstance(version, str) or not _VERSION.match(version):
        raise ManifestError(f"manifest version {version!r} is not a version string")
    if not isinstance(kid, str):
        raise ManifestError("manifest key_id: expected a string")
    if not isinstance(files, dict) or not files:
        raise ManifestError("manifest files: expected a non-empty object")
    entries = {check_path(path): _entry(path, value) for path, value in sorted(files.items())}
    return Manifest(version=version, key_id=kid, files=entries)


def sign(data: bytes, private_key: Ed25519PrivateKey) -> bytes:
    """The Ed25519 signature (64 bytes) over ``data``."""
    return private_key.sign(data)


def signature_valid(data: bytes, signature: bytes, public_key: Ed25519PublicKey) -> bool:
    """Whether ``signature`` is ``public_key``'s Ed25519 signature over exactly ``data``."""
    try:
        public_key.verify(signature, data)
    except InvalidSignature:
        return False
    return True


def check_files(manifest: Manifest, files: Mapping[str, bytes]) -> None:
    """Raise unless ``files`` are exactly the manifest's, each with its size and SHA-256."""
    missing = sorted(set(manifest.files) - set(files))
    extra = sorted(set(files) - set(manifest.files))
    if missing or extra:
        raise ManifestError(
            f"files do not match the manifest (missing: {missing or 'none'},"
            f" not in the manifest: {extra or 'none'})"
        )
    for path, entry in manifest.files.items():
        data = files[path]
        if len(data) != entry.size or sha256_hex(data) != entry.sha256:
            raise ManifestError(
                f"{path}: {len(data)} bytes with SHA-256 {sha256_hex(data)}, the manifest says"
                f" {entry.size} bytes with {entry.sha256}"
            )
