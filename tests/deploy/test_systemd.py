"""The systemd unit (checked by systemd-analyze and by content) and deploy/install.sh, run for
real into a throwaway root (twice, the second run changing nothing) and on the running system
inside a private mount namespace."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.mosquitto import Mosquitto
from tests.support.sandbox import allowed_syscalls
from tests.support.simcli import SIM
from tests.support.subscriber import Subscriber

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "deploy" / "systemd" / "streetgate.service"
INSTALL = REPO / "deploy" / "install.sh"
VENV_BIN = "/opt/streetgate/venv/bin/streetgate"


SANDBOX = [sys.executable, "-m", "tests.support.sandbox"]


def entries() -> dict[str, list[tuple[str, str]]]:
    """Each section's (key, value) lines in order: systemd allows a key more than once."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for line in UNIT.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
        else:
            key, _, value = line.partition("=")
            current.append((key, value))
    return sections


def unit() -> dict[str, dict[str, str]]:
    """Section -> key -> value; for a repeated key the last one, as systemd reads most keys."""
    return {name: dict(lines) for name, lines in entries().items()}


def values(key: str) -> list[str]:
    """Every value of a [Service] key given more than once (DeviceAllow=, SystemCallFilter=)."""
    return [value for name, value in entries()["Service"] if name == key]


def test_the_unit_asks_for_what_the_issue_lists() -> None:
    service = unit()["Service"]
    assert service["Type"] == "notify"  # notify-reload needs systemd 253; Debian 12 has 252
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"  # gateway/cli/run.py: a reload
    assert int(service["WatchdogSec"]) > 0
    assert service["Restart"] == "on-failure"
    assert service["ExecStart"].split()[:2] == [VENV_BIN, "run"]
    assert "--config /etc/streetgate/config.toml" in service["ExecStart"]
    assert service["User"] == service["Group"] == "streetgate"
    assert set(service["SupplementaryGroups"].split()) == {"dialout", "bluetooth"}
    assert service["StateDirectory"] == "streetgate"
    assert service["UMask"] in {"0077", "0027"}
    assert service["ProtectSystem"] == "strict"
    # a remote config-set writes the config's folder (and nothing else outside the state dir)
    assert service["ReadWritePaths"].split() == ["/etc/streetgate"]
    assert service["ProtectHome"] == "yes"
    assert service["NoNewPrivileges"] == "yes"
    assert service["CapabilityBoundingSet"] == ""
    # exit statuses a restart cannot fix: gateway/cli/exit_codes.py CONFIG and PERMISSION
    assert service["RestartPreventExitStatus"].split() == ["3", "5"]
    assert unit()["Unit"]["StartLimitIntervalSec"] == "0"  # never give up after power cuts
    assert unit()["Install"]["WantedBy"] == "multi-user.target"
    # journald only: priorities from the gateway's prefixes, no log files
    assert service["SyslogLevelPrefix"] == "yes"
    assert service["SyslogLevel"] == "err"  # unprefixed lines: fatal errors and tracebacks
    assert service["StandardError"] == "journal"


def test_the_outbox_of_the_skeleton_is_in_the_state_directory() -> None:
    skeleton = (REPO / "deploy" / "config.toml").read_text()
    assert 'path = "/var/lib/streetgate/outbox.db"' in skeleton


