"""The SQLite outbox: readings committed in groups, deleted only once the broker has them.

Threading: one dedicated thread owns the SQLite connection and runs every statement, so the
event loop never waits on disk. The event loop side keeps a bounded list of readings waiting
for the next group commit.

When that list is full (the disk is slower than the devices), ``put_many`` waits: poll tasks are
held back (their slots count as overruns) and nothing is dropped in memory. Dropping happens
only in the database, oldest first, when it exceeds ``max_bytes``, and every dropped reading is
counted in the ``dropped`` counter that survives restarts.

Sequence numbers are assigned at commit, strictly increasing, and never reused: the next
number is kept in the ``meta`` table and advanced in the same transaction as the inserts.
Every outbox also has an ``epoch``, a random id made with it and never changed: a new outbox
(another path, a quarantined one replaced, a new SD card) starts ``seq`` at 1 again under a new
epoch, so ``(gateway, epoch, seq)`` identifies a reading for good.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

from gateway.config.model import OutboxConfig
from gateway.core.errors import OutboxForeign, OutboxFull, StoreError
from gateway.core.model import Backlog, Quality, Reading, StoredReading, StoredRow
from gateway.store.outbox_files import (
    COMPANIONS,
    PRIVATE_MODE,
    OutboxLock,
    open_companion,
    refuse_symlink,
)
from gateway.store.reserve import DiskReserve

log = logging.getLogger(__name__)

#: A pause in arriving readings this long ends a burst: commit it without waiting longer.
QUIET_COMMIT = 0.005

T = TypeVar("T")

#: ``PRAGMA application_id`` of a streetgate outbox ("SGTW"): tells it from other SQLite files.
APPLICATION_ID = 0x53475457

#: The first 16 bytes of every SQLite database file.
SQLITE_HEADER = b"SQLite format 3\x00"


#: Named schema migrations, applied in order; ``PRAGMA user_version`` counts those applied.
MIGRATIONS: tuple[tuple[str, str], ...] = (
    (
        "0001_readings_and_meta",
        """
        CREATE TABLE readings (
            seq INTEGER PRIMARY KEY,   -- gateway-wide sequence number, the dedup key
            ts_ms INTEGER NOT NULL,    -- wall-clock UTC of the reading, ms since the epoch
            device TEXT NOT NULL,
            body TEXT NOT NULL         -- the reading as JSON, exactly as it is published
        );
        CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
        INSERT INTO meta (key, value) VALUES ('next_seq', 1), ('dropped', 0);
        """,
    ),
    (
        # Readings a technician deleted with `streetgate buffer purge` (gateway/store/reader.py),
        # so a gap at the platform is explainable. OR IGNORE: purge may have added the key
        # to an outbox before this migration ran.
        "0002_purged_counter",
        "INSERT OR IGNORE INTO meta (key, value) VALUES ('purged', 0);",
    ),
    (
        # The outbox's epoch: 63 random bits (SQLite's random(), seeded from the OS), made once
        # with the outbox (or when an older one is migrated) and never changed; shown as 16 hex
        # digits (``Outbox.epoch``), part of the platform's dedup key.
        "0003_outbox_epoch",
        "INSERT INTO meta (key, value) VALUES ('epoch', random() & 9223372036854775807);",
    ),
    (
        # Typed rows instead of each reading's published JSON: the wire formats belong to the
        # uplink (gateway/uplink/envelope.py, senml.py), which encodes at publish time. Every
        # stored reading is converted, so an outbox of the previous version loses nothing.
        "0004_typed_readings",
        """
        CREATE TABLE readings_typed (
            seq INTEGER PRIMARY KEY,   -- gateway-wide sequence number, the dedup key
            device TEXT NOT NULL,
            metric TEXT NOT NULL,
            value REAL,                -- NULL: the device returned a non-finite number
            unit TEXT NOT NULL,
            ts_ms INTEGER NOT NULL,    -- wall-clock UTC of the reading, ms since the epoch
            quality TEXT NOT NULL      -- gateway.core.model.Quality
        );
        -- Defaults rather than a failed migration (which would quarantine the whole outbox)
        -- for a body that is not the JSON this gateway wrote.
        INSERT INTO readings_typed (seq, device, metric, value, unit, ts_ms, quality)
            SELECT seq, device, coalesce(json_extract(b, '$.metric'), ''),
                   json_extract(b, '$.value'), coalesce(json_extract(b, '$.unit'), ''), ts_ms,
                   coalesce(json_extract(b, '$.quality'), 'good')
            FROM (SELECT seq, device, ts_ms,
                         CASE WHEN json_valid(body) THEN body ELSE '{}' END AS b
                  FROM readings);
        DROP TABLE readings;
        ALTER TABLE readings_typed RENAME TO readings;
        """,
    ),
)

#: What an outbox epoch looks like (see migration 0003_outbox_epoch).
EPOCH_PATTERN = r"^[0-9a-f]{16}$"


#: Seconds between attempts to commit while the disk is full.
DISK_FULL_RETRY = 1.0


def wal_checkpoint_pages(disk_reserve: int, page_size: int = 4096) -> int:
    """WAL pages between automatic checkpoints: SQLite's 1000 (4 MB), or fewer so the WAL
    stays within half the disk reserve; a full disk can then always be checkpointed."""
    if disk_reserve == 0:
        return 1000
    return max(16, min(1000, disk_reserve // 2 // page_size))


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """What the outbox holds right now."""

    depth: int  # readings stored and not yet acknowledged by the broker
    first_seq: int | None
    last_seq: int  # highest sequence number ever committed (0 before the first)
    used_bytes: int
    max_bytes: int
    dropped: int  # readings dropped because the outbox was full, since it was created
    pending: int  # readings waiting in memory for the next group commit
    oldest_ts_ms: int | None
    purged: int = 0  # readings deleted with `streetgate buffer purge`, since it was created


class Outbox:
    """Store-and-forward buffer. Use as ``async with Outbox(cfg) as outbox`` and run ``run()``.

    ``lock``: the outbox's lock, already held by the caller (the supervisor keeps it across
    in-process restarts); None: the outbox takes it on entry and drops it on exit.
    """

    def __init__(self, config: OutboxConfig, *, lock: OutboxLock | None = None) -> None:
        self._config = config
        self._lock = lock if lock is not None else OutboxLock(config.path)
        self._own_lock = lock is None
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._pending: list[Reading] = []
        self._arrivals = 0  # put_many() calls so far: the commit loop sees a burst end
        self._arrived = asyncio.Event()  # something to commit (readings or an ack)
        self._batch_full = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()
        self._committed = asyncio.Event()  # replaced after every commit that added readings
        self._next_seq = 1
        self._epoch = ""
        self._first_seq: int | None = None
        self._dropped = 0
        self._used_bytes = 0
        self._acked = 0  # highest sequence number the broker acknowledged
        self._sent = 0  # highest sequence number handed to the broker (acked or not)
        self._ack_written = 0
        self._commits = 0
        self._flushes = 0  # commit attempts finished (committed or refused for a full disk)
        self._flushing = False
        self._closing = False
        self.disk_full = False
        self.quarantined: Path | None = None  # where a damaged outbox found at start went
        self._reserve = DiskReserve(
            config.path.with_name(config.path.name + ".reserve"), config.disk_reserve
        )

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox-db")
        await self._in_db(self._open)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closing = True
        try:
            await self._flush()  # a clean stop loses nothing that reached the outbox
            await self._in_db(self._close)
        finally:
            assert self._executor is not None
            # Every job has been awaited; the thread ends by itself (joining it would block).
            self._executor.shutdown(wait=False)
            self._executor = None

    async def run(self) -> None:
        """Group commit loop.

        Readings are committed ``commit_interval`` after the first of them arrived, when
        ``commit_max_readings`` are waiting, or as soon as no reading arrived for
        ``QUIET_COMMIT`` (a burst of polls has been answered): a SIGKILL or power cut then loses
        as few readings as possible without a commit per reading. Acknowledgements alone wait
        the whole interval: deleting delivered readings is not urgent.
        """
        interval = self._config.commit_interval
        quiet = min(QUIET_COMMIT, interval)
        loop = asyncio.get_running_loop()
        while True:
            await self._arrived.wait()
            deadline = loop.time() + interval
            while len(self._pending) < self._config.commit_max_readings:
                seen = self._arrivals
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    async with asyncio.timeout(min(quiet, remaining)):
                        await self._batch_full.wait()
                except TimeoutError:
                    pass
                if self._pending and self._arrivals == seen:
                    break
            await self._flush()

    # -- the producers' side -------------------------------------------------------------

    async def put_many(self, readings: Sequence[Reading]) -> None:
        """Queue readings for the next group commit; waits while the queue is full."""
        while self.backpressure:
            self._space.clear()
            await self._space.wait()
        self._pending.extend(readings)
        self._arrivals += 1
        self._arrived.set()
        if len(self._pending) >= self._config.commit_max_readings:
            self._batch_full.set()

    # -- the forwarder's side ------------------------------------------------------------

    @property
    def epoch(self) -> str:
        """This outbox's epoch: with the gateway id and ``seq``, a reading's identity."""
        return self._epoch

    @property
    def last_seq(self) -> int:
        """Highest sequence number committed so far (0 if none ever was)."""
        return self._next_seq - 1

    @property
    def acked_seq(self) -> int:
        """Highest sequence number known to be delivered, dropped or deleted."""
        return self._acked

    async def wait_committed(self, after_seq: int) -> None:
        """Return once a reading with a sequence number above ``after_seq`` is committed."""
        while self.last_seq <= after_seq:
            await self._committed.wait()

    def backlog(self) -> Backlog:
        """The acknowledged and the last committed sequence number (for the forwarder)."""
        return Backlog(self._acked, self.last_seq)

    async def read_batch(self, after_seq: int, upto_seq: int, limit: int) -> list[StoredReading]:
        """Committed readings with ``after_seq < seq <= upto_seq``, in order."""
        rows = await self._in_db(self._select, after_seq, upto_seq, limit)
        return [stored_reading(row) for row in rows]

    async def fetch(self, after_seq: int, upto_seq: int, limit: int) -> list[StoredRow]:
        """``read_batch`` for the forwarder, which publishes them now: they are marked sent.

        Rows as SQLite returns them (no StoredReading per row: a drain reads 10^5 a second)."""
        rows = await self._in_db(self._select, after_seq, upto_seq, limit)
        if rows:
            self.mark_sent(rows[-1][0])
        return rows

    def mark_sent(self, upto_seq: int) -> None:
        """Readings up to ``upto_seq`` were handed to the broker: never drop them unacked."""
        self._sent = max(self._sent, upto_seq)

    def ack(self, upto_seq: int) -> None:
        """The broker has every reading up to ``upto_seq``: delete them with the next commit."""
        if upto_seq > self._acked:
            self._acked = upto_seq
            self._arrived.set()

    async def stats(self) -> OutboxStats:
        """Current depth, size, drops and the oldest reading's timestamp."""
        # From the database, not from memory: `streetgate buffer purge` may have deleted
        # readings since the last commit.
        depth, first, oldest, purged = await self._in_db(self._stored_figures)
        return OutboxStats(
            depth=depth,
            first_seq=first,
            last_seq=self.last_seq,
            used_bytes=self._used_bytes,
            max_bytes=self._config.max_bytes,
            dropped=self._dropped,
            pending=len(self._pending),
            oldest_ts_ms=oldest,
            purged=purged,
        )

    @property
    def backpressure(self) -> bool:
        """Whether producers wait in ``put_many`` now (the queue for the next commit is full)."""
        return len(self._pending) >= self._config.queue_size

    def progress(self) -> int | None:
        """For the watchdog: None while no reading waits and no commit runs, else a count that
        grows with every finished commit attempt (a full disk counts: it is retried, not stuck)."""
        if not (self._pending or self._flushing):
            return None
        return self._flushes

    # -- event-loop side of a commit ------------------------------------------------------

    async def _flush(self) -> None:
        batch, self._pending = self._pending, []
        self._arrived.clear()
        self._batch_full.clear()
        self._space.set()
        ack = self._acked if self._acked > self._ack_written else 0
        if not batch and not ack:
            return
        self._flushing = True
        try:
            first, dropped_now = await self._in_db(self._write, batch, ack)
        except OutboxFull:
            self._flushes += 1
            # Nothing committed; keep the batch (in memory, bounded by queue_size) and retry
            # after a pause: acknowledged readings being deleted will free space.
            self._pending[:0] = batch
            self._arrived.set()
            if not self.disk_full:
                log.error(  # noqa: TRY400 - an expected condition, not a bug: no traceback
                    "outbox %s: disk full; %d readings held in memory until there is room",
                    self._config.path,
                    len(self._pending),
                )
            self.disk_full = True
            await asyncio.sleep(DISK_FULL_RETRY)
            return
        finally:
            self._flushing = False
        self._flushes += 1
        if self.disk_full:
            log.warning("outbox %s: writing again after the disk was full", self._config.path)
            self.disk_full = False
        if ack:
            self._ack_written = ack
        self._first_seq = first
        # Everything below the first stored reading was delivered or dropped.
        self._acked = max(self._acked, (first - 1) if first is not None else self.last_seq)
        if dropped_now:
            self._dropped += dropped_now
            log.warning(
                "outbox full (its %d-byte limit or the disk): dropped the %d oldest unsent "
                "readings (%d in total)",
                self._config.max_bytes,
                dropped_now,
                self._dropped,
            )
        if batch:
            self._committed.set()
            self._committed = asyncio.Event()

    async def _in_db(self, func: Callable[..., T], *args: object) -> T:
        """Run ``func`` on the database thread. A cancelled caller still waits for it to finish,
        so the in-memory state never disagrees with what was committed."""
        if self._executor is None:
            raise StoreError("the outbox is not open")
        future = asyncio.get_running_loop().run_in_executor(self._executor, func, *args)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            await asyncio.wait([future])
            raise

    # -- database thread -----------------------------------------------------------------

    def _open(self) -> None:
        path = self._config.path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create outbox folder {path.parent}: {exc.strerror}") from exc
        # The lock comes first: nothing here is written (nor quarantined) by a second gateway.
        if self._own_lock:
            try:
                self._lock.acquire()
            except OSError as exc:
                raise StoreError(f"cannot lock outbox {path}: {exc.strerror}") from exc
        try:
            self._open_locked(path)
        except BaseException:
            self._close()
            if self._own_lock:
                self._lock.release()
            raise

    def _open_locked(self, path: Path) -> None:
        refuse_symlink(path, "outbox")
        for suffix in COMPANIONS:
            refuse_symlink(path.with_name(path.name + suffix), f"outbox's {suffix} file")
        try:
            self._conn = self._connect_checked(path)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open outbox {path}: {exc}") from exc
        except OSError as exc:
            raise StoreError(f"cannot open outbox {path}: {exc.strerror}") from exc
        conn = self._conn
        self._next_seq = _meta(conn, "next_seq")
        self._epoch = f"{_meta(conn, 'epoch'):016x}"
        self._dropped = _meta(conn, "dropped")
        first = conn.execute("SELECT min(seq) FROM readings").fetchone()[0]
        self._first_seq = first
        self._acked = self._ack_written = (first - 1) if first is not None else self._next_seq - 1
        self._used_bytes = self._measure_bytes()
        self._reserve.ensure()
        log.info(
            "outbox %s open: epoch %s, %d readings waiting, next sequence number %d,"
            " %d dropped so far",
            path,
            self._epoch,
            0 if first is None else self._next_seq - first,
            self._next_seq,
            self._dropped,
        )

    def _connect_checked(self, path: Path) -> sqlite3.Connection:
        """Open the database; a corrupt file is moved aside (never deleted) and a fresh one made.

        A file that is not a streetgate outbox is refused (OutboxForeign) and left as it is.
        """
        _refuse_foreign(path)
        try:
            conn = self._connect(path)
            ok = conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
            if ok:
                return conn
            conn.close()
            reason = "quick_check failed"
        except sqlite3.DatabaseError as exc:
            reason = str(exc)
        quarantine = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
        log.error(
            "outbox %s is damaged (%s); moved it to %s and started a fresh one",
            path,
            reason,
            quarantine,
        )
        path.rename(quarantine)
        os.chmod(quarantine, PRIVATE_MODE, follow_symlinks=False)  # it holds readings
        self.quarantined = quarantine
        for suffix in ("-wal", "-shm"):
            side = path.with_name(path.name + suffix)
            if side.exists():
                moved = quarantine.with_name(quarantine.name + suffix)
                side.rename(moved)
                os.chmod(moved, PRIVATE_MODE, follow_symlinks=False)
        return self._connect(path)

    def _connect(self, path: Path) -> sqlite3.Connection:
        # Create (or fix) the file 0600 before SQLite opens it: SQLite gives the -wal and -shm
        # files it creates the database file's mode, whatever the umask.
        os.close(open_companion(path, os.O_RDWR, "outbox"))
        for suffix in ("-wal", "-shm"):
            side = path.with_name(path.name + suffix)
            if side.exists():
                os.close(open_companion(side, os.O_RDWR, f"outbox's {suffix} file"))
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        # Before the first table: lets a full disk get space back (see _make_room).
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._config.synchronous.value.upper()}")
        conn.execute("PRAGMA journal_size_limit=4194304")  # truncate the WAL after checkpoints
        conn.execute(f"PRAGMA wal_autocheckpoint={wal_checkpoint_pages(self._config.disk_reserve)}")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for number, (name, sql) in enumerate(MIGRATIONS[version:], start=version + 1):
            log.info("outbox %s: applying migration %s", path, name)
            conn.executescript(f"BEGIN; {sql}; PRAGMA user_version={number}; COMMIT;")
        if conn.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
            conn.execute(f"PRAGMA application_id={APPLICATION_ID}")  # new, or made before 0.x
        return conn

    def _close(self) -> None:
        try:
            self._close_db()
        finally:
            if self._own_lock:
                self._lock.release()

    def _close_db(self) -> None:
        if self._conn is not None:
            try:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.OperationalError as exc:  # a full disk: the WAL stays, nothing lost
                log.warning("outbox %s: final checkpoint failed: %s", self._config.path, exc)
            finally:
                self._conn.close()
                self._conn = None

    def _write(self, batch: list[Reading], ack: int) -> tuple[int | None, int]:
        """One transaction: insert the batch, delete acknowledged readings; then enforce the
        size limit. Returns (first stored seq or None, readings dropped now)."""
        conn = self._conn
        assert conn is not None
        start = self._next_seq
        rows = [
            (seq, r.device, r.metric, r.value, r.unit, r.ts_ms, r.quality.value)
            for seq, r in enumerate(batch, start=start)
        ]
        dropped_now = 0
        try:
            try:
                self._commit(rows, ack, start)
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode != sqlite3.SQLITE_FULL:
                    raise
                log.error(  # noqa: TRY400 - an expected condition, not a bug: no traceback
                    "outbox %s: the disk is full; dropping the oldest readings to make room",
                    self._config.path,
                )
                dropped_now += self._make_room(len(rows))
                try:
                    self._commit(rows, ack, start)
                except sqlite3.OperationalError as again:
                    if again.sqlite_errorcode == sqlite3.SQLITE_FULL:
                        raise OutboxFull(f"outbox {self._config.path}: disk full") from again
                    raise
            self._used_bytes = self._measure_bytes()
            if self._used_bytes > self._config.max_bytes:
                dropped_now += self._drop_oldest()
        except sqlite3.Error as exc:
            raise StoreError(f"outbox write failed: {exc}") from exc
        first = conn.execute("SELECT min(seq) FROM readings").fetchone()[0]
        return first, dropped_now

    def _commit(self, rows: list[_Row], ack: int, start: int) -> None:
        conn = self._conn
        assert conn is not None
        try:
            conn.execute("BEGIN IMMEDIATE")
            if ack:
                conn.execute("DELETE FROM readings WHERE seq <= ?", (ack,))
            if rows:
                conn.executemany(
                    "INSERT INTO readings (seq, device, metric, value, unit, ts_ms, quality)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
                conn.execute(
                    "UPDATE meta SET value = ? WHERE key = 'next_seq'", (start + len(rows),)
                )
            conn.execute("COMMIT")
        except sqlite3.Error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self._next_seq = start + len(rows)
        self._commits += 1

    def _make_room(self, needed_rows: int) -> int:
        """After SQLITE_FULL: release the disk reserve, fold the WAL into the database and
        truncate it (the WAL never outgrows half the reserve), drop the oldest unsent readings
        (a tenth of them, at least as many as are waiting), give their pages back to the
        filesystem and make the reserve again. Returns how many readings were dropped."""
        conn = self._conn
        assert conn is not None
        self._reserve.release()
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            dropped = self._drop_oldest(minimum=needed_rows, fraction=0.1)
            # Hand the dropped readings' pages back to the filesystem (the file shrinks at the
            # checkpoint), so the reserve can be made again.
            conn.execute("PRAGMA incremental_vacuum")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            # The reserve must fit again (without it the next full disk could not even be
            # checkpointed), and a commit's WAL beside it (else the retried commit fails again):
            # drop more, a tenth each time, while the reserve is still released.
            while self._free_bytes() < self._reserve.size + self._commit_headroom():
                more = self._drop_oldest(minimum=1, fraction=0.1)
                if more == 0:
                    break
                dropped += more
                conn.execute("PRAGMA incremental_vacuum")
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._reserve.ensure()
        except sqlite3.OperationalError as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if exc.sqlite_errorcode == sqlite3.SQLITE_FULL:
                raise OutboxFull(f"outbox {self._config.path}: disk full, cannot drop") from exc
            raise
        return dropped

    def _free_bytes(self) -> int:
        st = os.statvfs(self._config.path.parent)
        return st.f_bavail * st.f_frsize

    def _commit_headroom(self) -> int:
        """Free space a commit needs: the WAL is checkpointed before it outgrows half the
        reserve (wal_checkpoint_pages), and one transaction may pass that threshold once."""
        return max(64 * 1024, self._config.disk_reserve // 2)

    def _drop_oldest(self, minimum: int = 1, fraction: float | None = None) -> int:
        """Drop the oldest readings that were never handed to the broker.

        Readings published and awaiting PUBACK may already be at the platform (only the ack
        was lost), so they are kept: they are resent first after a reconnect, and the drop
        counter stays exactly the number of readings the platform will never see.
        """
        conn = self._conn
        assert conn is not None
        floor = self._sent
        (depth,) = conn.execute("SELECT count(*) FROM readings WHERE seq > ?", (floor,)).fetchone()
        if depth == 0:
            return 0
        if fraction is None:
            target = self._config.max_bytes * 0.9  # leave room: do not drop on every commit
            fraction = (self._used_bytes - target) / self._used_bytes
        count = max(minimum, min(depth, math.ceil(depth * fraction)))
        conn.execute("BEGIN IMMEDIATE")
        deleted = conn.execute(
            "DELETE FROM readings WHERE seq IN "
            "(SELECT seq FROM readings WHERE seq > ? ORDER BY seq LIMIT ?)",
            (floor, count),
        ).rowcount
        conn.execute("UPDATE meta SET value = value + ? WHERE key = 'dropped'", (deleted,))
        conn.execute("COMMIT")
        self._used_bytes = self._measure_bytes()
        return int(deleted)

    def _measure_bytes(self) -> int:
        conn = self._conn
        assert conn is not None
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)

    def _select(self, after_seq: int, upto_seq: int, limit: int) -> list[StoredRow]:
        conn = self._conn
        assert conn is not None
        try:
            rows: list[StoredRow] = conn.execute(
                SELECT_READINGS, (after_seq, upto_seq, limit)
            ).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"outbox read failed: {exc}") from exc
        return rows

    def _stored_figures(self) -> tuple[int, int | None, int | None, int]:
        """(depth, first stored seq, its timestamp, readings purged so far)."""
        conn = self._conn
        assert conn is not None
        (depth,) = conn.execute("SELECT count(*) FROM readings").fetchone()
        row = conn.execute("SELECT seq, ts_ms FROM readings ORDER BY seq LIMIT 1").fetchone()
        purged = _meta(conn, "purged")
        if row is None:
            return int(depth), None, None, purged
        return int(depth), int(row[0]), int(row[1]), purged


