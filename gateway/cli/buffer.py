"""``streetgate buffer``: the technicians' view of the outbox (status, export, purge).

Safe while the gateway runs (see gateway/store/reader.py): status and export only read, purge
deletes in short transactions and only after a confirmation. Data goes to stdout, messages to
stderr. Exit codes (gateway/cli/exit_codes.py): 0 done; 1 the outbox could not be read or written
(FAILURE); 2 usage; 3 invalid config (CONFIG); 6 no outbox (NOT_FOUND); 7 the outbox file is
damaged (DAMAGED); 8 refused or declined, nothing changed (DECLINED).
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import sys
import time
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import IO, Annotated, Any, NamedTuple

import typer

from gateway.cli.common import ConfigOption, err, fail, load_or_exit, note
from gateway.cli.exit_codes import ExitCode
from gateway.config.devices import device_names
from gateway.core.errors import OutboxDamaged, OutboxMissing, StoreError
from gateway.core.model import StoredReading
from gateway.runtime.state_file import GatewayView, current_view, state_path
from gateway.store.reader import (
    EXPORT_COLUMNS,
    BufferStatus,
    PurgePlan,
    buffer_status,
    exporting,
    integrity_problems,
    plan_purge,
    purge,
)
from gateway.uplink.envelope import encode_reading, iso_time

__all__ = [
    "ExportFormat",
    "Exported",
    "app",
    "format_status",
    "status_dict",
    "write_rows",
]


class ExportFormat(StrEnum):
    """Export file formats."""

    CSV = "csv"
    JSONL = "jsonl"


@contextlib.contextmanager
def _outbox_errors() -> Iterator[None]:
    """Outbox errors become one message on stderr and the command's exit code."""
    try:
        yield
    except OutboxMissing as exc:
        fail("buffer", f"{exc} (outbox.path in the config)", ExitCode.NOT_FOUND)
    except OutboxDamaged as exc:
        fail(
            "buffer",
            f"{exc}. It was left untouched. If it is a damaged streetgate outbox, the"
            f" gateway moves it aside as {exc.path.name}.corrupt-<time> when it next starts (it"
            " never deletes it) and starts a fresh outbox; a file that is not a SQLite database"
            " at all is refused and left as it is. Copy it off first if its readings matter.",
            ExitCode.DAMAGED,
        )
    except StoreError as exc:
        fail("buffer", exc, ExitCode.FAILURE)


# -- status ---------------------------------------------------------------------------------


def _iso_ms(ts_ms: int | None) -> str | None:
    if ts_ms is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts_ms / 1000)) + f".{ts_ms % 1000:03d}Z"


