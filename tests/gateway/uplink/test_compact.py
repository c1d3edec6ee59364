"""Every payload format, encoder → decoder: the platform gets back exactly what was stored."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from pathlib import Path

import aiomqtt
import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.profile import load_profile
from gateway.core.errors import PayloadError, UnknownMetadata
from gateway.core.floats import shortest_float32
from gateway.core.model import Quality, Reading, StoredRow
from gateway.runtime.app import run_gateway
from gateway.store.outbox import Outbox
from gateway.uplink.compact import CompactEncoder, Compression, ContentType, Metadata
from gateway.uplink.decode import DecodedReading, decode_metadata, decode_readings
from gateway.uplink.envelope import build_message
from gateway.uplink.senml import build_pack
from simulator.modbus_server import DeviceSpec, ModbusSimulator
from tests.support.mosquitto import Mosquitto
from tests.support.uplink_rig import polling_config, run_gateway_until

EPOCH = "5d0c3a9e1f27b640"
T0 = 1_795_765_512_120

# Device and metric names as configs allow them, plus any letter (no ':' for SenML's n).
names = st.text(
    st.characters(categories=("L", "N"), include_characters="_.-é中"), min_size=1, max_size=12
)
values = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**60), 2**60).map(float),
    st.sampled_from([0.0, -0.0, 230.1, 2.5, 1e300, -1e-300, 5e-324]),
)


@st.composite
def batches(draw: st.DrawFn, gaps: bool = True) -> list[StoredRow]:
    """A message's worth of rows, in seq order: polls of a few devices (huge seqs too)."""
    first = draw(st.one_of(st.integers(1, 1000), st.integers(2**31, 2**62)))
    devices = draw(st.lists(names, min_size=1, max_size=3, unique=True))
    metrics = draw(st.lists(st.tuples(names, st.sampled_from(["V", "A", "", "kWh"])), min_size=1))
    rows: list[StoredRow] = []
    seq = first
    ts = T0 + draw(st.integers(-(10**9), 10**9))
    for _ in range(draw(st.integers(1, 4))):
        ts += draw(st.integers(0, 100_000))
        quality = draw(st.sampled_from(list(Quality))).value
        for device in devices:
            for metric, unit in draw(st.permutations(metrics)):
                rows.append((seq, device, metric, draw(values), unit, ts, quality))
                seq += 1 + (draw(st.integers(0, 5)) if gaps and draw(st.booleans()) else 0)
    return rows


def expected(row: StoredRow, gateway: str, historical: bool) -> DecodedReading:
    seq, device, metric, value, unit, ts_ms, quality = row
    finite = value if value is not None and math.isfinite(value) else None
    return DecodedReading(
        gateway, EPOCH, seq, device, metric, finite, unit, ts_ms, str(quality), historical
    )


def same(got: Sequence[DecodedReading], want: Sequence[DecodedReading]) -> None:
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert a == b
        if a.value is not None and b.value is not None:  # -0.0 == 0.0: check the sign too
            assert math.copysign(1, a.value) == math.copysign(1, b.value)


@settings(max_examples=150, deadline=None)
@given(rows=batches(), historical=st.booleans(), compression=st.sampled_from(list(Compression)))
def test_compact_round_trip(
    rows: list[StoredRow], historical: bool, compression: Compression
) -> None:
    encoder = CompactEncoder("cab-12", EPOCH, compression)
    meta, payload = encoder.encode(historical=historical, readings=rows)
    assert meta is not None  # the first message always brings its metadata
    received = decode_metadata(meta.to_json())
    assert received == meta
    same(decode_readings(payload, [received]), [expected(r, "cab-12", historical) for r in rows])
    # The next message of the same devices needs no new metadata.
    again, payload = encoder.encode(historical=historical, readings=rows)
    assert again is None
    same(decode_readings(payload, [received]), [expected(r, "cab-12", historical) for r in rows])


@settings(max_examples=100, deadline=None)
@given(rows=batches(gaps=False), historical=st.booleans())
def test_json_and_senml_round_trip(rows: list[StoredRow], historical: bool) -> None:
    for build in (build_message, build_pack):
        payload = build("cab-12", epoch=EPOCH, historical=historical, readings=rows)
        same(decode_readings(payload), [expected(r, "cab-12", historical) for r in rows])


def poll(first_seq: int, devices: int, ts: int, metrics: int = 10) -> list[StoredRow]:
    return [
        (first_seq + d * metrics + m, f"plc-{d:02d}", f"r{m}", float(m * d % 97), "", ts, "good")
        for d in range(devices)
        for m in range(metrics)
    ]


