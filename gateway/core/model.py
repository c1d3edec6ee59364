"""The reading: what every driver produces and every stage after it carries."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from enum import StrEnum
from typing import NamedTuple, overload


class Quality(StrEnum):
    """How far a reading can be trusted.

    ``good``: value read and wall clock known to be synchronised.
    ``clock_unsynced``: value read, but the wall clock was not known to be synchronised
    (a Raspberry Pi has no real-time clock until NTP syncs), so ``ts`` may be wrong;
    the sequence number still orders it correctly.
    """

    GOOD = "good"
    CLOCK_UNSYNCED = "clock_unsynced"


class Sample(NamedTuple):
    """One metric value as a driver decoded it, before it is stamped and stored.

    A named tuple rather than a frozen dataclass, like :class:`Reading`: made for every value
    of every poll, and a frozen dataclass's ``__init__`` costs three times as much."""

    metric: str
    value: float
    unit: str


class Reading(NamedTuple):
    """A stamped sample on its way to the outbox (immutable; a named tuple for speed: at
    BLE rates the gateway makes ~175,000 a second).

    ``ts_ms`` is wall-clock UTC in milliseconds since the epoch. The gateway-wide sequence
    number is assigned by the outbox when the reading is committed, so it is not part of
    this object; :class:`StoredReading` carries it.
    """

    device: str
    metric: str
    value: float
    unit: str
    ts_ms: int
    quality: Quality = Quality.GOOD


class StoredReading(NamedTuple):
    """A reading as the store keeps it: with its sequence number (a named tuple for speed: a
    backlog drain reads hundreds of thousands a second).

    ``value`` is NaN when the device returned a non-finite number (SQLite keeps no NaN)."""

    seq: int
    device: str
    metric: str
    value: float
    unit: str
    ts_ms: int
    quality: Quality


#: A stored reading as SQLite returns it, for the uplink's hot path (a backlog drain reads
#: hundreds of thousands a second, and building a :class:`StoredReading` for each costs as
#: much as the read): ``(seq, device, metric, value, unit, ts_ms, quality)`` in
#: :class:`StoredReading`'s order, with ``None`` for a non-finite value and the quality's text.
#: A :class:`StoredReading` is one too (NaN for a non-finite value; a :class:`Quality` is a
#: ``str``), so consumers of rows accept both: test for ``None`` *and* non-finite.
StoredRow = tuple[int, str, str, float | None, str, int, str]


class SeriesName(NamedTuple):
    """What the readings of one series share: a device's metric, its unit and the quality."""

    device: str
    metric: str
    unit: str
    quality: str


class SeriesTable:
    """Series by the small integer a store numbers them with (gateway/store/outbox.py).

    An id names the same series for the life of the table object (a store that forgets series
    makes a new table), so a consumer may cache what it derives from a series per (table, id).
    """

    __slots__ = ("__weakref__", "names")

    def __init__(self, names: dict[int, SeriesName] | None = None) -> None:
        self.names: dict[int, SeriesName] = {} if names is None else names


#: A stored reading as a store reads it: ``(seq, series id, value, ts_ms)``.
PackedRow = tuple[int, int, float | None, int]


class SeriesRows(Sequence[StoredRow]):
    """Stored rows as a store reads them, packed (``(seq, series id, value, ts_ms)``) with the
    :class:`SeriesTable` naming their series: a sequence of :class:`StoredRow` made on access,
    so an encoder that knows this class (gateway/uplink/envelope.py) skips making them."""

    __slots__ = ("packed", "table")

    def __init__(self, packed: list[PackedRow], table: SeriesTable) -> None:
        self.packed = packed
        self.table = table

    def __len__(self) -> int:
        return len(self.packed)

    @overload
    def __getitem__(self, index: int) -> StoredRow: ...

    @overload
    def __getitem__(self, index: slice) -> list[StoredRow]: ...

    def __getitem__(self, index: int | slice) -> StoredRow | list[StoredRow]:
        if isinstance(index, slice):
            return list(SeriesRows(self.packed[index], self.table))
        seq, series, value, ts_ms = self.packed[index]
        device, metric, unit, quality = self.table.names[series]
        return seq, device, metric, value, unit, ts_ms, quality

    def __iter__(self) -> Iterator[StoredRow]:
        names = self.table.names
        for seq, series, value, ts_ms in self.packed:
            device, metric, unit, quality = names[series]
            yield seq, device, metric, value, unit, ts_ms, quality

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment] # a sequence, compared by content

    def __repr__(self) -> str:
        return f"SeriesRows({list(self)!r})"


class Backlog(NamedTuple):
    """Where a store of readings stands: everything up to ``acked_seq`` is delivered (or
    dropped, or purged), and readings up to ``last_seq`` are committed."""

    acked_seq: int
    last_seq: int
