"""``streetgate fleet enrol|env|tag|pin|status``: balena fleet enrolment (optional extra ``fleet``).

The API token comes from ``$BALENA_API_KEY`` or ``--token-file`` (mode 0600), never from a flag.
Exit codes (gateway.exit_codes): 0 done; 1 balena-sdk missing, the API refused or did not
store what was asked; 2 usage (no token, bad NAME=VALUE); 3 invalid config; 4 the API is
unreachable; 5 the token file is readable by others; 6 no such fleet, device or release.
Tests inject ``{"importer": ...}`` as the click context object to simulate a missing SDK.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from gateway.cli.common import err, fail, load_or_exit
from gateway.cli.exit_codes import ExitCode
from gateway.core.errors import FleetError
from provisioning.fleet import (
    DEFAULT_TIMEOUT,
    URL_ENV,
    DeviceStatus,
    FleetClient,
    Importer,
    read_token,
)
from provisioning.progress import working

__all__ = ["app", "status_dict"]

T = TypeVar("T")

TokenFileOption = Annotated[
    Path | None,
    typer.Option(
        "--token-file",
        help="File holding the balena API token (mode 0600); default: $BALENA_API_KEY.",
        show_default=False,
    ),
]
ApiUrlOption = Annotated[
    str | None,
    typer.Option(
        "--api-url",
        envvar=URL_ENV,
        help="balena API base URL (openBalena, a test stub); default: balena-cloud.",
        show_default=False,
    ),
]
DeviceOption = Annotated[
    str,
    typer.Option(
        "--device", "-d", envvar="BALENA_DEVICE_UUID", help="The device's UUID.", show_default=False
    ),
]
ConfigFromOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Also set the gateway id from this gateway config.",
        show_default=False,
    ),
]
TimeoutOption = Annotated[
    float,
    typer.Option("--timeout", min=0.1, help="Seconds to wait for each answer of the balena API."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="One JSON document.")]


def _client(
    ctx: typer.Context, token_file: Path | None, api_url: str | None, timeout: float
) -> FleetClient:
    options = ctx.obj if isinstance(ctx.obj, dict) else {}
    importer: Importer | None = options.get("importer")
    try:
        token = read_token(token_file)
        if importer is None:
            return FleetClient(token, api_url, timeout=timeout)
        return FleetClient(token, api_url, importer, timeout=timeout)
    except FleetError as exc:
        fail("fleet", exc)


def _call(  # noqa: PLR0917 - the common options of every fleet command
    ctx: typer.Context,
    token_file: Path | None,
    api_url: str | None,
    timeout: float,
    doing: str,
    call: Callable[[FleetClient], T],
) -> T:
    """Make a client from the command's options and run one API call with progress shown;
    a FleetError becomes its message and exit code."""
    client = _client(ctx, token_file, api_url, timeout)
    try:
        with working(doing):
            return call(client)
    except FleetError as exc:
        fail("fleet", exc)


def _pairs(pairs: list[str], gateway_id_name: str, config: Path | None) -> dict[str, str]:
    values: dict[str, str] = {}
    if config is not None:
        values[gateway_id_name] = load_or_exit(config, "fleet").gateway_id
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            fail("fleet", f"{pair!r} is not NAME=VALUE", ExitCode.USAGE)
        values[name] = value
    if not values:
        fail("fleet", "nothing to set: give NAME=VALUE pairs or --config", ExitCode.USAGE)
    return values


def _print_values(values: dict[str, str], as_json: bool, schema: str) -> None:
    if as_json:
        typer.echo(json.dumps({"schema": schema, "values": values}))
    else:
        for name, value in values.items():
            typer.echo(f"{name}={value}")


def enrol(  # noqa: PLR0917 - one parameter per CLI option
    ctx: typer.Context,
    fleet: Annotated[str, typer.Option("--fleet", help="Fleet slug (org/name) or UUID.")],
    uuid: Annotated[
        str | None, typer.Option("--uuid", help="Register this UUID instead of a new one.")
    ] = None,
    device_type: Annotated[
        str | None,
        typer.Option("--device-type", help="Device type slug; default: the fleet's."),
    ] = None,
    token_file: TokenFileOption = None,
    api_url: ApiUrlOption = None,
    timeout: TimeoutOption = DEFAULT_TIMEOUT,
    as_json: JsonOption = False,
) -> None:
    """Register a device in a fleet (needs a user API key) and print its UUID."""
    new_uuid = _call(
        ctx,
        token_file,
        api_url,
        timeout,
        f"registering a device in {fleet}",
        lambda c: c.enrol(fleet, uuid, device_type),
    )
    if as_json:
        typer.echo(
            json.dumps({"schema": "streetgate.fleet.enrol/1", "uuid": new_uuid, "fleet": fleet})
        )
    else:
        typer.echo(new_uuid)
    err(
        f"registered in {fleet}; next: set its variables and tags, e.g.\n"
        f"  streetgate fleet env set -d {new_uuid} -c gw.toml SITE=...\n"
        "and put the UUID in the device's config.json (balena os configure)"
    )


def env_set(  # noqa: PLR0917 - one parameter per CLI option
    ctx: typer.Context,
    device: DeviceOption,
    pairs: Annotated[
        list[str] | None, typer.Argument(help="NAME=VALUE pairs.", show_default=False)
    ] = None,
    config: ConfigFromOption = None,
    token_file: TokenFileOption = None,
    api_url: ApiUrlOption = None,
    timeout: TimeoutOption = DEFAULT_TIMEOUT,
    as_json: JsonOption = False,
) -> None:
    """Set device environment variables (read back to check); -c adds STREETGATE_GATEWAY_ID."""
    values = _pairs(pairs or [], "STREETGATE_GATEWAY_ID", config)
    stored = _call(
        ctx,
        token_file,
        api_url,
        timeout,
        f"setting {len(values)} variable(s) on {device}",
        lambda c: c.env_set(device, values),
    )
    _print_values({n: stored[n] for n in values}, as_json, "streetgate.fleet.env/1")
    err(f"set {len(values)} variable(s) on {device}; the device restarts its services to use them")


def env_list(  # noqa: PLR0917 - one parameter per CLI option
    ctx: typer.Context,
    device: DeviceOption,
    token_file: TokenFileOption = None,
    api_url: ApiUrlOption = None,
    timeout: TimeoutOption = DEFAULT_TIMEOUT,
    as_json: JsonOption = False,
) -> None:
    """List the device's environment variables."""
    values = _call(
        ctx,
        token_file,
        api_url,
        timeout,
        f"reading the variables of {device}",
        lambda c: c.env_list(device),
    )
    _print_values(values, as_json, "streetgate.fleet.env/1")


