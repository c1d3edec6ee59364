"""``streetgate doctor``: every check, against a real mosquitto (plain and mutual TLS)."""

from __future__ import annotations

import ast
import grp
import json
import os
import pwd
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from gateway.cli.exit_codes import ExitCode
from gateway.cli.main import app
from gateway.config.model import parse_config
from gateway.core.clock import SystemClock
from gateway.diagnostics.doctor import (
    CheckResult,
    ble_adapter_check,
    clock_check,
    disk_check,
    outbox_check,
    serial_port_check,
)
from simulator.broker import free_port
from simulator.serial_sensors import Sds011Sim
from tests.support.mosquitto import Mosquitto
from tests.support.pki import make_pki, tls_mosquitto
from tests.support.sim_thread import in_thread

BROKER_STEPS = ["broker:dns", "broker:tcp", "broker:mqtt-connect", "broker:publish-readback"]
TLS_STEPS = ["broker:dns", "broker:tcp", "broker:tls", "broker:mqtt-connect",
             "broker:publish-readback"]  # fmt: skip


def write_config(tmp_path: Path, mqtt: str, devices: str = "") -> Path:
    path = tmp_path / "gw.toml"
    path.write_text(
        f'gateway_id = "tls-gw"\n\n[mqtt]\n{mqtt}\n\n[outbox]\npath = "outbox.db"\n{devices}'
    )
    return path


def doctor(config: Path, *extra: str) -> Result:
    return CliRunner().invoke(app, ["doctor", "-c", str(config), "--timeout", "3", *extra])


def checks(result: Result) -> dict[str, dict[str, Any]]:
    data = json.loads(result.stdout)
    return {c["name"]: c for c in data["checks"]}


def broker_steps(found: dict[str, dict[str, Any]]) -> list[str]:
    return [name for name in found if name.startswith("broker:")]


