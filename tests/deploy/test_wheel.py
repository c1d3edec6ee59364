"""The wheel on its own: installed with its dependencies into a fresh venv outside the checkout,
its CLI runs, checks a config and installs the service from the files it carries; and every
runtime dependency has a wheel for the Pi's arm64 (and, but for the known ones, armv7)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import gateway

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"

#: Raspberry Pi OS Bookworm's glibc is 2.36: wheels tagged manylinux_2_17 … 2_36 (and the
#: manylinux2014 alias) install there. Listed one by one: pip before 24 does not expand them.
GLIBC_MINORS = range(17, 37)

#: Dependencies without an armv7 wheel on PyPI. On 32-bit Pi OS they come from piwheels
#: (install.sh adds its index there) or are built with the compilers install.sh installs;
#: docs/deploy.md, "32-bit Raspberry Pi OS". A new one fails this test: document it too.
ARMV7_FROM_PIWHEELS_OR_SOURCE = {"cffi", "dbus-fast", "zstandard"}


def platform_flags(arch: str) -> list[str]:
    tags = [f"manylinux_2_{minor}_{arch}" for minor in GLIBC_MINORS] + [f"manylinux2014_{arch}"]
    flags = [f"--platform={tag}" for tag in tags]
    return [*flags, "--python-version=3.11", "--implementation=cp", "--only-binary=:all:"]


def pip_dry_run(target: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``pip install --dry-run`` for another platform: resolves from PyPI, installs nothing."""
    return subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
         "--disable-pip-version-check", "--target", str(target), *args],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip


