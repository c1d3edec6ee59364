"""balena fleet enrolment through balena-sdk (the optional ``fleet`` extra), checked step by step.

balena-sdk is imported only here, only when a ``fleet`` command runs, through an ``importer``
that tests replace to simulate a missing extra. The SDK hides some failures: raw endpoints
(``/device/register``, whoami) never raise on HTTP errors, a dropped connection there becomes
``NotLoggedIn``, and a 5xx answer is printed to stdout. So ``FleetClient`` translates every
SDK and ``requests`` error at one boundary (``_translated``) into a ``FleetError`` subclass
saying what failed (the CLI maps it to an exit code), keeps stdout clean, and reads back
what it wrote (variables, tags, the pinned release, the registered device) instead of
trusting a quiet return.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from gateway.core.errors import (
    FleetBadRequest,
    FleetError,
    FleetNotFound,
    FleetPermissionDenied,
    FleetUnreachable,
    NoAnswer,
)
from gateway.core.key_files import unsafe_mode

__all__ = [
    "DEFAULT_TIMEOUT",
    "TOKEN_ENV",
    "URL_ENV",
    "DeviceStatus",
    "FleetClient",
    "Importer",
    "read_token",
]

TOKEN_ENV = "BALENA_API_KEY"  # noqa: S105 - the variable's name, not a token
URL_ENV = "BALENA_API_URL"
_VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RESERVED_PREFIXES = ("BALENA_", "RESIN_")  # device config variables, not environment
_EXCERPT = 200
DEFAULT_TIMEOUT = 30.0  # seconds for one SDK call; the SDK itself waits for ever

Importer = Callable[[str], ModuleType]


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    """What ``fleet status`` reports about one device."""

    uuid: str
    name: str | None
    fleet: str | None
    is_online: bool
    last_seen: str | None  # ISO 8601, as the API gives it
    status: str | None  # balena's overall_status ("idle", "offline", "updating"...)
    release: str | None  # commit the device runs
    pinned_release: str | None  # commit it is pinned to; None: it tracks the fleet
    os_version: str | None


def read_token(token_file: Path | None, environ: Mapping[str, str] | None = None) -> str:
    """The API token from ``token_file`` (which must be 0600) or from ``$BALENA_API_KEY``."""
    env = os.environ if environ is None else environ
    if token_file is None:
        token = env.get(TOKEN_ENV, "").strip()
        if not token:
            raise FleetBadRequest(
                f"no balena API token: set {TOKEN_ENV} or give --token-file FILE (mode 0600)",
            )
        return token
    try:
        mode = unsafe_mode(token_file)
        token = token_file.read_text("utf-8").strip()
    except FileNotFoundError as exc:
        raise FleetNotFound(f"token file {token_file} does not exist") from exc
    except PermissionError as exc:
        message = f"cannot read token file {token_file}: permission denied"
        raise FleetPermissionDenied(message) from exc
    except OSError as exc:
        raise FleetError(f"cannot read token file {token_file}: {exc.strerror}") from exc
    if mode is not None:
        raise FleetPermissionDenied(
            f"token file {token_file} is readable by others (mode {mode:04o});"
            f" fix it with: chmod 600 {token_file}",
        )
    if not token:
        raise FleetError(f"token file {token_file} is empty")
    return token


def check_variable_names(names: list[str]) -> None:
    """Refuse names balena would refuse (or treat as device configuration)."""
    for name in names:
        if not _VARIABLE_NAME.match(name):
            raise FleetBadRequest(f"{name!r} is not a valid variable name (letters, digits, _)")
        if name.upper().startswith(_RESERVED_PREFIXES):
            raise FleetBadRequest(f"{name}: BALENA_ and RESIN_ names are device configuration")


def _excerpt(text: object) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= _EXCERPT else flat[:_EXCERPT] + "..."


def _caused_by(exc: BaseException, kinds: tuple[type[BaseException], ...]) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kinds):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _release_commit(link: object) -> str | None:
    """The commit of an expanded release link (a list of zero or one record)."""
    if isinstance(link, list) and link and isinstance(link[0], dict):
        commit = link[0].get("commit")
        return commit if isinstance(commit, str) else None
    return None


class FleetClient:
    """balena-sdk behind a small, checked interface; ``api_url`` points it elsewhere (tests)."""

    def __init__(
        self,
        token: str,
        api_url: str | None = None,
        importer: Importer = importlib.import_module,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.timeout = timeout
        try:
            balena = importer("balena")
            self._errors = importer("balena.exceptions")
            self._http = importer("requests.exceptions")
        except ImportError as exc:
            raise FleetError(
                "balena-sdk is not installed: install streetgate[fleet]"
                " (pip install 'streetgate[fleet]')",
            ) from exc
        self.api_url = api_url or "https://api.balena-cloud.com/"
        # In memory: nothing written to ~/.balena, the token never lands in a 0644 file.
        self._sdk = balena.Balena({"data_directory": False})
        if api_url is not None:
            base = api_url if api_url.endswith("/") else api_url + "/"
            self.api_url = base
            self._sdk.settings.set("api_endpoint", base)  # raw endpoints
            self._sdk.pine.api_prefix = f"{base}v7/"  # pine froze its prefix at construction
        self._sdk.auth.login_with_token(token)
        self._checked_token = False

    @contextlib.contextmanager
    def _translated(self, what: str) -> Iterator[None]:
        """Every SDK, ``requests`` and odd-answer error as a FleetError saying ``what`` failed."""
        errors, http = self._errors, self._http
        unreachable = (http.ConnectionError, http.Timeout)
        try:
            # RequestError prints 5xx bodies to stdout; stdout is for data.
            with contextlib.redirect_stdout(sys.stderr):
                yield
        except FleetError:
            raise
        except unreachable as exc:
            raise self._unreachable(what, exc) from exc
        except NoAnswer as exc:
            raise FleetUnreachable(
                f"{what}: no answer from the balena API at {self.api_url} within {exc.seconds:g} s",
            ) from exc
        except errors.NotLoggedIn as exc:
            if _caused_by(exc, unreachable):
                raise self._unreachable(what, exc) from exc
            raise FleetError(
                f"{what}: the balena API did not accept the token (${TOKEN_ENV} or --token-file)",
            ) from exc
        except (errors.DeviceNotFound, errors.ApplicationNotFound, errors.ReleaseNotFound) as exc:
            raise FleetNotFound(f"{what}: {exc.message}") from exc
        except errors.InvalidParameter as exc:
            raise FleetBadRequest(f"{what}: {exc.message}") from exc
        except errors.RequestError as exc:
            status = exc.status_code
            refused = FleetNotFound if status == 404 else FleetError
            raise refused(
                f"{what}: the balena API refused it (HTTP {status}): {_excerpt(exc.body)}"
            ) from exc
        except errors.BalenaException as exc:
            raise FleetError(f"{what}: {exc.message}") from exc
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            # the SDK indexing an error answer it took for data
            raise FleetError(f"{what}: unexpected answer from the balena API ({exc!r})") from exc
        except Exception as exc:  # the SDK raises bare Exception (a key that is not a user's)
            raise FleetError(f"{what}: {exc}") from exc

    def _run(self, call: Callable[..., Any], *args: Any) -> Any:
        """``call(*args)`` on a daemon thread, waiting at most ``self.timeout`` seconds.

        balena-sdk calls ``requests`` without a timeout: on a black-holed uplink it would wait
        for ever. A call that times out is abandoned (its thread dies with the process).
        """
        outcome: list[tuple[bool, Any]] = []

        def target() -> None:
            try:
                outcome.append((True, call(*args)))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller below
                outcome.append((False, exc))

        worker = threading.Thread(target=target, name="balena-sdk", daemon=True)
        worker.start()
        worker.join(self.timeout)
        if not outcome:
            raise NoAnswer(self.timeout)
        ok, value = outcome[0]
        if not ok:
            raise value
        return value

    def _unreachable(self, what: str, exc: BaseException) -> FleetError:
        del exc  # the cause is chained; its text is a long urllib3 repr
        return FleetUnreachable(f"{what}: cannot reach the balena API at {self.api_url}")

    def _check_token(self) -> None:
        if self._checked_token:
            return
        with self._translated("checking the API token"):
            self._run(self._sdk.auth.whoami)
        self._checked_token = True

    # -- enrolment ---------------------------------------------------------------------------

    def enrol(self, fleet: str, uuid: str | None = None, device_type: str | None = None) -> str:
        """Register a device (a new UUID unless given) in ``fleet``; returns its UUID."""
        self._check_token()
        device = self._sdk.models.device
        with self._translated(f"registering a device in fleet {fleet}"):
            self._run(self._sdk.models.application.get, fleet, {"$select": ["id"]})
            new_uuid: str = uuid or device.generate_uuid()
            answer = self._run(device.register, fleet, new_uuid, device_type)
        # /device/register never raises: an error comes back as a string or an error object
        if not isinstance(answer, dict) or answer.get("uuid") != new_uuid:
            raise FleetError(
                f"registering a device in fleet {fleet}: the balena API did not register it"
                f" (answer: {_excerpt(answer if isinstance(answer, str) else 'no device')})",
            )
        registered = self._device(
            new_uuid, "registering", ["uuid"], {"belongs_to__application": ["slug", "uuid"]}
        )
        in_fleet = registered.get("belongs_to__application") or [{}]
        if fleet not in {in_fleet[0].get("slug"), in_fleet[0].get("uuid")}:
            raise FleetError(
                f"registering a device in fleet {fleet}: the API answered, but device"
                f" {new_uuid} is not in the fleet afterwards",
            )
        return new_uuid

    def _device(
        self, uuid: str, what: str, select: list[str], expand: dict[str, list[str]]
    ) -> dict[str, Any]:
        options: dict[str, Any] = {"$select": select}
        if expand:
            options["$expand"] = {name: {"$select": fields} for name, fields in expand.items()}
        with self._translated(f"{what} device {uuid}"):
            found = self._run(self._sdk.models.device.get, uuid, options)
        if not isinstance(found, dict):
            raise FleetError(f"{what} device {uuid}: unexpected answer")
        return found

    # -- variables and tags ------------------------------------------------------------------

    def env_list(self, uuid: str) -> dict[str, str]:
        """The device's environment variables."""
        self._check_token()
        with self._translated(f"reading the environment variables of device {uuid}"):
            rows = self._run(self._sdk.models.device.env_var.get_all_by_device, uuid)
        return {row["name"]: row["value"] for row in rows}

    def env_set(self, uuid: str, values: Mapping[str, str]) -> dict[str, str]:
        """Set device environment variables, then read them back; returns all of them."""
        check_variable_names(list(values))
        self._check_token()
        env = self._sdk.models.device.env_var
        for name, value in values.items():
            with self._translated(f"setting {name} on device {uuid}"):
                self._run(env.set, uuid, name, value)
        stored = self.env_list(uuid)
        self._compare("environment variable", uuid, values, stored)
        return stored

    def tag_list(self, uuid: str) -> dict[str, str]:
        """The device's tags."""
        self._check_token()
        with self._translated(f"reading the tags of device {uuid}"):
            rows = self._run(self._sdk.models.device.tags.get_all_by_device, uuid)
        return {row["tag_key"]: row["value"] for row in rows}

    def tag_set(self, uuid: str, values: Mapping[str, str]) -> dict[str, str]:
        """Set device tags, then read them back; returns all of them."""
        self._check_token()
        tags = self._sdk.models.device.tags
        for key, value in values.items():
            with self._translated(f"setting tag {key} on device {uuid}"):
                self._run(tags.set, uuid, key, value)
        stored = self.tag_list(uuid)
        self._compare("tag", uuid, values, stored)
        return stored

    @staticmethod
    def _compare(
        kind: str, uuid: str, wanted: Mapping[str, str], stored: Mapping[str, str]
    ) -> None:
        wrong = sorted(name for name, value in wanted.items() if stored.get(name) != value)
        if wrong:
            raise FleetError(
                f"device {uuid}: the balena API accepted but did not store {kind}(s)"
                f" {', '.join(wrong)} (read back: {[stored.get(n) for n in wrong]})",
            )

    # -- releases and status -----------------------------------------------------------------

    def pin(self, uuid: str, commit: str) -> str:
        """Pin the device to the fleet's release ``commit``; returns the commit read back."""
        self._check_token()
        with self._translated(f"pinning device {uuid} to release {commit}"):
            self._run(self._sdk.models.device.pin_to_release, uuid, commit)
        pinned = _release_commit(
            self._device(uuid, "checking", ["uuid"], {"is_pinned_on__release": ["commit"]}).get(
                "is_pinned_on__release"
            )
        )
        if pinned is None or not pinned.startswith(commit):
            raise FleetError(
                f"pinning device {uuid} to release {commit}: the API answered, but the device"
                f" is pinned to {pinned or 'no release'}",
            )
        return pinned

    def status(self, uuid: str) -> DeviceStatus:
        """Online status, last seen, release and fleet of one device."""
        self._check_token()
        device = self._device(
            uuid,
            "reading",
            [
                "uuid",
                "device_name",
                "is_online",
                "last_connectivity_event",
                "overall_status",
                "os_version",
            ],
            {
                "belongs_to__application": ["slug"],
                "is_running__release": ["commit"],
                "is_pinned_on__release": ["commit"],
            },
        )
        fleet = device.get("belongs_to__application")
        fleet_slug = fleet[0].get("slug") if isinstance(fleet, list) and fleet else None
        return DeviceStatus(
            uuid=device.get("uuid") or uuid,
            name=device.get("device_name"),
            fleet=fleet_slug,
            is_online=bool(device.get("is_online")),
            last_seen=device.get("last_connectivity_event"),
            status=device.get("overall_status"),
            release=_release_commit(device.get("is_running__release")),
            pinned_release=_release_commit(device.get("is_pinned_on__release")),
            os_version=device.get("os_version"),
        )
