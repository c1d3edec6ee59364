"""The outbox as local tools see it: a status, a chunked export and a chunked purge.

All of it is safe while the gateway runs. The outbox is in WAL mode, where readers never block
the writer: status and export open the file read-only (``mode=ro``) and never change it, and
export reads in chunks of ``EXPORT_CHUNK`` readings, each its own short read transaction, so
the gateway's checkpoints are not held up by a long export. Purge is the only writer here: it
deletes in chunks of ``PURGE_CHUNK`` readings, one short transaction each, and waits up to
``BUSY_TIMEOUT`` for the gateway's write lock instead of failing; so the gateway, whose own
writes wait at most 5 s for the lock, is never held up for long.

What purge leaves behind for the gateway (see gateway/store/outbox.py and
gateway/uplink/forwarder.py):
the gateway never reuses a sequence number (``next_seq`` is untouched), it re-reads the first
stored sequence number from the database, and the forwarder skips readings that have gone.
Every purged reading is counted in ``meta.purged``, so a gap at the platform is explainable.

Blocking: these functions are for the command line, not for the gateway's event loop.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from gateway.core.errors import OutboxDamaged, OutboxMissing, StoreError
from gateway.core.model import StoredReading
from gateway.store.outbox import MIGRATIONS, SELECT_READINGS, stored_reading

__all__ = [
    "BUSY_TIMEOUT",
    "EXPORT_CHUNK",
    "EXPORT_COLUMNS",
    "PURGE_CHUNK",
    "BufferStatus",
    "PurgePlan",
    "buffer_status",
    "exporting",
    "integrity_problems",
    "plan_purge",
    "purge",
]

EXPORT_CHUNK = 5000
PURGE_CHUNK = 5000
BUSY_TIMEOUT = 10.0  # seconds purge waits for the gateway's write lock

#: Export columns, in order: the fields of a reading as published (docs/mqtt.md).
#: The migration that made stored readings readable by name in the ``stored_readings`` view
#: (gateway/store/outbox.py), which export reads.
TYPED_ROWS_VERSION = next(
    n for n, (name, _) in enumerate(MIGRATIONS, start=1) if name == "0005_series"
)

EXPORT_COLUMNS = ("seq", "device", "metric", "value", "unit", "ts", "quality")

_DAMAGED = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}


@dataclass(frozen=True, slots=True)
class BufferStatus:
    """What the outbox file holds, read in one read transaction."""

    path: Path
    schema_version: int
    depth: int  # readings stored
    first_seq: int | None  # lowest stored
    last_seq: int | None  # highest stored
    last_committed_seq: int  # highest ever committed (next_seq - 1)
    oldest_ts_ms: int | None
    newest_ts_ms: int | None
    used_bytes: int  # (page_count - freelist_count) * page_size
    db_file_bytes: int
    wal_file_bytes: int
    dropped: int  # dropped by the gateway because the outbox was full
    purged: int  # deleted with ``streetgate buffer purge``


@dataclass(frozen=True, slots=True)
class PurgePlan:
    """What a purge up to ``last_seq`` deletes, as stated to the technician."""

    count: int
    first_seq: int | None
    last_seq: int | None
    first_ts_ms: int | None
    last_ts_ms: int | None


def _connect(path: Path, *, write: bool) -> Database:
    if not path.exists():
        raise OutboxMissing(path, "the gateway creates it when it first runs")
    mode = "rw" if write else "ro"
    try:
        conn = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode={mode}",
            uri=True,
            isolation_level=None,  # transactions are explicit below
            timeout=BUSY_TIMEOUT,
        )
    except sqlite3.Error as exc:
        raise _translate(path, exc) from exc
    return Database(conn, recursive_triggers=False, execute_plugins=False)


def _translate(path: Path, exc: sqlite3.Error) -> StoreError:
    """The one place sqlite3 errors of the tools become streetgate errors."""
    code = getattr(exc, "sqlite_errorcode", None)  # absent on errors not from SQLite itself
    primary = code & 0xFF if isinstance(code, int) else None
    if primary in _DAMAGED:
        return OutboxDamaged(path, str(exc))
    if primary == sqlite3.SQLITE_BUSY:
        return StoreError(
            f"outbox {path} stayed locked for {BUSY_TIMEOUT:g}s (the gateway is writing)"
        )
    if primary in {sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM}:
        return StoreError(
            f"cannot open outbox {path}: {exc} (run as the user the gateway runs as; reading"
            " needs write access to its folder for SQLite's -shm file)"
        )
    return StoreError(f"outbox {path}: {exc}")


@contextmanager
def _opened(path: Path, *, write: bool = False) -> Iterator[Database]:
    db = _connect(path, write=write)
    try:
        _check_schema(path, db)
        yield db
    except sqlite3.Error as exc:
        raise _translate(path, exc) from exc
    finally:
        db.close()


def _check_schema(path: Path, db: Database) -> None:
    tables = set(db.table_names())
    if not tables:
        raise OutboxMissing(path, "the file is empty; the gateway sets it up when it starts")
    if not {"readings", "meta"} <= tables:
        raise StoreError(f"{path} is not a streetgate outbox (its tables: {sorted(tables)})")


@contextmanager
def _read_transaction(db: Database) -> Iterator[None]:
    """One snapshot for several queries; kept short (it delays checkpoints, not writes)."""
    db.execute("BEGIN")
    try:
        yield
    finally:
        db.execute("COMMIT")


def _scalar(db: Database, sql: str, params: tuple[Any, ...] = ()) -> Any:
    row = next(db.query(sql, params), None)
    return None if row is None else next(iter(row.values()))


def _meta(db: Database, key: str) -> int:
    value = _scalar(db, "SELECT value FROM meta WHERE key = ?", (key,))
    return 0 if value is None else int(value)


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def buffer_status(path: Path) -> BufferStatus:
    """Depth, range, size and counters of the outbox at ``path``; never changes the file."""
    with _opened(path) as db, _read_transaction(db):
        depth = int(_scalar(db, "SELECT count(*) FROM readings"))
        first = next(db.query("SELECT seq, ts_ms FROM readings ORDER BY seq LIMIT 1"), None)
        last = next(db.query("SELECT seq, ts_ms FROM readings ORDER BY seq DESC LIMIT 1"), None)
        pages = int(_scalar(db, "PRAGMA page_count"))
        free = int(_scalar(db, "PRAGMA freelist_count"))
        page_size = int(_scalar(db, "PRAGMA page_size"))
        return BufferStatus(
            path=path,
            schema_version=int(_scalar(db, "PRAGMA user_version")),
            depth=depth,
            first_seq=None if first is None else int(first["seq"]),
            last_seq=None if last is None else int(last["seq"]),
            last_committed_seq=max(0, _meta(db, "next_seq") - 1),
            oldest_ts_ms=None if first is None else int(first["ts_ms"]),
            newest_ts_ms=None if last is None else int(last["ts_ms"]),
            used_bytes=(pages - free) * page_size,
            db_file_bytes=_file_size(path),
            wal_file_bytes=_file_size(path.with_name(path.name + "-wal")),
            dropped=_meta(db, "dropped"),
            purged=_meta(db, "purged"),
        )


def integrity_problems(path: Path) -> list[str]:
    """SQLite's quick_check of the outbox, read-only: an empty list when it is sound."""
    with _opened(path) as db:
        rows = [str(next(iter(r.values()))) for r in db.query("PRAGMA quick_check")]
    return [] if rows == ["ok"] else rows


