"""Hostile firmware bundles (issue 12): a bundle is read bounded, and its files only after the
signature verified. Each attack runs `open_bundle` in its own process under an address-space
limit, as `streetgate node deploy` would meet it, so a bundle that makes the reader allocate
what a header claims fails with MemoryError instead of taking the test machine down."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path

import pytest

from firmware.release import collect_files, load_private_key, make_key_pair, write_bundle

REPO = Path(__file__).resolve().parents[2]
CLAIMED = 1_500_000_000  # what the hostile header claims: 1.5 GB
MEMORY_LIMIT = 512 * 1024 * 1024  # the reader's address space: far below the claim

# Runs open_bundle on argv[1] with argv[2]'s public key; prints the outcome and peak RSS.
READER = textwrap.dedent(
    """
    import resource, sys
    from pathlib import Path
    resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
    from firmware.release import load_public_key, open_bundle
    from gateway.core.errors import BundleError
    try:
        open_bundle(Path(sys.argv[1]), load_public_key(Path(sys.argv[2])))
    except BundleError as exc:
        print("BundleError", type(exc).__name__, exc)
    else:
        print("opened")
    # VmHWM is this process's own peak; ru_maxrss would carry the forking pytest's over exec
    hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
    print("maxrss_kb", int(hwm.split()[1]))
    """
).format(limit=MEMORY_LIMIT)


def read_bundle(bundle: Path, public: Path) -> tuple[str, int, float]:
    """(first output line, peak RSS in kB, seconds) of open_bundle in a fresh process."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", READER, str(bundle), str(public)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        cwd=REPO,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    return lines[0], int(lines[-1].split()[1]), elapsed


@pytest.fixture
def release(tmp_path: Path) -> tuple[Path, Path]:
    """A real signed bundle of small firmware files, and the public key it verifies with."""
    source = tmp_path / "src"
    source.mkdir()
    (source / "main.py").write_text("print('hello')\n")
    pair = make_key_pair(tmp_path / "release.key")
    bundle = tmp_path / "release.tar"
    write_bundle(source, "1.0.0", load_private_key(pair.private_file), bundle)
    assert set(collect_files(source)) == {"main.py"}
    return bundle, pair.public_file


def members_of(bundle: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    with tarfile.open(bundle) as tar:
        return [(info, tar.extractfile(info).read()) for info in tar]


def write_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(buffer.getvalue())


def sparse_member(name: str, realsize: int) -> tuple[tarfile.TarInfo, bytes]:
    """A PAX 1.0 sparse member: one byte of data on disk, `realsize` bytes when read."""
    sparse_map = b"1\n0\n1\n".ljust(tarfile.BLOCKSIZE, b"\0")  # one region: offset 0, 1 byte
    info = tarfile.TarInfo(name)
    info.pax_headers = {
        "GNU.sparse.major": "1",
        "GNU.sparse.minor": "0",
        "GNU.sparse.name": name,
        "GNU.sparse.realsize": str(realsize),
    }
    data = sparse_map + b"x"
    info.size = len(data)
    return info, data


def test_a_small_sparse_bundle_claiming_gigabytes_is_refused_quickly(
    release: tuple[Path, Path], tmp_path: Path
) -> None:
    bundle, public = release
    hostile = tmp_path / "sparse.tar"
    write_tar(hostile, [*members_of(bundle), sparse_member("files/extra.py", CLAIMED)])
    assert hostile.stat().st_size < 16 * 1024  # a few KB on disk
    # before: tarfile expanded the holes into 1.5 GB of zeros (MemoryError under the limit)
    line, maxrss_kb, seconds = read_bundle(hostile, public)
    assert line.startswith("BundleError BundleError"), line
    assert "'files/extra.py' is a sparse file" in line
    assert maxrss_kb < 100 * 1024, maxrss_kb
    assert seconds < 20


def test_a_header_claiming_more_than_the_file_holds_is_refused_before_reading(
    release: tuple[Path, Path], tmp_path: Path
) -> None:
    bundle, public = release
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members_of(bundle):
            tar.addfile(info, io.BytesIO(data))
        end = tar.offset  # right after the last member, before the end-of-archive blocks
    # a member header whose size field claims 1.5 GB, the file ending soon after it
    info = tarfile.TarInfo("files/big.py")
    info.size = CLAIMED
    hostile = tmp_path / "claim.tar"
    hostile.write_bytes(
        raw.getvalue()[:end] + info.tobuf(format=tarfile.GNU_FORMAT) + b"x" * tarfile.BLOCKSIZE
    )
    line, maxrss_kb, _ = read_bundle(hostile, public)
    assert line.startswith("BundleError"), line
    assert "claims 1500000000 bytes, more than the file holds" in line
    assert maxrss_kb < 100 * 1024, maxrss_kb


def test_file_contents_are_not_read_before_the_signature_verifies(
    release: tuple[Path, Path], tmp_path: Path
) -> None:
    """A bundle signed by someone else, with 3.5 MB of files: refused having read only the
    manifest and signature (before: every member was read into memory first)."""
    stranger = make_key_pair(tmp_path / "stranger.key")
    source = tmp_path / "big"
    source.mkdir()
    (source / "main.py").write_text("print(1)\n")
    for i in range(7):
        (source / f"blob{i}.py").write_bytes(b"#" * 500_000)
    big = tmp_path / "big.tar"
    write_bundle(source, "6.6.6", load_private_key(stranger.private_file), big)
    _, public = release
    script = textwrap.dedent(
        """
        import sys, tracemalloc
        from pathlib import Path
        from firmware.release import load_public_key, open_bundle
        from gateway.core.errors import SignatureInvalid
        key = load_public_key(Path(sys.argv[2]))
        tracemalloc.start()
        try:
            open_bundle(Path(sys.argv[1]), key)
        except SignatureInvalid:
            print("refused", tracemalloc.get_traced_memory()[1])
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(big), str(public)],
        capture_output=True, text=True, check=False, timeout=60, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    word, peak = result.stdout.split()
    assert word == "refused"
    assert int(peak) < 1_000_000, peak  # the files are 3.5 MB; only headers and manifest read


def test_a_device_or_fifo_given_as_the_bundle_is_refused(
    release: tuple[Path, Path], tmp_path: Path
) -> None:
    _, public = release
    line, _, seconds = read_bundle(Path("/dev/zero"), public)
    assert line.endswith("/dev/zero: is not a regular file (a bundle is a .tar file)"), line
    fifo = tmp_path / "fifo.tar"
    os.mkfifo(fifo)
    line, _, seconds = read_bundle(fifo, public)  # before: open() waited for a writer forever
    assert "is not a regular file" in line
    assert seconds < 20


def test_an_honest_bundle_still_opens(release: tuple[Path, Path]) -> None:
    bundle, public = release
    line, _, _ = read_bundle(bundle, public)
    assert line == "opened"
