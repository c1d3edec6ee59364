"""`streetgate creds init|install|show`: key, CSR, a test CA signs, install, show, connect."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from typer.testing import CliRunner, Result

from gateway.cli.common import load_or_exit
from gateway.cli.exit_codes import ExitCode
from gateway.cli.main import app
from gateway.core.errors import ForwardError, UnsafeKeyFile
from gateway.runtime.app import pipeline
from gateway.uplink.forwarder import tls_context
from tests.support.cert_authority import CertificateAuthority, pem
from tests.support.mosquitto import Mosquitto
from tests.support.readme_examples import readme_commands

GATEWAY = "pole-17"
HEADING = "Credentials and fleet enrolment"


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority()


def write_config(tmp_path: Path, port: int = 8883, tls: bool = True) -> Path:
    tls_table = (
        '[mqtt.tls]\nca_file = "tls/ca.crt"\ncert_file = "tls/gateway.crt"\n'
        'key_file = "tls/gateway.key"\n'
        if tls
        else ""
    )
    tmp_path.mkdir(exist_ok=True)
    config = tmp_path / "gw.toml"
    config.write_text(
        f'gateway_id = "{GATEWAY}"\n\n[mqtt]\nhost = "127.0.0.1"\nport = {port}\n'
        'publish_timeout = "1s"\nreconnect_min = "100ms"\nreconnect_max = "500ms"\n\n'
        f'{tls_table}\n[outbox]\npath = "outbox.db"\n'
    )
    return config


def creds(*args: str) -> Result:
    return CliRunner().invoke(app, ["creds", *args])


def init(config: Path, *extra: str) -> Result:
    result = creds("init", "-c", str(config), *extra)
    assert result.exit_code == 0, result.stderr
    return result


def load_csr(path: Path) -> x509.CertificateSigningRequest:
    return x509.load_pem_x509_csr(path.read_bytes())


def signed(
    tmp_path: Path, ca: CertificateAuthority, name: str = "signed.crt", **kw: object
) -> Path:
    csr = load_csr(tmp_path / "tls" / "gateway.csr")
    out = tmp_path / name
    out.write_bytes(pem(ca.sign(csr, **kw)))  # type: ignore[arg-type]
    return out


@pytest.fixture
def provisioned(tmp_path: Path, ca: CertificateAuthority) -> Path:
    """A config whose key, certificate and CA are installed through the CLI."""
    config = write_config(tmp_path)
    init(config)
    ca_file = ca.write_ca(tmp_path / "city-ca.crt")
    result = creds(
        "install", "-c", str(config), "--cert", str(signed(tmp_path, ca)), "--ca", str(ca_file)
    )
    assert result.exit_code == 0, result.stderr
    return config


# -- init -----------------------------------------------------------------------------------


def test_init_makes_a_private_key_and_a_csr_for_the_gateway(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    result = init(config)
    key, csr = tmp_path / "tls" / "gateway.key", tmp_path / "tls" / "gateway.csr"
    assert result.stdout == f"{csr}\n"
    assert key.stat().st_mode & 0o777 == 0o600
    request = load_csr(csr)
    assert request.is_signature_valid
    assert request.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == GATEWAY
    assert isinstance(request.public_key(), ec.EllipticCurvePublicKey)
    assert "send the .csr file to the city's CA" in result.stderr
    assert "PRIVATE KEY" not in result.stdout + result.stderr
    assert [p.name for p in (tmp_path / "tls").iterdir() if p.name.startswith(".")] == []


def test_init_rsa_and_another_directory(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    result = init(config, "--key-type", "rsa", "--dir", str(tmp_path / "elsewhere"))
    key = tmp_path / "elsewhere" / f"{GATEWAY}.key"
    assert result.stdout == f"{key.with_suffix('.csr')}\n"
    assert key.stat().st_mode & 0o777 == 0o600
    assert isinstance(load_csr(key.with_suffix(".csr")).public_key(), rsa.RSAPublicKey)
    assert f"point mqtt.tls.key_file in {config} at {key}" in result.stderr


def test_init_refuses_to_replace_a_key_without_force(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    init(config)
    key = tmp_path / "tls" / "gateway.key"
    before = key.read_bytes()
    result = creds("init", "-c", str(config))
    assert result.exit_code == ExitCode.DECLINED
    assert "already exists" in result.stderr
    assert "--force" in result.stderr
    assert key.read_bytes() == before
    init(config, "--force")
    assert key.read_bytes() != before
    assert key.stat().st_mode & 0o777 == 0o600


def test_init_without_tls_paths_is_a_config_error(tmp_path: Path) -> None:
    config = write_config(tmp_path, tls=False)
    result = creds("init", "-c", str(config))
    assert result.exit_code == ExitCode.CONFIG
    assert "mqtt.tls.key_file" in result.stderr


# -- install and show -------------------------------------------------------------------------


def test_install_then_show(provisioned: Path, ca: CertificateAuthority) -> None:
    tls = provisioned.parent / "tls"
    assert (tls / "ca.crt").read_bytes() == pem(ca.cert)
    cert = x509.load_pem_x509_certificate((tls / "gateway.crt").read_bytes())
    assert cert.subject.rfc4514_string() == f"CN={GATEWAY}"

    result = creds("show", "-c", str(provisioned), "--json")
    assert result.exit_code == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["schema"] == "streetgate.creds.show/1"
    assert shown["common_name"] == GATEWAY
    assert shown["issuer"] == "CN=streetgate test CA"
    assert shown["serial"] == f"{cert.serial_number:x}"
    assert shown["days_left"] in {363, 364}
    assert (shown["expired"], shown["expires_soon"]) == (False, False)
    assert (shown["key_mode"], shown["key_mode_ok"], shown["key_matches"]) == ("0600", True, True)

    text = creds("show", "-c", str(provisioned))
    assert text.exit_code == 0
    assert f"subject      CN={GATEWAY}" in text.stdout
    assert "key matches  yes" in text.stdout
    assert "PRIVATE KEY" not in text.stdout + text.stderr


def test_show_warns_a_month_before_expiry(tmp_path: Path, ca: CertificateAuthority) -> None:
    config = write_config(tmp_path)
    init(config)
    ca_file = ca.write_ca(tmp_path / "ca.crt")
    cert = signed(tmp_path, ca, days=10)
    assert (
        creds("install", "-c", str(config), "--cert", str(cert), "--ca", str(ca_file)).exit_code
        == 0
    )
    result = creds("show", "-c", str(config))
    assert result.exit_code == 0
    assert "warning: creds: the certificate expires in 9 day(s)" in result.stderr


def test_show_without_a_certificate(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    result = creds("show", "-c", str(config))
    assert result.exit_code == ExitCode.NOT_FOUND
    assert f"the certificate {tmp_path / 'tls' / 'gateway.crt'} does not exist" in result.stderr


@pytest.mark.parametrize(
    ("problem", "message"),
    [
        ("other key", "is not for the private key"),
        ("wrong cn", f"is for CN=pole-99, not for this gateway ({GATEWAY})"),
        ("expired", "expired on"),
        ("not yet valid", "is not valid before"),
        ("untrusted", "was not issued by the CA"),
    ],
)
def test_install_refuses_a_certificate_that_would_not_work(
    tmp_path: Path, ca: CertificateAuthority, problem: str, message: str
) -> None:
    config = write_config(tmp_path)
    init(config)
    ca_file = ca.write_ca(tmp_path / "ca.crt")
    csr = load_csr(tmp_path / "tls" / "gateway.csr")
    if problem == "other key":
        other = write_config(tmp_path / "other")
        init(other)
        cert = ca.sign(load_csr(tmp_path / "other" / "tls" / "gateway.csr"))
    elif problem == "wrong cn":
        cert = ca.sign(csr, cn="pole-99")
    elif problem == "expired":
        cert = ca.sign(csr, start=dt.timedelta(days=-10), days=5)
    elif problem == "not yet valid":
        cert = ca.sign(csr, start=dt.timedelta(days=2))
    else:
        cert = CertificateAuthority("someone else's CA").sign(csr)
    (tmp_path / "signed.crt").write_bytes(pem(cert))
    result = creds(
        "install", "-c", str(config), "--cert", str(tmp_path / "signed.crt"), "--ca", str(ca_file)
    )
    assert result.exit_code == ExitCode.FAILURE
    assert message in result.stderr
    assert not (tmp_path / "tls" / "gateway.crt").exists()  # nothing installed
    assert not (tmp_path / "tls" / "ca.crt").exists()


def test_install_uses_the_configured_ca_by_default(
    tmp_path: Path, ca: CertificateAuthority
) -> None:
    config = write_config(tmp_path)
    init(config)
    ca.write_ca(tmp_path / "tls" / "ca.crt")
    result = creds("install", "-c", str(config), "--cert", str(signed(tmp_path, ca)))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"installed {tmp_path / 'tls' / 'gateway.crt'}\n"


def test_install_missing_files(tmp_path: Path, ca: CertificateAuthority) -> None:
    config = write_config(tmp_path)
    result = creds("install", "-c", str(config), "--cert", str(tmp_path / "nope.crt"))
    assert result.exit_code == ExitCode.NOT_FOUND
    assert "nope.crt does not exist" in result.stderr
    cert = tmp_path / "junk.crt"
    cert.write_text("not a certificate\n")
    ca_file = ca.write_ca(tmp_path / "ca.crt")
    init(config)
    result = creds("install", "-c", str(config), "--cert", str(cert), "--ca", str(ca_file))
    assert result.exit_code == ExitCode.FAILURE
    assert "junk.crt: not a PEM certificate" in result.stderr


def test_install_refuses_a_key_others_can_read(tmp_path: Path, ca: CertificateAuthority) -> None:
    config = write_config(tmp_path)
    init(config)
    key = tmp_path / "tls" / "gateway.key"
    key.chmod(0o644)
    ca_file = ca.write_ca(tmp_path / "ca.crt")
    result = creds(
        "install", "-c", str(config), "--cert", str(signed(tmp_path, ca)), "--ca", str(ca_file)
    )
    assert result.exit_code == ExitCode.PERMISSION
    assert f"chmod 600 {key}" in result.stderr


# -- the gateway refuses an unsafe key ----------------------------------------------------------


def test_gateway_refuses_to_start_with_a_key_others_can_read(provisioned: Path) -> None:
    key = provisioned.parent / "tls" / "gateway.key"
    key.chmod(0o640)
    with pytest.raises(UnsafeKeyFile, match=rf"mqtt\.tls\.key_file = {key}") as raised:
        tls_context(load_or_exit(provisioned, "creds").mqtt)
    assert isinstance(raised.value, ForwardError)
    assert raised.value.path == key

    result = CliRunner().invoke(app, ["run", "-c", str(provisioned)])
    assert result.exit_code == 5  # ExitCode.PERMISSION
    assert f"readable by others (mode 0640); fix it with: chmod 600 {key}" in result.stderr

    shown = creds("show", "-c", str(provisioned))
    assert shown.exit_code == ExitCode.PERMISSION
    assert "UNSAFE" in shown.stdout


# -- end to end: the installed certificate opens a broker that requires client certificates ------


@pytest.fixture
def tls_broker(tmp_path: Path, ca: CertificateAuthority) -> Iterator[Mosquitto]:
    pki = tmp_path / "broker-pki"
    pki.mkdir()
    server_cert, server_key = ca.server_files(pki)
    broker = Mosquitto(
        pki,
        listener_options=(
            f"cafile {ca.write_ca(pki / 'ca.crt')}\ncertfile {server_cert}\n"
            f"keyfile {server_key}\nrequire_certificate true\nuse_identity_as_username true\n"
        ),
    )
    broker.start()
    yield broker
    broker.stop()


def test_installed_certificate_connects_to_a_broker_requiring_it(
    tmp_path: Path, ca: CertificateAuthority, tls_broker: Mosquitto
) -> None:
    config = write_config(tmp_path, port=tls_broker.port)
    init(config)
    ca_file = ca.write_ca(tmp_path / "city-ca.crt")
    result = creds(
        "install", "-c", str(config), "--cert", str(signed(tmp_path, ca)), "--ca", str(ca_file)
    )
    assert result.exit_code == 0, result.stderr

    cfg = load_or_exit(config, "creds")

    async def scenario() -> None:
        async with pipeline(cfg) as (_, forwarder):
            async with asyncio.timeout(5):
                await forwarder.connected.wait()
            assert forwarder.stats.connects == 1

    asyncio.run(scenario())


def test_the_readme_examples_run(
    tmp_path: Path, ca: CertificateAuthority, monkeypatch: pytest.MonkeyPatch
) -> None:
    commands = [c for c in readme_commands(HEADING) if c[1] == "creds"]
    assert [c[2] for c in commands] == ["init", "install", "show", "show"]
    write_config(tmp_path)
    ca.write_ca(tmp_path / "city-ca.crt")
    monkeypatch.chdir(tmp_path)  # gw.toml and the certificates are relative
    for command in commands:
        result = CliRunner().invoke(app, command[1:])
        assert result.exit_code == 0, (command, result.stderr)
        if command[2] == "init":  # the city's CA signs the CSR
            csr = load_csr(Path(result.stdout.strip()))
            (tmp_path / "pole-17.crt").write_bytes(pem(ca.sign(csr)))
    assert (tmp_path / "tls" / "gateway.crt").read_bytes() == (
        tmp_path / "pole-17.crt"
    ).read_bytes()
    assert json.loads(result.stdout)["common_name"] == GATEWAY


def test_init_and_install_as_json(tmp_path: Path, ca: CertificateAuthority) -> None:
    config = write_config(tmp_path)
    made = json.loads(init(config, "--json").stdout)
    tls = tmp_path / "tls"
    assert made == {
        "schema": "streetgate.creds.init/1",
        "key_file": str(tls / "gateway.key"),
        "csr_file": str(tls / "gateway.csr"),
        "common_name": GATEWAY,
    }
    ca_file = ca.write_ca(tmp_path / "ca.crt")
    cert = signed(tmp_path, ca)
    result = creds(
        "install", "-c", str(config), "--cert", str(cert), "--ca", str(ca_file), "--json"
    )
    assert result.exit_code == 0, result.stderr
    installed = json.loads(result.stdout)
    assert installed["installed"] == [str(tls / "ca.crt"), str(tls / "gateway.crt")]
    leaf = x509.load_pem_x509_certificate(cert.read_bytes())
    assert installed["not_after"] == leaf.not_valid_after_utc.isoformat()


def test_show_after_a_new_key_says_the_certificate_no_longer_fits(provisioned: Path) -> None:
    init(provisioned, "--force")
    result = creds("show", "-c", str(provisioned), "--json")
    assert result.exit_code == ExitCode.FAILURE
    assert json.loads(result.stdout)["key_matches"] is False
    assert "the certificate is not for the private key" in result.stderr


def test_show_an_expired_certificate(tmp_path: Path, ca: CertificateAuthority) -> None:
    config = write_config(tmp_path)
    init(config)
    ca.write_ca(tmp_path / "tls" / "ca.crt")
    signed(tmp_path, ca, name="tls/gateway.crt", start=dt.timedelta(days=-10), days=5)
    result = creds("show", "-c", str(config))
    assert result.exit_code == ExitCode.FAILURE
    assert "days left    -" in result.stdout
    assert "the certificate expired on" in result.stderr


# -- a first install: only a gateway id, the rest of the config still empty ---------------------


def skeleton(tmp_path: Path) -> Path:
    """install.sh's config skeleton: no gateway_id, no broker, the TLS paths under tls/."""
    config = tmp_path / "config.toml"
    config.write_text((Path(__file__).parents[2] / "deploy" / "config.toml").read_text())
    return config


