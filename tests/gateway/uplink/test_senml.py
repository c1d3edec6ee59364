"""mqtt.payload_format = "senml": packs decoded by an independent resolver match what was read."""

from __future__ import annotations

import asyncio
import json
import math
import re
from pathlib import Path
from typing import Any

import aiomqtt

from drivers.profile import load_profile
from gateway.core.model import Quality, Reading, StoredReading
from gateway.store.outbox import Outbox
from gateway.uplink.envelope import build_message
from gateway.uplink.senml import build_pack
from simulator.modbus_server import DeviceSpec, ModbusSimulator
from tests.support.mosquitto import Mosquitto
from tests.support.uplink_rig import polling_config, run_gateway_until

#: RFC 8428 §4.5.1: the characters a resolved name may have.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9:./_-]*$")
#: Labels RFC 8428 defines; anything else is a custom label.
KNOWN = {"bn", "bt", "bu", "bv", "bs", "bver", "n", "u", "v", "vs", "vb", "vd", "s", "t", "ut"}


def resolve(pack: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """RFC 8428 §4.6 resolution: base values folded into every record, times made absolute."""
    base_name, base_time, base_unit = "", 0.0, None
    resolved = []
    for record in pack:
        must_understand = [k for k in record if k.endswith("_")]
        assert not must_understand, f"unknown must-understand labels {must_understand}"
        base_name = record.get("bn", base_name)
        base_time = record.get("bt", base_time)
        base_unit = record.get("bu", base_unit)
        name = base_name + record.get("n", "")
        assert NAME.match(name), name
        out = {k: v for k, v in record.items() if k not in KNOWN}  # custom labels
        out["n"] = name
        out["t"] = base_time + record.get("t", 0.0)
        unit = record.get("u", base_unit)
        if unit is not None:
            out["u"] = unit
        if "v" in record:
            out["v"] = record["v"]
        resolved.append(out)
    return resolved


def test_a_pack_says_what_the_streetgate_message_says() -> None:
    readings = [
        Reading("meter-1", "l1_voltage", 230.1, "V", 1_795_766_712_120),
        Reading("meter-1", "import_active_energy", 1234.5, "kWh", 1_795_766_712_120),
        Reading("climate-1", "power_factor", 0.97, "", 1_795_766_713_005, Quality.CLOCK_UNSYNCED),
        Reading("climate-1", "temperature", math.nan, "Cel", 1_795_766_713_250),
    ]
    rows = [StoredReading(seq, *r) for seq, r in enumerate(readings, start=41)]
    for historical in (True, False):
        epoch = "0123456789abcdef"
        pack = json.loads(build_pack("cab-12", epoch=epoch, historical=historical, readings=rows))
        ours = json.loads(
            build_message("cab-12", epoch=epoch, historical=historical, readings=rows)
        )
        records = resolve(pack)
        assert len(records) == len(ours["readings"])
        for record, reading in zip(records, ours["readings"], strict=True):
            assert record["n"] == f"cab-12:{reading['device']}:{reading['metric']}"
            assert record.get("u", "") == reading["unit"]
            assert record.get("v") == reading["value"]
            assert round(record["t"] * 1000) == _unix_ms(reading["ts"])
            assert record["seq"] == reading["seq"]
            assert record.get("historical", False) is historical
            assert record.get("quality", "good") == reading["quality"]
    # The epoch (with seq, the dedup key) once per pack, on the first record, like bn.
    assert pack[0]["epoch"] == epoch
    assert all("epoch" not in r for r in pack[1:])
    # Base time on the first record only; later records carry offsets.
    assert "bt" in pack[0]
    assert all("bt" not in r and "bn" not in r for r in pack[1:])
    assert "t" not in pack[1]  # same time as the base
    assert pack[2]["t"] == 0.885


def _unix_ms(iso: str) -> int:
    from datetime import datetime  # noqa: PLC0415

    return round(datetime.fromisoformat(iso).timestamp() * 1000)


def test_the_gateway_publishes_senml_with_seq_and_historical(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    profile = load_profile("xy-md02")

    async def scenario() -> None:
        async with ModbusSimulator([DeviceSpec("climate-1", profile)]) as sim:
            config = polling_config(
                tmp_path, "senml-gw", mosquitto, sim["climate-1"], payload_format="senml"
            )
            # Readings buffered before the gateway (re)starts: the backlog, historical.
            backlog = [
                Reading("old-meter", "voltage", 229.0 + i, "V", 1_795_000_000_000 + i)
                for i in range(3)
            ]
            async with Outbox(config.outbox) as outbox:
                await outbox.put_many(backlog)
            packs: list[list[dict[str, Any]]] = []
            got = asyncio.Event()

            async def listen(ready: asyncio.Event) -> None:
                async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
                    await client.subscribe("streetgate/senml-gw/readings", qos=1)
                    ready.set()
                    async for message in client.messages:
                        assert isinstance(message.payload, bytes)
                        packs.append(json.loads(message.payload))
                        got.set()

            await run_gateway_until(
                config, listen, got, lambda: sum(len(p) for p in packs) >= len(backlog) + 4
            )

            records = [r for pack in packs for r in resolve(pack)]
            assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
            old = records[: len(backlog)]
            assert [r["n"] for r in old] == ["senml-gw:old-meter:voltage"] * 3
            assert [r["v"] for r in old] == [229.0, 230.0, 231.0]
            assert [round(r["t"] * 1000) for r in old] == [r.ts_ms for r in backlog]
            assert all(r["historical"] is True for r in old)
            assert all(r["u"] == "V" for r in old)
            live = records[len(backlog) :]
            assert live
            for record in live:
                assert "historical" not in record
                device, metric = record["n"].split(":")[1:]
                assert device == "climate-1"
                assert sim["climate-1"].was_served(metric, record["v"])
                assert record["u"] == {"temperature": "Cel", "humidity": "%RH"}[metric]

    asyncio.run(scenario())
