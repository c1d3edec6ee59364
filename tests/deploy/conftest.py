"""Fixtures of the deploy tests: the wheel, built once, and a throwaway root to install into."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(REPO)],
        check=True,
        capture_output=True,
    )
    return next(out.glob("streetgate-*.whl"))


@pytest.fixture
def as_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("install.sh is tested for real (useradd, chown, mounts) and needs root")


@pytest.fixture
def root(tmp_path: Path, as_root: None) -> Path:
    """A throwaway root with the account files of a fresh Raspberry Pi OS."""
    tree = tmp_path / "root"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc/passwd").write_text(
        "root:x:0:0:root:/root:/bin/bash\npi:x:1000:1000::/home/pi:/bin/bash\n"
    )
    (tree / "etc/group").write_text("root:x:0:\ndialout:x:20:pi\nbluetooth:x:112:\npi:x:1000:\n")
    (tree / "etc/shadow").write_text("root:*:19000:0:99999:7:::\npi:*:19000:0:99999:7:::\n")
    (tree / "etc/gshadow").write_text("root:*::\ndialout:*::pi\nbluetooth:*::\npi:*::\n")
    for name in ("shadow", "gshadow"):
        (tree / "etc" / name).chmod(0o640)
    return tree
