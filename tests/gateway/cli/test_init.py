"""`streetgate init`: the wizard through CliRunner and in a real terminal, and its flags."""

from __future__ import annotations

import os
import pty
import select
import stat
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from gateway.cli import init as init_cli
from gateway.cli.exit_codes import ExitCode
from gateway.cli.main import app
from gateway.config.devices import (
    BthomeDevice,
    ModbusRtuBus,
    ModbusTcpDevice,
    RuuviDevice,
    device_names,
)
from gateway.config.model import load_config
from tests.support.readme_examples import readme_commands

KEY = "0123456789abcdef0123456789ABCDEF"


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Placeholder PEM files: init checks that they exist and how readable the key is."""
    files = []
    for name, mode in (("ca.crt", 0o644), ("gw.crt", 0o644), ("gw.key", 0o600)):
        path = tmp_path / name
        path.write_text(f"-----BEGIN {name}-----\n")
        path.chmod(mode)
        files.append(path)
    return files[0], files[1], files[2]


def run_init(*args: str, answers: str | None = None, terminal: bool = True) -> Result:
    """``streetgate init`` with ``answers`` typed at the prompts (``terminal``: stdin is a tty)."""
    original = init_cli.stdin_is_terminal
    init_cli.stdin_is_terminal = lambda: terminal
    try:
        return CliRunner().invoke(app, ["init", *args], input=answers)
    finally:
        init_cli.stdin_is_terminal = original


def lines(*answers: str) -> str:
    return "".join(f"{a}\n" for a in answers)


def test_the_wizard_writes_a_config_that_loads(
    tmp_path: Path, tls_files: tuple[Path, Path, Path]
) -> None:
    ca, cert, key = tls_files
    password = tmp_path / "mqtt.pass"
    password.write_text("s3cret\n")
    password.chmod(0o644)  # others can read it: a warning, not a refusal
    path = tmp_path / "gw.toml"
    answers = lines(
        "pole 42",  # bad: a space; asked again
        "pole-42",
        "broker.example",
        "y",  # TLS
        "",  # port: 8883
        str(tmp_path / "missing.crt"),  # bad: no such file
        str(ca),
        str(cert),
        str(key),
        "gw-pole-42",  # MQTT user name
        str(tmp_path / "nopass"),  # bad: no such file
        str(password),
        str(tmp_path / "state" / "outbox.db"),
        "modbus_tcp",
        "meter-1",
        "192.0.2.10",
        "",  # port 502
        "300",  # bad unit id
        "7",
        "nonesuch",  # bad profile
        "sdm120",
        "modbus_rtu",
        "meter-1",  # bad: already taken
        "bus-1",
        "/dev/ttyUSB0",
        "19200",
        "E",
        "1",
        "meter-2",
        "2",
        "sdm630",
        "y",
        "meter-3",
        "2",  # bad: already on this bus
        "3",
        "xy-md02",
        "n",
        "bthome",
        "door-1",
        "AA:BB:CC:DD:EE:0",  # bad MAC
        "A4:C1:38:00:00:01",
        "abc",  # bad key
        KEY,
        "ruuvi",
        "tag-1",
        "F0:0D:00:00:00:02",
        "done",
    )
    result = run_init(str(path), answers=answers)
    assert result.exit_code == 0, result.output
    assert "Gateway id" not in result.stdout  # prompts and messages go to stderr
    assert "wrote" not in result.stdout  # (CliRunner echoes the typed answers to stdout)
    err = result.stderr
    assert "expected a name of letters, digits" in err
    assert f"no such file: {tmp_path / 'missing.crt'}; try again" in err
    assert "less than or equal to 255" in err
    assert "no built-in profile named 'nonesuch'" in err
    assert "'meter-1' is already used by another device; try again" in err
    assert "unit id 2 is already on this bus; try again" in err
    assert "expected the bindkey as 32 hexadecimal digits" in err
    assert KEY not in err  # the bindkey prompt hides what is typed
    assert f"wrote {path} (mode 0600)" in err
    assert f"next: streetgate config validate -c {path}" in err
    assert f"streetgate doctor -c {path}" in err
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    config = load_config(path)
    assert config.gateway_id == "pole-42"
    assert (config.mqtt.host, config.mqtt.port) == ("broker.example", 8883)
    assert config.mqtt.tls is not None
    assert (config.mqtt.tls.ca_file, config.mqtt.tls.cert_file, config.mqtt.tls.key_file) == (
        ca,
        cert,
        key,
    )
    assert (config.mqtt.username, config.mqtt.password_file) == ("gw-pole-42", password)
    assert f"no such file: {tmp_path / 'nopass'}; try again" in err
    assert f"{password} can be read by other users (mode 0644)" in err
    assert config.outbox.path == tmp_path / "state" / "outbox.db"
    tcp, bus, door, tag = config.devices
    assert isinstance(tcp, ModbusTcpDevice)
    assert (tcp.host, tcp.port, tcp.unit_id, tcp.profile.name) == ("192.0.2.10", 502, 7, "sdm120")
    assert isinstance(bus, ModbusRtuBus)
    assert (bus.port, bus.baudrate, bus.parity, bus.stopbits) == ("/dev/ttyUSB0", 19200, "E", 1)
    assert [(u.name, u.unit_id, u.profile.name) for u in bus.units] == [
        ("meter-2", 2, "sdm630"),
        ("meter-3", 3, "xy-md02"),
    ]
    assert isinstance(door, BthomeDevice)
    assert door.key is not None
    assert door.key.get_secret_value() == KEY
    assert isinstance(tag, RuuviDevice)
    assert tag.mac == "F0:0D:00:00:00:02"


def test_serial_sensors_and_plain_tcp(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    answers = lines(
        "gw-1",
        "127.0.0.1",
        "n",  # no TLS
        "",  # port 1883
        "",  # no MQTT user name
        "outbox.db",
        "sds011",
        "air-1",
        "ttyUSB0",  # bad: not a path
        "usb:1a86:7523",
        "pms5003",
        "air-2",
        "/dev/serial/by-id/usb-pms-if00",
        "",  # done
    )
    result = run_init(str(path), answers=answers)
    assert result.exit_code == 0, result.output
    assert "try again" in result.stderr
    config = load_config(path)
    assert config.mqtt.tls is None
    assert config.mqtt.port == 1883
    assert (config.mqtt.username, config.mqtt.password_file) == (None, None)
    assert [(d.kind, d.name) for d in config.devices] == [("sds011", "air-1"), ("pms5003", "air-2")]
    assert config.outbox.path == Path.cwd() / "outbox.db"  # relative to where init ran


def test_flags_answer_every_question(tmp_path: Path, tls_files: tuple[Path, Path, Path]) -> None:
    ca, cert, key = tls_files
    key_file = tmp_path / "door.key"
    key_file.write_text(KEY + "\n")
    path = tmp_path / "gw.toml"
    result = run_init(
        str(path),
        "--gateway-id=gw-2",
        "--broker-host=broker.example",
        "--broker-port=8884",
        f"--ca-file={ca}",
        f"--cert-file={cert}",
        f"--key-file={key}",
        "--username=gw-2",
        f"--password-file={key_file}",  # any readable file; its mode is 0644: a warning
        f"--outbox={tmp_path / 'outbox.db'}",
        "--device=modbus_tcp:name=meter-1,host=192.0.2.10,unit_id=1,profile=sdm120",
        "--device=modbus_rtu:name=bus-1,port=/dev/ttyUSB0,baudrate=9600,unit=m2@2@sdm120",
        "--device=bthome:name=door-1,mac=A4:C1:38:00:00:01",
        f"--bthome-key-file=door-1={key_file}",
        "--non-interactive",
    )
    assert result.exit_code == 0, result.output
    assert "?" not in result.stderr  # nothing was asked
    config = load_config(path)
    assert (config.gateway_id, config.mqtt.port) == ("gw-2", 8884)
    assert config.mqtt.tls is not None
    assert config.mqtt.tls.key_file == key
    assert (config.mqtt.username, config.mqtt.password_file) == ("gw-2", key_file)
    door = config.devices[2]
    assert isinstance(door, BthomeDevice)
    assert door.key is not None
    assert door.key.get_secret_value() == KEY


def test_non_interactive_names_the_missing_answers(
    tmp_path: Path, tls_files: tuple[Path, Path, Path]
) -> None:
    _, cert, key = tls_files
    pair = (f"--cert-file={cert}", f"--key-file={key}")
    path = tmp_path / "gw.toml"
    result = run_init(str(path), "--no-tls", terminal=False)  # stdin is not a terminal
    assert result.exit_code == ExitCode.USAGE
    assert "missing answers (stdin is not a terminal, so nothing is asked):" in result.stderr
    assert "--gateway-id, --broker-host" in result.stderr
    result = run_init(str(path), "--gateway-id=gw", "--broker-host=h", "--tls", "--non-interactive")
    assert result.exit_code == ExitCode.USAGE
    assert "missing answers (--non-interactive, so nothing is asked): --ca-file" in result.stderr
    result = run_init(str(path), "--gateway-id=gw", "--broker-host=h", "--non-interactive", *pair)
    assert result.exit_code == ExitCode.USAGE
    assert "missing answers (--non-interactive, so nothing is asked): --ca-file" in result.stderr
    result = run_init(str(path), "--gateway-id=gw", "--broker-host=h", "--no-tls", *pair)
    assert result.exit_code == ExitCode.USAGE
    assert "--cert-file, --key-file given with --no-tls: TLS files need TLS" in result.stderr
    assert not path.exists()


@pytest.mark.parametrize(
    ("flag", "reason"),
    [
        ("--gateway-id=bad id", "expected a name of letters"),
        ("--ca-file=/nonexistent/ca.crt", "no such file"),
        ("--device=modbus_tcp:name=m,host=h,profile=nonesuch", "no built-in profile"),
        ("--device=zigbee:name=z", "KIND one of modbus_tcp, modbus_rtu"),
        ("--device=bthome:name=d,mac=A4:C1:38:00:00:01,key=" + KEY, "never given on the command"),
        ("--device=modbus_tcp:name=m,host=h,profile=sdm120,colour=red", "colour: unknown key"),
        ("--password-file=/etc/hostname", "--password-file needs --username"),
        ("--username=", "--username ''"),
    ],
)
def test_a_bad_flag_is_a_usage_error(tmp_path: Path, flag: str, reason: str) -> None:
    path = tmp_path / "gw.toml"
    result = run_init(str(path), "--gateway-id=gw", "--broker-host=h", "--no-tls", flag)
    assert result.exit_code == ExitCode.USAGE, result.output
    assert reason in result.stderr
    assert not path.exists()


def test_an_existing_file_is_not_overwritten_without_force(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text("# mine\n")
    flags = ("--gateway-id=gw", "--broker-host=h", "--no-tls", "--non-interactive")
    result = run_init(str(path), *flags)
    assert result.exit_code == ExitCode.DECLINED
    assert "exists; add --force to overwrite it" in result.stderr
    assert path.read_text() == "# mine\n"
    result = run_init(str(path), *flags, "--force")
    assert result.exit_code == 0, result.output
    assert load_config(path).gateway_id == "gw"
    assert "note: init: no devices yet" in result.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["gw.toml"]  # no temporary file left


def comment_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.lstrip().startswith("#")]


def test_force_over_the_install_skeleton_fills_it_in_keeping_its_comments(
    tmp_path: Path, tls_files: tuple[Path, Path, Path]
) -> None:
    ca, cert, key = tls_files
    skeleton = (Path(__file__).resolve().parents[3] / "deploy" / "config.toml").read_text()
    path = tmp_path / "config.toml"
    path.write_text(skeleton.replace("port = 8883", 'port = 8883\nkeepalive = "20s"'))
    result = run_init(
        str(path),
        "--gateway-id=cabinet-0012",
        "--broker-host=mqtt.city.example",
        f"--ca-file={ca}",
        f"--cert-file={cert}",
        f"--key-file={key}",
        "--device=modbus_tcp:name=meter-1,host=192.0.2.10,unit_id=1,profile=sdm120",
        "--non-interactive",
        "--force",
    )
    assert result.exit_code == 0, result.output
    text = path.read_text()
    # every comment line of the skeleton, in order, and the inline ones after the new values
    assert comment_lines(text) == comment_lines(skeleton)
    assert 'gateway_id = "cabinet-0012"                      # e.g. "cabinet-0012"' in text
    assert 'keepalive = "20s"' in text  # a key init does not ask about stays
    config = load_config(path)
    assert (config.gateway_id, config.mqtt.host) == ("cabinet-0012", "mqtt.city.example")
    assert config.mqtt.keepalive == 20
    assert config.mqtt.tls is not None
    assert config.mqtt.tls.key_file == key
    assert [d.name for d in config.devices] == ["meter-1"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # the new device comes after the commented example, at the end
    assert text.index("# profile = ") < text.index("\n[[devices]]\nkind")
    # run again with other answers: only those lines change
    before = text.splitlines()
    result = run_init(
        str(path),
        "--gateway-id=cabinet-0013",
        "--broker-host=mqtt.city.example",
        f"--ca-file={ca}",
        f"--cert-file={cert}",
        f"--key-file={key}",
        "--device=modbus_tcp:name=meter-1,host=192.0.2.10,unit_id=1,profile=sdm120",
        "--non-interactive",
        "--force",
    )
    assert result.exit_code == 0, result.output
    after = path.read_text().splitlines()
    assert len(after) == len(before)
    changed = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    assert changed == [
        (
            'gateway_id = "cabinet-0012"                      # e.g. "cabinet-0012": letters, '
            "digits, '_', '.', '-'",
            'gateway_id = "cabinet-0013"                      # e.g. "cabinet-0012": letters, '
            "digits, '_', '.', '-'",
        )
    ]


def test_force_over_a_file_that_is_not_toml_writes_it_anew(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text("this is [not toml\n")
    flags = ("--gateway-id=gw", "--broker-host=h", "--no-tls", "--non-interactive", "--force")
    result = run_init(str(path), *flags)
    assert result.exit_code == 0, result.output
    assert "could not be read as TOML" in result.stderr
    assert load_config(path).gateway_id == "gw"
    assert path.read_text().startswith("# Written by streetgate init")


def test_a_key_others_can_read_is_warned_about(
    tmp_path: Path, tls_files: tuple[Path, Path, Path]
) -> None:
    ca, cert, key = tls_files
    key.chmod(0o644)
    result = run_init(
        str(tmp_path / "gw.toml"),
        "--gateway-id=gw",
        "--broker-host=h",
        f"--ca-file={ca}",
        f"--cert-file={cert}",
        f"--key-file={key}",
        "--non-interactive",
    )
    assert result.exit_code == 0, result.output
    assert f"warning: init: {key} can be read by other users (mode 0644)" in result.stderr
    assert f"chmod 600 {key}" in result.stderr


# -- in a real terminal ------------------------------------------------------------------------


class Terminal:
    """A child process on a pty: wait for text, type answers."""

    def __init__(self, argv: list[str], cwd: Path) -> None:
        pid, fd = pty.fork()
        if pid == 0:  # pragma: no cover - the child
            os.chdir(cwd)
            os.execv(argv[0], argv)
        self.pid, self.fd, self.seen = pid, fd, ""

    def expect(self, text: str, timeout: float = 15.0) -> str:
        """Wait for ``text``; return what the terminal showed before it."""
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            left = deadline - time.monotonic()
            assert left > 0, f"waited for {text!r}; the terminal shows:\n{self.seen}"
            if select.select([self.fd], [], [], left)[0]:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:  # the child closed the terminal
                    chunk = b""
                assert chunk, f"the program ended before {text!r}:\n{self.seen}"
                self.seen += chunk.decode(errors="replace")
        before, self.seen = self.seen.split(text, 1)
        return before

    def send(self, line: str) -> None:
        os.write(self.fd, line.encode() + b"\r")

    def wait(self) -> int:
        while True:  # drain the terminal so the child never blocks writing to it
            if select.select([self.fd], [], [], 0.1)[0]:
                try:
                    if os.read(self.fd, 4096):
                        continue
                except OSError:
                    pass
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)


def test_the_wizard_in_a_real_terminal(tmp_path: Path, tls_files: tuple[Path, Path, Path]) -> None:
    ca, cert, key = tls_files
    term = Terminal([sys.executable, "-m", "gateway", "init", "site.toml"], tmp_path)
    for prompt, answer in [
        ("Gateway id: ", "cabinet 7"),
        ("try again", ""),
        ("Gateway id: ", "cabinet-7"),
        ("MQTT broker host: ", "mqtt.city.example"),
        ("Connect to the broker with TLS? [Y/n]: ", ""),
        ("MQTT broker port [8883]: ", ""),
        ("CA certificate file (PEM; 'later': install it afterwards): ", str(ca)),
        ("make the key here afterwards; empty for none): ", str(cert)),
        ("Private key file (PEM): ", str(key)),
        ("MQTT user name (empty for none): ", ""),
        (f"Outbox database [{init_cli.DEFAULT_OUTBOX}]: ", "outbox.db"),
        (
            "Add a device (modbus_tcp/modbus_rtu/sds011/pms5003/bthome/ruuvi/done) [done]: ",
            "bthome",
        ),
        ("Device name: ", "door-1"),
        ("MAC address (AA:BB:CC:DD:EE:FF): ", "A4:C1:38:00:00:01"),
        ("Bindkey (32 hex digits, hidden; empty if not encrypted): ", KEY),
        ("added bthome door-1", ""),
        ("[done]: ", "modbus_tcp"),
        ("Device name: ", "meter-1"),
        ("Device (or Modbus gateway) host: ", "192.0.2.10"),
        ("Modbus TCP port [502]: ", ""),
        ("Unit id [1]: ", ""),
        ("Profile (", "sdm630"),
        ("[done]: ", ""),
    ]:
        before = term.expect(prompt)
        if prompt == "try again":
            assert "expected a name of letters" in before
        elif prompt != "added bthome door-1":
            term.send(answer)
    term.expect("wrote site.toml (mode 0600)")
    term.expect("next: streetgate config validate -c site.toml")
    rest = term.seen
    assert term.wait() == 0
    assert KEY not in rest
    path = tmp_path / "site.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    config = load_config(path)
    assert config.gateway_id == "cabinet-7"
    assert config.outbox.path == tmp_path / "outbox.db"
    assert [d.name for d in config.devices] == ["door-1", "meter-1"]


def test_the_readme_examples_run(
    tmp_path: Path, tls_files: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    commands = readme_commands("Setting up a gateway")
    assert [c[0] for c in commands] == ["streetgate"] * 5
    (tmp_path / "door-1.key").write_text(KEY)
    monkeypatch.chdir(tmp_path)  # the files the examples name are relative
    wizard, scripted, validate, show, show_json = commands
    result = run_init(*wizard[2:], terminal=False)  # no terminal here: nothing is asked
    assert result.exit_code == ExitCode.USAGE
    assert "missing answers" in result.stderr
    result = run_init(*scripted[2:])
    assert result.exit_code == 0, result.output
    for command in validate, show, show_json:
        result = CliRunner().invoke(app, command[1:])
        assert result.exit_code == 0, (command, result.stderr)
    assert KEY not in result.stdout
    config = load_config(tmp_path / "gw.toml")
    assert [name for d in config.devices for name in device_names(d)] == [
        "meter-1",
        "meter-2",
        "door-1",
    ]


# -- a first install: TLS files that come later -----------------------------------------------


def test_later_defers_the_tls_files_marked_pending(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    answers = lines("pole-42", "broker.example", "y", "", "later", "later", "", "", "done")
    result = run_init(str(path), answers=answers)
    assert result.exit_code == 0, result.stderr
    tls = load_config(path).mqtt.tls
    assert tls is not None
    folder = tmp_path / "tls"
    assert (tls.ca_file, tls.cert_file, tls.key_file) == (
        folder / "ca.crt", folder / "gateway.crt", folder / "gateway.key",
    )  # fmt: skip
    text = path.read_text()
    assert "# PENDING when this was written: the gateway does not start until these TLS" in text
    make_key = f"`streetgate creds init -c {path}`"
    assert f"#   mqtt.tls.key_file {tmp_path / 'tls' / 'gateway.key'} does not exist yet" in text
    assert make_key in text
    assert f"pending: mqtt.tls.key_file {tmp_path / 'tls' / 'gateway.key'}" in result.stderr


def test_tls_pending_flag_keeps_files_that_exist_and_defers_the_rest(
    tmp_path: Path, tls_files: tuple[Path, Path, Path]
) -> None:
    ca, _, _ = tls_files
    path = tmp_path / "etc" / "gw.toml"
    path.parent.mkdir()
    base = ("--gateway-id", "pole-42", "--broker-host", "broker.example", "--non-interactive")
    refused = run_init(str(path), *base, "--tls", terminal=False)
    assert refused.exit_code == ExitCode.USAGE
    assert "--ca-file (or --tls-pending to install the TLS files afterwards)" in refused.stderr
    result = run_init(str(path), *base, "--tls-pending", "--ca-file", str(ca), terminal=False)
    assert result.exit_code == 0, result.stderr
    tls = load_config(path).mqtt.tls
    assert tls is not None
    assert tls.ca_file == ca  # there already: not pending
    assert tls.key_file == tmp_path / "etc" / "tls" / "gateway.key"
    assert "mqtt.tls.ca_file" not in path.read_text().split("gateway_id")[0]
    no_tls = run_init(str(path), *base, "--force", "--tls-pending", "--no-tls", terminal=False)
    assert no_tls.exit_code == ExitCode.USAGE


def test_init_again_over_a_pending_file_keeps_one_pending_note(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    base = ("--gateway-id", "pole-42", "--broker-host", "broker.example", "--non-interactive")
    first = run_init(str(path), *base, "--tls-pending", terminal=False)
    assert first.exit_code == 0, first.stderr
    (tmp_path / "tls").mkdir(exist_ok=True)
    (tmp_path / "tls" / "gateway.key").write_bytes(b"")  # the key arrived meanwhile
    again = run_init(str(path), *base, "--tls-pending", "--force", terminal=False)
    assert again.exit_code == 0, again.stderr
    text = path.read_text()
    assert text.count("# PENDING when this was written:") == 1
    assert "mqtt.tls.key_file" not in text.split("gateway_id")[0]  # no longer pending
    assert "mqtt.tls.ca_file" in text.split("gateway_id")[0]
