"""Serial stream parser benchmark: prints one JSON object with frames parsed per second.

    python -m tests.benchmarks.serial [--quick]

A large byte stream of real frames (seeded values) with faults mixed in — garbage bytes before
every 50th frame, a truncated frame glued to every 100th, a corrupted checksum on every 200th —
is fed to the protocol's stream parser in 4 KiB chunks, as reads from a port deliver it.
Figures: ``serial_frames_per_s`` (the minimum over the binary protocols, target >= 100,000),
``sds011_frames_per_s``, ``pms5003_frames_per_s``, and ``line_lines_per_s`` for the regex line
protocol (for information). Each run checks that every good frame came out and every fault was
counted, so a fast but wrong parser cannot post a figure.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable, Sequence

from drivers.serial import pms5003 as pms
from drivers.serial import sds011 as sds
from drivers.serial.line import LineFormat, LineStream
from gateway.config.devices import LineField

CHUNK = 4096


def stream_of(
    frames: int, encode: Callable[[random.Random], bytes], header: int, rng: random.Random
) -> tuple[bytes, int]:
    """``frames`` good frames with faults mixed in; returns the bytes and the bad frames in it."""
    noise = bytes(b for b in range(256) if b != header)
    parts: list[bytes] = []
    bad = 0
    for i in range(frames):
        frame = encode(rng)
        if i % 50 == 0:
            parts.append(bytes(rng.choice(noise) for _ in range(rng.randint(3, 10))))
        if i % 100 == 1:
            # Glued to this frame. At least two bytes short: a PMS5003 frame one checksum byte
            # short that happens to end like the next frame starts is a valid frame.
            parts.append(frame[: rng.randint(2, len(frame) - 2)])
            bad += 1
        if i % 200 == 2:
            parts.append(frame[:-3] + bytes([frame[-3] ^ 0x10]) + frame[-2:])
            bad += 1
        parts.append(frame)
    return b"".join(parts), bad


def sds_frame(rng: random.Random) -> bytes:
    return sds.encode_measurement(rng.randrange(1000) / 10, rng.randrange(1500) / 10, 0x1234)


def pms_frame(rng: random.Random) -> bytes:
    values = [rng.randrange(200) for _ in range(6)] + [rng.randrange(10_000) for _ in range(6)]
    return pms.encode_measurement(pms.Measurement(*values))


def run(feed: Callable[[bytes], Sequence[object]], data: bytes) -> tuple[int, float]:
    """Frames out and seconds taken to feed ``data`` in chunks."""
    chunks = [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]
    started = time.perf_counter()
    count = 0
    for chunk in chunks:
        count += len(feed(chunk))
    return count, time.perf_counter() - started


def binary(name: str, frames: int, rounds: int) -> float:
    rng = random.Random(name)
    if name == "sds011":
        data, bad = stream_of(frames, sds_frame, sds.HEAD, rng)
    else:
        data, bad = stream_of(frames, pms_frame, 0x42, rng)
    best = 0.0
    for _ in range(rounds):
        stream: sds.Sds011Stream | pms.Pms5003Stream = (
            sds.Sds011Stream() if name == "sds011" else pms.Pms5003Stream()
        )
        count, seconds = run(stream.feed, data)
        if count != frames or stream.stats.bad_frames != bad:
            raise SystemExit(
                f"{name}: {count} of {frames} frames, {stream.stats.bad_frames} of {bad} bad"
            )
        best = max(best, count / seconds)
    return best


def line(lines: int, rounds: int) -> float:
    rng = random.Random("line")
    fmt = LineFormat.build(
        r"^T=(?P<temperature>-?\d+\.\d\d) RH=(?P<humidity>\d+\.\d) P=(?P<pressure>\d+)$",
        {
            "temperature": LineField(unit="Cel"),
            "humidity": LineField(unit="%RH"),
            "pressure": LineField(unit="hPa", scale=0.01),
        },
    )
    text = "".join(
        f"T={rng.uniform(-10, 35):.2f} RH={rng.uniform(20, 99):.1f} "
        f"P={rng.randrange(95000, 105000)}\r\n"
        for _ in range(lines)
    )
    best = 0.0
    for _ in range(rounds):
        stream = LineStream(fmt)
        count, seconds = run(stream.feed, text.encode())
        if count != lines:
            raise SystemExit(f"line: {count} of {lines} lines")
        best = max(best, count / seconds)
    return best


def main(quick: bool) -> dict[str, float]:
    frames, rounds = (20_000, 2) if quick else (200_000, 5)
    result: dict[str, float] = {
        "sds011_frames_per_s": round(binary("sds011", frames, rounds)),
        "pms5003_frames_per_s": round(binary("pms5003", frames, rounds)),
        "line_lines_per_s": round(line(frames // 2, rounds)),
    }
    result["serial_frames_per_s"] = min(
        result["sds011_frames_per_s"], result["pms5003_frames_per_s"]
    )
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller stream, fewer rounds")
    args = parser.parse_args()
    print(json.dumps(main(args.quick)))
