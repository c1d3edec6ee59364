"""The small firmware the node tests release and deploy: reads node.json, says so, then ticks.

Written out at test time into a temporary directory rather than kept as files in the
repository, so mypy and ruff never see a second ``main``/``sgnode`` beside firmware/node.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

__all__ = ["FILES", "firmware_dir"]

FILES: dict[str, str] = {
    "main.py": "import sgnode.app\n\nsgnode.app.run()\n",
    "sgnode/__init__.py": "",
    "sgnode/app.py": """\
import json
import time

FIXTURE_VERSION = "fixture-1"


def run():
    with open("node.json") as f:
        config = json.load(f)
    print("fixture node", config["node_id"], "booted, version", FIXTURE_VERSION)
    tick = 0
    while True:
        print("tick", tick)
        tick += 1
        time.sleep(0.2)
""",
}


@functools.cache
def firmware_dir() -> Path:
    """A directory holding :data:`FILES` (one per test process, removed when it exits)."""
    directory = Path(tempfile.mkdtemp(prefix="streetgate-node-fixture-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    for path, text in FILES.items():
        target = directory / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return directory
