"""Bounded reads of config-named files, and the modes of what config-set writes."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.config.change import marker_path, previous_path, stage_change
from gateway.core.errors import ConfigError
from gateway.core.safe_files import read_config_file


def test_reads_a_regular_file_within_its_bound(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_bytes(b"x" * 100)
    assert read_config_file(path, "profile", 100) == b"x" * 100
    path.write_bytes(b"x" * 101)
    with pytest.raises(ConfigError, match="profile: 101 bytes, larger than the 100 allowed"):
        read_config_file(path, "profile", 100)


def test_a_symlink_to_a_regular_file_is_fine_to_a_device_not(tmp_path: Path) -> None:
    real = tmp_path / "real.toml"
    real.write_bytes(b"a = 1\n")
    (tmp_path / "link.toml").symlink_to(real)
    assert read_config_file(tmp_path / "link.toml", "", 1024) == b"a = 1\n"
    (tmp_path / "zero.toml").symlink_to("/dev/zero")
    with pytest.raises(ConfigError, match="password: not a regular file"):
        read_config_file(tmp_path / "zero.toml", "password", 1024)


@pytest.fixture(params=[0o000, 0o022])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def test_config_set_files_are_private_and_the_config_keeps_its_mode(
    tmp_path: Path, umask: int
) -> None:
    config = tmp_path / "gw.toml"
    config.write_text('gateway_id = "x"\n')
    config.chmod(0o640)
    stage_change(config, {"gateway_id": "y"}, "cmd-1", 30)
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    assert stat.S_IMODE(previous_path(config).stat().st_mode) == 0o600
    assert stat.S_IMODE(marker_path(config).stat().st_mode) == 0o600
    assert previous_path(config).read_text() == 'gateway_id = "x"\n'
