"""``streetgate decode``: a readings message, in any format the gateway publishes, as JSON lines.

For people at the platform end: save a message (``mosquitto_sub -C 1 -t
streetgate/cab-12/readings > msg.bin``) and decode it. A compact message also needs its
metadata (the retained ``<prefix>/<gateway>/meta`` message, ``--meta``, repeatable). Prints one
JSON object per reading on stdout: gateway, epoch, seq, device, metric, value, unit, ts_ms,
quality, historical and ts (ISO 8601).

Exit status: 0 decoded; 6 (``NOT_FOUND``) a file is missing, or the compact message needs
metadata that was not given; 7 (``DAMAGED``) the message or the metadata is malformed (the
message says what was expected where); 1 a file could not be read.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, BinaryIO

import typer

from gateway.cli.common import fail, reporting
from gateway.cli.exit_codes import ExitCode
from gateway.core.errors import PayloadError
from gateway.uplink.decode import MAX_PAYLOAD_BYTES, decode_metadata, decode_readings

__all__ = ["decode"]


def _bounded(stream: BinaryIO, what: str) -> bytes:
    data = stream.read(MAX_PAYLOAD_BYTES + 1)
    if len(data) > MAX_PAYLOAD_BYTES:
        fail("decode", f"{what}: more than {MAX_PAYLOAD_BYTES} bytes", ExitCode.DAMAGED)
    return data


def _read(path: Path, what: str) -> bytes:
    if str(path) == "-":
        return _bounded(sys.stdin.buffer, "stdin")
    try:
        if not path.exists():
            fail("decode", f"{what} {path}: no such file", ExitCode.NOT_FOUND)
        if not path.is_file():
            fail(
                "decode",
                f"{what} {path}: not a regular file (give a saved message, or - for stdin)",
                ExitCode.USAGE,
            )
        with path.open("rb") as stream:
            return _bounded(stream, f"{what} {path}")
    except OSError as exc:
        fail("decode", f"{what} {path}: cannot read it: {exc.strerror or exc}")


def decode(
    payload: Annotated[
        Path,
        typer.Argument(help="File holding one readings message ('-': standard input)."),
    ] = Path("-"),
    meta: Annotated[
        list[Path] | None,
        typer.Option(
            "--meta",
            "-m",
            help="File holding a compact metadata message (<prefix>/<gateway>/meta); repeatable.",
        ),
    ] = None,
) -> None:
    """Decode one readings message (streetgate JSON, SenML, compact) into JSON lines."""
    metas = []
    for path in meta or []:
        try:
            metas.append(decode_metadata(_read(path, "metadata")))
        except PayloadError as exc:
            fail("decode", f"metadata {path}: {exc}")
    data = _read(payload, "message")
    with reporting("decode", PayloadError):
        readings = decode_readings(data, metas)
    for reading in readings:
        typer.echo(json.dumps(reading.to_json(), ensure_ascii=False))