def test_a_new_device_grows_the_table_and_the_new_metadata_covers_the_old() -> None:
    encoder = CompactEncoder("cab-12", EPOCH)
    first, old_message = encoder.encode(historical=False, readings=poll(1, 2, T0))
    grown, new_message = encoder.encode(historical=False, readings=poll(21, 3, T0 + 1000))
    assert first is not None
    assert grown is not None
    assert grown.entries[: len(first.entries)] == first.entries
    assert grown.covers == (first.id,)
    # A consumer holding only the latest (retained) metadata still decodes the older message.
    latest = decode_metadata(grown.to_json())
    assert [r.seq for r in decode_readings(old_message, [latest])] == list(range(1, 21))
    assert [r.seq for r in decode_readings(new_message, [latest])] == list(range(21, 51))
    with pytest.raises(UnknownMetadata, match=first.id):
        decode_readings(old_message, [Metadata("cab-12", EPOCH, 0, ())])


def test_compressed_messages_need_their_own_metadata() -> None:
    encoder = CompactEncoder("cab-12", EPOCH, Compression.DEFLATE)
    first, old_message = encoder.encode(historical=False, readings=poll(1, 2, T0))
    grown, _ = encoder.encode(historical=False, readings=poll(21, 3, T0 + 1000))
    assert first is not None
    assert grown is not None
    assert grown.covers == ()  # another dictionary: the new one cannot inflate the old messages
    with pytest.raises(UnknownMetadata):
        decode_readings(old_message, [grown])
    assert len(decode_readings(old_message, [grown, first])) == 20


def test_metadata_that_does_not_match_its_id_is_refused() -> None:
    meta, _ = CompactEncoder("cab-12", EPOCH).encode(historical=False, readings=poll(1, 1, T0))
    assert meta is not None
    altered = meta.to_json().replace(b'"r1"', b'"r9"')
    with pytest.raises(PayloadError, match="not the hash of its contents"):
        decode_metadata(altered)


def test_a_fleet_poll_is_a_few_bytes_a_reading() -> None:
    """20 devices x 10 registers in one message (sizes, not timings: deterministic)."""
    rows = poll(1, 20, T0)
    sizes = {}
    for compression in Compression:
        encoder = CompactEncoder("cab-12", EPOCH, compression)
        encoder.encode(historical=False, readings=rows)
        _, payload = encoder.encode(historical=False, readings=poll(201, 20, T0 + 1000))
        sizes[compression] = len(payload) / len(rows)
    json_size = len(build_message("cab-12", epoch=EPOCH, historical=False, readings=rows))
    assert sizes[Compression.NONE] < 3 < json_size / len(rows)
    assert sizes[Compression.DEFLATE] < sizes[Compression.NONE]
    assert sizes[Compression.ZSTD] < sizes[Compression.NONE]


@pytest.mark.parametrize(
    ("compression", "protocol"),
    [("none", "3.1.1"), ("deflate", "5"), ("zstd", "5")],
)
def test_the_gateway_publishes_compact_that_decodes_without_gaps(
    tmp_path: Path, mosquitto: Mosquitto, compression: str, protocol: str
) -> None:
    """Backlog (historical) then live readings from a real poll, through mosquitto, decoded by
    a subscriber that knows only what the broker gives it: the retained metadata first."""
    profile = load_profile("xy-md02")

    async def scenario() -> None:
        async with ModbusSimulator([DeviceSpec("climate-1", profile)]) as sim:
            config = polling_config(
                tmp_path,
                "compact-gw",
                mosquitto,
                sim["climate-1"],
                payload_format="compact",
                compression=compression,
                protocol=protocol,
            )
            backlog = [
                Reading("old-meter", "voltage", 229.5 + i, "V", 1_795_000_000_000 + i)
                for i in range(3)
            ] + [Reading("old-meter", "voltage", math.nan, "V", 1_795_000_000_009)]
            async with Outbox(config.outbox) as outbox:
                await outbox.put_many(backlog)
            metas: list[Metadata] = []
            readings: list[DecodedReading] = []
            content_types: set[str | None] = set()
            got = asyncio.Event()

            async def listen(ready: asyncio.Event) -> None:
                v5 = aiomqtt.ProtocolVersion.V5
                async with aiomqtt.Client(mosquitto.host, mosquitto.port, protocol=v5) as client:
                    await client.subscribe("streetgate/compact-gw/#", qos=1)
                    ready.set()
                    async for message in client.messages:
                        assert isinstance(message.payload, bytes)
                        topic = message.topic.value
                        if topic.endswith("/meta"):
                            metas.append(decode_metadata(message.payload))
                        elif topic.endswith("/readings"):
                            readings.extend(decode_readings(message.payload, metas))
                            properties = message.properties
                            content_types.add(getattr(properties, "ContentType", None))
                            got.set()

            await run_gateway_until(config, listen, got, lambda: len(readings) >= len(backlog) + 20)

        # Every reading exactly once, no gap, in order; backlog historical, then live.
        assert [r.seq for r in readings] == list(range(1, len(readings) + 1))
        assert {(r.gateway, r.epoch) for r in readings} == {("compact-gw", metas[0].epoch)}
        old = readings[: len(backlog)]
        assert [r.value for r in old] == [229.5, 230.5, 231.5, None]
        assert [r.ts_ms for r in old] == [r.ts_ms for r in backlog]
        assert all(r.historical and r.unit == "V" for r in old)
        # Historical first (the backlog, and polls committed before the connection), then live.
        flags = [r.historical for r in readings]
        assert flags == sorted(flags, reverse=True)
        assert not flags[-1]
        live = readings[len(backlog) :]
        for reading in live:
            assert reading.device == "climate-1"
            assert reading.value is not None
            assert sim["climate-1"].was_served(reading.metric, reading.value)
        if protocol == "5":
            assert content_types == {ContentType.compact(Compression[compression.upper()])}
        else:
            assert content_types == {None}

    asyncio.run(scenario())


