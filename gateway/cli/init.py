"""``streetgate init``: a wizard that writes a valid gateway config.

Every question is also a flag, so scripted installs never prompt; with ``--non-interactive``
(or when stdin is not a terminal) a missing answer is a usage error naming the flags to give.
Answers are checked as they are given, by the config models themselves, and a bad answer is
asked again with the reason. The file is written atomically with mode 0600 (it may hold a
BTHome bindkey and names the TLS key), and never over an existing file without ``--force``;
with it, the existing file is edited in place (the answers replace what init asks; the other
keys, the comments and the layout stay: install.sh's commented skeleton stays commented).

``--device`` takes ``KIND:key=value,key=value,...`` with the keys of that kind's
``[[devices]]`` table (README.md "Setting up a gateway"), e.g.::

    modbus_tcp:name=meter-1,host=192.0.2.10,unit_id=1,profile=sdm120
    modbus_rtu:name=bus-1,port=/dev/ttyUSB0,baudrate=9600,unit=meter-2@2@sdm120,unit=meter-3@3@sdm630
    sds011:name=air-1,port=/dev/serial/by-id/usb-1a86_USB_Serial-if00-port0
    bthome:name=door-1,mac=A4:C1:38:00:00:01

A BTHome bindkey is never a flag value: it is asked with a hidden prompt, or read from a file
given as ``--bthome-key-file NAME=PATH``.

On a first install the TLS files usually do not exist yet (the key is made on the gateway, the
platform signs its CSR): ``--tls-pending`` (or the answer ``later``) writes where they will go
(``tls/`` beside the config unless given), marked pending in a comment; ``validate``, ``doctor``
and ``run`` name each missing file with the ``streetgate creds`` command that provides it.
"""

from __future__ import annotations

import os
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import BaseModel, TypeAdapter, ValidationError
from tomlkit.exceptions import TOMLKitError

from drivers.profile import builtin_profiles
from gateway.cli.common import err, fail, note, warn
from gateway.cli.config import pending_lines, summary
from gateway.cli.exit_codes import ExitCode
from gateway.config.devices import (
    BthomeDevice,
    DeviceConfig,
    ModbusRtuBus,
    ModbusTcpDevice,
    Pms5003Device,
    RtuUnit,
    RuuviDevice,
    Sds011Device,
    SerialLine,
)
from gateway.config.model import (
    GatewayConfig,
    MqttConfig,
    OutboxConfig,
    TlsConfig,
    parse_config,
)
from gateway.config.tls_files import default_tls_paths, pending_tls_files
from gateway.config.toml_write import dumps, edit
from gateway.core.errors import BadAnswer, ConfigError
from gateway.core.key_files import unsafe_mode, write_atomically
from gateway.core.safe_files import MAX_CONFIG_BYTES, read_config_file
from gateway.core.validation import issues_from_validation_error

__all__ = [
    "DEFAULT_OUTBOX",
    "DEVICE_KINDS",
    "init",
    "parse_device_flag",
    "stdin_is_terminal",
]

T = TypeVar("T")

DEFAULT_OUTBOX = "/var/lib/streetgate/outbox.db"

#: The kinds the wizard knows, with the model that checks each one.
DEVICE_KINDS: dict[str, type[BaseModel]] = {
    "modbus_tcp": ModbusTcpDevice,
    "modbus_rtu": ModbusRtuBus,
    "sds011": Sds011Device,
    "pms5003": Pms5003Device,
    "bthome": BthomeDevice,
    "ruuvi": RuuviDevice,
}

_INT_KEYS = {"port", "unit_id", "baudrate", "stopbits"}


def stdin_is_terminal() -> bool:
    """Whether someone can answer questions (tests replace this to drive the wizard)."""
    return sys.stdin.isatty()


# -- checking answers with the config models -------------------------------------------------


def check_field(model: type[BaseModel], data: dict[str, Any], key: str) -> None:
    """Raise BadAnswer if ``model`` rejects ``data[key]`` (other keys may still be missing)."""
    try:
        model.model_validate(data, context={"base_dir": Path.cwd()})
    except ValidationError as exc:
        issues = [
            i.message
            for i in issues_from_validation_error(exc)
            if i.location == key or i.location.startswith((f"{key}.", f"{key}["))
        ]
        if issues:
            raise BadAnswer("; ".join(issues)) from None