def _age(seconds: float) -> str:
    """A short human age: ``45s``, ``3m 12s``, ``5h 02m``, ``2d 03h``."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600:02d}h"


def status_dict(
    status: BufferStatus, view: GatewayView, max_bytes: int, now_ms: int
) -> dict[str, Any]:
    """The ``--json`` form of ``buffer status``."""
    oldest_age = None if status.oldest_ts_ms is None else (now_ms - status.oldest_ts_ms) / 1000
    return {
        "outbox": str(status.path),
        "depth": status.depth,
        "first_seq": status.first_seq,
        "last_seq": status.last_seq,
        "last_committed_seq": status.last_committed_seq,
        "oldest_ts": _iso_ms(status.oldest_ts_ms),
        "newest_ts": _iso_ms(status.newest_ts_ms),
        "oldest_age_s": None if oldest_age is None else round(max(0.0, oldest_age), 1),
        "bytes_used": status.used_bytes,
        "max_bytes": max_bytes,
        "db_file_bytes": status.db_file_bytes,
        "wal_file_bytes": status.wal_file_bytes,
        "dropped": status.dropped,
        "purged": status.purged,
        "schema_version": status.schema_version,
        "gateway": view.as_dict(),
    }


def _forwarder_line(view: GatewayView) -> str:
    fwd = view.forwarder
    if not view.running or fwd is None:
        return "unknown (the gateway is not running)"
    state = str(fwd.get("state", "unknown"))
    parts = [state]
    if state == "connected" and fwd.get("connected_since"):
        parts.append(f"since {fwd['connected_since']}")
    parts.append(f"({fwd.get('connects', 0)} connects, {fwd.get('connection_failures', 0)} failed)")
    if state != "connected" and fwd.get("last_error"):
        parts.append(f"last error: {fwd['last_error']}")
    return " ".join(parts)


def format_status(status: BufferStatus, view: GatewayView, max_bytes: int, now_ms: int) -> str:
    """``buffer status`` for humans: one fact per line."""
    if status.depth:
        readings = f"{status.depth:,} stored, seq {status.first_seq}..{status.last_seq}"
    else:
        readings = "none stored"
    oldest = newest = "-"
    if status.oldest_ts_ms is not None and status.newest_ts_ms is not None:
        age = _age((now_ms - status.oldest_ts_ms) / 1000)
        oldest = f"{_iso_ms(status.oldest_ts_ms)} ({age} ago)"
        newest = (
            f"{_iso_ms(status.newest_ts_ms)} ({_age((now_ms - status.newest_ts_ms) / 1000)} ago)"
        )
    share = 100 * status.used_bytes / max_bytes if max_bytes else 0.0
    rows = [
        ("outbox", str(status.path)),
        ("readings", readings),
        ("last seq", f"{status.last_committed_seq} (highest ever committed)"),
        ("oldest", oldest),
        ("newest", newest),
        ("size", f"{status.used_bytes:,} bytes used of {max_bytes:,} ({share:.1f}%)"),
        ("files", f"db {status.db_file_bytes:,} bytes, wal {status.wal_file_bytes:,} bytes"),
        ("dropped", f"{status.dropped:,} (outbox full, since it was created)"),
        ("purged", f"{status.purged:,} (by streetgate buffer purge)"),
        ("gateway", view.reason),
        ("forwarder", _forwarder_line(view)),
    ]
    return "\n".join(f"{name:<10} {value}" for name, value in rows)


def status(
    config: ConfigOption,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    check: Annotated[
        bool, typer.Option("--check", help="Also run SQLite's quick_check (reads the whole file).")
    ] = False,
) -> None:
    """Depth, sequence range, age, size, drops and purges of the outbox; the forwarder's state."""
    cfg = load_or_exit(config, "buffer")
    path = cfg.outbox.path
    with _outbox_errors():
        current = buffer_status(path)
        problems = integrity_problems(path) if check else None
    view = current_view(state_path(path))
    now_ms = time.time_ns() // 1_000_000
    if as_json:
        data = status_dict(current, view, cfg.outbox.max_bytes, now_ms)
        if problems is not None:
            data["integrity"] = problems or "ok"
        typer.echo(json.dumps(data))
    else:
        typer.echo(format_status(current, view, cfg.outbox.max_bytes, now_ms))
        if problems is not None:
            typer.echo(f"{'integrity':<10} {'; '.join(problems[:5]) if problems else 'ok'}")
    if problems:
        with _outbox_errors():
            raise OutboxDamaged(path, f"quick_check: {problems[0]}")


# -- export ---------------------------------------------------------------------------------


class Exported(NamedTuple):
    """What an export wrote (seqs are 0 when it wrote nothing)."""

    readings: int
    first_seq: int
    last_seq: int


def csv_fields(reading: StoredReading) -> tuple[object, ...]:
    """The EXPORT_COLUMNS of one reading, as the CSV export writes them."""
    seq, device, metric, value, unit, ts_ms, quality = reading
    value_text = repr(value) if math.isfinite(value) else ""
    return (seq, device, metric, value_text, unit, iso_time(ts_ms), quality.value)


def write_rows(rows: Iterator[StoredReading], fmt: ExportFormat, out: IO[str]) -> Exported:
    """Write stored readings to ``out`` as CSV or JSON lines."""
    count = first = last = 0
    if fmt is ExportFormat.CSV:
        writer = csv.writer(out)
        writer.writerow(EXPORT_COLUMNS)
        for reading in rows:
            writer.writerow(csv_fields(reading))
            count, first, last = count + 1, first or reading.seq, reading.seq
    else:
        for reading in rows:
            out.write(encode_reading(reading))  # exactly as published
            out.write("\n")
            count, first, last = count + 1, first or reading.seq, reading.seq
    return Exported(count, first, last)


def _export_to_file(rows: Iterator[StoredReading], fmt: ExportFormat, output: Path) -> Exported:
    """Write to a temporary file next to ``output`` and rename it: all or nothing."""
    tmp = output.with_name(f".{output.name}.tmp-{os.getpid()}")
    try:
        with tmp.open("w", encoding="utf-8", newline="") as out:
            result = write_rows(rows, fmt, out)
            out.flush()
            os.fsync(out.fileno())  # the laptop may be unplugged right after
        os.replace(tmp, output)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return result


