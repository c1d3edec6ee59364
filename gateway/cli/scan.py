"""``streetgate scan serial|modbus|ble``: find the devices in a cabinet before writing a config.

Data (the list of what was found) goes to stdout, as text or with ``--json`` one JSON document;
messages and the progress bar go to stderr. Finding nothing is an answer, not a failure: the
command prints an empty list (``[]`` with ``--json``), says so on stderr and exits 0.
Exit codes (gateway/cli/exit_codes.py): 0 scanned (whatever was found); 2 usage; 4 the host,
serial port or BLE adapter could not be reached (UNREACHABLE). ``scan ble`` runs
:func:`scan_ble`, whose ``backend`` (the simulator's bleak scanner in tests) is no flag.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from gateway.cli.common import err, fail, note
from gateway.cli.exit_codes import ExitCode
from gateway.config.devices import BAUD_RATES
from gateway.core.errors import AdapterUnavailable, DeviceUnreachable

# The scanners (drivers.ble.discovery pulls in bleak, gateway.diagnostics.scan pymodbus via the
# Modbus drivers) are imported in the command bodies, so that every other ``streetgate``
# command starts without loading them.
if TYPE_CHECKING:
    from bleak.backends.scanner import BaseBleakScanner

    from drivers.ble.discovery import BleFound
    from gateway.diagnostics.scan import ModbusProber, SerialPortEntry, UnitFound

__all__ = ["app", "format_ble", "format_modbus", "format_serial", "scan_ble"]


JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]


def format_serial(entries: list[SerialPortEntry]) -> str:
    """The text form of ``scan serial``: a paragraph per port, ending in the config line."""
    paragraphs = []
    for e in entries:
        usb = f"usb {e.usb_id}" if e.usb_id else "not USB"
        lines = [f"{e.device}  {usb}  {e.description}"]
        details = [
            ("serial", e.serial_number),
            ("manufacturer", e.manufacturer),
            ("product", e.product),
            ("location", e.location),
            ("by-id", e.by_id),
        ]
        lines += [f"  {key}: {value}" for key, value in details if value]
        note = f"  # {e.spec_note}" if e.spec_note else ""
        lines.append(f'  config: port = "{e.spec}"{note}')
        paragraphs.append("\n".join(lines))
    return "\n".join(paragraphs)


def serial(as_json: JsonOption = False) -> None:
    """Serial ports with their USB identity, and the `port = ...` line for a config."""
    from serial.tools.list_ports import comports  # type: ignore[import-untyped]  # noqa: PLC0415

    from gateway.diagnostics.scan import BY_ID_DIR, by_id_links, serial_ports  # noqa: PLC0415

    entries = serial_ports(comports, by_id_links(BY_ID_DIR))
    if as_json:
        typer.echo(json.dumps([e.as_dict() for e in entries]))
    elif entries:
        typer.echo(format_serial(entries))
    if not entries:
        note("scan", "no serial ports found (is the adapter plugged in? `dmesg | tail` says)")


def format_modbus(found: list[UnitFound]) -> str:
    """The text form of ``scan modbus``: a line per unit that answered, then its profiles."""
    lines = []
    for unit in found:
        lines.append(f"unit {unit.unit_id}: answered with {unit.answer}")
        if unit.fits:
            best, *rest = unit.fits
            also = ", ".join(f"{f.profile} ({f.metrics} metrics)" for f in rest)
            lines.append(f'  profile = "{best.profile}"  ({best.metrics} metrics read)')
            if also:
                lines.append(f"  also readable as: {also}")
        else:
            lines.append("  no shipped profile fits: write one (README, Device profiles)")
        lines += [f"  {f.profile}: rejected: {f.reason}" for f in unit.misfits]
    return "\n".join(lines)


def _progress(total: int) -> tuple[Progress, TaskID]:
    console = Console(stderr=True)
    bar = Progress(
        TextColumn("probing unit ids"),
        BarColumn(),
        MofNCompleteColumn(),
        console=console,
        disable=not console.is_terminal,
        transient=True,
    )
    return bar, bar.add_task("probe", total=total)


async def _scan(prober: ModbusProber, units: list[int]) -> list[UnitFound]:
    from gateway.diagnostics.scan import scan_modbus, shipped_profiles  # noqa: PLC0415

    bar, task = _progress(len(units))
    with bar:
        return await scan_modbus(prober, units, shipped_profiles(), lambda _unit: bar.advance(task))


def modbus(  # noqa: PLR0917 - every option of the command (typer passes them by name)
    host: Annotated[str | None, typer.Option(help="Modbus TCP host (or TCP gateway).")] = None,
    port: Annotated[int, typer.Option(help="Modbus TCP port.", min=1, max=65535)] = 502,
    serial_port: Annotated[
        str | None,
        typer.Option("--serial", help="RS-485 port: a path, usb:VID:PID[:SERIAL], or a URL."),
    ] = None,
    baud: Annotated[int, typer.Option(help="RTU baud rate.")] = 9600,
    parity: Annotated[str, typer.Option(help="RTU parity: N, E or O.")] = "N",
    stopbits: Annotated[int, typer.Option(help="RTU stop bits: 1 or 2.")] = 1,
    units: Annotated[
        str, typer.Option(help="Unit ids to probe: 1-247, 1,2,5 or 1-4,10.")
    ] = "1-247",
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for each unit.", min=0.01, max=10.0)
    ] = 0.2,
    as_json: JsonOption = False,
) -> None:
    """Probe Modbus unit ids on a TCP host or an RS-485 bus; show which answer and which shipped
    profile fits each (best first)."""
    if (host is None) == (serial_port is None):
        fail("scan", "give exactly one of --host HOST or --serial PORT", ExitCode.USAGE)
    from gateway.diagnostics.scan import RtuProber, TcpProber, parse_units  # noqa: PLC0415

    try:
        unit_ids = parse_units(units)
    except ValueError as exc:
        fail("scan", f"--units: {exc}", ExitCode.USAGE)
    prober: ModbusProber
    if host is not None:
        prober = TcpProber(host, port, timeout)
    elif serial_port is not None:
        if parity not in {"N", "E", "O"} or stopbits not in {1, 2} or baud not in BAUD_RATES:
            fail(
                "scan",
                "--parity must be N, E or O, --stopbits 1 or 2, "
                f"--baud one of {', '.join(map(str, BAUD_RATES))}",
                ExitCode.USAGE,
            )
        line_parity: Literal["N", "E", "O"] = parity  # type: ignore[assignment]
        line_stopbits: Literal[1, 2] = stopbits  # type: ignore[assignment]
        prober = RtuProber(
            serial_port,
            unit_ids,
            baudrate=baud,
            parity=line_parity,
            stopbits=line_stopbits,
            timeout=timeout,
        )
    err(
        f"probing {len(unit_ids)} unit id(s) on {prober.where}: up to {timeout:g} s each, "
        f"at most {len(unit_ids) * timeout:.1f} s plus the profile reads of units that answer"
    )
    try:
        found = asyncio.run(_scan(prober, unit_ids))
    except DeviceUnreachable as exc:
        fail("scan", f"cannot reach {prober.where}: {exc}", ExitCode.UNREACHABLE)
    if as_json:
        typer.echo(json.dumps([u.as_dict() for u in found]))
    elif found:
        typer.echo(format_modbus(found))
    if not found:
        note("scan", f"no unit answered on {prober.where}")


def format_ble(found: list[BleFound]) -> str:
    """The text form of ``scan ble``: a line per device, values and a config entry if known."""
    from drivers.ble.discovery import toml_snippet  # noqa: PLC0415 - bleak, see the imports

    paragraphs = []
    for f in found:
        rssi = f"{f.rssi} dBm" if f.rssi is not None else "? dBm"
        head = f"{f.address}  {rssi}  {f.name or '(no name)'}  {f.format}"
        lines = [head + (f"  {f.note}" if f.note else "")]
        if f.values:
            values = ", ".join(f"{m}={v:g}{f.units.get(m, '')}" for m, v in f.values.items())
            lines.append(f"  {values}")
        if f.recognised:
            lines += [f"  {line}" for line in toml_snippet(f).splitlines()]
        paragraphs.append("\n".join(lines))
    return "\n".join(paragraphs)


async def scan_ble(seconds: float, backend: type[BaseBleakScanner] | None = None) -> list[BleFound]:
    """The scan behind ``scan ble``; ``backend`` (tests: the simulator's scanner) is not a flag."""
    from drivers.ble.discovery import discover  # noqa: PLC0415 - bleak, see the imports

    console = Console(stderr=True)
    bar = Progress(
        TextColumn("listening"),
        BarColumn(),
        TextColumn("{task.fields[devices]} device(s)"),
        console=console,
        disable=not console.is_terminal,
        transient=True,
    )
    heard: set[str] = set()
    found: list[BleFound] = []
    failure: AdapterUnavailable | None = None
    with bar:
        task = bar.add_task("scan", total=seconds, devices=0)

        def on_heard(device: BleFound) -> None:
            heard.add(device.address)
            bar.update(task, devices=len(heard))

        async def tick() -> None:
            loop = asyncio.get_running_loop()
            start = loop.time()
            while True:
                await asyncio.sleep(0.1)
                bar.update(task, completed=loop.time() - start)

        async with asyncio.TaskGroup() as tg:
            ticker = tg.create_task(tick(), name="scan:ble:progress")
            try:
                found = await discover(seconds, backend, heard=on_heard)
            except AdapterUnavailable as exc:  # raised below, not as an ExceptionGroup
                failure = exc
            finally:
                ticker.cancel()
    if failure is not None:
        raise failure
    return found


def ble(
    timeout: Annotated[float, typer.Option(help="Seconds to listen.", min=0.1, max=600.0)] = 10.0,
    as_json: JsonOption = False,
) -> None:
    """Nearby BLE devices, loudest first, decoded where the format is known (BTHome v2, Ruuvi),
    with the [[devices]] entry to paste for each recognised sensor."""
    err(f"listening for BLE adverts for {timeout:g} s")
    try:
        found = asyncio.run(scan_ble(timeout))
    except AdapterUnavailable as exc:
        fail(
            "scan",
            f"no usable Bluetooth adapter ({exc}); "
            "check `bluetoothctl list` and that bluetoothd runs",
            ExitCode.UNREACHABLE,
        )
    if as_json:
        typer.echo(json.dumps([f.as_dict() for f in found]))
    elif found:
        typer.echo(format_ble(found))
    if not found:
        note("scan", "no BLE device heard")


app = typer.Typer(
    name="scan",
    help="Find devices: serial ports, Modbus unit ids, BLE sensors.",
    no_args_is_help=True,
)
app.command("serial")(serial)
app.command("modbus")(modbus)
app.command("ble")(ble)
