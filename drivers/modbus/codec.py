"""Pure Modbus register encoding, decoding and request planning (no I/O).

Shared by the driver (decode), the simulator (encode) and the tests (both directions).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache

from drivers.profile import DataType, Function, MetricSpec, Order
from gateway.core.floats import shortest_float32
from gateway.core.model import Sample

_STRUCT = {
    DataType.INT16: ">h",
    DataType.UINT16: ">H",
    DataType.INT32: ">i",
    DataType.UINT32: ">I",
    DataType.FLOAT32: ">f",
    DataType.INT64: ">q",
    DataType.UINT64: ">Q",
    DataType.FLOAT64: ">d",
}


def _to_wire_bytes(canonical: bytes, word_order: Order, byte_order: Order) -> list[int]:
    """Split big-endian bytes into registers, then apply the device's word and byte order."""
    words = [canonical[i : i + 2] for i in range(0, len(canonical), 2)]
    if word_order is Order.LITTLE:
        words.reverse()
    if byte_order is Order.LITTLE:
        words = [w[::-1] for w in words]
    return [int.from_bytes(w, "big") for w in words]


def _from_registers(registers: Sequence[int], word_order: Order, byte_order: Order) -> bytes:
    words = [r.to_bytes(2, "big") for r in registers]
    if byte_order is Order.LITTLE:
        words = [w[::-1] for w in words]
    if word_order is Order.LITTLE:
        words.reverse()
    return b"".join(words)


def decode_value(
    registers: Sequence[int],
    data_type: DataType,
    word_order: Order = Order.BIG,
    byte_order: Order = Order.BIG,
) -> int | float:
    """Decode the raw value of one metric from exactly ``data_type.registers`` registers."""
    if len(registers) != data_type.registers:
        raise ValueError(
            f"{data_type.value} needs {data_type.registers} registers, got {len(registers)}"
        )
    for register in registers:
        if not 0 <= register <= 0xFFFF:
            raise ValueError(f"register value {register} is outside 0..65535")
    value: int | float = struct.unpack(
        _STRUCT[data_type], _from_registers(registers, word_order, byte_order)
    )[0]
    return value


def encode_value(
    value: int | float,
    data_type: DataType,
    word_order: Order = Order.BIG,
    byte_order: Order = Order.BIG,
) -> list[int]:
    """Encode a raw value into registers (the inverse of :func:`decode_value`)."""
    # struct raises OverflowError for floats beyond float32 and int() for infinities; both are
    # values that do not fit, so callers get the ValueError this function promises.
    try:
        if data_type in (DataType.FLOAT32, DataType.FLOAT64):
            packed = struct.pack(_STRUCT[data_type], float(value))
        else:
            packed = struct.pack(_STRUCT[data_type], int(value))
    except (struct.error, OverflowError) as exc:
        raise ValueError(f"{value!r} does not fit in {data_type.value}") from exc
    return _to_wire_bytes(packed, word_order, byte_order)


def scaled(metric: MetricSpec, raw: int | float) -> float:
    """Engineering value of a metric: raw × scale + offset, without binary noise.

    A float32 register value is taken as the shortest decimal that is the same float32
    (0x4366199A is 230.1, not 230.10000610351562), and an integer scaled by 0.1 keeps one
    decimal (546 × 0.1 is 54.6, not 54.6000000000000005). No information is lost: the result
    encodes to the same registers.
    """
    if metric.type is DataType.FLOAT32:
        raw = shortest_float32(float(raw))
    if metric.scale == 1.0 and metric.offset == 0.0:
        return float(raw)
    value = float(raw) * metric.scale + metric.offset
    if not math.isfinite(value):
        return value
    if metric.type in (DataType.FLOAT32, DataType.FLOAT64):
        return float(f"{value:.15g}")
    return round(value, _decimals(metric.scale, metric.offset))


@lru_cache(maxsize=1024)
def _decimals(*numbers: float) -> int:
    """Decimal places needed to write every one of ``numbers`` exactly as typed."""
    places = 0
    for number in numbers:
        exponent = Decimal(repr(number)).as_tuple().exponent
        if isinstance(exponent, int) and exponent < 0:
            places = max(places, -exponent)
    return places


def raw_for(metric: MetricSpec, value: float) -> int | float:
    """Raw register value that represents an engineering value (inverse of :func:`scaled`)."""
    raw = (value - metric.offset) / metric.scale
    if metric.type in (DataType.FLOAT32, DataType.FLOAT64):
        return raw
    return round(raw)


@dataclass(frozen=True, slots=True)
class ReadBlock:
    """One read request: a run of registers covering one or more metrics."""

    function: Function
    address: int
    count: int
    metrics: tuple[MetricSpec, ...]


def plan_reads(
    metrics: Sequence[MetricSpec], max_count: int = 125, max_gap: int = 0
) -> list[ReadBlock]:
    """Coalesce metrics into as few read requests as allowed.

    Metrics of the same function whose registers are adjacent, overlapping, or separated by at
    most ``max_gap`` unused registers share a request, as long as the request stays within
    ``max_count`` registers (125 is the protocol's limit for reading registers).
    """
    if not 1 <= max_count <= 125:
        raise ValueError(f"max_count must be 1..125, got {max_count}")
    blocks: list[ReadBlock] = []
    for function in (Function.HOLDING, Function.INPUT):
        ordered = sorted(
            (m for m in metrics if m.function is function), key=lambda m: (m.address, m.count)
        )
        start = end = -1  # current block covers [start, end)
        members: list[MetricSpec] = []
        for metric in ordered:
            if metric.count > max_count:
                raise ValueError(f"metric {metric.name} needs more than {max_count} registers")
            m_end = metric.address + metric.count
            if members and metric.address - end <= max_gap and max(end, m_end) - start <= max_count:
                members.append(metric)
                end = max(end, m_end)
                continue
            if members:
                blocks.append(ReadBlock(function, start, end - start, tuple(members)))
            start, end, members = metric.address, m_end, [metric]
        if members:
            blocks.append(ReadBlock(function, start, end - start, tuple(members)))
    return blocks


def decode_block(block: ReadBlock, registers: Sequence[int]) -> list[Sample]:
    """Decode every metric of a block from the registers the device returned; a metric whose
    raw value is its ``missing`` sentinel gives no sample."""
    if len(registers) < block.count:
        raise ValueError(
            f"expected {block.count} registers from address {block.address}, got {len(registers)}"
        )
    try:
        # One pack for the whole block; also rejects register values outside 0..65535.
        wire = struct.pack(f">{block.count}H", *registers[: block.count])
    except struct.error as exc:
        raise ValueError(f"register values must be 0..65535: {exc}") from exc
    samples = []
    for metric in block.metrics:
        offset = metric.address - block.address
        raw: int | float
        if metric.word_order is Order.BIG and metric.byte_order is Order.BIG:
            raw = struct.unpack_from(_STRUCT[metric.type], wire, offset * 2)[0]
        else:
            raw = decode_value(
                registers[offset : offset + metric.count],
                metric.type,
                metric.word_order,
                metric.byte_order,
            )
        if raw == metric.missing:
            continue  # the device says it has no valid value for this metric now
        samples.append(Sample(metric.name, scaled(metric, raw), metric.unit))
    return samples
