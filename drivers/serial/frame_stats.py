"""Counters a stream parser keeps: good frames, bad frames by reason, bytes skipped."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = ["BadReason", "FrameStats"]


class BadReason(StrEnum):
    """Why a candidate frame (or line) was rejected."""

    CHECKSUM = "checksum"  # header and length right, checksum wrong (a corrupted byte)
    LENGTH = "length"  # a bogus length field, or the tail is not where the length puts it
    NO_MATCH = "no_match"  # a line that does not match the device's pattern
    TOO_LONG = "too_long"  # a line longer than the parser keeps (no line end in sight)
    VALUE = "value"  # a line that matched but a field is not a number, or is not decodable


@dataclass
class FrameStats:
    """What a stream parser has seen since it was created (or :meth:`reset`).

    ``skipped_bytes`` counts every byte that was not part of a valid frame: garbage between
    frames and the bytes of rejected candidates alike.
    """

    frames: int = 0
    bad: Counter[BadReason] = field(default_factory=Counter)
    skipped_bytes: int = 0

    @property
    def bad_frames(self) -> int:
        """Rejected candidates, whatever the reason."""
        return self.bad.total()

    def copy(self) -> FrameStats:
        """A snapshot (to compare against later)."""
        return FrameStats(self.frames, Counter(self.bad), self.skipped_bytes)

    def since(self, earlier: FrameStats) -> FrameStats:
        """What happened between the snapshot ``earlier`` and now."""
        bad = Counter(self.bad)
        bad.subtract(earlier.bad)
        return FrameStats(
            self.frames - earlier.frames, +bad, self.skipped_bytes - earlier.skipped_bytes
        )

    def reset(self) -> None:
        """Start counting from zero."""
        self.frames = 0
        self.bad.clear()
        self.skipped_bytes = 0

    def describe(self) -> str:
        """``3 bad frame(s) (checksum 2, length 1), 41 byte(s) skipped`` for a log line."""
        reasons = ", ".join(f"{reason.value} {n}" for reason, n in sorted(self.bad.items()))
        detail = f" ({reasons})" if reasons else ""
        return (
            f"{self.frames} good, {self.bad_frames} bad frame(s){detail}, "
            f"{self.skipped_bytes} byte(s) skipped"
        )

    def as_dict(self) -> dict[str, int]:
        """Flat counters, e.g. for a status report."""
        out = {"frames": self.frames, "bad_frames": self.bad_frames}
        out |= {f"bad_{reason.value}": self.bad[reason] for reason in BadReason}
        out["skipped_bytes"] = self.skipped_bytes
        return out
