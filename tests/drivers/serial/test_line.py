"""Line protocols: decoding a line, splitting a byte stream into lines, bad and long lines."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.serial.frame_stats import BadReason
from drivers.serial.line import LineFormat, LineStream, decode_line
from gateway.config.devices import LineField
from gateway.core.errors import FrameError, NoMatchError
from gateway.core.model import Sample

WEATHER = LineFormat.build(
    r"^T=(?P<temperature>-?\d+\.\d+) RH=(?P<humidity>\d+(\.\d+)?)( P=(?P<pressure>\d+))?$",
    {
        "temperature": LineField(unit="Cel"),
        "humidity": LineField(unit="%RH"),
        "pressure": LineField(unit="hPa", scale=0.01, offset=0.5),
    },
)


def test_a_line_becomes_scaled_samples() -> None:
    assert decode_line("T=-3.25 RH=81 P=101325", WEATHER) == [
        Sample("temperature", -3.25, "Cel"),
        Sample("humidity", 81.0, "%RH"),
        Sample("pressure", 1013.75, "hPa"),
    ]


def test_scaling_leaves_no_binary_noise() -> None:
    (pressure,) = decode_line(
        "P=101493", LineFormat.build(r"P=(?P<p>\d+)", {"p": LineField(scale=0.01)})
    )
    assert pressure.value == 1014.93  # 101493 * 0.01 is 1014.9300000000001 in binary floats


@pytest.mark.parametrize(
    ("line", "error", "message"),
    [
        ("T=21.5 RH=40", FrameError, "field 'pressure' is missing"),
        ("temperature 21.5", NoMatchError, "does not match"),
        ("x" * 200, NoMatchError, r"'x{77}'\.\.\. does not match"),
    ],
)
def test_lines_that_do_not_decode_say_why(line: str, error: type[FrameError], message: str) -> None:
    with pytest.raises(error, match=message):
        decode_line(line, WEATHER)


def test_a_field_that_is_not_a_finite_number_is_a_frame_error() -> None:
    loose = LineFormat.build(r"v=(?P<v>\S+)", {"v": LineField()})
    assert decode_line("v=1e3", loose) == [Sample("v", 1000.0, "")]
    with pytest.raises(FrameError, match="'abc', expected a number"):
        decode_line("v=abc", loose)
    with pytest.raises(FrameError, match="not a finite number"):
        decode_line("v=nan", loose)


def test_format_checks_pattern_fields_and_encoding() -> None:
    with pytest.raises(ValueError, match="not a valid regular expression"):
        LineFormat.build(r"(?P<a>\d+", {"a": LineField()})
    with pytest.raises(ValueError, match=re.escape("named groups ['a'] must be exactly")):
        LineFormat.build(r"(?P<a>\d+)", {"a": LineField(), "b": LineField()})
    with pytest.raises(LookupError):
        LineFormat.build(r"(?P<a>\d+)", {"a": LineField()}, encoding="klingon")


@pytest.mark.parametrize("end", [b"\n", b"\r\n", b"\r"])
def test_every_line_end_works_and_blank_lines_are_ignored(end: bytes) -> None:
    stream = LineStream(WEATHER)
    data = end + b"T=1.0 RH=2 P=0" + end + end + b"T=3.0 RH=4" + end + b"T=5.0"
    readings = stream.feed(data)
    assert [[s.value for s in r] for r in readings] == [[1.0, 2.0, 0.5]]
    assert stream.stats.bad == {BadReason.VALUE: 1}  # the second line lacks the pressure
    assert stream.pending == len(b"T=5.0")


def test_partial_lines_wait_for_their_end() -> None:
    stream = LineStream(WEATHER)
    assert stream.feed(b"T=21.50 RH=4") == []
    assert stream.feed(b"5.5 P=1013") == []
    assert stream.feed(b"00\r") == [
        [
            Sample("temperature", 21.5, "Cel"),
            Sample("humidity", 45.5, "%RH"),
            Sample("pressure", 1013.5, "hPa"),
        ]
    ]
    assert stream.feed(b"\n") == []  # the \n of a \r\n split across reads
    assert (stream.stats.frames, stream.stats.bad_frames, stream.pending) == (1, 0, 0)


def test_over_long_lines_are_dropped_up_to_their_end_and_memory_stays_bounded() -> None:
    stream = LineStream(WEATHER, max_line=32)
    good = b"T=1.5 RH=2 P=3\n"
    for _ in range(100):  # a device that never ends its line
        assert stream.feed(b"x" * 20) == []
        assert stream.pending <= 32
    readings = stream.feed(b"yyy\n" + good)
    assert len(readings) == 1
    assert stream.stats.bad == {BadReason.TOO_LONG: 1}
    assert stream.stats.skipped_bytes == 2003
    # A complete over-long line in one read is one bad line too.
    assert stream.feed(b"z" * 40 + b"\n" + good) != []
    assert stream.stats.bad == {BadReason.TOO_LONG: 2}


def test_undecodable_bytes_and_non_matching_lines_are_counted() -> None:
    stream = LineStream(WEATHER)
    assert stream.feed(b"\xff\xfe garbage\nhello\nT=1.0 RH=2 P=3\n") != []
    assert stream.stats.bad == {BadReason.NO_MATCH: 2}
    assert stream.stats.frames == 1
    assert isinstance(stream.last_error, NoMatchError)
    assert "hello" in str(stream.last_error)


lines = st.builds(
    "T={:.2f} RH={:.1f} P={}".format,
    st.floats(-40, 60),
    st.floats(0, 100),
    st.integers(80_000, 110_000),
)
noise = st.text(alphabet="abc =.", max_size=10)
ends = st.sampled_from(["\n", "\r\n", "\r"])


@given(
    st.lists(st.tuples(st.one_of(lines, noise), ends), max_size=20),
    st.lists(st.integers(0, 5000), max_size=8),
)
def test_how_bytes_are_cut_does_not_change_the_readings(
    items: list[tuple[str, str]], cuts: list[int]
) -> None:
    data = "".join(line + end for line, end in items).encode()
    whole = LineStream(WEATHER)
    expected = whole.feed(data)
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    cut = LineStream(WEATHER)
    assert [r for piece in pieces for r in cut.feed(piece)] == expected
    assert cut.stats == whole.stats
    good = [line for line, _ in items if line.startswith("T=")]
    assert len(expected) == len(good)
    assert whole.stats.bad_frames == sum(1 for line, _ in items if line and line not in good)
