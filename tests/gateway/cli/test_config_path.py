"""One rule for the config file of every command: ``-c PATH``, else STREETGATE_CONFIG, else
/etc/streetgate/config.toml; a default or variable naming no file is a clear ExitCode.CONFIG."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner, Result

from gateway.cli import common
from gateway.cli.exit_codes import ExitCode
from gateway.cli.main import app

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
INSTALL_SH = Path(__file__).resolve().parents[3] / "deploy" / "install.sh"

#: Every command that reads the gateway config: its name, and the arguments it needs besides.
READERS: list[tuple[tuple[str, ...], tuple[str, ...]]] = [
    (("validate",), ()),
    (("config", "validate"), ()),
    (("config", "show"), ()),
    (("run",), ()),
    (("status",), ()),
    (("healthcheck",), ()),
    (("doctor",), ()),
    (("read",), ("meter",)),
    (("tail",), ()),
    (("buffer", "status"), ()),
    (("buffer", "export"), ()),
    (("buffer", "purge"), ("--yes",)),
    (("page", "token"), ()),
    (("creds", "init"), ()),
    (("creds", "install"), ("--cert", "signed.crt")),
    (("creds", "show"), ()),
    (("creds", "command-key", "install"), ("platform.pub",)),
]
ARGVS = [[*name, *args] for name, args in READERS]


def invoke(*args: str, env: dict[str, str | None] | None = None) -> Result:
    # Whatever the machine running the tests has set, each test says what the variable is.
    return CliRunner(env={"STREETGATE_CONFIG": None, **(env or {})}).invoke(app, list(args))


@pytest.fixture
def nowhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The default config path, moved to where no file is (/etc/streetgate may exist here)."""
    missing = tmp_path / "etc" / "streetgate" / "config.toml"
    monkeypatch.setattr(common, "DEFAULT_CONFIG", missing)
    return missing


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "gw.toml"
    shutil.copy(EXAMPLES / "local.toml", path)
    return path


def _config_params(command: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The command paths of every command with a ``--config`` option (fleet's excepted: it
    only borrows the gateway id from a config when asked)."""
    if hasattr(command, "commands"):  # a group
        return [
            found
            for name, sub in command.commands.items()
            for found in _config_params(sub, (*path, name))
        ]
    has = any("--config" in p.opts for p in command.params)
    return [path] if has and path[:1] != ("fleet",) else []


def test_the_list_of_readers_is_every_command_with_a_config_option() -> None:
    # A new command reading the config belongs in READERS, so the tests here cover it.
    assert set(_config_params(typer.main.get_command(app))) == {name for name, _ in READERS}


@pytest.mark.parametrize("argv", ARGVS, ids=" ".join)
def test_a_missing_default_says_which_path_and_how_to_choose(
    argv: list[str], nowhere: Path
) -> None:
    result = invoke(*argv)
    assert result.exit_code == ExitCode.CONFIG, result.output
    assert result.stderr.splitlines() == [
        f"error: {argv[0]}: no config file at {nowhere} "
        "(give one with -c PATH or STREETGATE_CONFIG)"
    ]
    assert result.stdout == ""


@pytest.mark.parametrize("argv", ARGVS, ids=" ".join)
def test_a_variable_naming_no_file_is_named(argv: list[str], tmp_path: Path, nowhere: Path) -> None:
    missing = tmp_path / "elsewhere.toml"
    result = invoke(*argv, env={"STREETGATE_CONFIG": str(missing)})
    assert result.exit_code == ExitCode.CONFIG, result.output
    assert result.stderr.splitlines() == [
        f"error: {argv[0]}: no config file at {missing} "
        "(named by STREETGATE_CONFIG; give another with -c PATH)"
    ]


@pytest.mark.parametrize("command", [["validate"], ["config", "validate"], ["config", "show"]])
def test_each_step_of_the_rule(
    command: list[str], config: Path, nowhere: Path, tmp_path: Path
) -> None:
    # 1. -c wins over the variable, even one naming no file.
    result = invoke(*command, "-c", str(config), env={"STREETGATE_CONFIG": "/nowhere.toml"})
    assert result.exit_code == 0, result.output
    # 2. The variable wins over the default.
    result = invoke(*command, env={"STREETGATE_CONFIG": str(config)})
    assert result.exit_code == 0, result.output
    # 3. The default, when it is there.
    nowhere.parent.mkdir(parents=True)
    shutil.copy(config, nowhere)
    result = invoke(*command)
    assert result.exit_code == 0, result.output
    if command[-1] == "validate":
        assert result.stdout.startswith(f"ok: {nowhere}\n")
    # A file given with -c that is not there is named like any unreadable config.
    missing = tmp_path / "typo.toml"
    result = invoke(*command, "-c", str(missing))
    assert result.exit_code == ExitCode.CONFIG
    assert result.stderr.splitlines() == [
        f"error: {command[0]}: {missing}: cannot read file: No such file or directory"
    ]


@pytest.mark.parametrize("command", [["validate"], ["config", "validate"], ["config", "show"]])
def test_the_file_as_an_argument_still_works_but_not_with_c(
    command: list[str], config: Path, nowhere: Path
) -> None:
    result = invoke(*command, str(config), env={"STREETGATE_CONFIG": "/nowhere.toml"})
    assert result.exit_code == 0, result.output  # the argument wins over the variable
    result = invoke(*command, str(config), "-c", str(config))
    assert result.exit_code == ExitCode.USAGE
    assert result.stderr.splitlines() == [
        f"error: {command[0]}: give the config file once: -c {config} or {config}, not both"
    ]


def test_status_reads_the_variable(config: Path, nowhere: Path) -> None:
    # status and doctor did not read STREETGATE_CONFIG before: now every command does.
    result = invoke("status", env={"STREETGATE_CONFIG": str(config)})
    assert result.exit_code == ExitCode.NOT_FOUND  # read the config; no gateway running
    assert "no config file" not in result.stderr


@pytest.mark.parametrize("name", [name for name, _ in READERS], ids=" ".join)
def test_help_shows_the_variable_and_the_default(name: tuple[str, ...]) -> None:
    result = invoke(*name, "--help", env={"COLUMNS": "200"})  # one line per option
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    assert "[env var: STREETGATE_CONFIG]" in text
    assert f"[default: ({common.DEFAULT_CONFIG})]" in text


def test_the_default_is_where_install_sh_puts_the_config() -> None:
    script = INSTALL_SH.read_text(encoding="utf-8")
    assert "ETC=/etc/streetgate\n" in script
    assert 'CONFIG="$ETC/config.toml"\n' in script
    assert Path("/etc/streetgate/config.toml") == common.DEFAULT_CONFIG


def test_the_message_shown_in_the_readme_is_the_real_one(tmp_path: Path) -> None:
    readme = (INSTALL_SH.parents[1] / "README.md").read_text(encoding="utf-8")
    shown = [line for line in readme.splitlines() if line.startswith("error: status: no config")]
    assert shown == [f"error: status: {common.missing_config(common.DEFAULT_CONFIG, 'default')}"]
    if not common.DEFAULT_CONFIG.exists():  # as on a machine without an installed gateway
        assert invoke("status").stderr.splitlines() == shown
