"""PMS5003 frames and commands: published vectors, fuzzing, and the stream parser's resync."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from drivers.serial import pms5003 as pms
from drivers.serial.frame_stats import BadReason
from gateway.core.errors import ChecksumError, FrameError

# pimoroni/pms5003-circuitpython tests: GOODFRAME1 ("PMS5003 as seen from logic analyser") and
# GOODFRAME2; the third is PyPMS's captured data (PMSx003.hexdump).
GOODFRAME1 = bytes.fromhex(
    "424d001c 0002 0004 0004 0002 0004 0004 02e8 00d4 0020 0000 0000 0000 9700 0334"
)
GOODFRAME2 = bytes.fromhex(
    "424d001c 0007 0009 0009 0007 0009 0009 052e 018a 0034 0000 0000 0000 9700 0266"
)
PYPMS_FRAME = bytes.fromhex(
    "424d001c 0000 0008 0008 0000 0008 0008 00d2 0046 002d 001e 0000 0000 9700 02c5"
)


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (GOODFRAME1, pms.Measurement(2, 4, 4, 2, 4, 4, 744, 212, 32, 0, 0, 0, 0x97, 0)),
        (GOODFRAME2, pms.Measurement(7, 9, 9, 7, 9, 9, 1326, 394, 52, 0, 0, 0, 0x97, 0)),
        (PYPMS_FRAME, pms.Measurement(0, 8, 8, 0, 8, 8, 210, 70, 45, 30, 0, 0, 0x97, 0)),
    ],
)
def test_published_frames_decode(frame: bytes, expected: pms.Measurement) -> None:
    assert pms.decode_measurement(frame) == expected
    assert pms.encode_measurement(expected) == frame


def test_commands_and_replies_match_the_published_bytes() -> None:
    assert pms.set_passive() == bytes.fromhex("424de100000170")
    assert pms.set_active() == bytes.fromhex("424de100010171")
    assert pms.read_passive() == bytes.fromhex("424de200000171")
    assert pms.encode_reply(pms.Command.MODE, 0) == bytes.fromhex("424d0004e1000174")
    assert pms.encode_reply(pms.Command.MODE, 1) == bytes.fromhex("424d0004e1010175")
    assert pms.decode_frame(bytes.fromhex("424d0004e1010175")) == pms.Reply(0xE1, 1)
    assert pms.decode_command(pms.set_working(False)) == pms.CommandFrame(pms.Command.SLEEP, 0)
    with pytest.raises(FrameError, match="expected a measurement"):
        pms.decode_measurement(bytes.fromhex("424d0004e1000174"))


@pytest.mark.parametrize(
    ("frame", "error", "message"),
    [
        (GOODFRAME1[:31], FrameError, "length field 28 means 32 bytes, got 31"),
        (b"BL" + GOODFRAME1[2:], FrameError, "expected to start with 42 4D"),
        # pimoroni's fault: a truncated frame glued to the next one reads 42 4D as the length.
        (GOODFRAME1[:2] + GOODFRAME1, FrameError, "length field 16973, expected 28"),
        (GOODFRAME1[:-1] + b"\x35", ChecksumError, "checksum 0x0335, expected 0x0334"),
    ],
)
def test_bad_frames_say_what_is_wrong(frame: bytes, error: type[FrameError], message: str) -> None:
    with pytest.raises(error, match=message):
        pms.decode_frame(frame)


def test_encoders_refuse_values_they_cannot_carry() -> None:
    with pytest.raises(ValueError, match=r"n0_3 must be within 0\.\.65535"):
        pms.encode_measurement(pms.Measurement(0, 0, 0, 0, 0, 0, 70_000, 0, 0, 0, 0, 0))
    with pytest.raises(ValueError, match="command must be one byte"):
        pms.encode_command(0x1E1)


@given(st.binary(max_size=40))
def test_random_bytes_raise_only_frame_errors(data: bytes) -> None:
    for decode in (pms.decode_frame, pms.decode_measurement, pms.decode_command):
        with contextlib.suppress(FrameError):
            decode(data)


words = st.integers(0, 0xFFFF)
measurement_values = st.builds(
    pms.Measurement, *[words] * 12, st.integers(0, 0xFF), st.integers(0, 0xFF)
)
measurements = measurement_values.map(pms.encode_measurement)
# Values as a sensor in a street sees them (tens of µg/m³, counts in the thousands).
plausible = st.builds(pms.Measurement, *[st.integers(0, 3000)] * 12).map(pms.encode_measurement)


@given(measurement_values)
def test_encode_decode_round_trip(values: pms.Measurement) -> None:
    assert pms.decode_frame(pms.encode_measurement(values)) == values


@given(measurements, st.integers(0, 31), st.integers(1, 255))
def test_any_single_byte_change_is_detected(frame: bytes, at: int, delta: int) -> None:
    mutated = bytearray(frame)
    mutated[at] = (mutated[at] + delta) & 0xFF
    with pytest.raises(FrameError):
        pms.decode_frame(bytes(mutated))


# -- the stream parser -------------------------------------------------------------------------


def reference_parse(data: bytes) -> tuple[list[pms.Frame], dict[BadReason, int], int]:
    """The stream parser's rule, one byte at a time (see test_sds011_codec.reference_parse)."""
    frames: list[pms.Frame] = []
    bad = {BadReason.CHECKSUM: 0, BadReason.LENGTH: 0}
    p = 0
    while p < len(data):
        if data[p] == 0x42:
            if p + 1 == len(data):
                break
            if data[p + 1] == 0x4D:
                if p + 4 > len(data):
                    break
                length = int.from_bytes(data[p + 2 : p + 4], "big")
                size = {28: 32, 4: 8}.get(length)
                if size is not None and p + size > len(data):
                    break
                try:
                    frames.append(pms.decode_frame(data[p : p + (size or 4)]))
                except ChecksumError:
                    bad[BadReason.CHECKSUM] += 1
                except FrameError:
                    bad[BadReason.LENGTH] += 1
                else:
                    p += size or 0
                    continue
        p += 1
    return frames, bad, len(data) - p


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


