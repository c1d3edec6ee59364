"""The OpenMetrics endpoint: scraped over HTTP and parsed with prometheus_client's parser.

prometheus_client (a test-only dependency) is the parser Prometheus's own Python tooling uses:
an independent check that the text is valid OpenMetrics, not just what our renderer expects.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from drivers.profile import load_profile
from gateway.config.model import parse_config
from gateway.core.errors import ConfigError
from gateway.runtime.app import Gateway, run_gateway
from gateway.runtime.metrics import CONTENT_TYPE
from simulator.modbus_server import DeviceSpec, ModbusSimulator
from tests.support.mosquitto import Mosquitto, free_port
from tests.support.waiting import until


async def http_get(port: int, target: str, method: str = "GET") -> tuple[int, dict[str, str], str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{method} {target} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    await writer.drain()
    raw = await reader.read()  # the server closes after one answer
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    assert int(headers["Content-Length"]) == len(body)
    return int(lines[0].split(" ")[1]), headers, body.decode()


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)  # type: ignore[no-untyped-call]
        for s in family.samples
    }


def test_a_scrape_is_valid_openmetrics_with_the_health_figures(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    profile = load_profile("xy-md02")
    port = free_port()

    async def scenario() -> None:
        async with ModbusSimulator([DeviceSpec("climate-1", profile)]) as sim:
            config = parse_config(
                {
                    "gateway_id": "metrics-gw",
                    "mqtt": {"host": mosquitto.host, "port": mosquitto.port},
                    "outbox": {"path": str(tmp_path / "outbox.db")},
                    "devices": [
                        sim["climate-1"].gateway_config(timeout=0.5, interval=0.2).model_dump()
                        | {"profile": "xy-md02"}
                    ],
                    "metrics": {"listen": f"127.0.0.1:{port}"},
                },
                "test",
            )
            stop = asyncio.Event()
            started: asyncio.Future[Gateway] = asyncio.get_running_loop().create_future()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(run_gateway(config, stop, started), name="test:gateway")
                gateway = await started
                assert gateway.metrics is not None
                assert gateway.health is not None
                await gateway.metrics.listening.wait()
                poller = gateway.pollers["climate-1"]
                await until(lambda: poller.status.polls_ok >= 2, timeout=15)
                await gateway.forwarder.connected.wait()

                status, headers, text = await http_get(port, "/metrics")
                assert status == 200
                assert headers["Content-Type"] == CONTENT_TYPE
                assert text.endswith("# EOF\n")
                got = samples(text)
                snapshot: dict[str, Any] = await gateway.health.snapshot()

                def value(name: str, **labels: str) -> float:
                    return got[(name, frozenset(labels.items()))]

                assert (
                    value(
                        "streetgate_build_info", gateway="metrics-gw", version=snapshot["version"]
                    )
                    == 1
                )
                assert value("streetgate_uptime_seconds") > 0
                assert value("streetgate_clock_synchronised") in {0, 1}
                state = "streetgate_forwarder_state"
                assert value(state, **{state: "connected"}) == 1
                assert value(state, **{state: "waiting"}) == 0
                assert value("streetgate_forwarder_connects_total") == 1
                assert value("streetgate_forwarder_failovers_total") == 0
                broker = str(config.mqtt.endpoints[0])
                assert value("streetgate_forwarder_broker_info", broker=broker) == 1
                assert value("streetgate_outbox_max_bytes") == config.outbox.max_bytes
                assert value("streetgate_outbox_dropped_readings_total") == 0
                health = "streetgate_device_health"
                assert value(health, device="climate-1", **{health: "ok"}) == 1
                assert value(health, device="climate-1", **{health: "down"}) == 0
                assert value("streetgate_device_polls_total", device="climate-1", result="ok") >= 2
                last_ok = value("streetgate_device_last_ok_timestamp_seconds", device="climate-1")
                assert last_ok > 1.7e9
                # config reloads (SIGHUP) by result: none yet, every result present
                for result in ("applied", "invalid", "refused", "rolled_back"):
                    assert value("streetgate_config_reloads_total", result=result) == 0

                # The device goes away: its error counter by kind appears.
                await sim["climate-1"].stop()
                await until(lambda: poller.status.health.value == "down", timeout=15)
                _, _, text = await http_get(port, "/metrics")
                errors = {
                    dict(labels)["kind"]: v
                    for (name, labels), v in samples(text).items()
                    if name == "streetgate_device_errors_total"
                }
                assert errors
                assert set(errors) <= {"DeviceUnreachable", "DeviceTimeout"}
                assert sum(errors.values()) >= 3
                assert (
                    samples(text)[(health, frozenset({("device", "climate-1"), (health, "down")}))]
                    == 1
                )

                assert (await http_get(port, "/nope"))[0] == 404
                assert (await http_get(port, "/metrics", method="POST"))[0] == 405
                stop.set()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("metrics", "problem"),
    [
        ({"listen": "0.0.0.0:9464"}, "not a loopback address"),
        ({"listen": "192.168.1.20:9464"}, "allow_remote = true"),
        ({"listen": "9464"}, "expected host:port"),
        ({"listen": "127.0.0.1:70000"}, "not a TCP port"),
        ({"listen": "127.0.0.1:9464", "port": 1}, "port"),
    ],
)
def test_metrics_config_is_checked(metrics: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(
            {
                "gateway_id": "g",
                "mqtt": {"host": "h"},
                "outbox": {"path": "o.db"},
                "metrics": metrics,
            },
            "test.toml",
        )
    assert problem in str(caught.value)
    assert "metrics" in str(caught.value)


def test_remote_metrics_must_be_asked_for() -> None:
    base = {"gateway_id": "g", "mqtt": {"host": "h"}, "outbox": {"path": "o.db"}}
    remote = parse_config(base | {"metrics": {"listen": "0.0.0.0:9464", "allow_remote": True}}, "t")
    assert remote.metrics is not None
    local = parse_config(base | {"metrics": {"listen": "[::1]:9464"}}, "t")
    assert local.metrics is not None
    assert parse_config(base, "t").metrics is None
