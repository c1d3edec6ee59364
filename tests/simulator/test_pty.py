"""PluggableDevice: a simulated device whose pty hides behind a link that survives replugging."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from simulator.pty import PluggableDevice, VirtualSerialPort


class Echo(PluggableDevice):
    """A device that echoes what it hears; remembers every port it served and how it ended."""

    def __init__(self, link: Path | None = None) -> None:
        super().__init__(task_name="sim:echo", link=link, link_name="ttyECHO")
        self.served: list[VirtualSerialPort] = []
        self.ended: list[str] = []
        self.powered_up = 0

    def _on_plug(self) -> None:
        self.powered_up += 1

    async def _serve(self, port: VirtualSerialPort) -> None:
        self.served.append(port)
        try:
            while data := await port.read():
                await port.write(data)
        except asyncio.CancelledError:
            self.ended.append("cancelled")
            raise
        self.ended.append("returned")


async def echoed(path: str, data: bytes) -> bytes:
    def exchange() -> bytes:
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        try:
            os.write(fd, data)
            return os.read(fd, len(data))
        finally:
            os.close(fd)

    return await asyncio.wait_for(asyncio.to_thread(exchange), 5)


def tasks_named(name: str) -> int:
    return [t.get_name() for t in asyncio.all_tasks()].count(name)


def test_the_link_follows_the_pty_across_unplug_and_replug() -> None:
    async def scenario() -> None:
        device = Echo()
        with pytest.raises(RuntimeError, match="sim:echo: not running"):
            _ = device.path
        async with device:
            link = Path(device.path)
            assert link.name == "ttyECHO"
            assert os.readlink(link) == device.pty_path
            assert await echoed(device.path, b"hello") == b"hello"
            assert tasks_named("sim:echo") == 1

            device.unplug()
            assert not device.plugged
            assert device.pty_path == ""
            assert not await asyncio.to_thread(os.path.lexists, link)
            await asyncio.sleep(0)
            assert device.ended == ["cancelled"]

            device.replug()
            device.replug()  # already plugged: nothing happens
            assert device.plugged
            assert os.readlink(link) == device.pty_path
            assert await echoed(device.path, b"again") == b"again"
            assert device.powered_up == 2
            assert len(device.served) == 2
        assert device.ended == ["cancelled", "cancelled"]
        assert not await asyncio.to_thread(os.path.lexists, link.parent)  # temporary dir gone
        assert tasks_named("sim:echo") == 0
        with pytest.raises(RuntimeError, match="not running"):
            _ = device.path

    asyncio.run(scenario())


def test_a_given_link_is_kept_in_its_folder_and_a_non_symlink_is_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        link = tmp_path / "ttyUSB-sim"
        async with Echo(link) as device:
            assert device.path == str(link)
            assert os.readlink(link) == device.pty_path
        assert not await asyncio.to_thread(os.path.lexists, link)
        assert await asyncio.to_thread(tmp_path.is_dir)

    asyncio.run(scenario())
    taken = tmp_path / "ttyS0"
    taken.write_text("not ours")
    with pytest.raises(FileExistsError, match="ttyS0 exists and is not a symlink"):
        Echo(taken)
    assert taken.read_text() == "not ours"