def test_every_broker_step_passes_against_a_running_broker(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    config = write_config(tmp_path, f'host = "127.0.0.1"\nport = {mosquitto.port}')
    result = doctor(config, "--json")
    found = checks(result)
    assert broker_steps(found) == BROKER_STEPS
    for step in BROKER_STEPS:
        assert found[step]["ok"], found[step]
        assert not found[step]["skipped"]
        assert found[step]["duration_ms"] is not None
    assert "read it back" in found["broker:publish-readback"]["detail"]
    assert "/tls-gw/doctor/" in found["broker:publish-readback"]["detail"]
    assert found["config"]["ok"]
    assert found["outbox"]["ok"]
    assert "not created yet" in found["outbox"]["detail"]
    assert not (tmp_path / "outbox.db").exists()  # doctor creates nothing
    assert "ble:adapter" not in found  # no BLE device configured
    all_ok = all(c["ok"] for c in found.values())
    assert json.loads(result.stdout)["ok"] is all_ok
    assert result.exit_code == (ExitCode.OK if all_ok else ExitCode.FAILURE)


def test_a_broker_that_is_down_fails_at_tcp_and_skips_the_rest(tmp_path: Path) -> None:
    config = write_config(tmp_path, f'host = "127.0.0.1"\nport = {free_port()}')
    result = doctor(config)
    assert result.exit_code == ExitCode.FAILURE
    lines = result.stdout.splitlines()
    tcp = next(i for i, line in enumerate(lines) if "broker:tcp" in line)
    assert lines[tcp].startswith("FAIL")
    assert "refused" in lines[tcp]
    assert lines[tcp + 1].strip().startswith("-> is the broker running")
    assert [line.split()[:2] for line in lines[tcp + 2 :]] == [
        ["SKIP", "broker:mqtt-connect"],
        ["SKIP", "broker:publish-readback"],
    ]
    assert "(broker:tcp failed)" in lines[-1]
    assert "broker:tcp" in result.stderr  # the summary names what failed
    assert next(line for line in lines if "broker:dns" in line).startswith("PASS")


def test_every_broker_of_the_list_is_checked(tmp_path: Path, mosquitto: Mosquitto) -> None:
    spare = free_port()  # a spare that is not there: found now, not at the first failover
    config = write_config(
        tmp_path, f'brokers = ["127.0.0.1:{mosquitto.port}", "127.0.0.1:{spare}"]'
    )
    result = doctor(config, "--json")
    data = json.loads(result.stdout)["checks"]
    tcp = [c for c in data if c["name"] == "broker:tcp"]
    assert [c["ok"] for c in tcp] == [True, False]
    assert str(mosquitto.port) in tcp[0]["detail"]
    assert str(spare) in tcp[1]["detail"]
    assert result.exit_code == ExitCode.FAILURE


def test_an_unknown_host_fails_at_dns(tmp_path: Path) -> None:
    config = write_config(tmp_path, 'host = "no-such-broker.invalid"')
    found = checks(doctor(config, "--json"))
    assert not found["broker:dns"]["ok"]
    assert "getent hosts" in found["broker:dns"]["hint"]
    assert found["broker:tcp"]["skipped"]


def test_invalid_config_is_one_failed_check_and_exit_config(tmp_path: Path) -> None:
    config = write_config(tmp_path, 'host = ""')
    result = doctor(config)
    assert result.exit_code == ExitCode.CONFIG
    assert result.stdout.startswith("FAIL  config")
    assert "mqtt.host" in result.stdout
    assert "streetgate validate" in result.stdout


def test_missing_serial_port_and_ble_adapter_fail_with_hints(tmp_path: Path) -> None:
    devices = (
        '\n[[devices]]\nkind = "sds011"\nname = "pm"\nport = "/dev/ttyUSB97"\n'
        '\n[[devices]]\nkind = "ruuvi"\nname = "tag"\nmac = "AA:BB:CC:DD:EE:FF"\n'
    )
    config = write_config(tmp_path, f'host = "127.0.0.1"\nport = {free_port()}', devices)
    result = doctor(config)
    assert result.exit_code == ExitCode.FAILURE
    lines = result.stdout.splitlines()
    serial = next(i for i, line in enumerate(lines) if "serial:pm" in line)
    assert lines[serial].startswith("FAIL")
    assert "/dev/ttyUSB97 does not exist" in lines[serial]
    assert "/dev/serial/by-id" in lines[serial + 1]
    found = checks(doctor(config, "--json"))
    assert not found["ble:adapter"]["ok"]  # this machine has no Bluetooth adapter
    assert "no Bluetooth adapter" in found["ble:adapter"]["detail"]
    assert "tag" in found["ble:adapter"]["detail"]
    assert "bluetoothctl" in found["ble:adapter"]["hint"]


def test_a_present_serial_port_passes(tmp_path: Path) -> None:
    with in_thread(lambda: Sds011Sim("pm")) as sim:
        path = sim.path
        check = serial_port_check("pm", path)
    assert check.ok, check
    assert f"{path} -> /dev/pts/" in check.detail


def test_usb_identity_that_is_not_attached(tmp_path: Path) -> None:
    check = serial_port_check("pm", "usb:0403:6001:NOPE")
    assert not check.ok
    assert "no serial port usb:0403:6001:NOPE is attached" in check.detail


@pytest.fixture
def sysfs(tmp_path: Path) -> Path:
    return tmp_path / "sys"


def _config_with_ble(tmp_path: Path) -> Any:
    return parse_config(
        {
            "gateway_id": "gw",
            "mqtt": {"host": "localhost"},
            "outbox": {"path": str(tmp_path / "o.db")},
            "devices": [{"kind": "ruuvi", "name": "tag", "mac": "AA:BB:CC:DD:EE:FF"}],
        },
        "test",
    )


def test_ble_adapter_present_blocked_and_absent(tmp_path: Path, sysfs: Path) -> None:
    config = _config_with_ble(tmp_path)
    absent = ble_adapter_check(config, sysfs)
    assert absent is not None
    assert not absent.ok
    rfkill = sysfs / "class" / "bluetooth" / "hci0" / "rfkill3"
    rfkill.mkdir(parents=True)
    (rfkill / "soft").write_text("1\n")
    blocked = ble_adapter_check(config, sysfs)
    assert blocked == CheckResult(
        "ble:adapter", False, "hci0: blocked by rfkill", "sudo rfkill unblock bluetooth"
    )
    (rfkill / "soft").write_text("0\n")
    present = ble_adapter_check(config, sysfs)
    assert present is not None
    assert present.ok
    assert present.detail == "hci0 present (for tag)"


def test_outbox_checks_read_only(tmp_path: Path) -> None:
    config = _config_with_ble(tmp_path)
    (tmp_path / "o.db").write_bytes(b"this is not sqlite" * 100)
    damaged = outbox_check(config)
    assert not damaged.ok
    assert "damaged" in damaged.detail
    assert "moves it aside" in damaged.hint
    (tmp_path / "o.db").unlink()
    with sqlite3.connect(tmp_path / "o.db") as db:
        db.execute("CREATE TABLE readings (seq INTEGER PRIMARY KEY, ts_ms, device, body)")
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value)")
    before = (tmp_path / "o.db").read_bytes()
    healthy = outbox_check(config)
    assert healthy.ok, healthy
    assert "quick_check ok, 0 readings waiting" in healthy.detail
    assert (tmp_path / "o.db").read_bytes() == before


# -- TLS --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def tls_broker(tmp_path: Path, pki: Path) -> Iterator[Mosquitto]:
    (tmp_path / "broker").mkdir()
    broker = tls_mosquitto(tmp_path / "broker", pki)
    broker.start()
    yield broker
    broker.stop()


def tls_mqtt(broker: Mosquitto, ca: Path, client: Path | None, host: str = "127.0.0.1") -> str:
    text = f'host = "{host}"\nport = {broker.port}\n\n[mqtt.tls]\nca_file = "{ca}"\n'
    if client is not None:
        text += f'cert_file = "{client}.crt"\nkey_file = "{client}.key"\n'
    return text


