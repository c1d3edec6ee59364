"""Signed commands: the canonical form, sign/verify (pure), the nonce ledger, [management]."""

from __future__ import annotations

import asyncio
import base64
import json
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.config.management import ManagementConfig
from gateway.config.model import parse_config
from gateway.core.errors import CommandRejected, ConfigError, ErrorCode
from gateway.management.auth import MAX_NONCES, CommandGuard, NonceLedger, nonces_path
from gateway.management.signing import canonical, sign_command, verify_command

GW = "pole-17"
NOW = 1_800_000_000
COMMAND: dict[str, Any] = {"id": "c1", "command": "read-now", "args": {"device": "meter-1"}}


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def signed(key: Ed25519PrivateKey, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(sign_command(key, COMMAND, GW, now=NOW))
    data.update(overrides)
    return data


def verify(data: dict[str, Any], key: Ed25519PrivateKey, now: float = NOW) -> dict[str, Any]:
    return verify_command(data, key.public_key(), GW, 300, now=now).command


def code_of(data: dict[str, Any], key: Ed25519PrivateKey, now: float = NOW) -> ErrorCode:
    with pytest.raises(CommandRejected) as caught:
        verify(data, key, now)
    assert caught.value.command_id == "c1"  # the reply can name the command
    return caught.value.code


def test_a_signed_command_verifies_and_loses_its_signing_fields(key: Ed25519PrivateKey) -> None:
    data = signed(key)
    assert data["gateway"] == GW
    assert data["ts"] == NOW
    assert len(data["nonce"]) == 32
    assert len(base64.b64decode(data["sig"])) == 64
    assert verify(data, key) == {**COMMAND, "gateway": GW}


def test_the_canonical_form_is_exactly_the_documented_one() -> None:
    fields = {"ts": 1, "id": "é", "sig": "x", "args": {"b": 1, "a": [1.5, None]}}
    assert canonical(fields) == '{"args":{"a":[1.5,null],"b":1},"id":"é","ts":1}'.encode()


def test_two_signatures_of_one_command_use_two_nonces(key: Ed25519PrivateKey) -> None:
    assert signed(key)["nonce"] != signed(key)["nonce"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("command", "restart"),
        ("args", {"device": "meter-2"}),
        ("id", "c2x"),
        ("ts", NOW + 1),
        ("nonce", "00" * 16),
        ("extra", 1),
    ],
)
def test_a_tampered_field_is_a_bad_signature(
    key: Ed25519PrivateKey, field: str, value: Any
) -> None:
    data = signed(key, **{field: value})
    with pytest.raises(CommandRejected) as caught:
        verify(data, key)
    assert caught.value.code is ErrorCode.BAD_SIGNATURE


def test_another_key_is_a_bad_signature(key: Ed25519PrivateKey) -> None:
    data = json.loads(sign_command(Ed25519PrivateKey.generate(), COMMAND, GW, now=NOW))
    assert code_of(data, key) is ErrorCode.BAD_SIGNATURE


def test_a_command_signed_for_another_gateway_is_refused(key: Ed25519PrivateKey) -> None:
    data = json.loads(sign_command(key, COMMAND, "pole-18", now=NOW))
    assert code_of(data, key) is ErrorCode.WRONG_GATEWAY
    # and changing the target breaks the signature
    assert code_of({**data, "gateway": GW}, key) is ErrorCode.BAD_SIGNATURE


def test_stale_and_future_commands_are_refused(key: Ed25519PrivateKey) -> None:
    data = signed(key)
    assert verify(data, key, now=NOW + 300)  # the window's edges are inside
    assert verify(data, key, now=NOW - 300)
    assert code_of(data, key, now=NOW + 301) is ErrorCode.STALE
    assert code_of(data, key, now=NOW - 301) is ErrorCode.STALE