def _typed(key: str, text: str, model: type[BaseModel] | None = None) -> Any:
    """An answer as the config holds it: a number where the key takes one."""
    serial_port = key == "port" and model is not None and issubclass(model, SerialLine)
    if key in _INT_KEYS and not serial_port and text.strip():
        try:
            return int(text, 0)
        except ValueError:
            raise BadAnswer(f"expected a whole number (got {text!r})") from None
    return text


def _existing_file(text: str) -> Path:
    path = Path(text).expanduser()
    if not path.is_file():
        raise BadAnswer(f"no such file: {path}")
    return path.resolve()


def _secret_file(text: str, why: str) -> Path:
    """An existing file that should be private; a warning saying ``why`` if others can read it."""
    path = _existing_file(text)
    mode = unsafe_mode(path)
    if mode is not None:
        warn(
            "init", f"{path} can be read by other users (mode {mode:04o}); {why}: chmod 600 {path}"
        )
    return path


def _key_file(text: str) -> Path:
    return _secret_file(text, "the gateway refuses to start with it")


def _later_file(check: Callable[[str], Path]) -> Callable[[str], Path]:
    """A TLS file that may not exist yet (``--tls-pending``): checked if it is there."""

    def later(text: str) -> Path:
        path = Path(text).expanduser()
        if not os.path.lexists(path):
            return Path(os.path.abspath(path))
        return check(text)

    return later


#: The answer that defers a TLS file to ``streetgate creds`` after the wizard.
LATER = "later"


def _password_file(text: str) -> Path:
    return _secret_file(text, "it holds the broker password")


def _bthome_key(text: str) -> str:
    key = text.strip()
    try:
        TypeAdapter(DeviceConfig).validate_python(
            {"kind": "bthome", "name": "x", "mac": "00:00:00:00:00:00", "key": key}
        )
    except ValidationError:
        raise BadAnswer("expected the bindkey as 32 hexadecimal digits (128 bits)") from None
    return key


# -- asking ----------------------------------------------------------------------------------


def ask(
    question: str, check: Callable[[str], T], default: str | None = None, *, hide: bool = False
) -> T:
    """Ask until ``check`` accepts the answer; a rejected answer is explained, then re-asked."""
    while True:
        answer = typer.prompt(
            question,
            default=default,
            hide_input=hide,
            err=True,
            show_default=default not in {None, ""} and not hide,
        )
        try:
            return check(str(answer).strip())
        except BadAnswer as exc:
            err(f"  {exc}; try again")


def ask_field(  # noqa: PLR0917 - the question and how to check it
    model: type[BaseModel],
    data: dict[str, Any],
    key: str,
    question: str,
    default: str | None = None,
    also: Callable[[Any], None] | None = None,
) -> None:
    """Ask for one key of a config table, checked by its model (and ``also``), into ``data``."""

    def check(text: str) -> Any:
        value = _typed(key, text, model)
        check_field(model, {**data, key: value}, key)
        if also is not None:
            also(value)
        return value

    data[key] = ask(question, check, default)


def _choose(question: str, choices: list[str], default: str | None = None) -> str:
    def check(text: str) -> str:
        if text not in choices:
            raise BadAnswer(f"expected one of {', '.join(choices)}")
        return text

    return ask(f"{question} ({'/'.join(choices)})", check, default)


def ask_device(kind: str, taken: set[str]) -> dict[str, Any]:
    """One device's table, asked field by field; ``taken``: the names already used."""
    model = DEVICE_KINDS[kind]
    data: dict[str, Any] = {"kind": kind}

    def new_name(name: str) -> None:
        if name in taken:
            raise BadAnswer(f"{name!r} is already used by another device")

    profiles = ", ".join(builtin_profiles())
    ask_field(
        model, data, "name", "Bus name" if kind == "modbus_rtu" else "Device name", also=new_name
    )
    taken.add(data["name"])
    if kind == "modbus_tcp":
        ask_field(model, data, "host", "Device (or Modbus gateway) host")
        ask_field(model, data, "port", "Modbus TCP port", "502")
        ask_field(model, data, "unit_id", "Unit id", "1")
        ask_field(model, data, "profile", f"Profile ({profiles}, or a .toml file)")
    elif kind in {"modbus_rtu", "sds011", "pms5003"}:
        ask_field(model, data, "port", "Serial port (/dev/serial/by-id/..., or usb:VID:PID)")
        if kind == "modbus_rtu":
            data["units"] = _ask_units(data, new_name, taken, profiles)
    else:  # bthome, ruuvi
        ask_field(model, data, "mac", "MAC address (AA:BB:CC:DD:EE:FF)")
        if kind == "bthome":

            def key(text: str) -> str | None:
                return _bthome_key(text) if text else None

            bindkey = ask(
                "Bindkey (32 hex digits, hidden; empty if not encrypted)", key, "", hide=True
            )
            if bindkey:
                data["key"] = bindkey
    return data


