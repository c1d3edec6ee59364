"""The platform's decoders against hostile payloads: truncated, oversized, bombs, garbage.

Whatever arrives, a decoder returns readings or raises PayloadError saying what was expected,
and never holds more than its bounds in memory.
"""

from __future__ import annotations

import contextlib
import zlib
from pathlib import Path

import cbor2
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from gateway.cli.exit_codes import ExitCode
from gateway.cli.main import app
from gateway.core.errors import PayloadError
from gateway.uplink.compact import CompactEncoder, Compression, Metadata
from gateway.uplink.decode import (
    MAX_DECOMPRESSED_BYTES,
    MAX_PAYLOAD_BYTES,
    decode_metadata,
    decode_readings,
)

EPOCH = "5d0c3a9e1f27b640"
ROWS = [(i + 1, "meter", f"m{i % 5}", 230.0 + i, "V", 1_795_765_512_120, "good") for i in range(20)]


def encoded(compression: Compression) -> tuple[Metadata, bytes]:
    meta, payload = CompactEncoder("cab-12", EPOCH, compression).encode(
        historical=False, readings=ROWS
    )
    assert meta is not None
    return meta, payload


@pytest.mark.parametrize("compression", list(Compression))
def test_every_truncation_is_refused_or_exact(compression: Compression) -> None:
    meta, payload = encoded(compression)
    for end in range(len(payload)):
        try:
            readings = decode_readings(payload[:end], [meta])
        except PayloadError:
            continue
        # Never a silently shorter message: a prefix that decodes at all decodes whole.
        pytest.fail(f"{end} of {len(payload)} bytes decoded to {len(readings)} readings")


def bomb_header(meta: Metadata, compression: Compression) -> bytes:
    return bytes((0xC0 | compression,)) + bytes.fromhex(meta.id)


@pytest.mark.parametrize("compression", [Compression.DEFLATE, Compression.ZSTD])
def test_a_decompression_bomb_stops_at_the_bound(compression: Compression) -> None:
    meta, _ = encoded(compression)
    huge = b"\x00" * (MAX_DECOMPRESSED_BYTES * 8)  # 64 MiB of zeros
    if compression is Compression.DEFLATE:
        packer = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zdict=meta.zdict)
        body = packer.compress(huge) + packer.flush()
    else:
        body = zstandard.ZstdCompressor(
            dict_data=zstandard.ZstdCompressionDict(
                meta.zdict, dict_type=zstandard.DICT_TYPE_RAWCONTENT
            ),
            write_content_size=False,  # nothing to warn the decoder up front
        ).compress(huge)
    assert len(body) < 100_000
    with pytest.raises(PayloadError, match="decompresses to more than"):
        decode_readings(bomb_header(meta, compression) + body, [meta])


def test_oversized_and_deep_payloads_are_refused() -> None:
    meta, _ = encoded(Compression.NONE)
    with pytest.raises(PayloadError, match="more than"):
        decode_readings(b"{" + b" " * MAX_PAYLOAD_BYTES + b"}")
    deep = b"\x81" * 200_000 + b"\x01"  # [[[[...1]]]]: 200,000 levels of CBOR arrays
    with pytest.raises(PayloadError):
        decode_readings(bomb_header(meta, Compression.NONE) + deep, [meta])
    with pytest.raises(PayloadError):
        decode_readings(b"[" * 200_000)


def test_structure_lies_are_named() -> None:
    meta, _ = encoded(Compression.NONE)
    head = bomb_header(meta, Compression.NONE)

    def body(doc: object) -> bytes:
        return head + cbor2.dumps(doc)

    cases = {
        "version": body([9, 0, 1, [0, 0, 1.0]]),
        "index": body([1, 0, 1, [0, 4 * 99, 1.0]]),  # beyond the 5 entries
        "quality code": body([1, 0, 1, [0, 3, 1.0]]),
        "goes back": body([1, 0, 10, [0, 0, 1.0], 5, [0, 0, 1.0]]),
        "unexpected CBOR item 0x63": body([1, 0, 1, [0, 0, "230"]]),  # a text string
        "unexpected CBOR item 0xc1": body([1, 0, 1, [0, 0, cbor2.CBORTag(1, 0)]]),  # a tag
        "unexpected CBOR item 0x81": body([1, 0, 1, [0, 0, [1.0]]]),  # a third level
        "length code 31": head + b"\x9f\x01\x00\x01\xff",  # indefinite length
        "bytes after": body([1, 0, 1, [0, 0, 1.0]]) + b"\x00",
    }
    for expected, payload in cases.items():
        with pytest.raises(PayloadError, match=expected):
            decode_readings(payload, [meta])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.sampled_from(list(Compression)))
def test_garbage_is_a_payload_error(garbage: bytes, compression: Compression) -> None:
    meta, _ = encoded(compression)
    for payload in (garbage, bomb_header(meta, compression) + garbage):
        with contextlib.suppress(PayloadError):
            decode_readings(payload, [meta])
        with contextlib.suppress(PayloadError):
            decode_metadata(garbage)


def test_the_cli_names_what_is_wrong(tmp_path: Path) -> None:
    meta, payload = encoded(Compression.DEFLATE)
    message, meta_file = tmp_path / "msg.bin", tmp_path / "meta.json"
    message.write_bytes(payload[:-3])
    meta_file.write_bytes(meta.to_json())
    runner = CliRunner()
    result = runner.invoke(app, ["decode", str(message), "--meta", str(meta_file)])
    assert result.exit_code == ExitCode.DAMAGED
    assert "error: decode: compact message (deflate): truncated" in result.stderr
    result = runner.invoke(app, ["decode", str(message)])
    assert result.exit_code == ExitCode.NOT_FOUND
    assert f"metadata {meta.id}, which was not given" in result.stderr
    message.write_bytes(payload)
    result = runner.invoke(app, ["decode", str(message), "-m", str(meta_file)])
    assert result.exit_code == ExitCode.OK, result.stderr
    assert len(result.stdout.splitlines()) == len(ROWS)
    result = runner.invoke(app, ["decode", "-"], input=b'{"v": 2, "gateway": 7}')
    assert result.exit_code == ExitCode.DAMAGED
    assert "gateway: expected a string" in result.stderr
