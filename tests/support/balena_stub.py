"""A loopback stand-in for the balena API: just the routes balena-sdk 17.3.0 calls for ``fleet``.

An in-memory fleet (fleets, devices, device environment variables and tags, releases) behind
``http.server`` in a thread. Every request is recorded (method, path, query, body, token) so
tests can check what the SDK sent. ``refuse(method, path_prefix, status, body)`` makes the next
matching requests fail the way the real API does; ``stop()`` takes it off the network.
Pine (OData) queries are answered by pulling the few values we need out of ``$filter``.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

__all__ = ["BalenaStub", "Recorded"]

USER_KEY = "user-api-key"
FLEET_KEY = "fleet-key"  # a key that is not a user's: device register refuses it
ARCH = [{"slug": "aarch64"}]


@dataclass(frozen=True)
class Recorded:
    """One request the stub saw."""

    method: str
    path: str
    query: str  # decoded
    body: Any
    token: str | None


@dataclass
class _Refusal:
    method: str
    path_prefix: str
    status: int
    body: str
    times: int | None  # None: every time


@dataclass
class BalenaStub:
    """The in-memory balena API; ``url`` is what ``--api-url`` gets."""

    requests: list[Recorded] = field(default_factory=list)
    fleets: list[dict[str, Any]] = field(default_factory=list)
    devices: list[dict[str, Any]] = field(default_factory=list)
    env: list[dict[str, Any]] = field(default_factory=list)
    tags: list[dict[str, Any]] = field(default_factory=list)
    releases: list[dict[str, Any]] = field(default_factory=list)
    # True: accept a write, answer as if it worked, but do not store it (what a lossy proxy does)
    drop_writes: bool = False
    _refusals: list[_Refusal] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _next_id: int = 100

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> BalenaStub:
        """Serve on a free loopback port in a daemon thread."""
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: tests read stub.requests

            def _handle(self) -> None:
                stub._serve(self)

            do_GET = do_POST = do_PATCH = do_DELETE = _handle  # noqa: N815

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},  # so that stop() is quick
            name="balena-stub",
            daemon=True,
        )
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        """The API base URL (``http://127.0.0.1:PORT/``)."""
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/"

    def stop(self) -> None:
        """Stop serving and free the port."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)

    # -- test data ---------------------------------------------------------------------------

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id

    def add_fleet(self, slug: str) -> dict[str, Any]:
        """A fleet of Raspberry Pi 4s."""
        fleet = {
            "id": self._id(),
            "slug": slug,
            "uuid": f"fleet{len(self.fleets)}",
            "app_name": slug,
        }
        self.fleets.append(fleet)
        return fleet

    def add_device(self, fleet: dict[str, Any], uuid: str, **fields: Any) -> dict[str, Any]:
        """A device already in ``fleet``."""
        device = {
            "id": self._id(),
            "uuid": uuid,
            "device_name": f"dev-{uuid[:7]}",
            "belongs_to__application": {"__id": fleet["id"]},
            "is_online": False,
            "last_connectivity_event": None,
            "overall_status": "inactive",
            "os_version": "balenaOS 6.0.13",
            "supervisor_version": "16.7.0",
            "is_running__release": None,
            "is_pinned_on__release": None,
            "device_type": "raspberrypi4-64",
            **fields,
        }
        self.devices.append(device)
        return device

    def add_release(
        self, fleet: dict[str, Any], commit: str, status: str = "success"
    ) -> dict[str, Any]:
        """A release of ``fleet``."""
        release = {
            "id": self._id(),
            "commit": commit,
            "status": status,
            "belongs_to__application": {"__id": fleet["id"]},
        }
        self.releases.append(release)
        return release

    def refuse(
        self, method: str, path_prefix: str, status: int, body: str = "", times: int | None = None
    ) -> None:
        """Answer matching requests with ``status`` (``times`` times, or always; 0: hang up)."""
        self._refusals.append(_Refusal(method, path_prefix, status, body, times))

    def seen(self, method: str, path_prefix: str) -> list[Recorded]:
        """The recorded requests with this method whose path starts with ``path_prefix``."""
        return [r for r in self.requests if r.method == method and r.path.startswith(path_prefix)]

    # -- serving -----------------------------------------------------------------------------

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        path, query = unquote(parts.path), unquote(parts.query)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        auth = handler.headers.get("Authorization") or ""
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None
        self.requests.append(Recorded(handler.command, path, query, body, token))
        status, answer = self._answer(handler.command, path, query, body, token)
        if status == 0:  # a dropped connection: no answer at all
            handler.close_connection = True
            return
        data = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
        handler.send_response(status)
        content_type = "text/plain" if isinstance(answer, str) else "application/json"
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _refusal(self, method: str, path: str) -> _Refusal | None:
        for refusal in self._refusals:
            if refusal.method == method and path.startswith(refusal.path_prefix):
                if refusal.times is not None:
                    refusal.times -= 1
                    if refusal.times <= 0:
                        self._refusals.remove(refusal)
                return refusal
        return None

    def _answer(
        self,
        method: str,
        path: str,
        query: str,
        body: Any,
        token: str | None,
    ) -> tuple[int, Any]:
        refusal = self._refusal(method, path)
        if refusal is not None:
            return refusal.status, refusal.body
        if token not in {USER_KEY, FLEET_KEY} and not (token or "").startswith("provisioning-"):
            return 401, "Unauthorized"
        match method, path:
            case "GET", "/actor/v1/whoami":
                if token == USER_KEY:
                    return 200, {"id": 11, "actorType": "user", "actorTypeId": 3,
                                 "username": "tech", "email": "tech@example.org"}  # fmt: skip
                return 200, {"id": 12, "actorType": "application", "actorTypeId": 7, "slug": "x"}
            case "GET", "/v7/application":
                wanted = set(re.findall(r"(?:slug|uuid) eq '([^']*)'", query))
                wanted |= {int(i) for i in re.findall(r"\bid eq (\d+)", query)}
                found = [f for f in self.fleets if {f["slug"], f["uuid"], f["id"]} & wanted]
                return 200, {"d": [self._fleet_view(f) for f in found]}
            case "POST", "/api-key/v1/":
                return 200, json.dumps(f"provisioning-{body['actorTypeId']}")
            case "GET", "/v7/device_type":
                alias = re.findall(r"eq '([^']*)'", query)
                return 200, {"d": [{"slug": a, "is_of__cpu_architecture": ARCH} for a in alias[:1]]}
            case "POST", "/device/register":
                if not (token or "").startswith("provisioning-"):
                    return 401, "Unauthorized"
                fleet = next(f for f in self.fleets if f["id"] == body["application"])
                if self.drop_writes:
                    return 201, {"id": 999, "uuid": body["uuid"], "api_key": "device-secret-key"}
                device = self.add_device(fleet, body["uuid"], device_type=body["device_type"])
                return 201, {
                    "id": device["id"],
                    "uuid": device["uuid"],
                    "api_key": "device-secret-key",
                }
            case "GET", _ if path.startswith("/v7/device(uuid="):
                uuid = path.split("'")[1]
                found = [d for d in self.devices if d["uuid"] == uuid]
                return 200, {"d": [self._device_view(d, query) for d in found]}
            case "GET", "/v7/device":
                uuids = re.findall(r"uuid eq '([^']*)'", query)
                found = [d for d in self.devices if d["uuid"] in uuids]
                return 200, {"d": [self._device_view(d, query) for d in found]}
            case "PATCH", "/v7/device":
                ids = {int(i) for i in re.findall(r"\bid eq (\d+)", query)}
                if not self.drop_writes:
                    for device in self.devices:
                        if device["id"] in ids and "is_pinned_on__release" in body:
                            release = body["is_pinned_on__release"]
                            device["is_pinned_on__release"] = release and {"__id": release}
                return 200, "OK"
            case "GET", "/v7/release":
                commits = re.findall(r"commit eq '([^']*)'", query)
                app_ids = {int(i) for i in re.findall(r"belongs_to__application eq (\d+)", query)}
                found = [
                    r for r in self.releases
                    if r["commit"] in commits and r["status"] == "success"
                    and (not app_ids or r["belongs_to__application"]["__id"] in app_ids)
                ]  # fmt: skip
                return 200, {"d": found}
            case "GET", _ if path.startswith("/v7/release("):
                rid = int(path.removeprefix("/v7/release(").rstrip(")"))
                return 200, {"d": [r for r in self.releases if r["id"] == rid]}
            case _, "/v7/device_environment_variable":
                return self._variables(self.env, "name", method, query, body)
            case _, "/v7/device_tag":
                return self._variables(self.tags, "tag_key", method, query, body)
        return 404, f"stub: no route {method} {path}"

    def _variables(
        self,
        table: list[dict[str, Any]],
        key: str,
        method: str,
        query: str,
        body: Any,
    ) -> tuple[int, Any]:
        device_ids = {int(i) for i in re.findall(r"device eq (\d+)", query)}
        names = set(re.findall(rf"{key} eq '([^']*)'", query))

        def matching() -> list[dict[str, Any]]:
            return [
                v for v in table
                if v["device"]["__id"] in device_ids and (not names or v[key] in names)
            ]  # fmt: skip

        if method == "GET":
            return 200, {"d": sorted(matching(), key=lambda v: v[key])}
        if method == "POST":
            device = body["device"]
            if any(v["device"]["__id"] == device and v[key] == body[key] for v in table):
                return 409, '"unique" constraint violated'
            if not self.drop_writes:
                table.append(
                    {
                        "id": self._id(),
                        "device": {"__id": device},
                        key: body[key],
                        "value": body["value"],
                    }
                )
            return 201, {"id": self._next_id}
        if method == "PATCH":
            if not self.drop_writes:
                for variable in matching():
                    variable["value"] = body["value"]
            return 200, "OK"
        if method == "DELETE":
            for variable in matching():
                table.remove(variable)
            return 200, "OK"
        return 405, "method not allowed"

    def _fleet_view(self, fleet: dict[str, Any]) -> dict[str, Any]:
        return {
            **fleet,
            "is_for__device_type": [{"slug": "raspberrypi4-64", "is_of__cpu_architecture": ARCH}],
        }

    def _device_view(self, device: dict[str, Any], query: str) -> dict[str, Any]:
        """Links as ``{"__id": n}``, or as a list of the linked records where ``$expand`` asks."""
        expand = query.split("$expand=", 1)[1] if "$expand=" in query else ""
        tables = {
            "belongs_to__application": self.fleets,
            "is_running__release": self.releases,
            "is_pinned_on__release": self.releases,
        }
        view = dict(device)
        for name, table in tables.items():
            link = device[name]
            if name in expand:
                view[name] = [r for r in table if link is not None and r["id"] == link["__id"]]
        return view
