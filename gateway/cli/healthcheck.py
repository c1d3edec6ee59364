"""``streetgate healthcheck``: the container engine's health check (balena, Docker).

Judges the heartbeat the running gateway's progress watchdog writes next to the outbox
(gateway/runtime/watchdog.py): healthy only while the gateway's process lives, its event loop turns
and every loop that matters advances. Quick and local: no broker, no device, no database.
Exit 0 healthy, 1 (``ExitCode.FAILURE``) unhealthy, 3 (``ExitCode.CONFIG``) invalid config.
Under systemd the unit's ``WatchdogSec=`` does this job; this command is for engines without one.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from gateway.cli.common import ConfigOption, load_or_exit
from gateway.cli.exit_codes import ExitCode
from gateway.runtime.watchdog import Verdict, heartbeat_path, heartbeat_verdict, read_heartbeat

__all__ = ["check", "healthcheck"]


def check(heartbeat: Path) -> Verdict:
    """The verdict on the heartbeat at ``heartbeat`` now."""
    try:
        data = read_heartbeat(heartbeat)
    except ValueError as exc:
        return Verdict(False, str(exc))
    return heartbeat_verdict(data, time.time())


def healthcheck(
    config: ConfigOption,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Exit 0 if the running gateway makes progress, 1 if it is stuck, stalled or gone."""
    cfg = load_or_exit(config, "healthcheck")
    path = heartbeat_path(cfg.outbox.path)
    verdict = check(path)
    if as_json:
        typer.echo(
            json.dumps(
                {"healthy": verdict.healthy, "reason": verdict.reason, "heartbeat": str(path)}
            )
        )
    else:
        typer.echo(verdict.reason if verdict.healthy else f"unhealthy: {verdict.reason}")
    if not verdict.healthy:
        raise typer.Exit(ExitCode.FAILURE)
