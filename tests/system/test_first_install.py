"""A first install in the order it happens on site, through the CLI only (docs/deploy.md):

install.sh's config skeleton → ``creds init --gateway-id`` (key and CSR) → the platform signs
the CSR → ``init --tls-pending`` (the config, the certificate and CA marked pending) →
``validate``/``doctor``/``run`` name what is missing → ``creds install`` → the gateway connects
over mutual TLS to a real mosquitto that requires client certificates.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
import stat
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest
from cryptography import x509
from typer.testing import CliRunner, Result

from gateway.cli.exit_codes import ExitCode
from gateway.cli.main import app
from tests.support.cert_authority import CertificateAuthority, pem
from tests.support.gateway_rig import running_gateway
from tests.support.mosquitto import Mosquitto

REPO = Path(__file__).resolve().parents[2]
GATEWAY = "pole-17"


def cli(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def ca() -> CertificateAuthority:
    return CertificateAuthority("city platform CA")


@pytest.fixture
def broker(tmp_path: Path, ca: CertificateAuthority) -> Iterator[Mosquitto]:
    """A mosquitto that takes only clients with a certificate from the city's CA."""
    pki = tmp_path / "broker"
    pki.mkdir()
    server_cert, server_key = ca.server_files(pki)
    mosquitto = Mosquitto(
        pki,
        listener_options=(
            f"cafile {ca.write_ca(pki / 'ca.crt')}\ncertfile {server_cert}\n"
            f"keyfile {server_key}\nrequire_certificate true\nuse_identity_as_username true\n"
        ),
    )
    mosquitto.start()
    yield mosquitto
    mosquitto.stop()


def test_the_first_install_in_order_ends_connected_over_mutual_tls(
    tmp_path: Path, ca: CertificateAuthority, broker: Mosquitto
) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    config = etc / "config.toml"
    shutil.copy(REPO / "deploy" / "config.toml", config)  # what install.sh leaves
    tls = etc / "tls"

    # (a) the key and CSR, with only a gateway id: the skeleton has none, nor a broker
    assert cli("validate", str(config)).exit_code == ExitCode.CONFIG
    without_id = cli("creds", "init", "-c", str(config))
    assert without_id.exit_code == ExitCode.CONFIG
    assert "give --gateway-id" in without_id.stderr
    made = cli("creds", "init", "-c", str(config), "--gateway-id", GATEWAY)
    assert made.exit_code == 0, made.stderr
    assert made.stdout == f"{tls / 'gateway.csr'}\n"
    assert mode(tls / "gateway.key") == 0o600
    assert f"--gateway-id {GATEWAY} --cert SIGNED.crt" in made.stderr  # the next command

    # (b) the platform signs the CSR and sends its CA along
    csr = x509.load_pem_x509_csr((tls / "gateway.csr").read_bytes())
    signed = tmp_path / "from-platform" / f"{GATEWAY}.crt"
    signed.parent.mkdir()
    signed.write_bytes(pem(ca.sign(csr)))
    ca_file = ca.write_ca(tmp_path / "from-platform" / "ca.crt")

    # meanwhile the wizard writes the config, the certificate and CA marked pending
    wizard = cli(
        "init", str(config), "--force", "--non-interactive",
        "--gateway-id", GATEWAY, "--broker-host", "127.0.0.1", "--broker-port", str(broker.port),
        "--tls-pending", "--outbox", str(tmp_path / "var" / "outbox.db"),
    )  # fmt: skip
    assert wizard.exit_code == 0, wizard.stderr
    text = config.read_text()
    install_both = f"`streetgate creds install -c {config} --cert SIGNED.crt --ca CA.crt`"
    assert "# PENDING when this was written: the gateway does not start until these TLS" in text
    assert f"#   mqtt.tls.ca_file {tls / 'ca.crt'} does not exist yet: install it with" in text
    assert f'key_file = "{tls / "gateway.key"}"' in text  # the key made in (a)
    assert "mqtt.tls.key_file" not in text.split("gateway_id =")[0]  # it is not pending

    line = f"mqtt.tls.ca_file {tls / 'ca.crt'} does not exist yet: install it with {install_both}"
    checked = cli("validate", str(config))
    assert checked.exit_code == 0, checked.stderr
    assert f"pending: {line}" in checked.stderr
    assert f"send {tls / 'gateway.csr'} to the platform" in checked.stderr
    assert cli("validate", "--ready", str(config)).exit_code == ExitCode.CONFIG
    as_json = json.loads(cli("validate", "--json", str(config)).stdout)
    assert line in as_json["pending"]

    doctor = cli("doctor", "-c", str(config), "--json", "--timeout", "2")
    checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
    assert not checks["tls:ca_file"]["ok"]
    assert checks["tls:ca_file"]["hint"] == f"install it with {install_both}"
    assert not checks["tls:cert_file"]["ok"]
    assert "tls:key_file" not in checks

    refused = cli("run", "-c", str(config))
    assert refused.exit_code == ExitCode.CONFIG
    assert line in refused.stderr
    assert not (tmp_path / "var").exists()  # refused before anything was made

    # (c) install what the platform sent: checked against the key, the id and the CA
    installed = cli(
        "creds", "install", "-c", str(config), "--cert", str(signed), "--ca", str(ca_file)
    )
    assert installed.exit_code == 0, installed.stderr
    assert (tls / "gateway.crt").read_bytes() == signed.read_bytes()
    assert (mode(tls / "gateway.crt"), mode(tls / "ca.crt"), mode(tls / "gateway.key")) == (
        0o644, 0o644, 0o600,
    )  # fmt: skip
    ready = cli("validate", "--ready", str(config))
    assert ready.exit_code == 0, ready.stderr
    assert "pending" not in ready.stderr
    doctor = cli("doctor", "-c", str(config), "--json", "--timeout", "5")
    checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
    assert checks["tls:files"]["ok"]
    assert checks["broker:mqtt-connect"]["ok"], checks["broker:mqtt-connect"]

    # the gateway itself: its retained status says online, read by the platform over mTLS
    platform_cert, platform_key = ca.client_files(tmp_path / "from-platform", "platform")
    context = ssl.create_default_context(cafile=str(ca_file))
    context.load_cert_chain(str(platform_cert), str(platform_key))

    async def connected() -> dict[str, object]:
        async with (
            running_gateway(config),
            aiomqtt.Client(
                "127.0.0.1", broker.port, tls_context=context, identifier="platform"
            ) as platform,
        ):
            await platform.subscribe(f"streetgate/{GATEWAY}/status", qos=1)
            async with asyncio.timeout(20):
                async for message in platform.messages:
                    assert isinstance(message.payload, bytes)
                    status: dict[str, object] = json.loads(message.payload)
                    if status["state"] == "online":
                        return status
        raise AssertionError("no status")  # pragma: no cover

    assert asyncio.run(connected())["state"] == "online"
