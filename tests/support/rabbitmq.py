"""A RabbitMQ cluster with the MQTT plugin on loopback: three nodes of Debian's rabbitmq-server.

    with RabbitCluster(tmp_path) as cluster:      # bounded start; cleans up on failure
        port = cluster.nodes[0].mqtt_port          # MQTT 3.1.1, user cluster.username
        cluster.stop_node(0)                       # SIGTERM by PID, waits for the exit
        cluster.start_node(0)                      # back once it runs in the cluster again

Everything a node has is its own: node name ``rabbitN@localhost``, AMQP, distribution and MQTT
ports, data, logs, config, enabled-plugins file and HOME (holding the shared Erlang cookie,
mode 0400), all under the work folder. epmd runs on a free port (``ERL_EPMD_PORT``), started
and stopped here, so parallel runs and a system RabbitMQ never meet. Node 1 starts first and
creates the MQTT user (``default_user``); nodes 2 and 3 start, then join it
(``rabbitmqctl stop_app; join_cluster; start_app``). Subscriptions of MQTT sessions with
clean_session=False live in quorum queues (``mqtt.durable_queue_type = quorum``, RabbitMQ
3.10+), replicated on all three nodes, so QoS 1 messages survive any one node stopping.

The nodes run in the foreground under Debian's start script (not its root wrapper, which would
switch to the ``rabbitmq`` user): SIGTERM to its PID stops the node cleanly; each node is in its
own process group, which is killed if the node does not stop in time.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = ["RabbitCluster", "RabbitNode", "RabbitNotInstalled", "rabbitmq_version"]

#: Debian's RabbitMQ scripts that run as the calling user.
RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")


class RabbitNotInstalled(RuntimeError):
    """rabbitmq-server (Debian's package) is not on this machine."""


def _binary(name: str) -> str:
    path = RABBIT_BIN / name
    if not path.exists():
        raise RabbitNotInstalled(
            f"{path} is missing; install RabbitMQ with 'apt-get install rabbitmq-server' "
            "(scripts/setup.sh dev does)"
        )
    return str(path)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def rabbitmq_version() -> str:
    """The installed RabbitMQ version, from the Debian package (no node needed)."""
    lib = RABBIT_BIN.parent / "lib"
    versions = sorted(
        p.name.removeprefix("rabbitmq_server-") for p in lib.glob("rabbitmq_server-*")
    )
    if not versions:
        raise RabbitNotInstalled(f"no rabbitmq_server-* in {lib}")
    return versions[-1]


@dataclass
class RabbitNode:
    """One node: its name, ports and folders; ``proc`` while it runs."""

    index: int  # 0-based; the node is rabbit{index + 1}@localhost
    root: Path
    amqp_port: int
    dist_port: int
    mqtt_port: int
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return f"rabbit{self.index + 1}@localhost"

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def log(self) -> Path:
        return self.root / "log" / f"{self.name}.log"

    def tail(self, chars: int = 3000) -> str:
        """The end of the node's log and its console output, for error messages."""
        text = ""
        for path in (self.log, self.root / "console.log"):
            if path.exists():
                text += f"--- {path.name}\n{path.read_text(errors='replace')[-chars:]}\n"
        return text


class RabbitCluster:
    """``size`` clustered RabbitMQ nodes with MQTT on loopback; ``with`` starts and removes it."""

    def __init__(
        self, workdir: Path, size: int = 3, *, start_timeout: float = 120.0, username: str = "sg"
    ) -> None:
        if size < 1:
            raise ValueError(f"a cluster needs at least 1 node, got {size}")
        self.workdir = workdir / "rabbitmq"
        self.start_timeout = start_timeout
        self.username = username
        self.password = secrets.token_hex(8)
        self.cookie = secrets.token_hex(16).upper()
        self.epmd_port = _free_port()
        self._epmd: subprocess.Popen[bytes] | None = None
        self.nodes = [
            RabbitNode(i, self.workdir / f"node{i + 1}", _free_port(), _free_port(), _free_port())
            for i in range(size)
        ]
        self.startup_seconds: float | None = None  # how long start() took

    # --- life cycle ---------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        """Start epmd and every node, and cluster them; within ``start_timeout`` seconds or
        RuntimeError (with the failing node's log), everything started so far stopped again."""
        began = time.monotonic()
        deadline = began + self.start_timeout
        try:
            self._start_epmd(deadline)
            for node in self.nodes:
                self._prepare(node)
            # All nodes boot at once (the slow part); then 2.. join node 1, one at a time.
            for node in self.nodes:
                self._spawn(node)
            for node in self.nodes:
                self._await_mqtt(node, deadline)
            for node in self.nodes[1:]:
                for command in (["stop_app"], ["join_cluster", self.nodes[0].name], ["start_app"]):
                    self.ctl(node, *command, deadline=deadline)
                self._await_mqtt(node, deadline)
            self.await_cluster(deadline=deadline)
        except BaseException:
            self.close()
            raise
        self.startup_seconds = time.monotonic() - began

    def close(self) -> None:
        """Stop every node (by PID) and the epmd started here."""
        for node in self.nodes:
            self.stop_node(node.index)
        if self._epmd is not None:
            self._epmd.terminate()
            try:
                self._epmd.wait(5)
            except subprocess.TimeoutExpired:
                self._epmd.kill()
                self._epmd.wait()
            self._epmd = None

    def stop_node(self, index: int, timeout: float = 30.0) -> None:
        """Stop node ``index`` cleanly (SIGTERM to its PID); kill its process group after
        ``timeout`` s."""
        node = self.nodes[index]
        proc, node.proc = node.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout)
        # The start script waits for the VM; anything left in the node's own group goes too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def start_node(self, index: int, timeout: float = 60.0) -> None:
        """Start a stopped node again; returns once it serves MQTT and runs in the cluster."""
        deadline = time.monotonic() + timeout
        node = self.nodes[index]
        if node.proc is not None:
            raise RuntimeError(f"{node.name} is running already (pid {node.pid})")
        self._spawn(node)
        self._await_mqtt(node, deadline)
        self.await_cluster(deadline=deadline)

    # --- rabbitmqctl ----------------------------------------------------------------------------

    def ctl(self, node: RabbitNode, *args: str, deadline: float | None = None) -> str:
        """``rabbitmqctl -n NODE ARGS`` with the node's environment; its stdout, or
        RuntimeError naming the command."""
        timeout = 60.0 if deadline is None else max(1.0, deadline - time.monotonic())
        try:
            result = subprocess.run(
                [_binary("rabbitmqctl"), "-n", node.name, "-q", *args],
                env=self._env(node),
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"rabbitmqctl -n {node.name} {' '.join(args)}: timed out") from exc
        if result.returncode != 0:
            raise RuntimeError(
                f"rabbitmqctl -n {node.name} {' '.join(args)} failed "
                f"({result.returncode}): {result.stderr.strip() or result.stdout.strip()}"
            )
        return result.stdout

    def running_nodes(self, via: RabbitNode | None = None) -> list[str]:
        """The cluster's running nodes as ``via`` (a running node) sees them."""
        via = via or next(n for n in self.nodes if n.proc is not None)
        status = json.loads(self.ctl(via, "cluster_status", "--formatter", "json"))
        return sorted(status["running_nodes"])

    def await_cluster(self, *, deadline: float) -> None:
        """Wait until every node started here runs in one cluster."""
        expected = sorted(n.name for n in self.nodes if n.proc is not None)
        seen: list[str] = []
        while time.monotonic() < deadline:
            seen = self.running_nodes()
            if seen == expected:
                return
            time.sleep(0.2)
        raise RuntimeError(f"cluster not formed in time: running {seen}, expected {expected}")

    # --- internals ------------------------------------------------------------------------------

    def _env(self, node: RabbitNode) -> dict[str, str]:
        base = node.root
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": str(base / "home"),  # .erlang.cookie, for the node and rabbitmqctl
            "ERL_EPMD_PORT": str(self.epmd_port),
            "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),  # not /etc's
            "RABBITMQ_NODENAME": node.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(node.amqp_port),
            "RABBITMQ_DIST_PORT": str(node.dist_port),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_PID_FILE": str(base / "rabbit.pid"),
        }

    def _prepare(self, node: RabbitNode) -> None:
        base = node.root
        for sub in ("home", "mnesia", "log"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        cookie = base / "home" / ".erlang.cookie"
        cookie.write_text(self.cookie)
        cookie.chmod(0o400)  # Erlang refuses a cookie others can read
        (base / "rabbitmq-env.conf").write_text("")
        (base / "advanced.config").write_text("[].\n")
        (base / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
        (base / "rabbitmq.conf").write_text(
            "\n".join(
                [
                    f"listeners.tcp.default = 127.0.0.1:{node.amqp_port}",
                    # The first boot of the cluster creates this user (node 1's; the others
                    # take the cluster's users when they join).
                    f"default_user = {self.username}",
                    f"default_pass = {self.password}",
                    "loopback_users = none",
                    f"mqtt.listeners.tcp.default = 127.0.0.1:{node.mqtt_port}",
                    "mqtt.allow_anonymous = false",
                    # clean_session=False subscriptions: replicated queues, not classic ones
                    # that live (and die) on one node.
                    "mqtt.durable_queue_type = quorum",
                    "log.console = false",
                    "log.file.level = info",
                    # A small machine shared by many test runs: no disk or memory alarms.
                    "disk_free_limit.absolute = 1MB",
                    "vm_memory_high_watermark.relative = 0.9",
                    "",
                ]
            )
        )

    def _start_epmd(self, deadline: float) -> None:
        epmd = shutil.which("epmd") or "/usr/bin/epmd"
        if not Path(epmd).exists():
            raise RabbitNotInstalled("epmd (erlang-base) is missing; install rabbitmq-server")
        self._epmd = subprocess.Popen(
            [epmd, "-port", str(self.epmd_port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        while not _listening(self.epmd_port):
            if self._epmd.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"epmd did not listen on port {self.epmd_port}")
            time.sleep(0.05)

    def _spawn(self, node: RabbitNode) -> None:
        with (node.root / "console.log").open("ab") as console:
            node.proc = subprocess.Popen(
                [_binary("rabbitmq-server")],
                env=self._env(node),
                cwd=node.root,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: killed as a whole if it hangs
            )

    def _await_mqtt(self, node: RabbitNode, deadline: float) -> None:
        while not _listening(node.mqtt_port):
            if node.proc is None or node.proc.poll() is not None:
                raise RuntimeError(f"{node.name} exited while starting:\n{node.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{node.name} did not serve MQTT in time:\n{node.tail()}")
            time.sleep(0.1)