def test_init_on_the_skeleton_takes_the_gateway_id_from_the_command_line(tmp_path: Path) -> None:
    config = skeleton(tmp_path)
    missing = creds("init", "-c", str(config))
    assert missing.exit_code == ExitCode.CONFIG
    assert "gateway_id: the config sets none yet; give --gateway-id NAME" in missing.stderr
    bad = creds("init", "-c", str(config), "--gateway-id", "no spaces")
    assert bad.exit_code == ExitCode.USAGE
    assert "--gateway-id 'no spaces': expected a name" in bad.stderr
    assert not (tmp_path / "tls").exists()

    made = creds("init", "-c", str(config), "--gateway-id", GATEWAY)
    assert made.exit_code == 0, made.stderr
    csr = load_csr(tmp_path / "tls" / "gateway.csr")
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == GATEWAY
    assert (tmp_path / "tls" / "gateway.key").stat().st_mode & 0o777 == 0o600
    assert (
        f'has no gateway_id yet: `streetgate init` writes it, or set gateway_id = "{GATEWAY}"'
        in (made.stderr)
    )


def test_a_gateway_id_that_contradicts_the_config_is_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    result = creds("init", "-c", str(config), "--gateway-id", "pole-99")
    assert result.exit_code == ExitCode.USAGE
    assert f"--gateway-id pole-99 is not the gateway_id of {config} ({GATEWAY})" in result.stderr
    assert not (tmp_path / "tls" / "gateway.key").exists()


