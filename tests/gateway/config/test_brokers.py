"""``mqtt.brokers``: the list form, the one-broker form, and every way to get them wrong."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from gateway.config.effective import effective_config
from gateway.config.model import BrokerAddress, load_config, parse_config
from gateway.config.transport_security import Insecure, insecure_flags
from gateway.core.errors import ConfigError


def config(**mqtt: Any) -> dict[str, Any]:
    return {"gateway_id": "gw", "mqtt": mqtt, "outbox": {"path": "/tmp/o.db"}}


def endpoints(**mqtt: Any) -> list[str]:
    return [str(b) for b in parse_config(config(**mqtt), "test").mqtt.endpoints]


def issue(**mqtt: Any) -> tuple[str, str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(config(**mqtt), "test")
    assert len(caught.value.issues) == 1, caught.value.issues
    found = caught.value.issues[0]
    return found.location, found.message


def test_host_and_port_are_the_one_broker_case() -> None:
    assert endpoints(host="broker.example") == ["broker.example:1883"]
    assert endpoints(host="broker.example", port=8883) == ["broker.example:8883"]
    assert parse_config(config(host="b"), "test").mqtt.port == 1883


def test_brokers_as_strings_tables_and_ipv6_in_order() -> None:
    assert endpoints(
        brokers=["a.example:1884", "b.example", {"host": "c.example", "port": 8883}, "[::1]:1885"]
    ) == ["a.example:1884", "b.example:1883", "c.example:8883", "[::1]:1885"]


def test_an_environment_variable_gives_the_list_comma_separated(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text('gateway_id = "gw"\n[mqtt]\n[outbox]\npath = "o.db"\n')
    loaded = load_config(path, {"STREETGATE_MQTT_BROKERS": "a:1883, b:1884"})
    assert loaded.mqtt.endpoints == (
        BrokerAddress(host="a", port=1883),
        BrokerAddress(host="b", port=1884),
    )


@pytest.mark.parametrize(
    ("mqtt", "location", "expected"),
    [
        ({"host": "a", "brokers": ["b"]}, "mqtt", "mqtt.host and mqtt.brokers are both given"),
        ({"port": 1884, "brokers": ["b"]}, "mqtt", "mqtt.port and mqtt.brokers are both given"),
        ({}, "mqtt", "no broker: give mqtt.host"),
        ({"port": 1884}, "mqtt", "mqtt.port = 1884 is given without a host"),
        ({"brokers": []}, "mqtt", "mqtt.brokers is empty"),
        ({"brokers": ["a:port"]}, "mqtt.brokers[0]", "expected 'host:port' with a port number"),
        ({"brokers": [":1883"]}, "mqtt.brokers[0]", "expected 'host' or 'host:port'"),
        ({"brokers": ["a:70000"]}, "mqtt.brokers[0].port", "less than or equal to 65535"),
        ({"brokers": [{"host": "a", "tls": True}]}, "mqtt.brokers[0].tls", "unknown key"),
        ({"brokers": ["a"] * 17}, "mqtt.brokers", "at most 16"),
        ({"host": "a", "session_expiry": "5m"}, "mqtt", 'needs mqtt.protocol = "5"'),
        ({"host": "a", "protocol": "5", "session_expiry": "8d"}, "mqtt.session_expiry", "604800"),
    ],
)
def test_mistakes_say_what_to_do(mqtt: dict[str, Any], location: str, expected: str) -> None:
    where, message = issue(**mqtt)
    assert where == location
    assert expected in message


def test_both_given_says_which_to_use() -> None:
    _, message = issue(host="a", port=1883, brokers=["b"])
    assert "use mqtt.brokers for a list of brokers" in message
    assert "mqtt.host/mqtt.port for one broker" in message


def test_session_expiry_defaults_with_mqtt_5_only() -> None:
    assert parse_config(config(host="a"), "t").mqtt.session_expiry_s == 0.0
    assert parse_config(config(host="a", protocol="5"), "t").mqtt.session_expiry_s == 300.0
    zero = config(host="a", protocol="5", session_expiry="0")
    assert parse_config(zero, "t").mqtt.session_expiry_s == 0.0


def test_the_effective_config_of_a_list_loads_again_to_the_same() -> None:
    original = parse_config(config(brokers=["a:1884", "b"]), "t")
    shown = effective_config(original, redact=False)
    assert shown["mqtt"]["brokers"] == [{"host": "a", "port": 1884}, {"host": "b", "port": 1883}]
    assert "host" not in shown["mqtt"]
    assert "port" not in shown["mqtt"]
    assert parse_config(shown, "shown") == original


def test_plaintext_is_only_loopback_when_every_broker_is() -> None:
    local = parse_config(config(brokers=["127.0.0.1:1883", "localhost:1884"]), "t")
    assert insecure_flags(local.mqtt) == [Insecure.PLAINTEXT_LOOPBACK.value]
    mixed = parse_config(config(brokers=["127.0.0.1:1883", "broker.example"]), "t")
    assert insecure_flags(mixed.mqtt) == [Insecure.PLAINTEXT.value]


DOCS = Path(__file__).resolve().parents[3] / "docs"


@pytest.mark.parametrize(
    ("page", "heading"),
    [("mqtt.md", "## Brokers and failover"), ("deploy.md", "## A clustered broker")],
)
def test_the_broker_list_examples_in_the_docs_load(page: str, heading: str) -> None:
    section = (DOCS / page).read_text("utf-8").split(heading, 1)[1].split("\n## ", 1)[0]
    example = section.split("```toml\n", 1)[1].split("```", 1)[0]
    document = tomllib.loads(f'gateway_id = "gw"\n{example}\n[outbox]\npath = "o.db"\n')
    loaded = parse_config(document, f"{page} example")
    assert len(loaded.mqtt.endpoints) == 3
    assert all(b.port == 8883 for b in loaded.mqtt.endpoints)
