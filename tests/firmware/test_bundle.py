"""Firmware bundles: manifests (pure), Ed25519 signing, the tar on disk, release key files."""

from __future__ import annotations

import io
import json
import stat
import tarfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from firmware.bundle import (
    check_files,
    check_path,
    key_id,
    manifest_bytes,
    parse_manifest,
    sha256_hex,
    sign,
    signature_valid,
)
from firmware.release import (
    collect_files,
    load_private_key,
    load_public_key,
    make_key_pair,
    open_bundle,
)
from gateway.cli.exit_codes import ExitCode
from gateway.cli.main import app
from gateway.core.errors import (
    BundleError,
    ManifestError,
    ReleaseKeyError,
    SignatureInvalid,
    UnsafeReleaseKey,
)
from tests.support.node_firmware import firmware_dir

FIXTURE = firmware_dir()


def node(*args: str):
    return CliRunner().invoke(app, ["node", *args])


# --- manifests (pure) -------------------------------------------------------------------------


def test_manifest_lists_every_file_with_its_hash_and_size_and_the_signing_key() -> None:
    key = Ed25519PrivateKey.generate()
    files = {"sgnode/app.py": b"print(1)\n", "main.py": b"import sgnode.app\n"}
    data = manifest_bytes("1.2.0", files, key.public_key())
    document = json.loads(data)
    assert list(document["files"]) == ["main.py", "sgnode/app.py"]
    assert document["files"]["main.py"] == {
        "sha256": sha256_hex(b"import sgnode.app\n"),
        "size": 18,
    }
    assert document["version"] == "1.2.0"
    assert document["key_id"] == key_id(key.public_key())
    manifest = parse_manifest(data)
    assert manifest.total_size == 27
    check_files(manifest, files)
    assert manifest_bytes("1.2.0", dict(reversed(files.items())), key.public_key()) == data


@given(
    st.dictionaries(
        st.lists(st.from_regex(r"[a-z_][a-z0-9_.-]{0,8}", fullmatch=True), min_size=1, max_size=3)
        .map("/".join)
        .filter(lambda p: p not in ("node.json", "manifest.json", "manifest.sig")),
        st.binary(max_size=64),
        min_size=1,
        max_size=8,
    )
)
def test_manifest_round_trips_and_matches_its_files(files: dict[str, bytes]) -> None:
    key = Ed25519PrivateKey.generate()
    data = manifest_bytes("0.1.0", files, key.public_key())
    manifest = parse_manifest(data)
    assert {path: entry.size for path, entry in manifest.files.items()} == {
        path: len(content) for path, content in files.items()
    }
    check_files(manifest, files)
    assert signature_valid(data, sign(data, key), key.public_key())


def test_a_signature_covers_the_exact_manifest_bytes() -> None:
    key = Ed25519PrivateKey.generate()
    data = manifest_bytes("1.0.0", {"main.py": b"x"}, key.public_key())
    signature = sign(data, key)
    assert signature_valid(data, signature, key.public_key())
    assert not signature_valid(data.replace(b"1.0.0", b"1.0.1"), signature, key.public_key())
    assert not signature_valid(data + b" ", signature, key.public_key())
    other = Ed25519PrivateKey.generate()
    assert not signature_valid(data, signature, other.public_key())


def test_files_that_differ_from_the_manifest_are_named() -> None:
    key = Ed25519PrivateKey.generate()
    manifest = parse_manifest(
        manifest_bytes("1", {"main.py": b"a", "b.py": b"b"}, key.public_key())
    )
    with pytest.raises(ManifestError, match=r"main\.py: 1 bytes"):
        check_files(manifest, {"main.py": b"A", "b.py": b"b"})
    with pytest.raises(ManifestError, match=r"missing: \['b\.py'\].*\['c\.py'\]"):
        check_files(manifest, {"main.py": b"a", "c.py": b"c"})


@pytest.mark.parametrize(
    "path",
    [
        "",
        "/main.py",
        "../main.py",
        "lib/../../x.py",
        "a//b.py",
        ".hidden",
        "lib/.x",
        "sp ace.py",
        "node.json",
        "manifest.sig",
        "x\\y.py",
    ],
)
def test_paths_a_board_must_not_get_are_refused(path: str) -> None:
    with pytest.raises(ManifestError):
        check_path(path)


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d.pop("key_id"),
        lambda d: d.update(schema=2),
        lambda d: d.update(extra=1),
        lambda d: d["files"].update({"main.py": {"sha256": "ab", "size": 1}}),
        lambda d: d["files"].update({"main.py": {"sha256": "0" * 64, "size": -1}}),
        lambda d: d["files"].update({"../x": {"sha256": "0" * 64, "size": 1}}),
        lambda d: d.update(files={}),
    ],
)
def test_malformed_manifests_are_refused(change) -> None:
    key = Ed25519PrivateKey.generate()
    document = json.loads(manifest_bytes("1", {"main.py": b"x"}, key.public_key()))
    change(document)
    with pytest.raises(ManifestError):
        parse_manifest(json.dumps(document).encode())


# --- key files --------------------------------------------------------------------------------


def test_keygen_writes_a_private_key_only_its_owner_can_read(tmp_path: Path) -> None:
    result = node("keygen", "--out", str(tmp_path / "keys" / "release.key"), "--json")
    assert result.exit_code == ExitCode.OK, result.output
    document = json.loads(result.stdout)
    private, public = Path(document["private_key"]), Path(document["public_key"])
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert public == private.with_name("release.key.pub")
    assert key_id(load_public_key(public)) == document["key_id"]
    assert key_id(load_private_key(private).public_key()) == document["key_id"]
    assert b"PRIVATE" not in result.stdout_bytes + result.stderr_bytes


