"""``streetgate read DEVICE``: one poll of one configured device through its real driver.

The read itself is :func:`gateway.diagnostics.device_read.read_device` (shared with
``streetgate doctor``); a passive BLE sensor (BTHome, Ruuvi) is listened for until one of its
advertisements is decoded, or ``--timeout``.

Exit status: 0 read; 1 (``FAILURE``) the device answered with something wrong (a protocol error);
3 (``CONFIG``) invalid config; 4 (``UNREACHABLE``) no answer, no connection, no port or adapter;
6 (``NOT_FOUND``) no device of that name in the config (the configured names are listed).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

import typer

from gateway.cli.common import ConfigOption, fail, load_or_exit
from gateway.cli.exit_codes import ExitCode
from gateway.config.devices import device_names
from gateway.core.errors import DeviceError, DeviceTimeout, DeviceUnreachable
from gateway.diagnostics.device_read import find_device, read_device

if TYPE_CHECKING:
    from gateway.core.model import Sample

__all__ = ["read"]

#: How long ``read`` listens for a passive BLE sensor by default (they advertise every few s).
BLE_LISTEN = 30.0


def _value(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else str(value)


def _table(samples: Sequence[Sample]) -> str:
    rows = [("metric", "value", "unit")] + [(s.metric, _value(s.value), s.unit) for s in samples]
    widths = [max(len(r[i]) for r in rows) for i in range(2)]
    return "\n".join(f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]}".rstrip() for r in rows)


def read(
    device: Annotated[str, typer.Argument(help="Device name from the config (a bus unit's name).")],
    config: ConfigOption,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds to listen for a passive BLE sensor.")
    ] = BLE_LISTEN,
) -> None:
    """Read one device once through its real driver and print its values."""
    cfg = load_or_exit(config, "read")
    found = find_device(cfg, device)
    if found is None:
        names = [n for d in cfg.devices for n in device_names(d)]
        listed = ", ".join(names) if names else "none"
        fail("read", f"no device {device!r} in {config}; configured: {listed}", ExitCode.NOT_FOUND)
    entry, unit = found
    ts_ms = time.time_ns() // 1_000_000
    try:
        samples = asyncio.run(read_device(entry, unit, timeout))
    except (DeviceTimeout, DeviceUnreachable) as exc:
        fail("read", exc, ExitCode.UNREACHABLE)
    except DeviceError as exc:
        fail("read", exc, ExitCode.FAILURE)
    if as_json:
        iso = (
            time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts_ms / 1000)) + f".{ts_ms % 1000:03d}Z"
        )
        readings = [{"metric": s.metric, "value": s.value, "unit": s.unit} for s in samples]
        typer.echo(json.dumps({"device": device, "ts": iso, "readings": readings}))
    else:
        typer.echo(_table(samples))