def tag_set(  # noqa: PLR0917 - one parameter per CLI option
    ctx: typer.Context,
    device: DeviceOption,
    pairs: Annotated[
        list[str] | None, typer.Argument(help="KEY=VALUE pairs.", show_default=False)
    ] = None,
    config: ConfigFromOption = None,
    token_file: TokenFileOption = None,
    api_url: ApiUrlOption = None,
    timeout: TimeoutOption = DEFAULT_TIMEOUT,
    as_json: JsonOption = False,
) -> None:
    """Set device tags (read back to check); -c adds the tag gateway_id."""
    values = _pairs(pairs or [], "gateway_id", config)
    stored = _call(
        ctx,
        token_file,
        api_url,
        timeout,
        f"setting {len(values)} tag(s) on {device}",
        lambda c: c.tag_set(device, values),
    )
    _print_values({n: stored[n] for n in values}, as_json, "streetgate.fleet.tags/1")


def tag_list(  # noqa: PLR0917 - one parameter per CLI option
    ctx: typer.Context,
    device: DeviceOption,
    token_file: TokenFileOption = None,
    api_url: ApiUrlOption = None,
    timeout: TimeoutOption = DEFAULT_TIMEOUT,
    as_json: JsonOption = False,
) -> None:
    """List the device's tags."""
    values = _call(
        ctx,
        token_file,
        api_url,
        timeout,
        f"reading the tags of {device}",
        lambda c: c.tag_list(device),
    )
    _print_values(values, as_json, "streetgate.fleet.tags/1")


def pin(  # noqa: PLR0917 - one parameter per CLI option
    ctx: typer.Context,
    device: DeviceOption,
    release: Annotated[str, typer.Option("--release", help="Full commit hash of the release.")],
    token_file: TokenFileOption = None,
    api_url: ApiUrlOption = None,
    timeout: TimeoutOption = DEFAULT_TIMEOUT,
    as_json: JsonOption = False,
) -> None:
    """Pin the device to a release of its fleet (checked by reading the device back)."""
    pinned = _call(
        ctx,
        token_file,
        api_url,
        timeout,
        f"pinning {device} to {release}",
        lambda c: c.pin(device, release),
    )
    if as_json:
        typer.echo(
            json.dumps({"schema": "streetgate.fleet.pin/1", "uuid": device, "pinned": pinned})
        )
    else:
        typer.echo(pinned)
    err(f"device {device} pinned to release {pinned}")


def status_dict(status: DeviceStatus) -> dict[str, Any]:
    """The JSON document of ``fleet status --json``."""
    return {
        "schema": "streetgate.fleet.status/1",
        "uuid": status.uuid,
        "name": status.name,
        "fleet": status.fleet,
        "online": status.is_online,
        "last_seen": status.last_seen,
        "status": status.status,
        "release": status.release,
        "pinned_release": status.pinned_release,
        "os_version": status.os_version,
    }


def _status_text(status: DeviceStatus) -> str:
    rows = [
        ("device", f"{status.uuid} ({status.name or 'unnamed'})"),
        ("fleet", status.fleet or "-"),
        ("online", "yes" if status.is_online else "no"),
        ("last seen", status.last_seen or "never"),
        ("status", status.status or "-"),
        ("release", status.release or "none yet"),
        ("pinned", status.pinned_release or "no (tracks the fleet)"),
        ("os", status.os_version or "-"),
    ]
    return "\n".join(f"{name:<10} {value}" for name, value in rows)


def status(  # noqa: PLR0917 - one parameter per CLI option
    ctx: typer.Context,
    device: DeviceOption,
    token_file: TokenFileOption = None,
    api_url: ApiUrlOption = None,
    timeout: TimeoutOption = DEFAULT_TIMEOUT,
    as_json: JsonOption = False,
) -> None:
    """Online status, last seen, release and pin of one device."""
    found = _call(
        ctx,
        token_file,
        api_url,
        timeout,
        f"reading the status of {device}",
        lambda c: c.status(device),
    )
    typer.echo(json.dumps(status_dict(found)) if as_json else _status_text(found))


app = typer.Typer(
    name="fleet",
    help="balena fleet enrolment: register, variables, tags, pin a release, status"
    " (needs the extra streetgate\\[fleet]).",
    no_args_is_help=True,
)
app.command("enrol")(enrol)
env = typer.Typer(name="env", help="Device environment variables.", no_args_is_help=True)
env.command("set")(env_set)
env.command("list")(env_list)
app.add_typer(env, name="env")
tag = typer.Typer(name="tag", help="Device tags.", no_args_is_help=True)
tag.command("set")(tag_set)
tag.command("list")(tag_list)
app.add_typer(tag, name="tag")
app.command("pin")(pin)
app.command("status")(status)
