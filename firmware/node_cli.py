"""``streetgate node list|keygen|release|config|deploy|monitor``: our MicroPython sensor nodes.

Results go to stdout (``--json`` for data), diagnostics and the progress bar to stderr (the
bar only on a terminal). Exit codes (gateway/cli/exit_codes.py): 0 done; 1 not a MicroPython board,
or the board failed a command; 3 invalid node settings; 4 port missing or cannot be opened, or
the board did not come back after its reset; 5 a private key readable by others; 6 a file does
not exist; 7 a bundle is damaged, or a file's SHA-256 on the board differs after the copy;
8 refused: a bundle whose signature does not verify, replacing a key without ``--force``, or
an existing BLE key for a board without that key's counter state (``deploy --rotate-key``).
"""

from __future__ import annotations

import codecs
import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

from firmware.boards import NodeBoard, node_boards
from firmware.bundle import NODE_CONFIG_PATH
from firmware.node_config import NodeConfig, generate_ble_key, node_config, node_json
from firmware.release import (
    DEFAULT_SOURCE,
    load_private_key,
    load_public_key,
    make_key_pair,
    open_bundle,
    write_bundle,
)
from gateway.cli.common import err, fail, note
from gateway.cli.exit_codes import ExitCode
from gateway.core.errors import (
    BoardError,
    ConfigError,
    NodeToolError,
)

# firmware.deploy (mpremote, pyserial) is imported in the deploy and monitor command bodies,
# so that the other commands, and every ``streetgate`` start, do without it.

__all__ = ["app", "format_boards"]

app = typer.Typer(
    name="node",
    help="Our MicroPython sensor nodes: find boards, sign releases, deploy, watch the console.",
    no_args_is_help=True,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]
PortOption = Annotated[
    str,
    typer.Option(
        "--port", "-p", help="The board's port: /dev/ttyACM0, or a pyserial URL (socket://...)."
    ),
]


# -- list -------------------------------------------------------------------------------------


def format_boards(boards: list[NodeBoard]) -> str:
    """The text form of ``node list``: one line per board."""
    lines = []
    for board in boards:
        serial = f"  serial {board.serial_number}" if board.serial_number else ""
        lines.append(
            f"{board.device}  usb {board.usb_id}  {board.kind.value}: {board.chip}{serial}"
        )
    return "\n".join(lines)


@app.command("list")
def list_boards(as_json: JsonOption = False) -> None:
    """Attached boards that look like MicroPython devices, by USB VID:PID."""
    from serial.tools.list_ports import comports  # type: ignore[import-untyped]  # noqa: PLC0415

    boards = node_boards(comports)
    if as_json:
        typer.echo(json.dumps([board.as_dict() for board in boards]))
    elif boards:
        typer.echo(format_boards(boards))
    if not boards:
        note(
            "node",
            "no MicroPython boards found (USB VID:PID of Espressif, RP2 or a USB-UART bridge)",
        )


# -- keys and releases -----------------------------------------------------------------------


@app.command()
def keygen(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Private key file; the public key is OUT.pub.")
    ],
    force: Annotated[bool, typer.Option("--force", help="Replace an existing key.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Make the Ed25519 release key pair: OUT (mode 0600, for signing) and OUT.pub."""
    try:
        pair = make_key_pair(out, force=force)
    except FileExistsError:
        fail(
            "node", f"{out} exists; not replacing a release key without --force", ExitCode.DECLINED
        )
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "private_key": str(pair.private_file),
                    "public_key": str(pair.public_file),
                    "key_id": pair.key_id,
                }
            )
        )
    else:
        typer.echo(str(pair.public_file))
    err(
        f"release key {pair.key_id}: private {pair.private_file} (mode 0600, keep it off"
        f" gateways), public {pair.public_file} (give it to whoever deploys)"
    )