def test_unsigned_and_malformed_envelopes(key: Ed25519PrivateKey) -> None:
    assert code_of(dict(COMMAND), key) is ErrorCode.UNSIGNED
    assert code_of(signed(key, ts="now"), key) is ErrorCode.BAD_REQUEST
    assert code_of(signed(key, ts=True), key) is ErrorCode.BAD_REQUEST
    assert code_of(signed(key, ts=10**400), key) is ErrorCode.BAD_REQUEST  # no OverflowError
    assert code_of(signed(key, ts=NOW + 0.5), key) is ErrorCode.BAD_REQUEST
    assert code_of(signed(key, nonce="abc"), key) is ErrorCode.BAD_REQUEST  # < 96 bits
    assert code_of(signed(key, sig=5), key) is ErrorCode.BAD_REQUEST
    assert code_of(signed(key, sig="not base64!"), key) is ErrorCode.BAD_SIGNATURE
    no_target = signed(key)
    del no_target["gateway"]
    assert code_of(no_target, key) is ErrorCode.BAD_REQUEST


def test_sign_command_refuses_a_command_that_is_already_signed(key: Ed25519PrivateKey) -> None:
    with pytest.raises(ValueError, match="signing field"):
        sign_command(key, {**COMMAND, "nonce": "x"}, GW)
    with pytest.raises(ValueError, match="addressed to"):
        sign_command(key, {**COMMAND, "gateway": "other"}, GW)


def test_the_ledger_refuses_a_replayed_nonce_and_forgets_expired_ones() -> None:
    ledger = NonceLedger(max_skew=300)
    assert ledger.check("aa", NOW) is None
    ledger.add("aa", NOW)
    assert ledger.check("aa", NOW) is ErrorCode.REPLAYED
    ledger.expire(NOW + 301)
    assert ledger.seen == {}


def test_a_full_ledger_forgets_the_oldest_and_refuses_anything_signed_before_it() -> None:
    ledger = NonceLedger(max_skew=300, capacity=3)
    for i in range(4):
        ledger.add(f"n{i}", NOW + i)
    assert len(ledger.seen) == 3
    assert ledger.floor == NOW
    assert ledger.check("n0", NOW) is ErrorCode.STALE  # forgotten, yet not replayable
    assert ledger.check("new", NOW + 1) is None
    copy = NonceLedger(max_skew=300, capacity=3)
    copy.load_json(ledger.to_json())
    assert (copy.seen, copy.floor) == (ledger.seen, ledger.floor)


def test_the_guard_remembers_nonces_across_a_restart_in_a_0600_file(
    tmp_path: Path, key: Ed25519PrivateKey
) -> None:
    management = management_config(tmp_path, key)
    outbox = tmp_path / "outbox.db"

    async def scenario() -> None:
        payload = sign_command(key, COMMAND, GW)
        first = CommandGuard(management, GW, outbox)
        assert json.loads(await first.check(payload)) == {**COMMAND, "gateway": GW}
        with pytest.raises(CommandRejected) as caught:
            await first.check(payload)
        assert caught.value.code is ErrorCode.REPLAYED
        again = CommandGuard(management, GW, outbox)  # a restart
        with pytest.raises(CommandRejected) as caught:
            await again.check(payload)
        assert caught.value.code is ErrorCode.REPLAYED

    asyncio.run(scenario())
    assert stat.S_IMODE(nonces_path(outbox).stat().st_mode) == 0o600
    assert MAX_NONCES >= 256


def test_an_unreadable_nonce_file_makes_older_commands_stale(
    tmp_path: Path, key: Ed25519PrivateKey
) -> None:
    management = management_config(tmp_path, key)
    outbox = tmp_path / "outbox.db"
    nonces_path(outbox).write_text("not json")

    async def scenario() -> None:
        guard = CommandGuard(management, GW, outbox)
        with pytest.raises(CommandRejected) as caught:
            await guard.check(sign_command(key, COMMAND, GW, now=NOW))
        assert caught.value.code is ErrorCode.STALE

    asyncio.run(scenario())


