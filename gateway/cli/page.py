"""``streetgate page``: the status page's access token, for clients beyond loopback.

``streetgate page token -c CONFIG`` creates a new random token in ``<outbox>.page-token``
(mode 0600, in the state directory), replacing the old one, and prints it with the address to
open. The gateway reads it on every request from beyond loopback: no restart is needed, and a
replaced token locks out whoever held the old one. It is only asked for when
``[metrics] allow_remote = true`` (gateway/runtime/status_page.py).
"""

from __future__ import annotations

from typing import Annotated

import typer

from gateway.cli.common import ConfigOption, err, fail, load_or_exit, note
from gateway.cli.exit_codes import ExitCode
from gateway.config.metrics import split_listen
from gateway.runtime.status_page import create_token, page_token_path, read_token

__all__ = ["app"]

app = typer.Typer(
    name="page",
    help="The status page served beside /metrics: its access token.",
    no_args_is_help=True,
)


@app.command("token")
def token(
    config: ConfigOption,
    show: Annotated[
        bool, typer.Option("--show", help="Print the current token instead of a new one.")
    ] = False,
) -> None:
    """Create (or with --show print) the access token for the status page beyond loopback."""
    cfg = load_or_exit(config, "page")
    path = page_token_path(cfg.outbox.path)
    if show:
        current = read_token(path)
        if current is None:
            fail(
                "page",
                f"no token in {path} (or not a private file): run streetgate page token",
                ExitCode.NOT_FOUND,
            )
        secret = current
    else:
        try:
            secret = create_token(path)
        except OSError as exc:
            fail("page", f"cannot write {path}: {exc.strerror}", ExitCode.PERMISSION)
        err(f"wrote {path} (mode 0600); the old token, if any, no longer works")
    typer.echo(secret)
    if cfg.metrics is None:
        note("page", "[metrics] is not configured: the page is not served")
    elif not cfg.metrics.allow_remote:
        note("page", "allow_remote is false: the page is served on loopback only, without a token")
    else:
        host, port = split_listen(cfg.metrics.listen)
        err(f"open http://<this gateway's address>:{port}/?token=<the token> (listening on {host})")
