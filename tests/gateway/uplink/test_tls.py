"""The forwarder over TLS with client certificates, against a mosquitto that requires them."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from gateway.config.model import GatewayConfig, parse_config
from gateway.core.errors import ForwardError
from gateway.core.model import Reading
from gateway.runtime.app import pipeline
from tests.support.mosquitto import Mosquitto
from tests.support.pki import make_pki, tls_mosquitto


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def tls_broker(tmp_path: Path, pki: Path) -> Iterator[Mosquitto]:
    broker = tls_mosquitto(tmp_path, pki)
    broker.start()
    yield broker
    broker.stop()


def config(tmp_path: Path, broker: Mosquitto, pki: Path, client_cert: bool) -> GatewayConfig:
    tls: dict[str, str] = {"ca_file": str(pki / "ca.crt")}
    if client_cert:
        tls |= {"cert_file": str(pki / "client.crt"), "key_file": str(pki / "client.key")}
    return parse_config(
        {
            "gateway_id": "tls-gw",
            "mqtt": {
                "host": "127.0.0.1",
                "port": broker.port,
                "tls": tls,
                "reconnect_min": "100ms",
                "reconnect_max": "500ms",
                # also the connect timeout: a refused TLS 1.3 client certificate only
                # shows as a connection that never completes
                "publish_timeout": "1s",
            },
            "outbox": {"path": str(tmp_path / "outbox.db")},
        },
        "test",
    )


def test_readings_flow_over_mutual_tls(tmp_path: Path, tls_broker: Mosquitto, pki: Path) -> None:
    cfg = config(tmp_path, tls_broker, pki, client_cert=True)
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    context.load_cert_chain(str(pki / "client.crt"), str(pki / "client.key"))

    async def scenario() -> None:
        async with aiomqtt.Client(
            "127.0.0.1", tls_broker.port, tls_context=context, identifier="platform"
        ) as sub:
            await sub.subscribe("streetgate/tls-gw/readings", qos=1)
            async with pipeline(cfg) as (outbox, _):
                await outbox.put_many([Reading("m", "voltage", 230.1, "V", 0)])
                async with asyncio.timeout(10):
                    async for message in sub.messages:
                        assert isinstance(message.payload, bytes)
                        assert b'"value":230.1' in message.payload
                        break

    asyncio.run(scenario())


def test_without_client_certificate_the_broker_refuses(
    tmp_path: Path, tls_broker: Mosquitto, pki: Path
) -> None:
    cfg = config(tmp_path, tls_broker, pki, client_cert=False)

    async def scenario() -> None:
        async with pipeline(cfg) as (_, forwarder):
            await asyncio.sleep(3)
            assert forwarder.stats.connects == 0
            assert forwarder.stats.connection_failures >= 2

    asyncio.run(scenario())


def test_missing_tls_file_is_named(tmp_path: Path, tls_broker: Mosquitto, pki: Path) -> None:
    cfg = parse_config(
        {
            "gateway_id": "tls-gw",
            "mqtt": {"host": "127.0.0.1", "tls": {"ca_file": str(tmp_path / "nope.crt")}},
            "outbox": {"path": str(tmp_path / "outbox.db")},
        },
        "test",
    )

    async def scenario() -> None:
        async with pipeline(cfg):
            pass

    with pytest.raises(ForwardError, match=r"mqtt\.tls\.ca_file = .*nope\.crt"):
        asyncio.run(scenario())
