"""Line protocols: one reading per text line, fields picked out by a regular expression.

Pure code: bytes in, samples out, no I/O. Each named group of the pattern is a metric; its
:class:`drivers.serial.config.LineField` turns the matched text into ``float(text) × scale +
offset`` (without binary noise) with a unit. Lines end with ``\\n``, ``\\r\\n`` or a lone
``\\r``; blank lines are ignored. :func:`decode_line` raises
:class:`gateway.errors.FrameError` and nothing else; :class:`LineStream` splits a byte stream
into lines, keeps at most ``max_line`` bytes of an unfinished line, and counts lines that do
not decode instead of raising.
"""

from __future__ import annotations

import codecs
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from drivers.serial.config import LineField
from drivers.serial.frame_stats import BadReason, FrameStats
from gateway.core.errors import FrameError, NoMatchError
from gateway.core.model import Sample

__all__ = ["MAX_LINE", "LineFormat", "LineStream", "decode_line"]

#: Longest line kept, in bytes; anything longer is garbage (a missing line end, line noise).
MAX_LINE = 512


@dataclass(frozen=True)
class LineFormat:
    """A compiled pattern and what each of its named groups means."""

    pattern: re.Pattern[str]
    fields: Mapping[str, LineField]
    encoding: str = "ascii"

    @classmethod
    def build(
        cls, pattern: str, fields: Mapping[str, LineField], encoding: str = "ascii"
    ) -> LineFormat:
        """Compile ``pattern`` and check its named groups are exactly ``fields``."""
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise ValueError(
                f"pattern {pattern!r} is not a valid regular expression: {exc}"
            ) from exc
        groups = set(compiled.groupindex)
        if groups != set(fields):
            raise ValueError(
                f"the pattern's named groups {sorted(groups)} must be exactly the fields "
                f"{sorted(fields)}"
            )
        codecs.lookup(encoding)  # LookupError for an unknown codec: here, not once per line
        return cls(compiled, dict(fields), encoding)


def decode_line(line: str, fmt: LineFormat) -> list[Sample]:
    """The samples of one line (without its line end), one per field of ``fmt``."""
    match = fmt.pattern.search(line)
    if match is None:
        raise NoMatchError(f"line {_show(line)} does not match {fmt.pattern.pattern!r}")
    samples = []
    for name, spec in fmt.fields.items():
        text = match[name]
        if text is None:
            raise FrameError(f"line {_show(line)}: field {name!r} is missing")
        try:
            number = float(text)
        except ValueError:
            raise FrameError(
                f"line {_show(line)}: field {name!r} is {text!r}, expected a number"
            ) from None
        if not math.isfinite(number):
            raise FrameError(f"line {_show(line)}: field {name!r} is {text!r}, not a finite number")
        if spec.scale != 1.0 or spec.offset != 0.0:
            # 15 significant digits drop the binary noise of the scaling (101493 × 0.01 is
            # 1014.93, not 1014.9300000000001) and keep every digit a sensor prints.
            number = float(f"{number * spec.scale + spec.offset:.15g}")
        samples.append(Sample(name, number, spec.unit))
    return samples


def _show(line: str) -> str:
    return repr(line) if len(line) <= 80 else repr(line[:77]) + "..."


class LineStream:
    """Splits bytes into lines and decodes each: ``feed(chunk)`` returns one list per line.

    A line that does not decode is counted in ``stats`` (``no_match``, ``value``) and its
    FrameError kept as ``last_error``; a line longer than ``max_line`` bytes is dropped up to
    its line end and counted as ``too_long``.
    """

    def __init__(self, fmt: LineFormat, max_line: int = MAX_LINE) -> None:
        if max_line < 1:
            raise ValueError(f"max_line must be at least 1, got {max_line}")
        self.format = fmt
        self.max_line = max_line
        self.stats = FrameStats()
        self.last_error: FrameError | None = None
        self._buf = bytearray()
        self._discarding = False  # inside an over-long line: drop bytes up to its end

    @property
    def pending(self) -> int:
        """Bytes of an unfinished line kept for the next call."""
        return len(self._buf)

    def clear(self) -> None:
        """Forget an unfinished line (after a reconnect)."""
        self._buf.clear()
        self._discarding = False

    def feed(self, data: bytes | bytearray | memoryview) -> list[list[Sample]]:
        """Add bytes; return the samples of every line they complete, in order."""
        buf = self._buf
        buf += data
        pieces = buf.replace(b"\r", b"\n").split(b"\n")
        tail = pieces.pop()  # the unfinished line (empty after a line end)
        readings = []
        for piece in pieces:
            if self._discarding:  # the end of an over-long line
                self._discarding = False
                self.stats.skipped_bytes += len(piece)
                continue
            if piece:
                samples = self._decode(piece)
                if samples is not None:
                    readings.append(samples)
        buf[:] = tail
        if len(buf) > self.max_line:
            if not self._discarding:
                self._bad(
                    BadReason.TOO_LONG,
                    FrameError(f"a line longer than {self.max_line} bytes (no line end)"),
                )
            self._discarding = True
            self.stats.skipped_bytes += len(buf)
            buf.clear()
        self.stats.frames += len(readings)
        return readings

    def _decode(self, raw: bytes | bytearray) -> list[Sample] | None:
        fmt = self.format
        if len(raw) > self.max_line:
            self.stats.skipped_bytes += len(raw)
            self._bad(BadReason.TOO_LONG, FrameError(f"a line longer than {self.max_line} bytes"))
            return None
        try:
            return decode_line(raw.decode(fmt.encoding), fmt)
        except UnicodeDecodeError as exc:
            error: FrameError = NoMatchError(
                f"line {raw[:80]!r} is not {fmt.encoding}: {exc.reason}"
            )
            reason = BadReason.NO_MATCH
        except NoMatchError as exc:
            error, reason = exc, BadReason.NO_MATCH
        except FrameError as exc:
            error, reason = exc, BadReason.VALUE
        self.stats.skipped_bytes += len(raw)
        self._bad(reason, error)
        return None

    def _bad(self, reason: BadReason, error: FrameError) -> None:
        self.stats.bad[reason] += 1
        self.last_error = error
