"""``streetgate sim`` as a child process: for tests that check its output, and for benchmarks."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

#: The ``streetgate sim`` command line, without its options.
SIM = (sys.executable, "-c", "from gateway.cli.main import main; main()", "sim")


@dataclass
class SimRun:
    """What a ``streetgate sim`` process printed: ``lines`` while running, the rest once stopped."""

    lines: list[list[str]] = field(default_factory=list)  # its first stdout lines, split
    returncode: int | None = None
    stderr: str = ""


@asynccontextmanager
async def sim_process(
    *args: str, lines: int, stop: signal.Signals = signal.SIGTERM
) -> AsyncIterator[SimRun]:
    """Run ``streetgate sim ARGS`` until the block ends, then stop it with ``stop``.

    Inside the block ``run.lines`` holds its first ``lines`` lines of output (one per device,
    printed once it serves); after it, ``run.returncode`` and ``run.stderr``.
    """
    proc = await asyncio.create_subprocess_exec(
        *SIM, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    run = SimRun()
    try:
        for _ in range(lines):
            run.lines.append((await asyncio.wait_for(proc.stdout.readline(), 20)).decode().split())
        yield run
    finally:
        proc.send_signal(stop)
        _, stderr = await asyncio.wait_for(proc.communicate(), 20)
        run.returncode, run.stderr = proc.returncode, stderr.decode()


class SimProcess:
    """``streetgate sim ARGS --write-config CONFIG`` in its own process, so that its CPU is not
    counted as the gateway's; back from the constructor once it says it is serving."""

    def __init__(self, config: Path, *args: str) -> None:
        self.config = config
        self._proc = subprocess.Popen(
            [*SIM, *args, "--write-config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stderr is not None
        for line in self._proc.stderr:
            if line.startswith("serving"):
                return
        raise RuntimeError(f"streetgate sim {' '.join(args)} did not start")

    def stop(self) -> None:
        self._proc.terminate()
        self._proc.wait(10)
