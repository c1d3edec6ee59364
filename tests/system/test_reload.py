"""``systemctl reload`` for real: a gateway process, SIGHUP, a real mosquitto and Modbus devices,
and systemd's end of the notify socket.

The technician edits the file and sends SIGHUP (what ``ExecReload=`` does): a device added and a
poll interval changed take effect without losing a reading or giving one seq to two readings;
an invalid edit leaves the gateway running on the old config with the error in the log and in
``streetgate status``; systemd hears RELOADING=1 (with MONOTONIC_USEC), then READY=1.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

from drivers.profile import load_profile
from gateway.config.change import marker_path
from gateway.runtime.state_file import read_state, state_path
from simulator.modbus_server import DeviceSpec, ModbusSimulator, SimulatedDevice
from tests.support.gateway_rig import device_lines, running_gateway
from tests.support.mosquitto import Mosquitto
from tests.support.notify_listener import NotifyListener
from tests.support.waiting import until
from tests.system.test_end_to_end import outbox_state, platform


def config_text(broker: Mosquitto, devices: list[tuple[SimulatedDevice, str]]) -> str:
    lines = [
        "# the pole by the bakery: edited on site",
        'gateway_id = "e2e-gw"',
        "[mqtt]",
        'host = "127.0.0.1"',
        f"port = {broker.port}",
        'reconnect_min = "200ms"',
        'reconnect_max = "1s"',
        "[outbox]",
        'path = "outbox.db"',
        'commit_interval = "100ms"',
    ]
    for device, interval in devices:
        lines += ["", *device_lines(device, interval)]
    return "\n".join(lines) + "\n"


async def status(config: Path) -> tuple[int, str]:
    """``streetgate status`` as a technician runs it: exit status and everything it printed."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "gateway", "status", "-c", str(config)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


def last_reload(state_file: Path) -> dict[str, Any] | None:
    """The last reload in the gateway's state file (what `streetgate status` shows)."""
    state = read_state(state_file) or {}
    last: dict[str, Any] | None = (state.get("reload") or {}).get("last")
    return last if last and last["result"] != "applied" else None


def received(readings: list[dict[str, Any]], device: str) -> int:
    return sum(1 for r in readings if r["device"] == device)


def test_sighup_applies_a_valid_edit_and_refuses_an_invalid_one(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async def scenario() -> None:
        specs = [
            DeviceSpec("meter-1", load_profile("sdm120"), unit_id=1),
            DeviceSpec("climate-1", load_profile("xy-md02"), unit_id=2),
        ]
        async with (
            ModbusSimulator(specs) as sim,
            NotifyListener(tmp_path) as listener,
            platform(mosquitto) as sub,
        ):
            meter, climate = sim["meter-1"], sim["climate-1"]
            config = tmp_path / "gw.toml"
            config.write_text(config_text(mosquitto, [(meter, "1s")]))
            async with running_gateway(config, listener.env()) as proc:
                assert "1 device(s)" in (await listener.until("READY", 20))["STATUS"]
                await sub.wait_for(10, 20)
                assert received(sub.delivery.readings, "climate-1") == 0

                # 1. A device added and the meter polled faster: SIGHUP applies both.
                edited = config_text(mosquitto, [(meter, "200ms"), (climate, "200ms")])
                config.write_text(edited)
                proc.send_signal(signal.SIGHUP)
                reloading = await listener.until("RELOADING", 20)
                assert int(reloading["MONOTONIC_USEC"]) > 0
                ready = await listener.until("READY", 20)
                assert "2 device(s)" in ready["STATUS"]
                seen = len(sub.delivery.readings)
                await until(lambda: received(sub.delivery.readings, "climate-1") >= 10, 20)
                # meter-1 at 200 ms: 5 polls a second (2 metrics each) instead of one
                meter_before = received(sub.delivery.readings[:seen], "meter-1")
                await asyncio.sleep(2.0)
                meter_after = received(sub.delivery.readings, "meter-1") - meter_before
                assert meter_after >= 2 * 2 * 4, meter_after
                await until(lambda: not marker_path(config).exists(), 20)  # confirmed
                assert config.read_text() == edited  # the file is the technician's

                # 2. An invalid edit: still running on the config it has, the error visible.
                config.write_text(edited.replace('interval = "200ms"', 'interval = "soon"', 1))
                proc.send_signal(signal.SIGHUP)
                await listener.until("RELOADING", 20)
                ready = await listener.until("READY", 20)
                assert ready["STATUS"].startswith("reload invalid:"), ready
                count = len(sub.delivery.readings)
                await until(lambda: len(sub.delivery.readings) >= count + 20, 20)
                for device in ("meter-1", "climate-1"):  # both still polled
                    assert received(sub.delivery.readings[count:], device) > 0
                text = (tmp_path / "gateway.log").read_text()
                assert f"reload: {config}: devices[0].interval:" in text, text
                assert "still running on the previous config" in text

                # `streetgate status` refuses the invalid file, naming the same key ...
                code, out = await status(config)
                assert code == 3
                assert "devices[0].interval" in out
                # ... and the state file it shows (with a valid file) records the reload.
                state = state_path(tmp_path / "outbox.db")
                async with asyncio.timeout(20):
                    # a file another process writes: nothing to await
                    while (last := await asyncio.to_thread(last_reload, state)) is None:  # noqa: ASYNC110
                        await asyncio.sleep(0.5)
                assert last["result"] == "invalid"
                assert [i["key"] for i in last["issues"]] == ["devices[0].interval"]

                # 3. Signals in a burst: one reload, and at most one more after it (a signal
                # that came while the first ran). The file is valid again (unchanged): each
                # reload restarts in-process, re-reading the files the config names.
                config.write_text(edited)
                restarts = (tmp_path / "gateway.log").read_text().count("restarting with it")
                for _ in range(5):
                    proc.send_signal(signal.SIGHUP)
                await listener.until("READY", 20)
                await asyncio.sleep(3.0)  # time for a second one, and a third if there were
                text = (tmp_path / "gateway.log").read_text()
                assert 1 <= text.count("restarting with it") - restarts <= 2
                await until(lambda: not marker_path(config).exists(), 20)
                assert proc.returncode is None
                assert not any("STOPPING" in m for m in listener.messages)

                proc.send_signal(signal.SIGTERM)
                assert await asyncio.wait_for(proc.wait(), 15) == 0

            # No reading lost; no seq given to two readings.
            highest, stored = outbox_state(tmp_path / "outbox.db")
            delivered = sub.delivery.distinct()
            assert delivered | set(stored) == set(range(1, highest + 1))
            by_seq: dict[int, tuple[Any, ...]] = {}
            for reading, key in zip(sub.delivery.readings, sub.delivery.keys, strict=True):
                what = (reading["device"], reading["metric"], reading["ts"])
                assert by_seq.setdefault(key[2], what) == what, (key, what)

    asyncio.run(asyncio.wait_for(scenario(), 120))