def test_install_on_the_skeleton_checks_the_cn_against_the_given_id(
    tmp_path: Path, ca: CertificateAuthority
) -> None:
    config = skeleton(tmp_path)
    assert creds("init", "-c", str(config), "--gateway-id", GATEWAY).exit_code == 0
    cert, ca_file = signed(tmp_path, ca), ca.write_ca(tmp_path / "city-ca.crt")
    wrong = creds(
        "install", "-c", str(config), "--gateway-id", "pole-99", "--cert", str(cert),
        "--ca", str(ca_file),
    )  # fmt: skip
    assert wrong.exit_code == ExitCode.FAILURE
    assert "is for CN=pole-17, not for this gateway (pole-99)" in wrong.stderr
    done = creds(
        "install", "-c", str(config), "--gateway-id", GATEWAY, "--cert", str(cert),
        "--ca", str(ca_file),
    )  # fmt: skip
    assert done.exit_code == 0, done.stderr
    assert (tmp_path / "tls" / "ca.crt").read_bytes() == pem(ca.cert)


def test_install_the_ca_alone(tmp_path: Path, ca: CertificateAuthority) -> None:
    config = write_config(tmp_path)
    assert creds("install", "-c", str(config)).exit_code == ExitCode.USAGE
    ca_file = ca.write_ca(tmp_path / "city-ca.crt")
    result = creds("install", "-c", str(config), "--ca", str(ca_file))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"installed {tmp_path / 'tls' / 'ca.crt'}\n"
    assert (tmp_path / "tls" / "ca.crt").stat().st_mode & 0o777 == 0o644
    # with a certificate installed, a CA that did not issue it is refused
    init(config)
    signed(tmp_path, ca, name="tls/gateway.crt")
    other = CertificateAuthority("someone else's CA").write_ca(tmp_path / "other.crt")
    refused = creds("install", "-c", str(config), "--ca", str(other))
    assert refused.exit_code == ExitCode.FAILURE
    assert "was not issued by the CA in" in refused.stderr
    assert (tmp_path / "tls" / "ca.crt").read_bytes() == pem(ca.cert)