def test_systemd_analyze_verify_finds_nothing(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing: scripts/setup.sh dev installs the systemd package")
    # verify insists that ExecStart exists: point it at an executable that does.
    checked = tmp_path / "streetgate.service"
    checked.write_text(UNIT.read_text().replace(VENV_BIN, sys.executable))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(checked)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    # unknown keys and bad values are only warnings (exit 0): there must be none
    assert "streetgate.service" not in result.stderr, result.stderr


# -- deploy/install.sh --------------------------------------------------------------------


def install(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PIP_NO_DEPS": "1",
    }  # the wheel alone: its dependencies are not tested here
    return subprocess.run(
        [str(INSTALL), "--root", str(root), "--python", sys.executable, *args],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )


def snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    """Every path under root: type, owner, mode, mtime and content hash (or link target)."""
    found: dict[str, tuple[object, ...]] = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            detail: object = os.readlink(path)
        elif stat.S_ISREG(st.st_mode):
            detail = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            detail = None
        found[str(path.relative_to(root))] = (
            st.st_mode,
            st.st_uid,
            st.st_gid,
            st.st_mtime_ns,
            detail,
        )
    return found


def account(root: Path, file: str, name: str) -> list[str]:
    for line in (root / "etc" / file).read_text().splitlines():
        if line.split(":")[0] == name:
            return line.split(":")
    raise AssertionError(f"{name} not in {file}")


def test_install_into_a_fresh_root_then_again_changes_nothing(root: Path, wheel: Path) -> None:
    first = install(root, "--from", str(wheel))
    assert first.returncode == 0, first.stderr + first.stdout
    assert "install: creating the system user streetgate" in first.stdout
    assert "sudo streetgate init /etc/streetgate/config.toml --force" in first.stdout

    user = account(root, "passwd", "streetgate")
    uid, gid = int(user[2]), int(user[3])
    assert uid < 1000  # a system user
    assert user[5:] == ["/var/lib/streetgate", "/usr/sbin/nologin"]
    for group in ("dialout", "bluetooth"):
        assert "streetgate" in account(root, "group", group)[3].split(",")
    assert account(root, "group", "dialout")[3].split(",") == ["pi", "streetgate"]

    etc = (root / "etc/streetgate").stat()
    assert (etc.st_uid, etc.st_gid, stat.S_IMODE(etc.st_mode)) == (0, gid, 0o770)
    config = (root / "etc/streetgate/config.toml").stat()
    assert (config.st_uid, config.st_gid, stat.S_IMODE(config.st_mode)) == (0, gid, 0o640)
    state = (root / "var/lib/streetgate").stat()
    assert (state.st_uid, state.st_gid, stat.S_IMODE(state.st_mode)) == (uid, gid, 0o750)
    assert (root / "etc/systemd/system/streetgate.service").read_text() == UNIT.read_text()
    assert os.access(root / VENV_BIN.lstrip("/"), os.X_OK)  # the unit's ExecStart exists
    assert os.readlink(root / "usr/local/bin/streetgate") == VENV_BIN
    version = subprocess.run(
        [
            str(root / "opt/streetgate/venv/bin/python"),
            "-c",
            "import importlib.metadata as m; print(m.version('streetgate'))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert version.stdout.strip() == wheel.name.split("-")[1]

    before = snapshot(root)
    second = install(root, "--from", str(wheel))
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines()[-1] == "install: done: 0 change(s)"
    assert snapshot(root) == before

    # `streetgate init` leaves its file 0600 for whoever ran it: the next run corrects that once
    (root / "etc/streetgate/config.toml").chmod(0o600)
    third = install(root, "--from", str(wheel))
    assert "install: setting /etc/streetgate/config.toml to root:streetgate 0640" in third.stdout
    assert third.stdout.splitlines()[-1] == "install: done: 1 change(s)"
    assert stat.S_IMODE((root / "etc/streetgate/config.toml").stat().st_mode) == 0o640
    assert (
        install(root, "--from", str(wheel)).stdout.splitlines()[-1] == "install: done: 0 change(s)"
    )


def test_an_edited_config_is_never_overwritten(root: Path, wheel: Path) -> None:
    (root / "etc/streetgate").mkdir(parents=True)
    (root / "etc/streetgate/config.toml").write_text('gateway_id = "mine"\n')
    result = install(root, "--from", str(wheel))
    assert result.returncode == 0, result.stderr
    assert (root / "etc/streetgate/config.toml").read_text() == 'gateway_id = "mine"\n'
    assert "config skeleton" not in result.stdout


def test_dry_run_reports_and_changes_nothing(root: Path, wheel: Path) -> None:
    before = snapshot(root)
    result = install(root, "--from", str(wheel), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert snapshot(root) == before
    lines = result.stdout.splitlines()
    assert "install: would: creating the system user streetgate" in lines
    assert "install: would: installing /etc/systemd/system/streetgate.service" in lines
    assert lines[-1].startswith("install: dry run: ")
    assert not lines[-1].startswith("install: dry run: 0 ")


def test_bad_arguments_are_named(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(INSTALL), "--frobnicate"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert "install: unknown option: --frobnicate" in result.stderr
    missing = subprocess.run(
        [str(INSTALL), "--root", str(tmp_path / "nope"), "--dry-run"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert missing.returncode == 1
    assert "no such directory" in missing.stderr


# The live path (no --root): useradd and chown on the running system's /etc, the config
# checked as the service user. Run in a private mount namespace where /etc, /opt, /var and
# /usr/local are copy-on-write overlays and /run/systemd is hidden: the host is not touched.
LIVE = r"""
set -eu
for d in etc opt var usr/local; do
    mkdir -p "$BASE/up/$d" "$BASE/work/$d"
    mount -t overlay overlay -o "lowerdir=/$d,upperdir=$BASE/up/$d,workdir=$BASE/work/$d" "/$d"
done
mount -t tmpfs tmpfs /run/systemd 2>/dev/null || mount -t tmpfs tmpfs /run
# The dependencies, for the service user too: this checkout's, without streetgate itself.
# Bound to /opt/site first: the checkout may sit in a folder only root can enter (mktemp -d).
install -d -m 0755 /opt/deps /opt/site
mount --bind "$SITE" /opt/site
for entry in /opt/site/*; do
    case "${entry##*/}" in
        streetgate*|_editable_impl_streetgate*|__editable__*) ;;
        *) ln -s "$entry" /opt/deps/ ;;
    esac
done
"$INSTALL" --python "$PY" --from "$WHEEL" > "$BASE/1.out"
install -m 0600 "$BASE/valid.toml" /etc/streetgate/config.toml   # as `streetgate init` leaves it
"$INSTALL" --python "$PY" --from "$WHEEL" > "$BASE/2.out"
"$INSTALL" --python "$PY" --from "$WHEEL" > "$BASE/3.out"
stat -c '%U:%G %a' /etc/streetgate/config.toml /var/lib/streetgate > "$BASE/modes"
id -nG streetgate > "$BASE/groups"
"""


def test_on_the_running_system_it_checks_the_config_as_the_service_user(
    as_root: None, wheel: Path, tmp_path: Path
) -> None:
    # The service's Python must be one the service user may run (not one under /root), with
    # the same minor version, so the dependencies of this checkout's .venv fit it.
    python = Path("/usr/bin/python3")
    probe = subprocess.run(
        [str(python), "-c", "import ensurepip, venv, sys; print(sys.version_info[:2])"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if probe.stdout.strip() != str(sys.version_info[:2]):
        pytest.fail(f"needs {python} with venv, Python {sys.version_info[:2]}: {probe}")
    base = tmp_path / "live"
    base.mkdir()
    (base / "valid.toml").write_text(
        'gateway_id = "pole-17"\n[mqtt]\nhost = "mqtt.city.example"\n'
        '[outbox]\npath = "/var/lib/streetgate/outbox.db"\n'
    )
    site = subprocess.run(
        [sys.executable, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    env = {
        **os.environ,
        "BASE": str(base), "INSTALL": str(INSTALL), "PY": str(python), "WHEEL": str(wheel),
        "PIP_NO_DEPS": "1", "SITE": site, "PYTHONPATH": "/opt/deps",
    }  # fmt: skip
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "bash", "-c", LIVE],
        capture_output=True, text=True, check=False, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    first, second, third = ((base / f"{i}.out").read_text() for i in (1, 2, 3))
    assert "install: creating the system user streetgate" in first
    assert "sudo streetgate init /etc/streetgate/config.toml --force" in first
    assert "install: setting /etc/streetgate/config.toml to root:streetgate 0640" in second
    assert "install: config valid; systemd is not running here" in second, result.stderr
    assert third.splitlines()[-1] == "install: done: 0 change(s)"
    assert "config valid" in third
    assert (base / "modes").read_text().split("\n")[:2] == [
        "root:streetgate 640",
        "streetgate:streetgate 750",
    ]
    assert "dialout" in (base / "groups").read_text().split()
    # and the host has no such user
    assert subprocess.run(["id", "streetgate"], capture_output=True, check=False).returncode != 0


# -- the sandbox ----------------------------------------------------------------------------

#: `systemd-analyze security` of the unit (lower is better): 3.6 before issue 12's hardening.
EXPOSURE = 1.9


def test_the_sandbox_scores_no_worse_than_achieved() -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(UNIT)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    found = re.search(r"Overall exposure level for streetgate\.service: (\d+\.\d+)", result.stdout)
    assert found, result.stdout + result.stderr
    assert float(found[1]) <= EXPOSURE, result.stdout


def test_the_sandbox_leaves_the_gateway_what_it_needs() -> None:
    service = unit()["Service"]
    allowed = allowed_syscalls(UNIT)
    # serial (termios ioctls), sockets, SQLite, asyncio, threads
    assert {"ioctl", "socket", "connect", "fdatasync", "fcntl", "epoll_wait", "clone3"} <= allowed
    # gateway/core/clock.py asks the kernel whether NTP synchronised the clock; ProtectClock= would
    # refuse that too, so every reading would be flagged clock_unsynced
    assert {"adjtimex", "clock_adjtime"} <= allowed
    # ExecReload= (/bin/kill -HUP $MAINPID) runs under the same filter
    assert "kill" in allowed
    assert service.get("ProtectClock", "no") == "no"
    assert not {"settimeofday", "clock_settime", "setuid", "mount", "ptrace", "reboot"} & allowed
    assert not {"init_module", "swapon", "setrlimit", "sched_setscheduler", "bpf"} & allowed
    assert service["SystemCallErrorNumber"] == "EPERM"  # an OSError in Python, not SIGSYS
    # BLE through BlueZ on D-Bus needs AF_UNIX only; no netlink, no Bluetooth sockets
    assert service["RestrictAddressFamilies"].split() == ["AF_UNIX", "AF_INET", "AF_INET6"]
    # serial ports and the standard pseudo devices, nothing else
    assert service["DevicePolicy"] == "closed"
    assert values("DeviceAllow") == [
        "char-ttyUSB rw", "char-ttyACM rw", "char-ttyAMA rw", "char-ttyS rw"
    ]  # fmt: skip
    assert service["MemoryDenyWriteExecute"] == "yes"
    assert service["ProcSubset"] == "pid"
    # the metrics endpoint caps its connections at 64: far below the descriptor limit
    assert int(service["LimitNOFILE"]) >= 4096
    assert service["MemoryMax"] == "256M"
    assert service["MemoryHigh"] == "192M"


PROBE = r"""
import ctypes, mmap, socket, time
libc = ctypes.CDLL(None, use_errno=True)
timex = ctypes.create_string_buffer(512)  # modes = 0: read only
print("adjtimex-read", libc.adjtimex(timex))
ctypes.c_uint.from_buffer(timex).value = 1  # ADJ_OFFSET: a change
print("adjtimex-write", libc.adjtimex(timex), ctypes.get_errno())
def refused(what, call):
    try:
        call()
    except OSError as exc:
        print(what, "refused", exc.errno)
    else:
        print(what, "allowed")
refused("clock_settime", lambda: time.clock_settime(time.CLOCK_REALTIME, 0))
refused("netlink", lambda: socket.socket(16, socket.SOCK_RAW))
refused("bluetooth", lambda: socket.socket(31, socket.SOCK_RAW, 1))
refused("wx-memory", lambda: mmap.mmap(-1, 4096, prot=7))
import ssl, sqlite3
import cryptography.hazmat.primitives.asymmetric.ed25519 as ed
import aiomqtt, bleak.backends.bluezdbus.scanner, dbus_fast.aio, pymodbus.client, serial
import gateway.cli.main
ed.Ed25519PrivateKey.generate().sign(b"x")
ssl.create_default_context()
print("imports ok", socket.getaddrinfo("localhost", 8883)[0][4][1])
"""


def test_under_the_units_filter_python_works_and_the_clock_stays_unsettable() -> None:
    result = subprocess.run(
        [*SANDBOX, str(UNIT), "--", sys.executable, "-c", PROBE],
        capture_output=True, text=True, check=False, timeout=60, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert lines["adjtimex-read"] != "-1"  # the clock state (0 = synchronised, 5 = not)
    assert lines["adjtimex-write"] == "-1 1"  # EPERM: no CAP_SYS_TIME
    assert lines["clock_settime"] == "refused 1"
    assert lines["netlink"] == "refused 1"
    assert lines["bluetooth"] == "refused 1"
    assert lines["wx-memory"] == "refused 13"  # MemoryDenyWriteExecute
    assert lines["imports"] == "ok 8883"


def test_the_gateway_runs_under_the_units_filter(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """A serial sensor on a pty, the outbox, MQTT to a real mosquitto: all under the filter."""
    config = tmp_path / "gw.toml"
    log = tmp_path / "gateway.log"

    async def scenario() -> None:
        sub = Subscriber(mosquitto.host, mosquitto.port, "streetgate/sandboxed/readings")
        listening = asyncio.create_task(sub.run(), name="test:platform")
        try:
            await asyncio.wait_for(sub.subscribed.wait(), 10)
            with log.open("wb") as out:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "tests.support.sandbox", str(UNIT), "--",
                    sys.executable, "-m", "gateway", "run", "-c", str(config),
                    stdout=out, stderr=out, cwd=REPO,
                )  # fmt: skip
                try:
                    await sub.wait_for(6, 40)
                finally:
                    if proc.returncode is None:  # it may have ended: the log says why
                        proc.send_signal(signal.SIGTERM)
                    code = await asyncio.wait_for(proc.wait(), 20)
            assert code == 0, log.read_text()
        finally:
            listening.cancel()
        assert {r["device"] for r in sub.delivery.readings} == {"sim-sds011-1"}

    sim = subprocess.Popen(
        [*SIM, "--serial", "sds011", "--interval", "500ms", "--gateway-id", "sandboxed",
         "--broker-port", str(mosquitto.port), "--write-config", str(config)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert sim.stderr is not None
        for line in sim.stderr:  # one line per device, then "serving"
            if line.startswith("serving"):
                break
        asyncio.run(scenario())
    finally:
        sim.terminate()
        sim.communicate(timeout=10)
    assert "Operation not permitted" not in log.read_text(), log.read_text()