def management_config(tmp_path: Path, key: Ed25519PrivateKey) -> ManagementConfig:
    pub = tmp_path / "command-key.pub"
    pub.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return ManagementConfig(require_signed=True, command_key_file=pub)


def config_document(management: dict[str, Any]) -> dict[str, Any]:
    return {
        "gateway_id": GW,
        "mqtt": {"host": "127.0.0.1"},
        "outbox": {"path": "outbox.db"},
        "management": management,
    }


def test_management_config_loads_the_key_relative_to_the_config(
    tmp_path: Path, key: Ed25519PrivateKey
) -> None:
    management_config(tmp_path, key)
    config = parse_config(
        config_document({"require_signed": True, "command_key_file": "command-key.pub"}),
        "gw.toml",
        tmp_path,
    )
    assert config.management is not None
    assert config.management.command_key_file == tmp_path / "command-key.pub"
    assert config.management.command_key == key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert config.management.max_clock_skew == 300


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "cannot open"),
        (b"hello", "not a PEM public key"),
        ("dir", "not a regular file"),
        (b"x" * 5000, "bytes; a PEM public key"),
    ],
)
def test_a_bad_command_key_file_is_a_config_error_naming_the_key(
    tmp_path: Path, content: bytes | str | None, expected: str
) -> None:
    path = tmp_path / "k.pub"
    if content == "dir":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        parse_config(
            config_document({"require_signed": True, "command_key_file": str(path)}),
            "gw.toml",
            tmp_path,
        )
    issue = caught.value.issues[0]
    assert issue.location == "management.command_key_file"
    assert expected in issue.message


def test_a_non_ed25519_key_and_a_missing_key_are_config_errors(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415

    path = tmp_path / "ec.pub"
    path.write_bytes(
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(ConfigError, match="not an Ed25519 public key"):
        parse_config(config_document({"command_key_file": str(path)}), "gw.toml", tmp_path)
    with pytest.raises(ConfigError, match="require_signed = true needs command_key_file"):
        parse_config(config_document({"require_signed": True}), "gw.toml", tmp_path)
    with pytest.raises(ConfigError, match=r"unknown|Extra"):
        parse_config(config_document({"require_signed": False, "key": 1}), "gw.toml", tmp_path)


DOCS = Path(__file__).resolve().parents[3] / "docs" / "mqtt.md"


def test_docs_name_every_error_code() -> None:
    text = DOCS.read_text("utf-8")
    assert [c.value for c in ErrorCode if f"`{c.value}`" not in text] == []


def test_the_documented_python_example_signs_a_command_the_gateway_accepts(
    tmp_path: Path, key: Ed25519PrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    section = DOCS.read_text("utf-8").split("### Signed commands\n", 1)[1].split("\n### ", 1)[0]
    example = section.split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "command.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    published: list[tuple[str, bytes]] = []

    class Client:
        def publish(self, topic: str, payload: bytes, qos: int) -> None:
            assert qos == 1
            published.append((topic, payload))

    monkeypatch.chdir(tmp_path)
    exec(example, {"client": Client()})  # the documentation's own example
    [(topic, payload)] = published
    assert topic == "streetgate/cabinet-0012/cmd"
    checked = verify_command(json.loads(payload), key.public_key(), "cabinet-0012", 300)
    assert checked.command["command"] == "restart"


def test_with_a_key_but_not_required_unsigned_commands_pass_and_signed_ones_are_checked(
    tmp_path: Path, key: Ed25519PrivateKey
) -> None:
    management = management_config(tmp_path, key).model_copy(update={"require_signed": False})
    guard = CommandGuard(management, GW, tmp_path / "outbox.db")
    unsigned = json.dumps(COMMAND).encode()

    async def scenario() -> None:
        assert await guard.check(unsigned) == unsigned
        forged = sign_command(Ed25519PrivateKey.generate(), COMMAND, GW)
        with pytest.raises(CommandRejected) as caught:
            await guard.check(forged)
        assert caught.value.code is ErrorCode.BAD_SIGNATURE

    asyncio.run(scenario())
