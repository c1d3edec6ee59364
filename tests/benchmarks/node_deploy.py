"""Node deploy benchmark: prints one JSON object with how long a deploy to a board takes.

    python -m tests.benchmarks.node_deploy [--quick]

Deploys to the virtual board (MicroPython's unix port behind a local socket, through mpremote's
transport, 256-byte raw-REPL writes like ``mpremote fs cp``) a release the size of a real node
firmware: ``firmware/node`` when it is there, else the test fixture padded to ~48 KiB in 15
files. Figures: ``deploy_s`` (median over the runs, bundle verified to board back after reset),
``copy_bytes_per_s`` (copy and on-board SHA-256 of every file), ``reset_to_output_s``, and the
sizes. Each run checks the files on the board against the bundle, so a fast but wrong deploy
cannot post a figure. A real board over USB at 115200 baud is slower: the wire alone carries
about 11 KiB/s, and a raw-REPL write sends each byte as up to four characters.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from firmware.deploy import deploy
from firmware.release import DEFAULT_SOURCE, collect_files
from simulator.board import VirtualBoard
from tests.support.node_firmware import firmware_dir
from tests.support.sim_thread import in_thread

FIXTURE = firmware_dir()


def release_files() -> tuple[str, dict[str, bytes]]:
    """The files of a realistic release, and where they came from."""
    if (DEFAULT_SOURCE / "main.py").exists():
        return "firmware/node", collect_files(DEFAULT_SOURCE)
    files = collect_files(FIXTURE)
    for i in range(12):  # modules of a few KiB each, like the node's own
        files[f"sgnode/pad{i:02d}.py"] = f"DATA = {'#' * 4000!r}\n".encode()
    return "fixture padded", files


def one_run(files: dict[str, bytes], root: Path) -> dict[str, float]:
    copy_done = 0.0

    def progress(path: str, done: int, size: int) -> None:
        nonlocal copy_done
        if path == "node.json" and done == size:
            copy_done = time.perf_counter()

    with in_thread(lambda: VirtualBoard(root)) as board:
        start = time.perf_counter()
        deploy(board.url, files, progress=progress, boot_timeout=20)
        end = time.perf_counter()
        on_board = {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*.*")}
        if any(on_board.get(path) != data for path, data in files.items()):
            raise SystemExit("benchmark: the board's files differ from the release")
        if board.boots != 2:
            raise SystemExit(f"benchmark: the board booted {board.boots} times, expected 2")
    return {"deploy_s": end - start, "copy_s": copy_done - start, "after_copy_s": end - copy_done}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one run instead of five")
    args = parser.parse_args()
    source, files = release_files()
    files["node.json"] = b'{"schema": 1, "node_id": "bench"}\n'
    size = sum(len(data) for data in files.values())
    runs = []
    for _ in range(1 if args.quick else 5):
        with tempfile.TemporaryDirectory() as tmp:
            runs.append(one_run(files, Path(tmp)))
    copy_s = statistics.median(r["copy_s"] for r in runs)
    print(
        json.dumps(
            {
                "benchmark": "node_deploy",
                "release": source,
                "files": len(files),
                "bytes": size,
                "runs": len(runs),
                "deploy_s": round(statistics.median(r["deploy_s"] for r in runs), 3),
                "copy_bytes_per_s": round(size / copy_s),
                "reset_to_output_s": round(statistics.median(r["after_copy_s"] for r in runs), 3),
            }
        )
    )


if __name__ == "__main__":
    main()