@app.command()
def release(
    version: Annotated[str, typer.Option("--version", help="The release's version, e.g. 1.2.0.")],
    key: Annotated[Path, typer.Option("--key", help="The release private key (node keygen).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The bundle to write (.tar).")],
    source: Annotated[
        Path, typer.Argument(help="Directory of device files (main.py, packages).")
    ] = DEFAULT_SOURCE,
    as_json: JsonOption = False,
) -> None:
    """Sign the firmware files in SOURCE into a bundle: manifest (SHA-256 of each file) + sig."""
    try:
        private_key = load_private_key(key)
        manifest = write_bundle(source, version, private_key, out)
    except NodeToolError as exc:
        fail("node", exc)
    if as_json:
        files = {path: entry.sha256 for path, entry in manifest.files.items()}
        document = {"bundle": str(out), "version": manifest.version, "key_id": manifest.key_id}
        typer.echo(json.dumps(document | {"files": files}))
    else:
        typer.echo(str(out))
    err(
        f"release {manifest.version}: {len(manifest.files)} files, {manifest.total_size} bytes,"
        f" signed with key {manifest.key_id}"
    )


# -- node.json --------------------------------------------------------------------------------

NodeIdOption = Annotated[
    str, typer.Option("--node-id", help="The node's name: 1-32 of a-z, 0-9, '-'.")
]
IntervalOption = Annotated[
    int, typer.Option("--sample-interval", help="Seconds between measurements.")
]
ModbusOption = Annotated[
    bool, typer.Option("--modbus/--no-modbus", help="Answer as a Modbus RTU unit.")
]
UnitOption = Annotated[int, typer.Option("--unit-id", help="Modbus unit id (1-247).")]
BaudOption = Annotated[int, typer.Option("--baudrate", help="Modbus RTU baud rate.")]
BleOption = Annotated[bool, typer.Option("--ble/--no-ble", help="Send BTHome advertisements.")]
BleIntervalOption = Annotated[
    int, typer.Option("--ble-interval", help="Seconds between BLE advertisements.")
]
BleKeyOption = Annotated[
    str | None,
    typer.Option(
        "--ble-key",
        help="BTHome AES key (32 hex digits), or 'generate' for a new one (printed).",
    ),
]


def _node_settings(  # noqa: PLR0917 - the node options, as the commands take them
    node_id: str,
    sample_interval: int,
    modbus: bool,
    unit_id: int,
    baudrate: int,
    ble: bool,
    ble_interval: int,
    ble_key: str | None,
) -> NodeConfig:
    key = generate_ble_key() if ble_key == "generate" else ble_key
    data: dict[str, Any] = {
        "schema": 1,
        "node_id": node_id,
        "sample_interval_s": sample_interval,
        "modbus": {"enabled": modbus, "unit_id": unit_id, "baudrate": baudrate},
        "ble": {"enabled": ble, "interval_s": ble_interval, "key": key},
    }
    try:
        return node_config(data, "node settings (command-line options)")
    except ConfigError as exc:
        fail("node", exc)


@app.command("config")
def show_config(  # noqa: PLR0917 - one parameter per CLI option
    node_id: NodeIdOption,
    sample_interval: IntervalOption = 10,
    modbus: ModbusOption = True,
    unit_id: UnitOption = 1,
    baudrate: BaudOption = 9600,
    ble: BleOption = False,
    ble_interval: BleIntervalOption = 5,
    ble_key: BleKeyOption = None,
) -> None:
    """Print the node.json that `node deploy` would write with the same options."""
    settings = _node_settings(
        node_id, sample_interval, modbus, unit_id, baudrate, ble, ble_interval, ble_key
    )
    typer.echo(node_json(settings).decode(), nl=False)


# -- deploy -----------------------------------------------------------------------------------


class _Bar:
    """The copy's progress bar on stderr (nothing when stderr is not a terminal)."""

    def __init__(self, total: int) -> None:
        console = Console(stderr=True)
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            console=console,
            disable=not console.is_terminal,
            transient=True,
        )
        self._task = self._progress.add_task("copying", total=total)
        self._done: dict[str, int] = {}

    def __enter__(self) -> _Bar:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def __call__(self, path: str, done: int, _size: int) -> None:
        self._done[path] = done
        self._progress.update(self._task, completed=sum(self._done.values()), description=path)