def test_the_body_is_plain_cbor_and_a_float32_reading_takes_five_bytes() -> None:
    values = [shortest_float32(x) for x in (229.49664, 9.875468, 0.964917, 50.023083)]
    assert values == [229.49664, 9.875468, 0.964917, 50.023083]  # as the Modbus driver reports
    rows: list[StoredRow] = [
        (i + 1, "m", f"x{i}", v, "V", T0, "good") for i, v in enumerate(values)
    ]
    encoder = CompactEncoder("gw", EPOCH)
    meta, payload = encoder.encode(historical=False, readings=rows)
    assert meta is not None
    # header byte, metadata id; [1, 0, 1, [0, 0, 4 x (0xfa + 4 bytes)]]
    assert len(payload) == 1 + 4 + (1 + 3) + (1 + 2 + 4 * 5)
    body = cbor2.loads(payload[5:])  # any CBOR decoder reads it
    assert body[:3] == [1, 0, 1]
    assert body[3][:2] == [0, 0]
    # A generic decoder sees the float32s; the format means their shortest decimals.
    assert [shortest_float32(v) for v in body[3][2:]] == values
    assert [r.value for r in decode_readings(payload, [meta])] == values


def test_a_broker_that_lost_its_retained_metadata_gets_it_again_on_reconnect(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """The broker restarts with nothing retained; a platform subscribing after that still
    decodes everything: the gateway publishes its metadata first on every connection."""
    profile = load_profile("xy-md02")

    async def collect(count: int) -> tuple[list[Metadata], list[DecodedReading]]:
        metas: list[Metadata] = []
        readings: list[DecodedReading] = []
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
            await client.subscribe("streetgate/late-gw/#", qos=1)
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                if message.topic.value.endswith("/meta"):
                    metas.append(decode_metadata(message.payload))
                elif message.topic.value.endswith("/readings"):
                    readings.extend(decode_readings(message.payload, metas))
                    if len(readings) >= count:
                        return metas, readings
        raise AssertionError("unreachable")

    def restart_forgetting() -> None:
        mosquitto.stop()
        for stale in tmp_path.glob("mosquitto-*.db"):
            stale.unlink()  # nothing retained survives
        mosquitto.start()

    async def scenario() -> None:
        async with ModbusSimulator([DeviceSpec("climate-1", profile)]) as sim:
            config = polling_config(
                tmp_path,
                "late-gw",
                mosquitto,
                sim["climate-1"],
                interval=0.1,
                payload_format="compact",
                compression="deflate",
                reconnect_max="0.5s",
            )
            stop = asyncio.Event()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(run_gateway(config, stop), name="test:gateway")
                async with asyncio.timeout(20):
                    before, _ = await collect(4)
                await asyncio.to_thread(restart_forgetting)
                async with asyncio.timeout(20):
                    after, readings = await collect(10)
                stop.set()
        assert after[0] == before[-1]  # the same table, published again on the new connection
        seqs = [r.seq for r in readings]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))

    asyncio.run(scenario())