#: Valid page size fields of a SQLite header (1 stands for 65536).
_PAGE_SIZES = frozenset({1} | {1 << n for n in range(9, 16)})


def _refuse_foreign(path: Path) -> None:
    """OutboxForeign unless the file at ``path`` is missing, empty, or a streetgate outbox
    (its application_id, or, made before it was set, its tables). A SQLite file too damaged to
    tell is taken for a damaged outbox (quarantined by the caller)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        header = os.pread(fd, 100, 0)
    finally:
        os.close(fd)
    if not header:
        return
    if not header.startswith(SQLITE_HEADER) or len(header) < 72:
        raise OutboxForeign(path, "not a SQLite database, so not a streetgate outbox")
    page_size = int.from_bytes(header[16:18], "big")
    if header[21:24] != b"\x40\x20\x20" or page_size not in _PAGE_SIZES:
        return  # the header itself is damaged: quarantined as a damaged outbox
    application_id = int.from_bytes(header[68:72], "big")
    if application_id == APPLICATION_ID:
        return
    if application_id != 0:
        raise OutboxForeign(
            path, f"a SQLite database of another application (application_id {application_id:#x})"
        )
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            tables = {
                r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type='table'")
            }
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        return  # too damaged to tell: quarantined as a damaged outbox
    if tables and not {"readings", "meta"} <= tables:
        raise OutboxForeign(
            path, f"a SQLite database without streetgate's tables (its tables: {sorted(tables)})"
        )


def _meta(conn: sqlite3.Connection, key: str) -> int:
    return int(conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0])


#: A row of the readings table as it is inserted: (seq, device, metric, value, unit, ts_ms,
#: quality).
_Row = tuple[int, str, str, float, str, int, str]

#: The stored readings in a range, columns in StoredReading's order (the reader uses it too).
SELECT_READINGS = (
    "SELECT seq, device, metric, value, unit, ts_ms, quality FROM readings"
    " WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?"
)

_QUALITY = {q.value: q for q in Quality}
_NAN = math.nan


def stored_reading(row: StoredRow) -> StoredReading:
    """A StoredReading from a row of the readings table (NULL value: a non-finite one)."""
    seq, device, metric, value, unit, ts_ms, quality = row
    return StoredReading(
        seq, device, metric, _NAN if value is None else value, unit, ts_ms, _QUALITY[quality]
    )
