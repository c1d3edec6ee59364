"""Every exception streetgate defines lives in gateway/core/errors.py and is drawn in its tree."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from types import ModuleType

import pytest

from gateway.cli.exit_codes import ExitCode, exit_code_for
from gateway.core import errors

#: Packages whose modules are walked; firmware/node is MicroPython and runs on the boards,
#: a ``__main__`` runs its command when imported.
PACKAGES = ("gateway", "drivers", "provisioning", "firmware", "simulator")
SKIPPED_PACKAGES = ("firmware.node",)

#: Exception classes allowed outside gateway/core/errors.py, each with the reason.
ELSEWHERE: dict[str, str] = {}

_TREE_LINE = re.compile(r"^(?P<indent>[ │├└─]*?)(?P<name>[A-Z]\w+)\b")


def _modules() -> list[ModuleType]:
    found = []
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        found.append(package)
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{package_name}."):
            if info.name.startswith(SKIPPED_PACKAGES) or info.name.endswith(".__main__"):
                continue
            found.append(importlib.import_module(info.name))
    return found


def _defined_exceptions(module: ModuleType) -> list[type[BaseException]]:
    return [
        value
        for value in vars(module).values()
        if inspect.isclass(value)
        and issubclass(value, BaseException)
        and value.__module__ == module.__name__
    ]


def _drawn_tree() -> dict[str, str | None]:
    """Each class name in the docstring's tree, and the name drawn as its parent."""
    doc = errors.__doc__ or ""
    lines = doc.split("Exception tree::", 1)[1].strip("\n").split("\n\n", 1)[0].splitlines()
    parents: dict[str, str | None] = {}
    stack: list[str] = []
    for line in lines:
        match = _TREE_LINE.match(line)
        assert match, line
        depth = (len(match["indent"]) - 4) // 4
        del stack[depth:]
        parents[match["name"]] = stack[-1] if stack else None
        stack.append(match["name"])
    return parents


def test_every_exception_lives_in_the_errors_module() -> None:
    outside = {
        f"{module.__name__}.{cls.__name__}"
        for module in _modules()
        if module is not errors
        for cls in _defined_exceptions(module)
    }
    assert outside - ELSEWHERE.keys() == set(), "move these into gateway/core/errors.py"


def test_every_exception_is_in_the_streetgate_tree() -> None:
    for cls in _defined_exceptions(errors):
        assert issubclass(cls, errors.StreetgateError), cls


def test_the_docstring_draws_every_class_under_its_real_parent() -> None:
    drawn = _drawn_tree()
    defined = {cls.__name__: cls for cls in _defined_exceptions(errors)}
    assert drawn.keys() == defined.keys()
    for name, parent in drawn.items():
        if parent is None:
            assert defined[name] is errors.StreetgateError
        else:
            assert defined[parent] in defined[name].__bases__, (name, parent)


def test_dual_inheritance_keeps_the_builtin_excepts_working() -> None:
    assert issubclass(errors.DeviceTimeout, TimeoutError)
    assert issubclass(errors.NoAnswer, TimeoutError)
    assert issubclass(errors.ManifestError, ValueError)
    assert issubclass(errors.BadAnswer, ValueError)
    assert issubclass(errors.BrokerNotInstalled, RuntimeError)


def test_errors_carry_no_exit_codes() -> None:
    for cls in _defined_exceptions(errors):
        assert "exit_code" not in inspect.signature(cls.__init__).parameters, cls


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (errors.CredsFileMissing("x"), ExitCode.NOT_FOUND),
        (errors.CredsPermissionDenied("x"), ExitCode.PERMISSION),
        (errors.CredsNotConfigured("x"), ExitCode.CONFIG),
        (errors.CredsWouldOverwrite("x"), ExitCode.DECLINED),
        (errors.CredsError("x"), ExitCode.FAILURE),
        (errors.FleetUnreachable("x"), ExitCode.UNREACHABLE),
        (errors.FleetNotFound("x"), ExitCode.NOT_FOUND),
        (errors.FleetPermissionDenied("x"), ExitCode.PERMISSION),
        (errors.FleetBadRequest("x"), ExitCode.USAGE),
        (errors.FleetError("x"), ExitCode.FAILURE),
        (errors.ConfigError("gw.toml", []), ExitCode.CONFIG),
        (RuntimeError("a bug"), ExitCode.FAILURE),
    ],
)
def test_the_cli_decides_the_exit_code(exc: BaseException, code: ExitCode) -> None:
    assert exit_code_for(exc) is code
