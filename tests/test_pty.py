"""PluggablePort: the stable link the simulators' serial devices hide their ptys behind."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from simulator.pty import PluggablePort, VirtualSerialPort


class Echo:
    """A device that echoes what it hears; remembers every port it served and how it ended."""

    def __init__(self) -> None:
        self.served: list[VirtualSerialPort] = []
        self.ended: list[str] = []
        self.powered_up = 0

    async def serve(self, port: VirtualSerialPort) -> None:
        self.served.append(port)
        try:
            while data := await port.read():
                await port.write(data)
        except asyncio.CancelledError:
            self.ended.append("cancelled")
            raise
        self.ended.append("returned")

    def power_up(self) -> None:
        self.powered_up += 1


async def echoed(path: str, data: bytes) -> bytes:
    def exchange() -> bytes:
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        try:
            os.write(fd, data)
            return os.read(fd, len(data))
        finally:
            os.close(fd)

    return await asyncio.wait_for(asyncio.to_thread(exchange), 5)


def test_the_link_follows_the_pty_across_unplug_and_replug() -> None:
    async def scenario() -> None:
        device = Echo()
        port = PluggablePort(
            device.serve, task_name="sim:echo", link_name="ttyECHO", on_plug=device.power_up
        )
        assert port.link is None
        await port.start()
        link = port.link
        assert link is not None
        assert link.name == "ttyECHO"
        assert os.readlink(link) == port.pty_path
        assert await echoed(str(link), b"hello") == b"hello"
        assert [t.get_name() for t in asyncio.all_tasks()].count("sim:echo") == 1

        port.unplug()
        assert not port.plugged
        assert port.pty_path == ""
        assert not await asyncio.to_thread(os.path.lexists, link)
        await asyncio.sleep(0)
        assert device.ended == ["cancelled"]

        port.plug()
        port.plug()  # already plugged: nothing happens
        assert port.plugged
        assert os.readlink(link) == port.pty_path
        assert await echoed(str(link), b"again") == b"again"
        assert device.powered_up == 2
        assert len(device.served) == 2

        await port.aclose()
        assert device.ended == ["cancelled", "cancelled"]
        assert port.link is None
        assert not await asyncio.to_thread(os.path.lexists, link.parent)  # temporary dir gone
        assert "sim:echo" not in [t.get_name() for t in asyncio.all_tasks()]

    asyncio.run(scenario())


def test_a_given_link_is_kept_in_its_folder_and_a_non_symlink_is_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        device = Echo()
        link = tmp_path / "ttyUSB-sim"
        port = PluggablePort(device.serve, task_name="sim:echo", link=link)
        await port.start()
        assert port.link == link
        assert os.readlink(link) == port.pty_path
        await port.aclose()
        assert not await asyncio.to_thread(os.path.lexists, link)
        assert await asyncio.to_thread(tmp_path.is_dir)

    asyncio.run(scenario())
    taken = tmp_path / "ttyS0"
    taken.write_text("not ours")
    with pytest.raises(FileExistsError, match="ttyS0 exists and is not a symlink"):
        PluggablePort(Echo().serve, task_name="sim:echo", link=taken)
    assert taken.read_text() == "not ours"
