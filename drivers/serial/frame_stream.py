"""The frame-finding loop the binary serial codecs share (SDS011, PMS5003): pure, no I/O.

A protocol says where a frame starts (``header``), how many bytes tell its size
(``head_size``), what that size is (:meth:`BinaryFrameStream._size`), how to check and decode a
complete candidate on the fast path (:meth:`~BinaryFrameStream._decode`) and, for a rejected
candidate only, why it is bad (:meth:`~BinaryFrameStream._check`, the codec's full check, which
raises the FrameError kept as ``last_error``).
"""

from __future__ import annotations

from typing import ClassVar, Generic, TypeVar

from drivers.serial.frame_stats import BadReason, FrameStats
from gateway.core.errors import ChecksumError, FrameError

__all__ = ["BAD_HEADER", "NOT_A_FRAME", "BinaryFrameStream"]

F = TypeVar("F")

NOT_A_FRAME = 0  # _size: noise that looks like a header; skipped, not counted as a bad frame
BAD_HEADER = -1  # _size: a frame start whose size field is impossible; counted as a bad frame


class BinaryFrameStream(Generic[F]):
    """Finds frames in a byte stream: ``feed(chunk)`` returns the frames it completes.

    Resynchronises after garbage and broken frames one byte at a time (a candidate that fails is
    never skipped a whole frame length), so a truncated frame glued to the next one costs only
    the truncated bytes. ``stats`` counts frames, bad candidates by reason (``checksum``, or
    ``length`` for a size field or tail that does not fit) and skipped bytes; ``last_error`` is
    the FrameError of the latest bad candidate. At most one incomplete frame is kept between
    calls.
    """

    protocol: ClassVar[str]  # for messages: "SDS011"
    header: ClassVar[bytes]  # the bytes every frame starts with
    head_size: ClassVar[int]  # bytes from a frame's start that :meth:`_size` reads

    def __init__(self) -> None:
        self._buf = bytearray()
        self.stats = FrameStats()
        self.last_error: FrameError | None = None

    @property
    def pending(self) -> int:
        """Bytes kept for the next call (the start of a frame not complete yet)."""
        return len(self._buf)

    def clear(self) -> None:
        """Forget bytes kept from earlier calls (after a reconnect)."""
        self._buf.clear()

    def feed(self, data: bytes | bytearray | memoryview) -> list[F]:
        """Add bytes; return the frames completed by them, in order."""
        buf = self._buf
        buf += data
        n = len(buf)
        find = buf.find
        header, head_size = self.header, self.head_size
        size_of, decode = self._size, self._decode
        frames: list[F] = []
        start = 0  # first byte not accounted for (kept, skipped or in a frame)
        pos = 0  # where the next header search begins
        while True:
            j = find(header, pos)
            if j < 0:
                keep = n - _partial_header(buf, header, n - start)
                break
            if j + head_size > n:
                keep = j
                break
            size = size_of(buf, j)
            if size <= 0:
                if size == BAD_HEADER:
                    self._reject(buf[j : j + head_size])
                pos = j + 1
                continue
            end = j + size
            if end > n:
                keep = j
                break
            frame = decode(buf, j, end)
            if frame is None:
                self._reject(buf[j:end])
                pos = j + 1
                continue
            frames.append(frame)
            self.stats.skipped_bytes += j - start
            start = pos = end
        self.stats.skipped_bytes += keep - start
        self.stats.frames += len(frames)
        del buf[:keep]
        return frames

    # -- what each protocol adds -----------------------------------------------------------

    def _size(self, buf: bytearray, at: int) -> int:
        """The size of the frame whose header is at ``at`` (``head_size`` bytes are there), or
        :data:`NOT_A_FRAME` or :data:`BAD_HEADER`."""
        raise NotImplementedError

    def _decode(self, buf: bytearray, at: int, end: int) -> F | None:
        """The frame in ``buf[at:end]``; None when it does not check (fast path, no message)."""
        raise NotImplementedError

    @staticmethod
    def _check(frame: bytearray) -> None:
        """Raise the FrameError (ChecksumError for a checksum) of a rejected candidate."""
        raise NotImplementedError

    def _reject(self, candidate: bytearray) -> None:
        try:
            self._check(candidate)
        except ChecksumError as exc:
            self.stats.bad[BadReason.CHECKSUM] += 1
            self.last_error = exc
        except FrameError as exc:
            self.stats.bad[BadReason.LENGTH] += 1
            self.last_error = exc
        else:  # pragma: no cover - the fast checks and _check disagree: a bug
            raise AssertionError(f"{self.protocol} candidate rejected by the fast path only")


def _partial_header(buf: bytearray, header: bytes, available: int) -> int:
    """How many of the last ``available`` bytes of ``buf`` are the start of a ``header``."""
    for k in range(min(len(header) - 1, available), 0, -1):
        if buf.endswith(header[:k]):
            return k
    return 0