replies = st.tuples(st.sampled_from([0xE1, 0xE4]), st.integers(0, 1)).map(
    lambda t: pms.encode_reply(*t)
)
segments = st.one_of(
    plausible,
    replies,
    plausible.map(lambda f: f[: len(f) // 2]),
    st.tuples(plausible, st.integers(0, 31), st.integers(1, 255)).map(
        lambda t: t[0][: t[1]] + bytes([(t[0][t[1]] + t[2]) & 0xFF]) + t[0][t[1] + 1 :]
    ),
    st.binary(max_size=12),
    st.sampled_from([b"B", b"BM", b"BM\x00", b"BM\x00\x1c", b"BM\x00\x04", b"M"]),
)


@given(st.lists(segments, max_size=30), st.lists(st.integers(0, 10_000), max_size=8))
def test_stream_parser_follows_the_reference_rule_however_bytes_are_cut(
    parts: list[bytes], cuts: list[int]
) -> None:
    data = b"".join(parts)
    stream = pms.Pms5003Stream()
    frames = [frame for chunk in chunked(data, cuts) for frame in stream.feed(chunk)]
    expected, bad, pending = reference_parse(data)
    assert frames == expected
    assert dict(stream.stats.bad) == {k: v for k, v in bad.items() if v}
    assert stream.pending == pending
    sizes = sum(pms.FRAME_SIZE if isinstance(f, pms.Measurement) else 8 for f in expected)
    assert stream.stats.skipped_bytes == len(data) - pending - sizes


clean_frames = plausible.filter(lambda f: 0x42 not in f[1:])
no_header_bytes = st.binary(min_size=1, max_size=20).filter(lambda b: 0x42 not in b)


@given(
    st.lists(
        st.tuples(
            clean_frames,
            st.sampled_from(["good", "garbage", "truncated", "corrupted"]),
            no_header_bytes,
            st.integers(2, 31),
        ),
        min_size=1,
        max_size=20,
    ),
    clean_frames,
    st.lists(st.integers(0, 10_000), max_size=6),
)
def test_good_frames_survive_garbage_truncated_and_corrupted_neighbours(
    plan: list[tuple[bytes, str, bytes, int]], last: bytes, cuts: list[int]
) -> None:
    parts: list[bytes] = []
    good: list[bytes] = []
    bad = skipped = 0
    for frame, fault, garbage, keep in plan:
        if fault == "garbage":
            parts.append(garbage)
            skipped += len(garbage)
        elif fault == "truncated":  # glued to whatever comes next
            parts.append(frame[:keep])
            bad += 1
            skipped += keep
        elif fault == "corrupted":  # one data byte changed on the wire
            parts.append(frame[:10] + bytes([frame[10] ^ 0x01]) + frame[11:])
            bad += 1
            skipped += len(frame)
        parts.append(frame)
        good.append(frame)
    parts.append(last)
    good.append(last)
    # A truncated frame and the bytes after it could pass the checksum by chance.
    for i, part in enumerate(parts):
        if len(part) < pms.FRAME_SIZE and part.startswith(b"BM"):
            glued = b"".join(parts[i:])[: pms.FRAME_SIZE]
            if glued[2:4] == b"\x00\x1c":
                assume(int.from_bytes(glued[30:32], "big") != sum(glued[:30]))
            else:  # a reply's length glued from the next frame: 00 04 cannot come from one
                assume(glued[2:4] != b"\x00\x04")
    data = b"".join(parts)

    stream = pms.Pms5003Stream()
    frames = [f for chunk in chunked(data, cuts) for f in stream.feed(chunk)]
    assert frames == [pms.decode_frame(f) for f in good]
    assert stream.stats.bad_frames == bad
    assert stream.stats.skipped_bytes == skipped
    assert stream.pending == 0


def test_truncated_frame_glued_to_the_next_costs_only_itself() -> None:
    stream = pms.Pms5003Stream()
    frames = stream.feed(GOODFRAME1[:2] + GOODFRAME1 + GOODFRAME2[:20] + GOODFRAME2)
    assert frames == [pms.decode_frame(GOODFRAME1), pms.decode_frame(GOODFRAME2)]
    assert stream.stats.bad == {BadReason.LENGTH: 1, BadReason.CHECKSUM: 1}
    assert stream.stats.skipped_bytes == 22
    assert isinstance(stream.last_error, ChecksumError)


def test_a_frame_split_anywhere_is_kept_until_complete() -> None:
    for cut in range(1, 32):
        stream = pms.Pms5003Stream()
        assert stream.feed(b"\x00\x13" + GOODFRAME2[:cut]) == []
        assert stream.pending == cut
        assert stream.feed(GOODFRAME2[cut:]) == [pms.decode_frame(GOODFRAME2)]
        assert (stream.stats.skipped_bytes, stream.stats.bad_frames, stream.pending) == (2, 0, 0)