def test_the_wheel_carries_the_licence_and_the_deploy_files(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as whl:
        names = set(whl.namelist())
        version = wheel.name.split("-")[1]
        metadata = whl.read(f"streetgate-{version}.dist-info/METADATA").decode()
        packaged = {
            name: whl.read(f"gateway/deploy_files/{name}")
            for name in ("install.sh", "systemd/streetgate.service", "config.toml")
        }
        script_mode = whl.getinfo("gateway/deploy_files/install.sh").external_attr >> 16
    assert version == gateway.__version__
    assert f"Version: {gateway.__version__}\n" in metadata
    assert "License-Expression: Apache-2.0" in metadata
    assert f"streetgate-{version}.dist-info/licenses/LICENSE" in names
    assert "Project-URL: Source, https://" in metadata
    for name, data in packaged.items():
        assert data == (DEPLOY / name).read_bytes(), name  # the same files, not copies that drift
    assert script_mode & 0o111  # executable


@pytest.mark.slow
def test_from_a_fresh_venv_outside_the_checkout_the_cli_runs_and_installs_the_service(
    wheel: Path, root: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    venv = outside / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    # with every dependency, from the index, as a technician's pip would
    subprocess.run(
        [str(venv / "bin/pip"), "install", "--quiet", "--disable-pip-version-check", str(wheel)],
        check=True, timeout=600,
    )  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env["PATH"] = f"{venv / 'bin'}:{env['PATH']}"

    def streetgate(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(venv / "bin/streetgate"), *args],
            capture_output=True, text=True, check=False, cwd=outside, env=env, timeout=300,
        )  # fmt: skip

    where = subprocess.run(
        [str(venv / "bin/python"), "-c", "import gateway; print(gateway.__file__)"],
        capture_output=True, text=True, check=True, cwd=outside, env=env,
    ).stdout.strip()  # fmt: skip
    assert Path(where).is_relative_to(venv), where  # not the checkout's gateway

    version = streetgate("--version")
    assert version.stdout == f"streetgate {gateway.__version__}\n", version
    helped = streetgate("--help")
    assert helped.returncode == 0, helped.stderr
    assert "service" in helped.stdout
    config = outside / "cabinet.toml"
    shutil.copy(REPO / "examples" / "cabinet.toml", config)  # its profiles come from the wheel
    valid = streetgate("validate", str(config))
    assert valid.returncode == 0, valid.stderr
    assert valid.stdout.startswith(f"ok: {config}\n")

    env["PIP_NO_DEPS"] = "1"  # the service's venv: the wheel alone, its dependencies were above
    installed = streetgate(
        "service", "install", "--root", str(root), "--from", str(wheel), "--python", sys.executable
    )
    assert installed.returncode == 0, installed.stderr + installed.stdout
    assert "install: creating the system user streetgate" in installed.stdout
    unit = root / "etc/systemd/system/streetgate.service"
    assert unit.read_bytes() == (DEPLOY / "systemd/streetgate.service").read_bytes()
    skeleton = root / "etc/streetgate/config.toml"
    assert skeleton.read_bytes() == (DEPLOY / "config.toml").read_bytes()
    assert os.readlink(root / "usr/local/bin/streetgate") == "/opt/streetgate/venv/bin/streetgate"
    again = streetgate(
        "service", "install", "--root", str(root), "--from", str(wheel), "--python", sys.executable
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[-1] == "install: done: 0 change(s)"


def test_service_install_names_a_bad_argument_and_fails(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "service", "install", "--root", str(tmp_path / "nope"),
         "--dry-run"],
        capture_output=True, text=True, check=False, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 1
    assert f"--root {tmp_path / 'nope'}: no such directory" in result.stderr


@pytest.fixture(scope="module")
def arm64_pins(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """What pip picks for the wheel on a 64-bit Pi, binary wheels only: name -> version."""
    tmp = tmp_path_factory.mktemp("arm64")
    report = tmp / "report.json"
    result = pip_dry_run(tmp / "t", *platform_flags("aarch64"), "--report", str(report), str(wheel))
    assert result.returncode == 0, result.stderr
    return {
        item["metadata"]["name"].lower().replace("_", "-"): item["metadata"]["version"]
        for item in json.loads(report.read_text())["install"]
        if item["metadata"]["name"] != "streetgate"
    }


@pytest.mark.slow
def test_every_runtime_dependency_has_an_arm64_wheel(arm64_pins: dict[str, str]) -> None:
    assert {"cryptography", "pydantic-core", "cffi", "dbus-fast"} <= set(arm64_pins)


@pytest.mark.slow
def test_on_armv7_only_the_known_dependencies_lack_a_pypi_wheel(
    arm64_pins: dict[str, str], tmp_path: Path
) -> None:
    """Each version pip picks for arm64, looked up for armv7; the missing ones are dropped and
    named until the rest resolves."""
    missing: set[str] = set()
    while True:
        wanted = [
            f"{name}=={version}" for name, version in arm64_pins.items() if name not in missing
        ]
        result = pip_dry_run(tmp_path / "t", *platform_flags("armv7l"), "--no-deps", *wanted)
        if result.returncode == 0:
            break
        found = re.search(r"No matching distribution found for ([A-Za-z0-9_.-]+)==", result.stderr)
        assert found, result.stderr
        name = found[1].lower().replace("_", "-")
        assert name not in missing, result.stderr
        missing.add(name)
    assert missing == ARMV7_FROM_PIWHEELS_OR_SOURCE


FAKE_ARMV7 = {
    # uname -m of a 32-bit Raspberry Pi OS; dpkg-query: none of the build packages installed
    "uname": '#!/bin/sh\n[ "$1" = -m ] && echo armv7l || exec /usr/bin/uname "$@"\n',
    "dpkg-query": "#!/bin/sh\nexit 1\n",
}


@pytest.mark.parametrize("arch", ["armv7l", "aarch64"])
def test_install_sh_on_armv7_adds_piwheels_and_the_build_packages(
    arch: str, wheel: Path, tmp_path: Path
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, script in FAKE_ARMV7.items():
        (bin_dir / name).write_text(script.replace("armv7l", arch))
        (bin_dir / name).chmod(0o755)
    result = subprocess.run(
        [str(DEPLOY / "install.sh"), "--dry-run", "--python", sys.executable, "--from", str(wheel)],
        capture_output=True, text=True, check=False,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    apt = (
        "install: would: installing python3-dev libffi-dev build-essential with apt-get"
        " (32-bit ARM: dependencies without wheels are built)"
    )
    piwheels = "(also from https://www.piwheels.org/simple)"
    if arch == "armv7l":
        assert apt in result.stdout.splitlines()
        assert piwheels in result.stdout
    else:  # PyPI has wheels of everything: neither compilers nor another index
        assert "apt-get" not in result.stdout
        assert "piwheels" not in result.stdout
