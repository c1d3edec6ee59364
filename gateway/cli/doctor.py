"""``streetgate doctor``: one line per check, with what to do when one fails.

Exit status: 0 every check passed; 1 (``ExitCode.FAILURE``) at least one failed; 3
(``ExitCode.CONFIG``) the config is invalid (nothing else is checked). The check lines are the
command's data (stdout); the spinner and the summary go to stderr, the spinner only on a terminal.
"""

from __future__ import annotations

import asyncio
import json
import logging
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from gateway.cli.common import ConfigOption
from gateway.cli.exit_codes import ExitCode
from gateway.config.devices import device_names
from gateway.config.model import GatewayConfig, load_config
from gateway.core.errors import ConfigError
from gateway.diagnostics.device_checks import (
    BLE_LISTEN,
    DEVICE_PREFIX,
    device_check_setup,
    device_checks,
)
from gateway.diagnostics.doctor import CheckResult, local_checks, tls_files_checks

__all__ = ["doctor", "format_check"]

_MARKS = {"PASS": "green", "FAIL": "red", "SKIP": "yellow", "WARN": "yellow"}


def _mark(check: CheckResult) -> str:
    if check.skipped:
        return "SKIP"
    if check.ok and check.warning:
        return "WARN"
    return "PASS" if check.ok else "FAIL"


def format_check(check: CheckResult, *, colour: bool = False) -> str:
    """``PASS  name  detail (12 ms)`` and, when there is one, an indented ``-> hint`` line."""
    mark = _mark(check)
    shown = typer.style(mark, fg=_MARKS[mark], bold=True) if colour else mark
    timing = f" ({check.duration_ms:.0f} ms)" if check.duration_ms is not None else ""
    line = f"{shown}  {check.name:<24} {check.detail}{timing}"
    if check.hint:
        line += f"\n      -> {check.hint}"
    return line


def _config_check(path: Path) -> tuple[GatewayConfig | None, CheckResult]:
    try:
        config = load_config(path)
    except ConfigError as exc:
        issues = "; ".join(str(i) for i in exc.issues)
        return None, CheckResult(
            "config", False, f"{path}: {issues}", f"fix it; `streetgate validate {path}` lists it"
        )
    devices = sum(len(device_names(d)) for d in config.devices)
    return config, CheckResult(
        "config", True, f"{path}: gateway {config.gateway_id}, {devices} device(s)"
    )


def _as_list(result: CheckResult | list[CheckResult] | None) -> list[CheckResult]:
    if result is None:
        return []
    return result if isinstance(result, list) else [result]


def _device_summary(results: list[CheckResult]) -> str:
    """``; devices: 1 of 3 read, 2 failed`` (empty when no device was checked)."""
    checked = [c for c in results if c.name.startswith(DEVICE_PREFIX)]
    if not checked:
        return ""
    read = sum(1 for c in checked if c.ok and not c.skipped)
    failed = sum(1 for c in checked if not c.ok and not c.skipped)
    skipped = len(checked) - read - failed
    parts = [f"{read} of {len(checked)} read"]
    parts += [f"{failed} failed"] if failed else []
    parts += [f"{skipped} skipped"] if skipped else []
    return "; devices: " + ", ".join(parts)


def doctor(
    config: ConfigOption,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the checks as one JSON object.")
    ] = False,
    timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds each broker step may take.")
    ] = 5.0,
    devices: Annotated[
        bool,
        typer.Option(
            "--devices/--no-devices", help="Read each configured device once (in parallel)."
        ),
    ] = True,
    ble_listen: Annotated[
        float, typer.Option(min=0.1, help="Seconds to listen for each BLE device.")
    ] = BLE_LISTEN,
) -> None:
    """Check everything the gateway needs, one line per check, with what to do on a failure."""
    stdout = Console()
    console = Console(stderr=True)
    colour = stdout.is_terminal and not as_json
    results: list[CheckResult] = []

    def emit(check: CheckResult) -> None:
        results.append(check)
        if not as_json:
            typer.echo(format_check(check, colour=colour))

    def spinner(what: str) -> AbstractContextManager[object]:
        if console.is_terminal:
            return console.status(f"checking {what}…")
        return nullcontext()

    cfg, first = _config_check(config)
    emit(first)
    if cfg is not None:
        for check in tls_files_checks(cfg, config):
            emit(check)
        for run in local_checks(cfg):
            with spinner("this machine"):
                checks = _as_list(run())
            for check in checks:
                emit(check)
        if devices and cfg.devices:
            # Each device line carries the reason of a failure; pymodbus's own log lines about
            # it (frame dumps) would only bury the report.
            quiet = logging.getLogger("pymodbus")
            if not any(isinstance(h, logging.NullHandler) for h in quiet.handlers):
                quiet.addHandler(logging.NullHandler())
            setup = device_check_setup(cfg, ble_listen=ble_listen)
            with spinner(f"{len(cfg.devices)} device(s)"):
                read = asyncio.run(device_checks(cfg, setup))
            for check in read:
                emit(check)
        # The broker probe loads aiomqtt; imported here so other commands start without it.
        from gateway.diagnostics.broker_probe import (  # noqa: PLC0415
            broker_checks,
            broker_setup,
        )

        # Every broker of mqtt.brokers: a bad spare is found now, not at the first failover.
        brokers_at = [broker_setup(cfg, timeout, b) for b in cfg.mqtt.endpoints]

        async def brokers() -> None:
            for broker_at in brokers_at:
                steps = broker_checks(broker_at)
                while True:
                    with spinner(f"the broker {broker_at.host}:{broker_at.port}"):
                        check = await anext(steps, None)
                    if check is None:
                        break
                    emit(check)

        asyncio.run(brokers())
    failed = [c for c in results if not c.ok and not c.skipped]
    if as_json:
        typer.echo(
            json.dumps({"ok": not failed, "checks": [c.as_dict() for c in results]}, indent=None)
        )
    passed = sum(1 for c in results if c.ok and not c.skipped)
    skipped = sum(1 for c in results if c.skipped)
    summary = f"{passed} passed, {len(failed)} failed" + (f", {skipped} skipped" if skipped else "")
    summary += _device_summary(results)
    typer.echo(
        summary if not failed else f"{summary}; failed: {', '.join(c.name for c in failed)}",
        err=True,
    )
    if cfg is None:
        raise typer.Exit(ExitCode.CONFIG)
    if failed:
        raise typer.Exit(ExitCode.FAILURE)
