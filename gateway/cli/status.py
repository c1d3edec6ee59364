"""``streetgate status``: the running gateway's health figures, from its state file.

The same figures as the retained health report (docs/mqtt.md), read from ``<outbox>.state.json``
(gateway/runtime/state_file.py), which the gateway rewrites every few seconds. Exit status: 0 the
gateway is running; 6 (``NOT_FOUND``) it is not (never ran here, stopped, gone, or the file is
stale: the last known figures are still shown, marked as such); 3 invalid config.
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer

from gateway.cli.common import ConfigOption, load_or_exit, warn
from gateway.cli.exit_codes import ExitCode
from gateway.runtime.state_file import GatewayView, current_view, read_state, state_path

__all__ = ["format_status", "status"]


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}min"
    return f"{seconds / 3600:.1f}h"


def format_status(view: GatewayView, state: dict[str, Any] | None) -> str:
    """The figures as aligned text for a technician."""
    rows: list[tuple[str, str]] = [("gateway", view.reason)]
    if state is None:
        return "\n".join(f"{k:<12} {v}" for k, v in rows)
    if not view.running:
        rows.append(("figures", f"last known, from {state.get('ts', '?')}"))
    fwd = state.get("forwarder", {})
    box = state.get("outbox", {})
    rows += [
        ("id", str(state.get("gateway", "?"))),
        ("version", str(state.get("version", "?"))),
        ("uptime", _age(state.get("uptime_s"))),
        ("clock", "synchronised" if state.get("clock_synchronised") else "NOT synchronised"),
        (
            "forwarder",
            f"{fwd.get('state', '?')} since {fwd.get('connected_since') or '-'}, "
            + (f"broker {fwd['broker']}, " if fwd.get("broker") else "")
            + (f"{fwd['failovers']} failovers, " if "failovers" in fwd else "")
            + f"{fwd.get('connects', 0)} connects, {fwd.get('connection_failures', 0)} failures"
            + (f", last error: {fwd['last_error']}" if fwd.get("last_error") else ""),
        ),
        (
            "outbox",
            f"{box.get('depth', 0)} readings, {box.get('bytes', 0)} of {box.get('max_bytes', 0)} "
            f"bytes, oldest {_age(box.get('oldest_age_s'))}, dropped {box.get('dropped', 0)}, "
            f"purged {box.get('purged', 0)}",
        ),
    ]
    if "insecure" in state:  # gateway/config/transport_security.py; absent from older state files
        flags = ", ".join(state["insecure"])
        rows.insert(5, ("transport", f"NOT secure: {flags}" if flags else "TLS, verified"))
    last = (state.get("reload") or {}).get("last")
    if last:  # gateway/runtime/reload.py; absent until a reload (SIGHUP) was made
        issues = "; ".join(f"{i['key'] or '(the file)'}: {i['message']}" for i in last["issues"])
        rows.append(
            (
                "reload",
                f"{last['result']} at {last['at']}: {last['message']}"
                + (f" ({issues})" if issues else ""),
            )
        )
    devices = state.get("devices", {})
    rows.append(("devices", str(len(devices)) if devices else "none configured"))
    for name, dev in devices.items():
        errors = ", ".join(f"{k} {v}" for k, v in sorted(dev.get("errors", {}).items()))
        rows.append(
            (
                f"  {name}",
                f"{dev.get('health', '?')}, last ok {dev.get('last_ok') or 'never'}, "
                f"{dev.get('polls_ok', 0)} ok / {dev.get('polls_failed', 0)} failed"
                + (f" ({errors})" if errors else ""),
            )
        )
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def status(
    config: ConfigOption,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Health of the running gateway: uplink, outbox, clock and every device."""
    path = state_path(load_or_exit(config, "status").outbox.path)
    view = current_view(path)
    try:
        state = read_state(path)
    except ValueError:
        state = None  # current_view already says what is wrong with the file
    if as_json:
        typer.echo(json.dumps({"running": view.running, "view": view.as_dict(), "state": state}))
    else:
        typer.echo(format_status(view, state))
        if not view.running and state is not None:
            age = time.time() - float(state.get("updated_unix", 0))
            warn("status", f"the gateway is not running; the figures above are {_age(age)} old")
    if not view.running:
        raise typer.Exit(ExitCode.NOT_FOUND)