def _ask_units(
    bus: dict[str, Any], new_name: Callable[[Any], None], taken: set[str], profiles: str
) -> list[dict[str, Any]]:
    """The serial line of an RS-485 bus, then its units until the technician says no more."""
    ask_field(ModbusRtuBus, bus, "baudrate", "Baud rate", "9600")
    ask_field(ModbusRtuBus, bus, "parity", "Parity (N, E or O)", "N")
    ask_field(ModbusRtuBus, bus, "stopbits", "Stop bits (1 or 2)", "1")
    units: list[dict[str, Any]] = []

    def free_id(unit_id: Any) -> None:
        if any(u["unit_id"] == unit_id for u in units):
            raise BadAnswer(f"unit id {unit_id} is already on this bus")

    while True:
        unit: dict[str, Any] = {}
        ask_field(RtuUnit, unit, "name", "  Unit name", also=new_name)
        taken.add(unit["name"])
        ask_field(RtuUnit, unit, "unit_id", "  Unit id (1-247)", also=free_id)
        ask_field(RtuUnit, unit, "profile", f"  Profile ({profiles}, or a .toml file)")
        units.append(unit)
        if not typer.confirm("Another unit on this bus?", default=False, err=True):
            return units


# -- the --device flag -----------------------------------------------------------------------


def parse_device_flag(spec: str, key_files: dict[str, Path]) -> dict[str, Any]:
    """``KIND:key=value,...`` as a ``[[devices]]`` table, checked; raises BadAnswer."""
    kind, sep, rest = spec.partition(":")
    if not sep or kind not in DEVICE_KINDS:
        raise BadAnswer(f"expected KIND:key=value,... with KIND one of {', '.join(DEVICE_KINDS)}")
    data: dict[str, Any] = {"kind": kind}
    units: list[dict[str, Any]] = []
    for pair in filter(None, rest.split(",")):
        key, eq, value = pair.partition("=")
        key = key.strip()
        if not eq:
            raise BadAnswer(f"expected key=value, got {pair!r}")
        if key == "key":
            raise BadAnswer("a bindkey is never given on the command line: use --bthome-key-file")
        if key == "unit" and kind == "modbus_rtu":
            parts = value.split("@")
            if len(parts) != 3:  # name, id, profile
                raise BadAnswer(f"expected unit=NAME@ID@PROFILE, got {pair!r}")
            units.append(
                {"name": parts[0], "unit_id": _typed("unit_id", parts[1]), "profile": parts[2]}
            )
        else:
            data[key] = _typed(key, value.strip(), DEVICE_KINDS[kind])
    if units:
        data["units"] = units
    if kind == "bthome" and data.get("name") in key_files:
        data["key"] = _read_key_file(key_files[data["name"]])
    try:
        TypeAdapter(DeviceConfig).validate_python(data, context={"base_dir": Path.cwd()})
    except ValidationError as exc:
        raise BadAnswer("; ".join(str(i) for i in issues_from_validation_error(exc))) from None
    return data


