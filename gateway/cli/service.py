"""``streetgate service install``: the systemd service from the installed package, no checkout.

The wheel carries deploy/install.sh, the unit and the config skeleton as
``gateway/deploy_files/`` (pyproject's ``force-include``); this command runs that script, so a
service install from a wheel and one from a checkout are the same code. In a checkout (an
editable install) the files are the checkout's ``deploy/``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Annotated

import typer

from gateway import __version__
from gateway.cli.common import fail
from gateway.cli.exit_codes import ExitCode

__all__ = ["app", "deploy_files"]

app = typer.Typer(
    help="Install streetgate as a systemd service (Raspberry Pi OS, Debian).",
    no_args_is_help=True,
)

_HERE = Path(__file__).resolve().parent
#: Inside an installed wheel first, then a checkout's deploy/ (an editable install).
_CANDIDATES = (_HERE.parent / "deploy_files", _HERE.parents[1] / "deploy")
_FILES = ("install.sh", "systemd/streetgate.service", "config.toml")


def deploy_files() -> Path:
    """The folder holding install.sh, systemd/streetgate.service and config.toml."""
    for folder in _CANDIDATES:
        if all((folder / name).is_file() for name in _FILES):
            return folder
    tried = ", ".join(str(folder) for folder in _CANDIDATES)
    raise FileNotFoundError(f"the deploy files ({', '.join(_FILES)}) are in none of: {tried}")


@app.command()
def install(
    root: Annotated[
        Path | None,
        typer.Option(help="Install under DIR instead of / (an image, a test); starts nothing."),
    ] = None,
    from_: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="A wheel, sdist, folder or PyPI requirement to put in /opt/streetgate/venv"
            " (default: this streetgate's version from PyPI; in a checkout, the checkout).",
        ),
    ] = None,
    python: Annotated[
        str | None, typer.Option(help="The Python to build the service's venv with.")
    ] = None,
    reinstall: Annotated[
        bool, typer.Option(help="Install streetgate again even if that version is there.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option(help="Report what would change; change nothing.")
    ] = False,
) -> None:
    """The service user, /opt/streetgate/venv, the unit and the config skeleton (deploy/install.sh).

    Safe to run again: it changes only what differs. Once the config is valid it enables and
    starts the service. docs/deploy.md.
    """
    try:
        files = deploy_files()
    except FileNotFoundError as exc:
        fail("service", f"install: {exc}; reinstall streetgate", ExitCode.NOT_FOUND)
    if from_ is None and files.name == "deploy_files":
        from_ = f"streetgate=={__version__}"  # the script's own default would be PyPI's latest
    args = ["/bin/bash", str(files / "install.sh")]
    for flag, value in (("--root", root), ("--from", from_), ("--python", python)):
        if value is not None:
            args += [flag, str(value)]
    args += ["--reinstall"] * reinstall + ["--dry-run"] * dry_run
    # S603: a fixed script of this package, arguments as a list, no shell.
    done = subprocess.run(args, check=False)  # noqa: S603
    raise typer.Exit(ExitCode.OK if done.returncode == 0 else ExitCode.FAILURE)