@contextmanager
def exporting(
    path: Path,
    *,
    since_seq: int = 0,
    device: str | None = None,
    chunk: int = EXPORT_CHUNK,
) -> Iterator[Iterator[StoredReading]]:
    """Stored readings with ``seq > since_seq`` (of ``device`` if given), in sequence order:
    ``with exporting(path) as readings: ...``.

    The outbox is opened on entry (a missing or damaged one raises there, before anything is
    written) and closed on exit; the rows are read as they are consumed, a chunk per read
    transaction. The export ends at the highest sequence number stored when it starts, so a
    running gateway does not make it endless; readings the gateway delivers (and deletes)
    while it runs may be missing from it.
    """
    with _opened(path) as db:
        version = int(_scalar(db, "PRAGMA user_version"))
        if version < TYPED_ROWS_VERSION:
            raise StoreError(
                f"outbox {path} was written by an older streetgate (schema version {version}):"
                " start the gateway once to upgrade it, then read it"
            )
        end = _scalar(db, "SELECT max(seq) FROM readings")
        yield _chunks(db, since_seq, end, device=device, chunk=chunk)


def _chunks(
    db: Database, cursor: int, end: int | None, *, device: str | None, chunk: int
) -> Iterator[StoredReading]:
    if end is None:
        return
    sql = SELECT_READINGS
    if device is not None:
        sql = sql.replace(" ORDER BY", " AND device = ? ORDER BY")
    while True:
        params = (cursor, end, *(() if device is None else (device,)), chunk)
        rows = [stored_reading(row) for row in db.execute(sql, params).fetchall()]
        yield from rows
        if len(rows) < chunk:
            return
        cursor = rows[-1].seq