def test_install_refuses_what_is_not_a_bounded_regular_file(
    tmp_path: Path, ca: CertificateAuthority
) -> None:
    config = write_config(tmp_path)
    init(config)
    fifo = tmp_path / "cert.fifo"
    os.mkfifo(fifo)
    result = creds("install", "-c", str(config), "--cert", str(fifo))
    assert result.exit_code == ExitCode.FAILURE
    assert f"the certificate {fifo}: not a regular file" in result.stderr
    huge = tmp_path / "huge.crt"
    huge.write_bytes(b"x" * (1024 * 1024 + 1))
    result = creds("install", "-c", str(config), "--ca", str(huge))
    assert result.exit_code == ExitCode.FAILURE
    assert "larger than the 1,048,576 allowed" in result.stderr


def test_root_gives_the_new_key_to_the_owner_of_its_folder(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root can give files away")
    config = write_config(tmp_path)
    (tmp_path / "tls").mkdir(mode=0o700)
    os.chown(tmp_path / "tls", 4321, 4322)  # the service user's folder, as install.sh makes it
    init(config)
    for name in ("gateway.key", "gateway.csr"):
        st = (tmp_path / "tls" / name).stat()
        assert (st.st_uid, st.st_gid) == (4321, 4322)


def test_the_gateway_id_can_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """balena: the fleet's config has no gateway_id; each device's variable gives it."""
    config = skeleton(tmp_path)
    monkeypatch.setenv("STREETGATE_GATEWAY_ID", "pole-31")
    made = creds("init", "-c", str(config))
    assert made.exit_code == 0, made.stderr
    csr = load_csr(tmp_path / "tls" / "gateway.csr")
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "pole-31"