@app.command("deploy")
def deploy_command(  # noqa: PLR0917 - one parameter per CLI option
    port: PortOption,
    bundle: Annotated[Path, typer.Option("--bundle", "-b", help="Signed bundle (node release).")],
    release_key: Annotated[
        Path,
        typer.Option(
            "--release-key",
            envvar="STREETGATE_RELEASE_KEY",
            help="The release public key bundles must be signed with.",
        ),
    ],
    node_id: NodeIdOption,
    sample_interval: IntervalOption = 10,
    modbus: ModbusOption = True,
    unit_id: UnitOption = 1,
    baudrate: BaudOption = 9600,
    ble: BleOption = False,
    ble_interval: BleIntervalOption = 5,
    ble_key: BleKeyOption = None,
    rotate_key: Annotated[
        bool,
        typer.Option(
            "--rotate-key",
            help="Deploy a new BLE key (printed) with a fresh counter state; needed when the"
            " board has lost the counter state of its key.",
        ),
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait for the board's raw REPL.")
    ] = 5.0,
    boot_timeout: Annotated[
        float, typer.Option("--boot-timeout", help="Seconds to wait for output after reset.")
    ] = 10.0,
    as_json: JsonOption = False,
) -> None:
    """Copy a signed firmware bundle and a node.json to a board, verify each file, reset it.

    The bundle's signature is checked against the release key before the board is touched.
    A new key (``--ble-key generate``, ``--rotate-key``) goes with a fresh counter state; a
    given key only to a board that holds it with its counter state (else exit 8).
    """
    if rotate_key and ble_key not in {None, "generate"}:
        fail(
            "node",
            "give either --rotate-key (a new key) or --ble-key HEX, not both",
            ExitCode.USAGE,
        )
    new_key = rotate_key or ble_key == "generate"
    settings = _node_settings(
        node_id,
        sample_interval,
        modbus,
        unit_id,
        baudrate,
        ble,
        ble_interval,
        "generate" if new_key else ble_key,
    )
    from firmware.deploy import deploy as deploy_files  # noqa: PLC0415 - mpremote, pyserial: see top
    from firmware.deploy import fresh_counter_state  # noqa: PLC0415

    try:
        verified = open_bundle(bundle, load_public_key(release_key))
        files = dict(verified.files)
        files[NODE_CONFIG_PATH] = node_json(settings)
        if new_key:
            files |= fresh_counter_state()
        with _Bar(sum(len(data) for data in files.values())) as bar:
            result = deploy_files(
                port,
                files,
                manifest=verified.manifest_data,
                progress=bar,
                timeout=timeout,
                boot_timeout=boot_timeout,
                existing_ble_key=None if new_key else settings.ble.key,
            )
    except (NodeToolError, ConfigError) as exc:
        fail("node", exc)
    first_line = result.boot_output.strip().splitlines()[0] if result.boot_output else ""
    if as_json:
        document = {
            "port": port,
            "version": verified.manifest.version,
            "key_id": verified.manifest.key_id,
            "node": settings.model_dump(by_alias=True),
            "files": result.files,
            "removed": list(result.removed),
            "boot_output": result.boot_output,
        }
        typer.echo(json.dumps(document))
    else:
        typer.echo(
            f"deployed {verified.manifest.version} to {port} as {settings.node_id}:"
            f" {len(result.files)} files verified by SHA-256, board reset and back"
        )
        if settings.ble.key is not None:
            typer.echo(f"ble key: {settings.ble.key}")
    if result.removed:
        err(f"removed {len(result.removed)} file(s) of the previous release: {result.removed}")
    err(f"board after reset: {first_line}")
    if new_key:
        err("the BLE key is the node's BTHome key: put it in the gateway's bthome device config")


# -- monitor ----------------------------------------------------------------------------------


@app.command()
def monitor(
    port: PortOption,
    seconds: Annotated[
        float | None, typer.Option("--seconds", help="Stop after this long (default: Ctrl-C).")
    ] = None,
) -> None:
    """Print the node's console output as it comes, until Ctrl-C (or --seconds)."""
    deadline = None if seconds is None else time.monotonic() + seconds
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    from firmware.deploy import open_console  # noqa: PLC0415 - mpremote and pyserial, see top

    try:
        console = open_console(port)
    except BoardError as exc:
        fail("node", exc)
    err(f"console of {port} (Ctrl-C to stop)")
    try:
        while deadline is None or time.monotonic() < deadline:
            data = console.read(4096)
            if data:
                typer.echo(decoder.decode(data).replace("\r\n", "\n"), nl=False)
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        fail("node", f"{port}: the port went away ({exc})", ExitCode.UNREACHABLE)
    finally:
        console.close()
