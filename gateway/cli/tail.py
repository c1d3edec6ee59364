"""``streetgate tail``: readings live, as the gateway stores them in its outbox.

Follows the outbox read-only: every ``POLL_INTERVAL`` it reads the readings with a sequence
number above the last one shown, in one short read transaction (WAL readers never block the
gateway's writer). Limitation: the gateway deletes a reading once the broker acknowledged it, so
with the broker connected a reading forwarded and deleted between two polls (0.2 s) is not shown;
with the uplink down (the situation a technician usually debugs) every reading is. Rows are
printed as ``seq ts device metric value unit quality``, or with ``--json`` one stored reading
(its JSON exactly as published) per line.

Exit status: 0 stopped with Ctrl-C (or after ``--count`` readings); 3 invalid config;
7 (``DAMAGED``) the outbox file is damaged; 1 it could not be read.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from gateway.cli.common import ConfigOption, err, fail, load_or_exit, note
from gateway.cli.exit_codes import ExitCode
from gateway.config.devices import device_names
from gateway.core.errors import OutboxDamaged, OutboxMissing, StoreError
from gateway.core.model import StoredReading
from gateway.runtime.state_file import current_view, state_path
from gateway.store.reader import buffer_status, exporting
from gateway.uplink.envelope import encode_reading, iso_time

__all__ = ["POLL_INTERVAL", "format_reading", "tail"]

#: Seconds between two looks at the outbox.
POLL_INTERVAL = 0.2


def format_reading(reading: StoredReading) -> str:
    """``seq ts device metric value unit quality`` of one stored reading."""
    seq, device, metric, value, unit, ts_ms, quality = reading
    value_text = str(value) if math.isfinite(value) else "-"
    return " ".join(
        str(x) for x in (seq, iso_time(ts_ms), device, metric, value_text, unit or "-", quality)
    )


def _last_seq(path: Path) -> int:
    """The highest sequence number committed so far (0 for a new outbox)."""
    return buffer_status(path).last_committed_seq


def tail(
    config: ConfigOption,
    device: Annotated[str | None, typer.Option(help="Only this device's readings.")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per line (the stored reading).")
    ] = False,
    from_seq: Annotated[
        int | None,
        typer.Option(min=1, help="Start at this sequence number (default: new readings only)."),
    ] = None,
    count: Annotated[int | None, typer.Option(min=1, help="Stop after this many readings.")] = None,
) -> None:
    """Print readings as the gateway stores them, until Ctrl-C.

    Read from the outbox every 0.2 s; while the uplink works, a reading forwarded (and so
    deleted) within one such interval is not shown.
    """
    cfg = load_or_exit(config, "tail")
    path = cfg.outbox.path
    known = {n for d in cfg.devices for n in device_names(d)}
    if device is not None and device not in known:
        note("tail", f"no device {device!r} in {config}; following its readings if any appear")
    view = current_view(state_path(path))
    if not view.running:
        note("tail", f"the gateway is {view.reason}; following {path} anyway")
    shown = 0
    cursor: int | None = None if from_seq is None else from_seq - 1
    waiting_said = False
    try:
        while True:
            try:
                if cursor is None:
                    cursor = _last_seq(path)
                with exporting(path, since_seq=cursor, device=device) as rows:
                    for reading in rows:
                        typer.echo(encode_reading(reading) if as_json else format_reading(reading))
                        cursor = reading.seq
                        shown += 1
                        if count is not None and shown >= count:
                            return
                sys.stdout.flush()
            except OutboxMissing:
                if not waiting_said:
                    err(f"no outbox at {path} yet; waiting for the gateway to create it")
                    waiting_said = True
            except OutboxDamaged as exc:
                fail("tail", f"{exc}; left untouched", ExitCode.DAMAGED)
            except StoreError as exc:
                fail("tail", exc, ExitCode.FAILURE)
            time.sleep(POLL_INTERVAL)
    except KeyboardInterrupt:
        err(f"stopped after {shown:,} reading(s)")
    except BrokenPipeError:  # `... | head`: the reader has what it wanted
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
