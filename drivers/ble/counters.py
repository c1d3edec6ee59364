"""The last accepted BTHome encryption counter per device, kept across restarts (the replay guard).

An encrypted BTHome advert carries a 32-bit counter in its AES-CCM nonce; the node never reuses
one under a key. :class:`drivers.ble_scan.BleScanSource` drops an advert whose counter is at or
below the last one it accepted from that device, so a recorded advert cannot be played back.
A device is identified by its MAC and a fingerprint of its key (:func:`counter_id`): a new key
starts from nothing, the old key's entry stays (the key could come back).

The counters live in ``<outbox>.ble-counters.json`` beside the outbox (:func:`counters_path`),
written atomically (temporary file, fsync, rename) with mode 0600. The scan source writes the
file *before* it hands the readings of newly accepted adverts to the outbox, so whatever was
stored is covered by the file: after a restart no stored advert (nor an older one) is accepted
again. The file is read only if it is a regular file (not a symlink) of at most
:data:`MAX_FILE_BYTES`; one that does not parse is set aside as ``*.corrupt-<unix time>``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path

from gateway.core.errors import StoreError
from gateway.core.key_files import PRIVATE_MODE, read_private_file, write_atomically

__all__ = ["COUNTER_MAX", "FORMAT", "MAX_FILE_BYTES", "CounterFile", "counter_id", "counters_path"]

log = logging.getLogger(__name__)

FORMAT = 1
COUNTER_MAX = 0xFFFF_FFFF
#: Far above what thousands of devices and years of key rotations need (about 60 bytes each).
MAX_FILE_BYTES = 1 << 20


def counters_path(outbox_path: Path) -> Path:
    """Where the gateway using ``outbox_path`` keeps its BTHome counters."""
    return outbox_path.with_name(outbox_path.name + ".ble-counters.json")


def counter_id(mac: str, key: bytes) -> str:
    """``AA:BB:CC:DD:EE:FF/<16 hex digits>``: the device and (a one-way fingerprint of) its key."""
    digest = hashlib.sha256(b"streetgate bthome counter\0" + key).hexdigest()
    return f"{mac.upper()}/{digest[:16]}"


class CounterFile:
    """Reads and replaces the counter file. Blocking: call the methods in a thread."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, int]:
        """The counters in the file; empty when it does not exist or had to be set aside."""
        path = self.path
        try:
            data = read_private_file(path, MAX_FILE_BYTES)
        except OSError as exc:
            raise StoreError(
                f"{path}: cannot open the BLE counter file ({exc.strerror}); expected a regular "
                "file, not a symlink"
            ) from exc
        except ValueError as exc:
            raise StoreError(f"{path}: the BLE counter file is {exc}") from exc
        if data is None:
            return {}
        try:
            return _parse(data)
        except ValueError as exc:
            aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
            os.replace(path, aside)
            log.error(  # noqa: TRY400 - the reason is the message; no traceback to show
                "%s: %s; set aside as %s. Encrypted adverts are accepted again from the next "
                "one each device sends (an advert recorded before now could be replayed once)",
                path,
                exc,
                aside.name,
            )
            return {}

    def save(self, counters: Mapping[str, int]) -> None:
        """Replace the file atomically with ``counters`` (mode 0600 whatever the umask)."""
        path = self.path
        document = {"format": FORMAT, "counters": dict(sorted(counters.items()))}
        data = (json.dumps(document, separators=(",", ":")) + "\n").encode()
        # One writer for every private file (gateway/core/key_files.py): 0600 from the start,
        # no symlink followed, synced, renamed, the directory synced.
        write_atomically(path, data, PRIVATE_MODE)


def _parse(data: bytes) -> dict[str, int]:
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not valid JSON ({exc})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ValueError(f'expected {{"format": {FORMAT}, "counters": {{...}}}}')
    counters = document.get("counters")
    if not isinstance(counters, dict):
        raise ValueError('"counters" is not an object')  # noqa: TRY004 - a bad file, not a bug
    out: dict[str, int] = {}
    for name, value in counters.items():
        if type(value) is not int or not 0 <= value <= COUNTER_MAX:
            raise ValueError(f"counter of {name!r} is {value!r}; expected 0..{COUNTER_MAX}")
        out[name] = value
    return out
