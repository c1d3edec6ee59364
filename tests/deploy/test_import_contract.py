"""The import contract (pyproject [tool.importlinter]) places every tool module in a layer.

A module the layers contract does not name is not checked at all: lint-imports would let it
import anything. The gateway's packages are named whole; the tool folders name each module.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOOL_FOLDERS = ("simulator", "provisioning", "firmware")


def _layered_modules() -> set[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c for c in config["contracts"] if c["type"] == "layers"]
    return {name for layer in layers["layers"] for name in re.split(r"[\s:|]+", layer) if name}


def test_every_tool_module_sits_in_a_layer() -> None:
    layered = _layered_modules()
    missing = [
        f"{folder}.{path.stem}"
        for folder in TOOL_FOLDERS
        for path in sorted((ROOT / folder).glob("*.py"))
        if path.stem not in ("__init__", "__main__") and f"{folder}.{path.stem}" not in layered
    ]
    assert not missing, (
        f"add {missing} to a layer of [tool.importlinter] in pyproject.toml (docs/architecture.md)"
    )


def test_every_gateway_package_sits_in_a_layer() -> None:
    layered = _layered_modules()
    packages = sorted(p.name for p in (ROOT / "gateway").iterdir() if (p / "__init__.py").exists())
    assert [p for p in packages if f"gateway.{p}" not in layered] == []