def export(  # noqa: PLR0917 - one parameter per CLI option
    config: ConfigOption,
    fmt: Annotated[
        ExportFormat, typer.Option("--format", "-f", help="csv or jsonl (one reading per line).")
    ] = ExportFormat.CSV,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="File to write (default: stdout).", dir_okay=False),
    ] = None,
    since_seq: Annotated[
        int, typer.Option(min=0, help="Only readings with a sequence number above this.")
    ] = 0,
    device: Annotated[str | None, typer.Option(help="Only this device's readings.")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite --output if it exists.")
    ] = False,
) -> None:
    """Every stored reading in sequence order, as CSV or JSON lines; never changes the outbox."""
    cfg = load_or_exit(config, "buffer")
    path = cfg.outbox.path
    if output is not None and output.exists() and not force:
        fail("buffer", f"{output} exists; add --force to overwrite it", ExitCode.DECLINED)
    known = {name for d in cfg.devices for name in device_names(d)}
    if device is not None and device not in known:
        note("buffer", f"no device {device!r} in {config}; exporting its stored readings if any")
    with (
        _outbox_errors(),
        exporting(path, since_seq=since_seq, device=device) as rows,
    ):
        try:
            if output is None:
                count, first, last = write_rows(rows, fmt, sys.stdout)
                sys.stdout.flush()
            else:
                count, first, last = _export_to_file(rows, fmt, output)
        except BrokenPipeError:  # `... | head`: the reader has what it wanted
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(ExitCode.OK) from None
        except OSError as exc:
            fail("buffer", f"cannot write {output}: {exc.strerror}", ExitCode.FAILURE)
    where = "" if output is None else f" to {output}"
    span = f" (seq {first}..{last})" if count else ""
    err(f"exported {count:,} readings{span}{where}")


# -- purge ----------------------------------------------------------------------------------


def _describe(plan: PurgePlan) -> str:
    return (
        f"{plan.count:,} readings, seq {plan.first_seq}..{plan.last_seq}"
        f" (taken {_iso_ms(plan.first_ts_ms)} to {_iso_ms(plan.last_ts_ms)})"
    )


def stdin_is_terminal() -> bool:
    """Whether someone can answer a question (purge asks; scripts pass --yes)."""
    return sys.stdin.isatty()


def purge_command(
    config: ConfigOption,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask (for scripts).")] = False,
    upto_seq: Annotated[
        int | None,
        typer.Option(min=1, help="Only readings with a sequence number up to this one."),
    ] = None,
) -> None:
    """Delete stored readings (all, or up to --upto-seq) after confirmation; counted as purged."""
    cfg = load_or_exit(config, "buffer")
    path = cfg.outbox.path
    with _outbox_errors():
        plan = plan_purge(path, upto_seq)
    if plan.count == 0 or plan.last_seq is None:
        err("nothing to purge: no stored readings" + (f" up to seq {upto_seq}" if upto_seq else ""))
        return
    what = _describe(plan)
    view = current_view(state_path(path))
    if not yes:
        if not stdin_is_terminal():
            fail(
                "buffer",
                f"purge would delete {what} from {path}; no terminal to confirm on:"
                " add --yes to purge without asking. Nothing was deleted.",
                ExitCode.DECLINED,
            )
        err(
            f"This deletes {what} from {path}.\n"
            "They have not been delivered to the platform and will be lost"
            " (counted as purged). "
            + ("The gateway keeps running." if view.running else f"Gateway: {view.reason}.")
        )
        if not typer.confirm("Purge them?", default=False, err=True):
            err("nothing was deleted")
            raise typer.Exit(ExitCode.DECLINED)
    with _outbox_errors():
        deleted, total = purge(path, plan.last_seq)
    gone = plan.count - deleted
    meanwhile = f"; {gone:,} were delivered by the gateway meanwhile" if gone > 0 else ""
    err(
        f"purged {deleted:,} readings up to seq {plan.last_seq}{meanwhile}"
        f" ({total:,} purged in total)"
    )


app = typer.Typer(
    name="buffer",
    help="The outbox as a technician sees it: status, export, purge (safe while it runs).",
    no_args_is_help=True,
)
app.command("status")(status)
app.command("export")(export)
app.command("purge")(purge_command)