def _read_key_file(path: Path) -> str:
    try:
        text = path.read_text("ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadAnswer(f"cannot read the bindkey from {path}: {exc}") from None
    return _bthome_key(text)


def _parse_key_files(values: list[str]) -> dict[str, Path]:
    out = {}
    for value in values:
        name, eq, path = value.partition("=")
        if not eq or not name or not path:
            raise BadAnswer(f"expected --bthome-key-file NAME=PATH, got {value!r}")
        out[name] = Path(path)
    return out


# -- writing ---------------------------------------------------------------------------------


def _usage(message: str) -> NoReturn:
    fail("init", message, ExitCode.USAGE)


def _from_flag(flag: str, check: Callable[[str], T], value: str) -> T:
    try:
        return check(value)
    except BadAnswer as exc:
        _usage(f"{flag} {value!r}: {exc}")


def _field_check(model: type[BaseModel], key: str, extra: dict[str, Any]) -> Callable[[str], Any]:
    def check(text: str) -> Any:
        value = _typed(key, text, model)
        check_field(model, {**extra, key: value}, key)
        return value

    return check


def init(  # noqa: PLR0912, PLR0915, PLR0917 - one parameter per question
    path: Annotated[Path, typer.Argument(help="Config file to write.")] = Path("streetgate.toml"),
    gateway_id: Annotated[
        str | None, typer.Option(help="This gateway's id (letters, digits, '_', '.', '-').")
    ] = None,
    broker_host: Annotated[str | None, typer.Option(help="MQTT broker host name.")] = None,
    broker_port: Annotated[
        int | None, typer.Option(help="MQTT broker port (default: 8883 with TLS, else 1883).")
    ] = None,
    tls: Annotated[
        bool | None,
        typer.Option("--tls/--no-tls", help="Connect with TLS (default: if TLS files are given)."),
    ] = None,
    ca_file: Annotated[str | None, typer.Option(help="CA certificate of the broker (PEM).")] = None,
    cert_file: Annotated[
        str | None, typer.Option(help="This gateway's client certificate (PEM).")
    ] = None,
    key_file: Annotated[
        str | None, typer.Option(help="This gateway's private key (PEM, mode 0600).")
    ] = None,
    username: Annotated[
        str | None, typer.Option(help="MQTT user name, if the broker asks for one.")
    ] = None,
    password_file: Annotated[
        str | None,
        typer.Option(help="File holding the MQTT password on its first line (mode 0600)."),
    ] = None,
    outbox: Annotated[
        str | None, typer.Option(help=f"Outbox database path (default: {DEFAULT_OUTBOX}).")
    ] = None,
    device: Annotated[
        list[str] | None,
        typer.Option(help="A device, KIND:key=value,... (repeatable; see the README)."),
    ] = None,
    bthome_key_file: Annotated[
        list[str] | None,
        typer.Option(help="NAME=PATH: read that BTHome device's bindkey from a file."),
    ] = None,
    tls_pending: Annotated[
        bool,
        typer.Option(
            "--tls-pending",
            help="TLS files that do not exist yet: write where they will go (the given"
            " --ca-file/--cert-file/--key-file, else tls/ beside PATH), marked pending; make and"
            " install them afterwards with `streetgate creds init` and `creds install`.",
        ),
    ] = False,
    non_interactive: Annotated[
        bool, typer.Option("--non-interactive", help="Never ask; fail naming missing answers.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite PATH if it exists.")] = False,
) -> None:
    """Ask for the gateway's settings and write a valid config file (mode 0600)."""
    if path.exists() and not force:
        fail(
            "init",
            f"{path} exists; add --force to overwrite it. Nothing was written.",
            ExitCode.DECLINED,
        )
    interactive = not non_interactive and stdin_is_terminal()
    try:
        key_files = _parse_key_files(bthome_key_file or [])
    except BadAnswer as exc:
        _usage(str(exc))

    # Flags first: a bad flag value is a usage error, whether or not we could ask.
    answers: dict[str, Any] = {}
    if gateway_id is not None:
        answers["gateway_id"] = _from_flag(
            "--gateway-id", _field_check(GatewayConfig, "gateway_id", {}), gateway_id
        )
    if broker_host is not None:
        answers["host"] = _from_flag(
            "--broker-host", _field_check(MqttConfig, "host", {}), broker_host
        )
    if broker_port is not None:
        answers["port"] = _from_flag(
            "--broker-port", _field_check(MqttConfig, "port", {"host": "x"}), str(broker_port)
        )
    if username is not None:
        answers["username"] = _from_flag(
            "--username", _field_check(MqttConfig, "username", {"host": "x"}), username
        )
    if password_file is not None:
        if username is None:
            _usage("--password-file needs --username (the password is for a user)")
        answers["password_file"] = _from_flag("--password-file", _password_file, password_file)
    files: dict[str, Path] = {}
    for flag, value, check in (
        ("--ca-file", ca_file, _existing_file),
        ("--cert-file", cert_file, _existing_file),
        ("--key-file", key_file, _key_file),
    ):
        if value is not None:
            files[flag] = _from_flag(flag, _later_file(check) if tls_pending else check, value)
    if tls_pending:
        if tls is False:
            _usage("--tls-pending given with --no-tls: TLS files need TLS")
        tls = True
        defaults = default_tls_paths(path)
        files.setdefault("--ca-file", defaults["ca_file"])
        if "--cert-file" not in files and "--key-file" not in files:
            files["--cert-file"], files["--key-file"] = defaults["cert_file"], defaults["key_file"]
    if tls is None and (files or not interactive):
        tls = bool(files)  # TLS files mean TLS; a script that gives none means plain TCP
    if tls is False and files:
        _usage(f"{', '.join(files)} given with --no-tls: TLS files need TLS")
    devices = [
        _from_flag("--device", lambda s: parse_device_flag(s, key_files), spec)
        for spec in device or []
    ]
    if len(set(names := [n for d in devices for n in _names(d)])) != len(names):
        _usage(f"--device: device names must be unique (got {names})")

    missing = []
    if "gateway_id" not in answers:
        missing.append("--gateway-id")
    if "host" not in answers:
        missing.append("--broker-host")
    if tls and "--ca-file" not in files:
        missing.append("--ca-file (or --tls-pending to install the TLS files afterwards)")
    if ("--cert-file" in files) != ("--key-file" in files):
        missing.append("--key-file" if "--cert-file" in files else "--cert-file")
    if missing and not interactive:
        why = "--non-interactive" if non_interactive else "stdin is not a terminal"
        _usage(f"missing answers ({why}, so nothing is asked): {', '.join(missing)}")

    if interactive:
        err(f"Setting up {path}; every question is also a flag (streetgate init --help).")
        if "gateway_id" not in answers:
            answers["gateway_id"] = ask("Gateway id", _field_check(GatewayConfig, "gateway_id", {}))
        if "host" not in answers:
            answers["host"] = ask("MQTT broker host", _field_check(MqttConfig, "host", {}))
        if tls is None:
            tls = typer.confirm("Connect to the broker with TLS?", default=True, err=True)
        if "port" not in answers:
            answers["port"] = ask(
                "MQTT broker port",
                _field_check(MqttConfig, "port", {"host": "x"}),
                "8883" if tls else "1883",
            )
        later = default_tls_paths(path)
        if tls and "--ca-file" not in files:
            files["--ca-file"] = ask(
                f"CA certificate file (PEM; '{LATER}': install it afterwards)",
                lambda t: later["ca_file"] if t == LATER else _existing_file(t),
            )
        if tls and "--cert-file" not in files and "--key-file" not in files:
            cert = ask(
                f"Client certificate file (PEM; '{LATER}': make the key here afterwards;"
                " empty for none)",
                lambda t: (later["cert_file"] if t == LATER else _existing_file(t)) if t else None,
                "",
            )
            if cert == later["cert_file"]:
                files["--key-file"] = later["key_file"]
            if cert is not None:
                files["--cert-file"] = cert
        if "--cert-file" in files and "--key-file" not in files:
            files["--key-file"] = ask("Private key file (PEM)", _key_file)
        if "--key-file" in files and "--cert-file" not in files:
            files["--cert-file"] = ask("Client certificate file (PEM)", _existing_file)
        if "username" not in answers:
            user = ask(
                "MQTT user name (empty for none)",
                lambda t: _field_check(MqttConfig, "username", {"host": "x"})(t) if t else None,
                "",
            )
            if user is not None:
                answers["username"] = user
        if "username" in answers and "password_file" not in answers:
            secret = ask(
                "Password file (the password on its first line; empty for none)",
                lambda t: _password_file(t) if t else None,
                "",
            )
            if secret is not None:
                answers["password_file"] = secret
        if outbox is None:
            outbox = ask("Outbox database", _field_check(OutboxConfig, "path", {}), DEFAULT_OUTBOX)
        if not devices:
            taken: set[str] = set()
            kinds = [*DEVICE_KINDS, "done"]
            while (kind := _choose("Add a device", kinds, "done")) != "done":
                devices.append(ask_device(kind, taken))
                err(f"  added {kind} {devices[-1]['name']}")

    mqtt: dict[str, Any] = {
        "host": answers["host"],
        "port": answers.get("port", 8883 if tls else 1883),
    }
    if "username" in answers:
        mqtt["username"] = answers["username"]
    if "password_file" in answers:
        mqtt["password_file"] = str(answers["password_file"])
    if tls:
        mqtt["tls"] = {
            "ca_file": str(files["--ca-file"]),
            "cert_file": str(files["--cert-file"]) if "--cert-file" in files else None,
            "key_file": str(files["--key-file"]) if "--key-file" in files else None,
        }
    outbox_path = os.path.abspath(Path(outbox or DEFAULT_OUTBOX).expanduser())
    document = {
        "gateway_id": answers["gateway_id"],
        "mqtt": mqtt,
        "outbox": {"path": outbox_path},
        "devices": devices,
    }
    pending_note = ""
    if tls:
        planned = TlsConfig.model_validate(mqtt["tls"])
        pending = pending_tls_files(planned, path)
        if pending:
            pending_note = (
                f"{_PENDING_MARK} the gateway does not start until these TLS"
                " files exist\n# (`streetgate validate` says which are still missing):\n"
                + "".join(f"#   {p}\n" for p in pending)
                + "#\n"
            )
    text = _config_text(path, document, pending_note)
    try:
        config = parse_config(tomllib.loads(text), str(path), path.parent.resolve())
    except ConfigError as exc:  # the answers were checked one by one; together they must fit
        fail("init", exc, ExitCode.FAILURE)
    try:
        write_atomically(path, text.encode(), 0o600)
    except OSError as exc:
        fail(
            "init",
            f"cannot write {path}: {exc.strerror}",
            ExitCode.PERMISSION if isinstance(exc, PermissionError) else ExitCode.FAILURE,
        )

    err(f"wrote {path} (mode 0600)")
    err(summary(config))
    if not devices:
        note("init", "no devices yet; add [[devices]] tables (see README.md) or run init again")
    for line in pending_lines(config, path):
        err(line)
    err(f"next: streetgate config validate -c {path}")
    err(f"      streetgate doctor -c {path}")


#: The [mqtt] keys init answers; the others of an existing file (keepalive, ...) stay.
_MQTT_ANSWERS = ("host", "port", "username", "password_file", "tls")


#: Opens the comment block that lists TLS files still to come (a later init replaces it).
_PENDING_MARK = "# PENDING when this was written:"


def _without_pending_note(text: str) -> str:
    """``text`` without the pending block an earlier init wrote at its top."""
    lines = text.splitlines(keepends=True)
    opening = [i for i, line in enumerate(lines) if not line.startswith("#")][:1] or [len(lines)]
    start = next((i for i in range(opening[0]) if lines[i].startswith(_PENDING_MARK)), None)
    if start is None:
        return text
    end = next((i for i in range(start + 1, opening[0]) if lines[i] == "#\n"), start)
    return "".join(lines[:start] + lines[end + 1 :])


def _config_text(path: Path, document: dict[str, Any], pending_note: str) -> str:
    """The file to write: ``document`` as a new file, or, over an existing one (``--force``),
    that file edited in place: the answers replace what init asks (gateway id, broker, TLS,
    credentials, outbox path, devices); every other key, comment and blank line stays.
    ``pending_note`` (the TLS files still to come, or empty) goes at the top either way."""
    fresh = (
        "# Written by streetgate init; check with: streetgate config validate -c FILE\n#\n"
        + pending_note
        + dumps(document)
        if pending_note
        else "# Written by streetgate init; check with: streetgate config validate -c FILE\n"
        + dumps(document)
    )
    if not path.exists():
        return fresh
    try:
        current = read_config_file(path, "", MAX_CONFIG_BYTES).decode("utf-8")
        existing = tomllib.loads(current)
    except (ConfigError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        warn("init", f"{path} could not be read as TOML ({exc}); writing it anew")
        return fresh
    merged = dict(existing)
    merged["gateway_id"] = document["gateway_id"]
    mqtt, box = existing.get("mqtt"), existing.get("outbox")
    mqtt = mqtt if isinstance(mqtt, dict) else {}
    merged["mqtt"] = {k: v for k, v in mqtt.items() if k not in _MQTT_ANSWERS} | document["mqtt"]
    merged["outbox"] = (box if isinstance(box, dict) else {}) | document["outbox"]
    merged.pop("devices", None)
    if document["devices"]:
        merged["devices"] = document["devices"]
    try:
        return pending_note + edit(_without_pending_note(current), merged)
    except (ValueError, TOMLKitError) as exc:
        warn("init", f"the comments of {path} could not be kept ({exc}); writing it anew")
        return fresh


def _names(device: dict[str, Any]) -> list[str]:
    if device["kind"] == "modbus_rtu":
        return [u["name"] for u in device.get("units", [])]
    return [device["name"]]