def test_mutual_tls_every_step_passes(tmp_path: Path, tls_broker: Mosquitto, pki: Path) -> None:
    config = write_config(tmp_path, tls_mqtt(tls_broker, pki / "ca.crt", pki / "client"))
    found = checks(doctor(config, "--json"))
    assert broker_steps(found) == TLS_STEPS
    assert all(found[s]["ok"] and not found[s]["skipped"] for s in TLS_STEPS), found
    tls = found["broker:tls"]["detail"]
    assert "TLSv1." in tls
    assert "server certificate valid for 127.0.0.1, expires" in tls
    assert "client certificate expires" in tls
    assert "renew" in found["broker:tls"]["hint"]  # the test certificates live for 2 days


def test_tls_without_client_certificate_fails_at_connect(
    tmp_path: Path, tls_broker: Mosquitto, pki: Path
) -> None:
    config = write_config(tmp_path, tls_mqtt(tls_broker, pki / "ca.crt", None))
    found = checks(doctor(config, "--json"))
    assert found["broker:tls"]["ok"]  # the handshake itself works; the broker refuses later
    assert not found["broker:mqtt-connect"]["ok"]
    assert "client certificate" in found["broker:mqtt-connect"]["hint"]
    assert found["broker:publish-readback"]["skipped"]


def test_tls_with_the_wrong_ca_fails_the_handshake(
    tmp_path: Path, tls_broker: Mosquitto, pki: Path
) -> None:
    other = make_pki(tmp_path)
    config = write_config(tmp_path, tls_mqtt(tls_broker, other / "ca.crt", other / "client"))
    result = doctor(config, "--json")
    found = checks(result)
    assert not found["broker:tls"]["ok"]
    assert "not valid" in found["broker:tls"]["detail"]
    assert "mqtt.tls.ca_file" in found["broker:tls"]["hint"]
    assert found["broker:mqtt-connect"]["skipped"]
    assert result.exit_code == ExitCode.FAILURE


def test_tls_with_a_name_not_in_the_certificate(
    tmp_path: Path, tls_broker: Mosquitto, pki: Path
) -> None:
    mqtt = tls_mqtt(tls_broker, pki / "ca.crt", pki / "client", host="localhost")
    found = checks(doctor(write_config(tmp_path, mqtt), "--json"))
    assert not found["broker:tls"]["ok"]
    assert "subjectAltName" in found["broker:tls"]["hint"]


def test_disk_below_ten_reserves_fails(tmp_path: Path) -> None:
    roomy = parse_config(
        {"gateway_id": "gw", "mqtt": {"host": "h"}, "outbox": {"path": str(tmp_path / "o.db")}},
        "test",
    )
    assert disk_check(roomy).ok
    huge = parse_config(
        {
            "gateway_id": "gw",
            "mqtt": {"host": "h"},
            "outbox": {"path": str(tmp_path / "state" / "o.db"), "disk_reserve": 10**15},
        },
        "test",
    )
    check = disk_check(huge)  # its folder does not exist yet: the nearest existing one counts
    assert not check.ok
    assert f"at {tmp_path}" in check.detail
    assert "max_bytes" in check.hint


class _Clock(SystemClock):
    def __init__(self, synced: bool) -> None:
        super().__init__()
        self._answer = synced

    def synchronised(self) -> bool:
        return self._answer


def test_clock() -> None:
    assert clock_check(_Clock(synced=True)).ok
    unsynced = clock_check(_Clock(synced=False))
    assert not unsynced.ok
    assert "clock_unsynced" in unsynced.detail
    assert "timedatectl" in unsynced.hint


def test_a_port_this_user_may_not_open_names_its_group(tmp_path: Path) -> None:
    fd, name = tempfile.mkstemp(prefix="tty-", dir="/tmp")  # a folder every user can enter
    os.close(fd)
    port = Path(name)
    port.chmod(0o000)  # nobody but root may open it
    try:
        # A forked child that becomes 'nobody' when run as root: it needs nothing from disk
        # (the code is already loaded), so it works wherever the checkout lives.
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                if os.geteuid() == 0:
                    nobody = pwd.getpwnam("nobody")
                    os.setgroups([])
                    os.setgid(grp.getgrnam("nogroup").gr_gid)
                    os.setuid(nobody.pw_uid)
                os.write(write_end, repr(serial_port_check("pm", name).as_dict()).encode())
            finally:
                os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end) as pipe:
            output = pipe.read()
        os.waitpid(pid, 0)
    finally:
        port.unlink()
    check = ast.literal_eval(output)
    assert not check["ok"]
    assert check["detail"] == f"{name}: no permission to open it"
    group = grp.getgrgid(os.getegid()).gr_name
    assert f"the port belongs to group {group}" in check["hint"]
    assert f"sudo usermod -aG {group} $USER" in check["hint"]
