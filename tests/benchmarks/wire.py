"""Wire benchmark: bytes per reading the gateway publishes in each payload format, measured.

    python -m tests.benchmarks.wire [--quick]

For each fleet and each format the real gateway (in this process) polls ``streetgate sim``
devices (their own process) and publishes to a local mosquitto; a subscriber (MQTT 5) counts
the bytes of every message it receives and decodes it with gateway/uplink/decode.py (which
also proves no reading is missing). Figures, per fleet (``<fleet>`` in the key):

- ``wire_bytes_per_reading_<format>_<fleet>``: readings payload + topic, as issue 16 counts
  them (ThingsBoard IoT Gateway: 16.4 on the holding-register fleet);
- ``mqtt_bytes_per_reading_<format>_<fleet>``: the whole MQTT 3.1.1 PUBLISH packet (fixed
  header, topic, packet id, payload) and its PUBACK, what a SIM card is billed for before
  TCP/IP and TLS (docs/mqtt.md estimates those);
- ``meta_bytes_<format>_<fleet>``: the compact metadata messages, reported apart (published
  once, then only when the device set changes or on reconnect: amortised to nothing);
- ``readings_per_message_<format>_<fleet>``;
- ``encode_us_per_reading_<format>_<fleet>``: CPU of the encoder alone over the same batches;
- ``other_bytes_per_s_<fleet>``: status and health messages (the same in every format).

Fleets: ``holding20x10`` (20 devices x 10 holding registers every second, the issue's
comparison), ``sdm630x20`` (20 SDM630 meters, 21 float32 metrics each, every second) and
``sdm630x1`` (one SDM630: one poll per message, the shape of a cabinet polling every 10 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt

from gateway.config.model import (
    GatewayConfig,
    PayloadCompression,
    PayloadFormat,
    load_config,
)
from gateway.core.model import StoredRow
from gateway.runtime.app import run_gateway
from gateway.uplink.compact import CompactEncoder, Compression, Metadata
from gateway.uplink.decode import DecodedReading, decode_metadata, decode_readings
from gateway.uplink.envelope import build_message
from gateway.uplink.senml import build_pack
from simulator.broker import LocalMosquitto
from tests.support.simcli import SimProcess

HOLDING_PROFILE = "\n".join(
    [
        'name = "plc-10"',
        'description = "10 holding registers (uint16), as in the ThingsBoard comparison"',
        "[defaults]",
        'function = "holding"',
        'type = "uint16"',
        *(f'[[metrics]]\nname = "r{i}"\naddress = {i}' for i in range(10)),
    ]
)

#: name -> (profile, devices, poll interval)
FLEETS = {
    "holding20x10": ("plc-10", 20, "1s"),
    "sdm630x20": ("sdm630", 20, "1s"),
    "sdm630x1": ("sdm630", 1, "1s"),
}
#: name -> (payload_format, compression)
FORMATS = {
    "streetgate": ("streetgate", "none"),
    "senml": ("senml", "none"),
    "compact": ("compact", "none"),
    "compact_deflate": ("compact", "deflate"),
    "compact_zstd": ("compact", "zstd"),
}


def _varint_size(n: int) -> int:
    return 1 if n < 128 else 2 if n < 16_384 else 3 if n < 2_097_152 else 4


def publish_packet_bytes(topic: str, payload: int) -> int:
    """An MQTT 3.1.1 QoS 1 PUBLISH (fixed header, topic, packet id, payload) and its PUBACK."""
    remaining = 2 + len(topic.encode()) + 2 + payload
    return 1 + _varint_size(remaining) + remaining + 4


@dataclass
class Tally:
    """What the subscriber saw of one run."""

    readings: list[DecodedReading] = field(default_factory=list)
    batches: list[list[DecodedReading]] = field(default_factory=list)
    wire: int = 0  # payload + topic of readings messages
    mqtt: int = 0  # whole PUBLISH + PUBACK of readings messages
    meta: int = 0
    other: int = 0
    metas: list[Metadata] = field(default_factory=list)
    counting: bool = False

    def add(self, topic: str, payload: bytes, retained: bool) -> None:
        if topic.endswith("/meta"):
            if not retained:  # the retained copy is an earlier run's
                self.metas.append(decode_metadata(payload))
                self.meta += len(payload) + len(topic)
            return
        if not topic.endswith("/readings"):
            self.other += len(payload) + len(topic) if self.counting else 0
            return
        batch = decode_readings(payload, self.metas)  # also proves the metadata came first
        if self.readings:
            assert batch[0].seq == self.readings[-1].seq + 1, "a gap or a duplicate"
        self.readings.extend(batch)
        if self.counting:
            self.batches.append(batch)
            self.wire += len(payload) + len(topic)
            self.mqtt += publish_packet_bytes(topic, len(payload))


def rows(batch: list[DecodedReading]) -> list[StoredRow]:
    return [(r.seq, r.device, r.metric, r.value, r.unit, r.ts_ms, r.quality) for r in batch]


def encode_cpu_us(batches: list[list[StoredRow]], payload_format: str, compression: str) -> float:
    """CPU microseconds per reading of the encoder alone, over the batches of the run."""
    total = sum(len(b) for b in batches)
    rounds = 0
    start = time.process_time()
    while rounds == 0 or time.process_time() - start < 0.5:
        if payload_format == "compact":
            encoder = CompactEncoder("bench", "0123456789abcdef", Compression[compression.upper()])
            for batch in batches:
                encoder.encode(historical=False, readings=batch)
        else:
            build = build_pack if payload_format == "senml" else build_message
            for batch in batches:
                build("bench", epoch="0123456789abcdef", historical=False, readings=batch)
        rounds += 1
    return (time.process_time() - start) / (rounds * total) * 1e6


async def measure(
    config: GatewayConfig, broker: LocalMosquitto, warmup: float, seconds: float
) -> Tally:
    tally = Tally()
    stop = asyncio.Event()

    async def listen(ready: asyncio.Event) -> None:
        v5 = aiomqtt.ProtocolVersion.V5
        async with aiomqtt.Client("127.0.0.1", broker.port, protocol=v5) as client:
            await client.subscribe("streetgate/bench/#", qos=1)
            ready.set()
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                tally.add(message.topic.value, message.payload, message.retain)

    async with asyncio.TaskGroup() as tg:
        ready = asyncio.Event()
        listener = tg.create_task(listen(ready), name="bench:listen")
        await ready.wait()
        tg.create_task(run_gateway(config, stop), name="bench:gateway")
        await asyncio.sleep(warmup)  # connected to every device, polling on its slots
        tally.counting = True
        await asyncio.sleep(seconds)
        tally.counting = False
        stop.set()
        await asyncio.sleep(0.5)
        listener.cancel()
    return tally


async def bench_fleet(
    workdir: Path, broker: LocalMosquitto, fleet: str, warmup: float, seconds: float
) -> dict[str, Any]:
    profile, count, interval = FLEETS[fleet]
    folder = workdir / fleet
    folder.mkdir()
    if profile == "plc-10":
        (folder / "plc-10.toml").write_text(HOLDING_PROFILE)
        profile = str(folder / "plc-10.toml")
    sim = SimProcess(
        folder / "gw.toml",
        *("--profile", profile, "--count", str(count), "--base-port", "0"),
        *("--interval", interval, "--broker-port", str(broker.port), "--gateway-id", "bench"),
    )
    results: dict[str, Any] = {}
    try:
        base = load_config(sim.config)
        for name, (payload_format, compression) in FORMATS.items():
            mqtt = base.mqtt.model_copy(
                update={
                    "payload_format": PayloadFormat(payload_format),
                    "compression": PayloadCompression(compression),
                }
            )
            outbox = base.outbox.model_copy(update={"path": folder / f"{name}.db"})
            config = base.model_copy(update={"mqtt": mqtt, "outbox": outbox})
            tally = await measure(config, broker, warmup, seconds)
            counted = sum(len(b) for b in tally.batches)
            key = f"{name}_{fleet}"
            results[f"wire_bytes_per_reading_{key}"] = round(tally.wire / counted, 2)
            results[f"mqtt_bytes_per_reading_{key}"] = round(tally.mqtt / counted, 2)
            results[f"readings_per_message_{key}"] = round(counted / len(tally.batches), 1)
            if payload_format == "compact":
                results[f"meta_bytes_{key}"] = tally.meta
            batches = [rows(b) for b in tally.batches]
            results[f"encode_us_per_reading_{key}"] = round(
                encode_cpu_us(batches, payload_format, compression), 3
            )
            results[f"other_bytes_per_s_{fleet}"] = round(tally.other / seconds)
            results[f"readings_per_s_{fleet}"] = round(counted / seconds)
    finally:
        sim.stop()
    return results


async def main(quick: bool) -> dict[str, Any]:
    results: dict[str, Any] = defaultdict(dict)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        broker = LocalMosquitto(workdir)
        broker.start()
        try:
            for fleet in FLEETS:
                results.update(await bench_fleet(workdir, broker, fleet, 4, 6 if quick else 20))
        finally:
            broker.stop()
    return dict(results)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs, for a smoke test")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.quick))))