def plan_purge(path: Path, upto_seq: int | None = None) -> PurgePlan:
    """What ``purge`` would delete now: every stored reading, or those up to ``upto_seq``."""
    with _opened(path) as db, _read_transaction(db):
        bound = upto_seq if upto_seq is not None else _scalar(db, "SELECT max(seq) FROM readings")
        if bound is None:
            return PurgePlan(0, None, None, None, None)
        count = int(_scalar(db, "SELECT count(*) FROM readings WHERE seq <= ?", (bound,)))
        first = next(db.query("SELECT seq, ts_ms FROM readings ORDER BY seq LIMIT 1"), None)
        last = next(
            db.query(
                "SELECT seq, ts_ms FROM readings WHERE seq <= ? ORDER BY seq DESC LIMIT 1",
                (bound,),
            ),
            None,
        )
    if count == 0 or first is None or last is None:
        return PurgePlan(0, None, None, None, None)
    return PurgePlan(
        count, int(first["seq"]), int(last["seq"]), int(first["ts_ms"]), int(last["ts_ms"])
    )


def purge(path: Path, upto_seq: int, *, chunk: int = PURGE_CHUNK) -> tuple[int, int]:
    """Delete every stored reading with ``seq <= upto_seq``, ``chunk`` per transaction, and
    count them in ``meta.purged``. Returns (deleted now, purged in total).

    Readings the gateway delivered in the meantime are not counted: they were not lost.
    """
    deleted = 0
    with _opened(path, write=True) as db:
        version = int(_scalar(db, "PRAGMA user_version"))
        if version > len(MIGRATIONS):
            raise StoreError(
                f"outbox {path} has schema version {version}, newer than this streetgate knows"
                f" ({len(MIGRATIONS)}): purge it with the streetgate version that wrote it"
            )
        while True:
            try:
                now = _purge_chunk(db, upto_seq, chunk)
            except sqlite3.Error as exc:
                error = _translate(path, exc)
                if isinstance(error, OutboxDamaged):
                    raise error from exc
                done = (
                    f"{deleted:,} readings were purged (and counted) before that; run it again"
                    if deleted
                    else "nothing was purged; try again"
                )
                raise StoreError(f"{error}; {done}") from exc
            deleted += now
            if now < chunk:
                break
        total = _meta(db, "purged")
    return deleted, total


def _purge_chunk(db: Database, upto_seq: int, chunk: int) -> int:
    """One short write transaction: delete up to ``chunk`` readings and count them."""
    db.execute("BEGIN IMMEDIATE")  # take the write lock now; busy_timeout waits for it
    try:
        deleted = int(
            db.execute(
                "DELETE FROM readings WHERE seq IN"
                " (SELECT seq FROM readings WHERE seq <= ? ORDER BY seq LIMIT ?)",
                (upto_seq, chunk),
            ).rowcount
        )
        if deleted:
            # An upsert, so an outbox made before the 'purged' key existed works too.
            db.execute(
                "INSERT INTO meta (key, value) VALUES ('purged', ?)"
                " ON CONFLICT (key) DO UPDATE SET value = value + excluded.value",
                (deleted,),
            )
        db.execute("COMMIT")
    except BaseException:
        if db.conn.in_transaction:
            db.execute("ROLLBACK")
        raise
    return deleted