def test_keygen_does_not_replace_a_key_without_force(tmp_path: Path) -> None:
    key = tmp_path / "release.key"
    first = make_key_pair(key)
    again = node("keygen", "--out", str(key))
    assert again.exit_code == ExitCode.DECLINED
    assert "--force" in again.stderr
    assert key_id(load_private_key(key).public_key()) == first.key_id
    forced = node("keygen", "--out", str(key), "--force")
    assert forced.exit_code == ExitCode.OK
    assert key_id(load_private_key(key).public_key()) != first.key_id


def test_a_private_key_others_can_read_is_not_used(tmp_path: Path) -> None:
    pair = make_key_pair(tmp_path / "release.key")
    pair.private_file.chmod(0o644)
    with pytest.raises(UnsafeReleaseKey, match="chmod 600"):
        load_private_key(pair.private_file)
    result = node(
        "release",
        str(FIXTURE),
        "--version",
        "1",
        "--key",
        str(pair.private_file),
        "--out",
        str(tmp_path / "b.tar"),
    )
    assert result.exit_code == ExitCode.PERMISSION
    assert not (tmp_path / "b.tar").exists()


def test_key_files_of_the_wrong_kind_are_named(tmp_path: Path) -> None:
    pair = make_key_pair(tmp_path / "release.key")
    with pytest.raises(ReleaseKeyError, match="not a PEM public key"):
        load_public_key(pair.private_file)
    with pytest.raises(ReleaseKeyError, match="does not exist"):
        load_public_key(tmp_path / "nope.pub")


# --- bundles on disk ----------------------------------------------------------------------------


@pytest.fixture
def signed(tmp_path: Path) -> tuple[Path, Path]:
    """A bundle of the fixture firmware and the public key it was signed with."""
    pair = make_key_pair(tmp_path / "release.key")
    out = tmp_path / "node-1.0.0.tar"
    result = node(
        "release",
        str(FIXTURE),
        "--version",
        "1.0.0",
        "--key",
        str(pair.private_file),
        "--out",
        str(out),
        "--json",
    )
    assert result.exit_code == ExitCode.OK, result.output
    assert json.loads(result.stdout)["key_id"] == pair.key_id
    return out, pair.public_file


def _rewrite(bundle: Path, change) -> None:
    with tarfile.open(bundle) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar}
    change(members)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    bundle.write_bytes(buffer.getvalue())


def test_a_bundle_holds_the_source_files_and_verifies(signed: tuple[Path, Path]) -> None:
    bundle, public = signed
    verified = open_bundle(bundle, load_public_key(public))
    assert verified.files == collect_files(FIXTURE)
    assert set(verified.files) == {"main.py", "sgnode/__init__.py", "sgnode/app.py"}
    assert verified.manifest.version == "1.0.0"


def test_a_bundle_signed_with_another_key_is_refused(signed, tmp_path: Path) -> None:
    bundle, _ = signed
    other = make_key_pair(tmp_path / "other.key")
    with pytest.raises(SignatureInvalid, match=other.key_id):
        open_bundle(bundle, load_public_key(other.public_file))


def test_a_changed_manifest_fails_its_signature(signed) -> None:
    bundle, public = signed
    _rewrite(
        bundle,
        lambda m: m.update({"manifest.json": m["manifest.json"].replace(b"1.0.0", b"9.9.9")}),
    )
    with pytest.raises(SignatureInvalid):
        open_bundle(bundle, load_public_key(public))


def test_a_changed_file_fails_its_hash(signed) -> None:
    bundle, public = signed
    _rewrite(bundle, lambda m: m.update({"files/main.py": m["files/main.py"] + b"evil()\n"}))
    with pytest.raises(BundleError, match=r"main\.py") as caught:
        open_bundle(bundle, load_public_key(public))
    assert not isinstance(caught.value, SignatureInvalid)


@pytest.mark.parametrize(
    "change",
    [
        lambda m: m.update({"files/extra.py": b"x"}),
        lambda m: m.pop("files/sgnode/app.py"),
        lambda m: m.pop("manifest.sig"),
        lambda m: m.update({"../escape.py": b"x"}),
    ],
)
def test_bundles_with_missing_or_extra_members_are_refused(signed, change) -> None:
    bundle, public = signed
    _rewrite(bundle, change)
    with pytest.raises(BundleError):
        open_bundle(bundle, load_public_key(public))


def test_a_file_that_is_not_a_tar_is_a_bundle_error(tmp_path: Path, signed) -> None:
    _, public = signed
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"not a tar" * 100)
    with pytest.raises(BundleError, match="not a firmware bundle"):
        open_bundle(junk, load_public_key(public))


def test_collect_skips_caches_and_hidden_files(tmp_path: Path) -> None:
    (tmp_path / "lib" / "__pycache__").mkdir(parents=True)
    (tmp_path / "main.py").write_text("print(1)\n")
    (tmp_path / "lib" / "x.py").write_text("X = 1\n")
    (tmp_path / "lib" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    (tmp_path / ".editorconfig").write_text("")
    assert set(collect_files(tmp_path)) == {"main.py", "lib/x.py"}
    with pytest.raises(BundleError, match="not a directory"):
        collect_files(tmp_path / "main.py")


def test_release_of_a_missing_source_exits_not_found(tmp_path: Path) -> None:
    pair = make_key_pair(tmp_path / "release.key")
    result = node(
        "release",
        str(tmp_path / "nope"),
        "--version",
        "1",
        "--key",
        str(pair.private_file),
        "--out",
        str(tmp_path / "b.tar"),
    )
    assert result.exit_code == ExitCode.NOT_FOUND
    assert "is not a directory" in result.stderr
