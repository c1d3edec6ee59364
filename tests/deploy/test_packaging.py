"""What the package declares, held to the code: the licence, one version, every imported
third-party module a declared dependency with an upper bound."""

from __future__ import annotations

import ast
import importlib.metadata
import sys
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.version import Version
from typer.testing import CliRunner

import gateway
from gateway.cli.main import app

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
#: What the wheel ships (pyproject's wheel packages); the MicroPython firmware/node code runs on
#: the sensor nodes, not in the gateway's environment.
SHIPPED = PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
NOT_HOST_CODE = (REPO / "firmware" / "node",)
#: Extras that only the developers install: the shipped code must not need them.
DEV_EXTRAS = {"dev"}


def _imported_modules(tree: ast.AST) -> set[str]:
    """Top-level names of absolute imports, also inside functions, and of the
    ``import_module("x")``/``importer("x")`` calls the lazy imports use (provisioning/fleet.py)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            arg = node.args[0]
            if name in {"import_module", "importer"} and isinstance(arg, ast.Constant):
                found.add(str(arg.value).split(".")[0])
    return found


def third_party_imports() -> dict[str, set[str]]:
    """Module name -> the shipped files importing it (stdlib and first-party left out)."""
    imports: dict[str, set[str]] = {}
    for package in SHIPPED:
        for path in sorted((REPO / package).rglob("*.py")):
            if any(path.is_relative_to(skip) for skip in NOT_HOST_CODE):
                continue
            for module in _imported_modules(ast.parse(path.read_text(), str(path))):
                if module in sys.stdlib_module_names or module in SHIPPED:
                    continue
                imports.setdefault(module, set()).add(str(path.relative_to(REPO)))
    return imports


def normalized(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def runtime_requirements() -> dict[str, list[Requirement]]:
    """The requirements of the base dependencies (key "") and of each extra but dev."""
    groups = {"": [Requirement(r) for r in PROJECT["dependencies"]]}
    for extra, reqs in PROJECT["optional-dependencies"].items():
        if extra not in DEV_EXTRAS:
            groups[extra] = [Requirement(r) for r in reqs]
    return groups


def test_every_imported_third_party_module_is_a_declared_dependency() -> None:
    distributions = importlib.metadata.packages_distributions()
    groups = runtime_requirements()
    declared = {normalized(r.name): extra for extra, reqs in groups.items() for r in reqs}
    imports = third_party_imports()
    assert {"typer", "pydantic", "rich"} <= set(imports)  # the scan sees what is there
    missing = []
    imported_dists = set()
    for module, files in sorted(imports.items()):
        dists = distributions.get(module)
        assert dists, f"{module} (imported by {sorted(files)}) is not installed in this venv"
        dist = normalized(dists[0])
        imported_dists.add(dist)
        if dist not in declared:
            missing.append(f"{dist} (module {module}, imported by {', '.join(sorted(files))})")
    assert not missing, "imported but not declared in pyproject.toml: " + "; ".join(missing)
    # and only the base dependencies or an extra the lazy import names: the base ones all used
    base = {normalized(r.name) for r in groups[""]}
    assert base <= imported_dists, f"declared but never imported: {sorted(base - imported_dists)}"


def test_every_runtime_dependency_has_an_upper_bound_past_the_tested_version() -> None:
    """Below the next major release; for 0.x, below the next minor (their minors break)."""
    problems = []
    for reqs in runtime_requirements().values():
        for req in reqs:
            installed = Version(importlib.metadata.version(req.name))
            if installed not in req.specifier:
                problems.append(f"{req}: the tested {installed} is outside it")
                continue
            if any(spec.operator in {"==", "==="} for spec in req.specifier):
                continue
            uppers = [Version(s.version) for s in req.specifier if s.operator == "<"]
            if not uppers:
                problems.append(f"{req}: no upper bound")
                continue
            limit = (
                Version(f"0.{installed.minor + 1}")
                if installed.major == 0
                else Version(f"{installed.major + 1}")
            )
            if min(uppers) > limit:
                problems.append(f"{req}: allows {limit}, a release that may break it")
    assert not problems, "; ".join(problems)


def test_one_version_source() -> None:
    assert "version" not in PROJECT
    assert PROJECT["dynamic"] == ["version"]
    assert PYPROJECT["tool"]["hatch"]["version"]["path"] == "gateway/__init__.py"
    assert "version" not in yaml.safe_load((REPO / "balena.yml").read_text())
    Version(gateway.__version__)  # a valid version, or InvalidVersion
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"streetgate {gateway.__version__}\n"
    assert importlib.metadata.version("streetgate") == gateway.__version__


def test_the_licence_is_the_full_apache_2_text_pyproject_names() -> None:
    assert PROJECT["license"] == "Apache-2.0"
    assert PROJECT["license-files"] == ["LICENSE"]
    text = (REPO / "LICENSE").read_text()
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"]
    assert "END OF TERMS AND CONDITIONS" in text
    assert len(text.split("\n")) > 200  # the whole licence, not a pointer to it


def test_project_urls_are_set() -> None:
    urls = PROJECT["urls"]
    assert {"Homepage", "Source", "Issues", "Changelog"} <= set(urls)
    assert all(url.startswith("https://") for url in urls.values())
