"""Every error, warning and note a command prints reads ``<level>: <command>: <why>``."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import typer

from gateway.cli.common import config_error_lines, fail, note, warn
from gateway.cli.exit_codes import ExitCode
from gateway.core.errors import ConfigError, ConfigIssue

ROOT = Path(__file__).resolve().parents[3]
#: The command-line layer (pyproject's import contract): where messages are printed.
CLI_MODULES = sorted(
    [
        *(ROOT / "gateway" / "cli").glob("*.py"),
        *(ROOT / "provisioning").glob("*_cli.py"),
        ROOT / "firmware" / "node_cli.py",
        ROOT / "simulator" / "cli.py",
        ROOT / "simulator" / "demo.py",
    ]
)
LEVEL = re.compile(r"^(error|warning|note): ")
STYLED = re.compile(r"^(error|warning|note): ([a-z][a-z-]*|\{[a-z_]+\}): ")


def _message_starts(path: Path) -> list[tuple[int, str]]:
    """The start of every string literal (or f-string) in ``path``, with its line number."""
    found = []
    tree = ast.parse(path.read_text("utf-8"))
    inside = {id(p) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for p in n.values}
    for node in ast.walk(tree):
        if id(node) in inside:
            continue  # a piece of an f-string, which is read whole
        if isinstance(node, ast.JoinedStr):
            text = "".join(
                str(part.value)
                if isinstance(part, ast.Constant)
                else "{" + ast.unparse(part.value) + "}"
                for part in node.values
                if isinstance(part, ast.Constant | ast.FormattedValue)
            )
            found.append((node.lineno, text))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.append((node.lineno, node.value))
    return found


def test_the_scan_sees_the_modules() -> None:
    assert len(CLI_MODULES) > 15


@pytest.mark.parametrize("path", CLI_MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_messages_name_their_command(path: Path) -> None:
    unstyled = [
        f"{path.relative_to(ROOT)}:{line}: {text[:60]!r}"
        for line, text in _message_starts(path)
        if LEVEL.match(text) and not STYLED.match(text)
    ]
    assert unstyled == [], "write these as fail/warn/note(<command>, ...)"


def test_the_helpers(capsys: pytest.CaptureFixture[str]) -> None:
    warn("status", "the figures above are 3 min old")
    note("tail", "no device 'x'")
    assert capsys.readouterr().err.splitlines() == [
        "warning: status: the figures above are 3 min old",
        "note: tail: no device 'x'",
    ]
    error = ConfigError("gw.toml", [ConfigIssue("mqtt.port", "too big"), ConfigIssue("", "bad")])
    assert config_error_lines("run", error) == [
        "error: run: gw.toml: mqtt.port: too big",
        "error: run: gw.toml: bad",
    ]
    with pytest.raises(typer.Exit) as stopped:
        fail("run", error)
    assert stopped.value.exit_code == ExitCode.CONFIG
    assert capsys.readouterr().err.splitlines() == config_error_lines("run", error)
