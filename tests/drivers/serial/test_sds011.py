"""SDS011 frames and commands: published vectors, fuzzing, and the stream parser's resync."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from drivers.serial import sds011 as sds
from drivers.serial.frame_stats import BadReason
from gateway.core.errors import ChecksumError, FrameError

# (frame, PM2.5, PM10, device id): a raw capture posted on community.particle.io, the PyPMS
# captured data (tests/captured_data/SDS01x.hexdump + .csv), and one constructed frame whose
# checksum was verified by hand.
VECTORS = [
    ("aa c0 8c 00 94 00 bc f9 d5 ab", 14.0, 14.8, 0xF9BC),
    ("aa c0 06 00 06 00 58 d9 3d ab", 0.6, 0.6, 0xD958),
    ("aa c0 09 00 09 00 58 d9 43 ab", 0.9, 0.9, 0xD958),
    ("aa c0 d4 04 3a 0a a1 60 1d ab", 123.6, 261.8, 0x60A1),
]


@pytest.mark.parametrize(("frame", "pm2_5", "pm10", "device_id"), VECTORS)
def test_published_frames_decode(frame: str, pm2_5: float, pm10: float, device_id: int) -> None:
    raw = bytes.fromhex(frame)
    assert sds.decode_measurement(raw) == sds.Measurement(pm2_5, pm10, device_id)
    assert sds.encode_measurement(pm2_5, pm10, device_id) == raw


def test_commands_match_the_published_bytes() -> None:
    # Sleep, from R. Zschiegner's SDS011 Arduino library: AA B4 06 01 00 00..00 FF FF 05 AB.
    assert sds.set_working(False) == bytes.fromhex("aab406 0100" + "00" * 10 + "ffff 05 ab")
    assert sds.query_data() == bytes.fromhex("aab404" + "00" * 12 + "ffff 02 ab")
    assert sds.set_reporting_mode(sds.ReportingMode.QUERY) == bytes.fromhex(
        "aab402 0101" + "00" * 10 + "ffff 02 ab"
    )
    assert sds.set_reporting_mode(sds.ReportingMode.ACTIVE) == bytes.fromhex(
        "aab402 0100" + "00" * 10 + "ffff 01 ab"
    )
    assert sds.set_working_period(5, device_id=0xF9BC)[15:17] == bytes([0xBC, 0xF9])
    decoded = sds.decode_command(sds.set_working_period(5, device_id=0xF9BC))
    assert decoded == sds.CommandFrame(
        sds.Command.WORKING_PERIOD, bytes([1, 5]) + bytes(10), 0xF9BC
    )


def test_replies_decode_with_their_data() -> None:
    reply = sds.decode_frame(sds.encode_reply(sds.Command.REPORTING_MODE, b"\x01\x01\x00", 0xA160))
    assert reply == sds.Reply(sds.Command.REPORTING_MODE, b"\x01\x01\x00", 0xA160)
    assert isinstance(reply, sds.Reply)
    assert reply.value == sds.ReportingMode.QUERY
    with pytest.raises(FrameError, match="expected a measurement"):
        sds.decode_measurement(sds.encode_reply(sds.Command.SLEEP_WORK, b"\x01\x01\x00"))


@pytest.mark.parametrize(
    ("frame", "error", "message"),
    [
        ("aa c0 8c 00 94 00 bc f9 d5", FrameError, "expected 10 bytes, got 9"),
        ("ab c0 8c 00 94 00 bc f9 d5 ab", FrameError, "expected header 0xAA"),
        ("aa c1 8c 00 94 00 bc f9 d5 ab", FrameError, "0xC0 \\(data\\) or 0xC5"),
        ("aa c0 8c 00 94 00 bc f9 d5 aa", FrameError, "expected tail 0xAB"),
        ("aa c0 8c 00 94 00 bc f9 d6 ab", ChecksumError, "checksum 0xD6, expected 0xD5"),
    ],
)
def test_bad_frames_say_what_is_wrong(frame: str, error: type[FrameError], message: str) -> None:
    with pytest.raises(error, match=message):
        sds.decode_frame(bytes.fromhex(frame))


def test_encoders_refuse_values_they_cannot_carry() -> None:
    with pytest.raises(ValueError, match="pm10 must be within"):
        sds.encode_measurement(1.0, 7000.0)
    with pytest.raises(ValueError, match="working period"):
        sds.set_working_period(31)
    with pytest.raises(ValueError, match="device id"):
        sds.query_data(0x10000)


@given(st.binary(max_size=40))
def test_random_bytes_raise_only_frame_errors(data: bytes) -> None:
    for decode in (sds.decode_frame, sds.decode_measurement, sds.decode_command):
        with contextlib.suppress(FrameError):
            decode(data)


measurements = st.builds(
    sds.encode_measurement,
    st.integers(0, 0xFFFF).map(lambda raw: raw / 10),
    st.integers(0, 0xFFFF).map(lambda raw: raw / 10),
    st.integers(0, 0xFFFF),
)


@given(measurements, st.integers(0, 9), st.integers(1, 255))
def test_any_single_byte_change_is_detected(frame: bytes, at: int, delta: int) -> None:
    mutated = bytearray(frame)
    mutated[at] = (mutated[at] + delta) & 0xFF
    if at == 1 and mutated[1] == sds.REPLY:
        assert isinstance(sds.decode_frame(mutated), sds.Reply)  # the one valid mutation
        return
    with pytest.raises(FrameError):
        sds.decode_frame(bytes(mutated))


@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF))
def test_encode_decode_round_trip(pm2_5: int, pm10: int, device_id: int) -> None:
    frame = sds.encode_measurement(pm2_5 / 10, pm10 / 10, device_id)
    assert sds.decode_frame(frame) == sds.Measurement(pm2_5 / 10, pm10 / 10, device_id)


# -- the stream parser -------------------------------------------------------------------------


def reference_parse(data: bytes) -> tuple[list[sds.Frame], dict[BadReason, int], int]:
    """The stream parser's rule, one byte at a time: a valid frame here is taken whole; a header
    whose frame does not check is one bad frame and the search goes on at the next byte."""
    frames: list[sds.Frame] = []
    bad = {BadReason.CHECKSUM: 0, BadReason.LENGTH: 0}
    p = 0
    while p < len(data):
        if data[p] == sds.HEAD:
            if p + 1 == len(data):
                break  # may be a header: wait
            if data[p + 1] in (sds.MEASUREMENT, sds.REPLY):
                if p + sds.FRAME_SIZE > len(data):
                    break
                try:
                    frames.append(sds.decode_frame(data[p : p + sds.FRAME_SIZE]))
                except ChecksumError:
                    bad[BadReason.CHECKSUM] += 1
                except FrameError:
                    bad[BadReason.LENGTH] += 1
                else:
                    p += sds.FRAME_SIZE
                    continue
        p += 1
    return frames, bad, len(data) - p


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


segments = st.one_of(
    measurements,
    measurements.map(lambda f: f[: len(f) // 2]),
    st.tuples(measurements, st.integers(0, 9), st.integers(1, 255)).map(
        lambda t: t[0][: t[1]] + bytes([(t[0][t[1]] + t[2]) & 0xFF]) + t[0][t[1] + 1 :]
    ),
    st.binary(max_size=12),
    st.sampled_from([b"\xaa", b"\xaa\xc0", b"\xaa\xc5", b"\xab"]),
)


@given(st.lists(segments, max_size=30), st.lists(st.integers(0, 10_000), max_size=8))
def test_stream_parser_follows_the_reference_rule_however_bytes_are_cut(
    parts: list[bytes], cuts: list[int]
) -> None:
    data = b"".join(parts)
    stream = sds.Sds011Stream()
    frames = [frame for chunk in chunked(data, cuts) for frame in stream.feed(chunk)]
    expected, bad, pending = reference_parse(data)
    assert frames == expected
    assert stream.stats.frames == len(expected)
    assert dict(stream.stats.bad) == {k: v for k, v in bad.items() if v}
    assert stream.pending == pending
    assert stream.stats.skipped_bytes == len(data) - pending - sds.FRAME_SIZE * len(expected)


clean_frames = measurements.filter(lambda f: sds.HEAD not in f[1:])
no_header_bytes = st.binary(min_size=1, max_size=20).filter(lambda b: sds.HEAD not in b)


@given(
    st.lists(
        st.tuples(
            clean_frames,
            st.sampled_from(["good", "garbage", "truncated", "corrupted"]),
            no_header_bytes,
            st.integers(2, 9),
        ),
        min_size=1,
        max_size=25,
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
        elif fault == "corrupted":
            parts.append(frame[:8] + bytes([(frame[8] + 1) & 0xFF]) + frame[9:])
            bad += 1
            skipped += len(frame)
        parts.append(frame)
        good.append(frame)
    parts.append(last)
    good.append(last)
    data = b"".join(parts)
    # A truncated frame and the bytes after it could form a valid frame by chance (1 in 65,536).
    for i, part in enumerate(parts):
        if len(part) < sds.FRAME_SIZE and part.startswith(b"\xaa"):
            glued = b"".join(parts[i:])[: sds.FRAME_SIZE]
            assume(glued[9] != sds.TAIL or glued[8] != sum(glued[2:8]) & 0xFF)

    stream = sds.Sds011Stream()
    frames = [f for chunk in chunked(data, cuts) for f in stream.feed(chunk)]
    assert frames == [sds.decode_frame(f) for f in good]
    assert stream.stats.bad_frames == bad
    assert stream.stats.skipped_bytes == skipped
    assert stream.pending == 0


def test_truncated_frame_glued_to_the_next_costs_only_itself() -> None:
    good = bytes.fromhex("aa c0 8c 00 94 00 bc f9 d5 ab")
    stream = sds.Sds011Stream()
    assert stream.feed(good[:6] + good + good) == [sds.decode_frame(good)] * 2
    assert stream.stats.bad == {BadReason.LENGTH: 1}
    assert stream.stats.skipped_bytes == 6
    assert isinstance(stream.last_error, FrameError)
    assert "tail" in str(stream.last_error)


def test_a_frame_split_anywhere_is_kept_until_complete() -> None:
    good = bytes.fromhex("aa c0 06 00 06 00 58 d9 3d ab")
    for cut in range(1, 10):
        stream = sds.Sds011Stream()
        assert stream.feed(b"\x00\x13" + good[:cut]) == []
        assert stream.pending == cut
        assert stream.feed(good[cut:]) == [sds.Measurement(0.6, 0.6, 0xD958)]
        assert (stream.stats.skipped_bytes, stream.stats.bad_frames, stream.pending) == (2, 0, 0)
