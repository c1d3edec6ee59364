"""The shell examples of a README.md section, as argument lists a test runs through CliRunner."""

from __future__ import annotations

import shlex
from pathlib import Path

__all__ = ["readme_commands"]

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_commands(heading: str) -> list[list[str]]:
    """Every command line of every ```sh block under ``### heading`` (comments dropped; a
    line ending in a backslash continues on the next)."""
    text = README.read_text("utf-8")
    section = text.split(f"### {heading}\n", 1)[1].split("\n### ", 1)[0]
    blocks = [part.split("```", 1)[0].replace("\\\n", " ") for part in section.split("```sh\n")[1:]]
    return [
        shlex.split(line, comments=True)
        for block in blocks
        for line in block.splitlines()
        if line.strip()
    ]
