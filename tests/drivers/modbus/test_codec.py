"""Register encoding, decoding and read planning: hand-written vectors and hypothesis properties."""

from __future__ import annotations

import itertools
import math
import re
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.modbus.codec import (
    ReadBlock,
    decode_block,
    decode_value,
    encode_value,
    plan_reads,
    raw_for,
    scaled,
)
from drivers.profile import DataType, Function, MetricSpec, Order, builtin_profiles, load_profile
from gateway.core.floats import shortest_float32
from gateway.core.model import Sample

BIG, LITTLE = Order.BIG, Order.LITTLE
# (word order, byte order) by the usual names: A is the most significant byte.
ABCD, CDAB, BADC, DCBA = (BIG, BIG), (LITTLE, BIG), (BIG, LITTLE), (LITTLE, LITTLE)

RANGES = {
    DataType.INT16: (-(2**15), 2**15 - 1),
    DataType.UINT16: (0, 2**16 - 1),
    DataType.INT32: (-(2**31), 2**31 - 1),
    DataType.UINT32: (0, 2**32 - 1),
    DataType.INT64: (-(2**63), 2**63 - 1),
    DataType.UINT64: (0, 2**64 - 1),
}
FLOATS = (DataType.FLOAT32, DataType.FLOAT64)
orders = st.sampled_from(Order)


# Each vector: type, value, and the registers a device sends for it in each (word, byte) order.
# Worked out by hand from the value's big-endian bytes; 230.1 as float32 is the Eastron SDM120
# voltage example ([0x4366, 0x199A]), 0xFF33 = -205 is the XY-MD02 negative temperature example.
VECTORS: list[tuple[DataType, int | float, dict[tuple[Order, Order], list[int]]]] = [
    (DataType.INT16, -205, {ABCD: [0xFF33], CDAB: [0xFF33], BADC: [0x33FF], DCBA: [0x33FF]}),
    (DataType.INT16, -2, {ABCD: [0xFFFE], CDAB: [0xFFFE], BADC: [0xFEFF], DCBA: [0xFEFF]}),
    (DataType.INT16, 305, {ABCD: [0x0131], CDAB: [0x0131], BADC: [0x3101], DCBA: [0x3101]}),
    (DataType.UINT16, 0x1234, {ABCD: [0x1234], CDAB: [0x1234], BADC: [0x3412], DCBA: [0x3412]}),
    (DataType.UINT16, 65535, {ABCD: [0xFFFF], CDAB: [0xFFFF], BADC: [0xFFFF], DCBA: [0xFFFF]}),
    (
        DataType.INT32,
        -2,
        {
            ABCD: [0xFFFF, 0xFFFE],
            CDAB: [0xFFFE, 0xFFFF],
            BADC: [0xFFFF, 0xFEFF],
            DCBA: [0xFEFF, 0xFFFF],
        },
    ),
    (
        DataType.INT32,
        -123456789,  # 0xF8A432EB
        {
            ABCD: [0xF8A4, 0x32EB],
            CDAB: [0x32EB, 0xF8A4],
            BADC: [0xA4F8, 0xEB32],
            DCBA: [0xEB32, 0xA4F8],
        },
    ),
    (
        DataType.UINT32,
        0x12345678,
        {
            ABCD: [0x1234, 0x5678],
            CDAB: [0x5678, 0x1234],
            BADC: [0x3412, 0x7856],
            DCBA: [0x7856, 0x3412],
        },
    ),
    (
        DataType.UINT32,
        4_000_000_000,  # 0xEE6B2800: above the int32 range
        {
            ABCD: [0xEE6B, 0x2800],
            CDAB: [0x2800, 0xEE6B],
            BADC: [0x6BEE, 0x0028],
            DCBA: [0x0028, 0x6BEE],
        },
    ),
    (
        DataType.FLOAT32,
        230.10000610351562,  # the float32 nearest to 230.1, as pymodbus decodes the SDM120 example
        {
            ABCD: [0x4366, 0x199A],
            CDAB: [0x199A, 0x4366],
            BADC: [0x6643, 0x9A19],
            DCBA: [0x9A19, 0x6643],
        },
    ),
    (
        DataType.FLOAT32,
        -20.5,  # 0xC1A40000
        {
            ABCD: [0xC1A4, 0x0000],
            CDAB: [0x0000, 0xC1A4],
            BADC: [0xA4C1, 0x0000],
            DCBA: [0x0000, 0xA4C1],
        },
    ),
    (
        DataType.INT64,
        -0x0102030405060708,  # 0xFEFDFCFBFAF9F8F8
        {
            ABCD: [0xFEFD, 0xFCFB, 0xFAF9, 0xF8F8],
            CDAB: [0xF8F8, 0xFAF9, 0xFCFB, 0xFEFD],
            BADC: [0xFDFE, 0xFBFC, 0xF9FA, 0xF8F8],
            DCBA: [0xF8F8, 0xF9FA, 0xFBFC, 0xFDFE],
        },
    ),
    (
        DataType.UINT64,
        0x0102030405060708,
        {
            ABCD: [0x0102, 0x0304, 0x0506, 0x0708],
            CDAB: [0x0708, 0x0506, 0x0304, 0x0102],
            BADC: [0x0201, 0x0403, 0x0605, 0x0807],
            DCBA: [0x0807, 0x0605, 0x0403, 0x0201],
        },
    ),
    (
        DataType.UINT64,
        2**64 - 1,
        {o: [0xFFFF] * 4 for o in (ABCD, CDAB, BADC, DCBA)},
    ),
    (
        DataType.FLOAT64,
        230.1,  # 0x406CC33333333333 (230.1.hex() == '0x1.cc33333333333p+7')
        {
            ABCD: [0x406C, 0xC333, 0x3333, 0x3333],
            CDAB: [0x3333, 0x3333, 0xC333, 0x406C],
            BADC: [0x6C40, 0x33C3, 0x3333, 0x3333],
            DCBA: [0x3333, 0x3333, 0x33C3, 0x6C40],
        },
    ),
    (
        DataType.FLOAT64,
        -1.0,  # 0xBFF0000000000000
        {
            ABCD: [0xBFF0, 0x0000, 0x0000, 0x0000],
            CDAB: [0x0000, 0x0000, 0x0000, 0xBFF0],
            BADC: [0xF0BF, 0x0000, 0x0000, 0x0000],
            DCBA: [0x0000, 0x0000, 0x0000, 0xF0BF],
        },
    ),
]

CASES = [
    pytest.param(
        data_type,
        value,
        order,
        registers,
        id=f"{data_type.value}-{value}-word_{order[0].value}-byte_{order[1].value}",
    )
    for data_type, value, by_order in VECTORS
    for order, registers in by_order.items()
]


def test_vectors_cover_every_type_and_order() -> None:
    covered = {(data_type, order) for data_type, _, by_order in VECTORS for order in by_order}
    assert covered == {(t, o) for t in DataType for o in (ABCD, CDAB, BADC, DCBA)}


@pytest.mark.parametrize(("data_type", "value", "order", "registers"), CASES)
def test_decode_known_registers(
    data_type: DataType, value: float, order: tuple[Order, Order], registers: list[int]
) -> None:
    decoded = decode_value(registers, data_type, *order)
    assert decoded == value
    assert isinstance(decoded, float if data_type in FLOATS else int)


@pytest.mark.parametrize(("data_type", "value", "order", "registers"), CASES)
def test_encode_known_registers(
    data_type: DataType, value: float, order: tuple[Order, Order], registers: list[int]
) -> None:
    assert encode_value(value, data_type, *order) == registers


def test_float32_encoding_rounds_to_nearest() -> None:
    # A profile or simulator says 230.1; the wire carries the nearest float32.
    assert encode_value(230.1, DataType.FLOAT32) == [0x4366, 0x199A]


def test_default_order_is_big_endian_words_and_bytes() -> None:
    assert decode_value([0x4366, 0x199A], DataType.FLOAT32) == pytest.approx(230.1, abs=1e-4)
    assert encode_value(0x12345678, DataType.UINT32) == [0x1234, 0x5678]


def test_float_specials() -> None:
    assert encode_value(math.inf, DataType.FLOAT32) == [0x7F80, 0x0000]
    assert encode_value(-math.inf, DataType.FLOAT64) == [0xFFF0, 0, 0, 0]
    assert encode_value(-0.0, DataType.FLOAT32) == [0x8000, 0x0000]
    negative_zero = decode_value([0x8000, 0x0000], DataType.FLOAT32)
    assert negative_zero == 0.0
    assert math.copysign(1.0, negative_zero) == -1.0
    assert decode_value([0xFF80, 0x0000], DataType.FLOAT32) == -math.inf


@pytest.mark.parametrize(
    ("registers", "data_type"),
    [
        ([0x7FC0, 0x0000], DataType.FLOAT32),  # quiet NaN
        ([0x7F80, 0x0001], DataType.FLOAT32),  # signalling NaN
        ([0xFFC0, 0x0000], DataType.FLOAT32),  # negative NaN
        ([0x7FF8, 0, 0, 0], DataType.FLOAT64),
        ([0x7FF0, 0, 0, 1], DataType.FLOAT64),
    ],
)
def test_nan_patterns_decode_to_nan(registers: list[int], data_type: DataType) -> None:
    assert math.isnan(decode_value(registers, data_type))


def test_nan_encodes_to_a_nan_pattern() -> None:
    high, low = encode_value(math.nan, DataType.FLOAT32)
    assert high & 0x7F80 == 0x7F80  # exponent all ones
    assert (high & 0x007F) | low != 0  # mantissa not zero: NaN, not infinity
    assert math.isnan(decode_value(encode_value(math.nan, DataType.FLOAT64), DataType.FLOAT64))


@pytest.mark.parametrize(
    ("value", "data_type"),
    [
        (2**15, DataType.INT16),
        (-(2**15) - 1, DataType.INT16),
        (-1, DataType.UINT16),
        (2**16, DataType.UINT16),
        (2**31, DataType.INT32),
        (-(2**31) - 1, DataType.INT32),
        (-1, DataType.UINT32),
        (2**32, DataType.UINT32),
        (2**63, DataType.INT64),
        (-(2**63) - 1, DataType.INT64),
        (-1, DataType.UINT64),
        (2**64, DataType.UINT64),
        (1e39, DataType.FLOAT32),  # beyond float32's largest finite value (~3.4e38)
        (-1e39, DataType.FLOAT32),
        (math.inf, DataType.INT32),
        (math.nan, DataType.UINT16),
    ],
)
def test_encode_out_of_range_raises_value_error(value: float, data_type: DataType) -> None:
    expected = "NaN" if math.isnan(value) else f"does not fit in {data_type.value}"
    with pytest.raises(ValueError, match=expected):
        encode_value(value, data_type)


def test_float64_holds_what_float32_cannot() -> None:
    assert decode_value(encode_value(1e39, DataType.FLOAT64), DataType.FLOAT64) == 1e39


@pytest.mark.parametrize(
    ("registers", "data_type", "message"),
    [
        ([0x4366], DataType.FLOAT32, "float32 needs 2 registers, got 1"),
        ([0, 0, 0], DataType.INT64, "int64 needs 4 registers, got 3"),
        ([0, 0], DataType.UINT16, "uint16 needs 1 registers, got 2"),
        ([0x10000], DataType.UINT16, "65536 is outside 0..65535"),
        ([0, -1], DataType.INT32, "-1 is outside 0..65535"),
    ],
)
def test_decode_rejects_bad_registers(
    registers: list[int], data_type: DataType, message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        decode_value(registers, data_type)


# --- round trips ---------------------------------------------------------------------------


@st.composite
def int_values(draw: st.DrawFn) -> tuple[DataType, int]:
    data_type = draw(st.sampled_from(list(RANGES)))
    low, high = RANGES[data_type]
    return data_type, draw(st.integers(low, high))


@given(int_values(), orders, orders)
def test_int_round_trip(case: tuple[DataType, int], word: Order, byte: Order) -> None:
    data_type, value = case
    registers = encode_value(value, data_type, word, byte)
    assert len(registers) == data_type.registers
    assert all(0 <= r <= 0xFFFF for r in registers)
    assert decode_value(registers, data_type, word, byte) == value


@given(st.floats(width=32, allow_nan=False), orders, orders)
def test_float32_round_trip_is_exact(value: float, word: Order, byte: Order) -> None:
    decoded = decode_value(
        encode_value(value, DataType.FLOAT32, word, byte), DataType.FLOAT32, word, byte
    )
    assert struct.pack(">f", decoded) == struct.pack(">f", value)  # bit-exact, -0.0 included


@given(st.floats(allow_nan=False), orders, orders)
def test_float64_round_trip_is_exact(value: float, word: Order, byte: Order) -> None:
    decoded = decode_value(
        encode_value(value, DataType.FLOAT64, word, byte), DataType.FLOAT64, word, byte
    )
    assert struct.pack(">d", decoded) == struct.pack(">d", value)


@st.composite
def register_words(draw: st.DrawFn) -> tuple[DataType, list[int]]:
    data_type = draw(st.sampled_from(DataType))
    n = data_type.registers
    return data_type, draw(st.lists(st.integers(0, 0xFFFF), min_size=n, max_size=n))


@given(register_words(), orders, orders)
def test_registers_round_trip(case: tuple[DataType, list[int]], word: Order, byte: Order) -> None:
    data_type, registers = case
    value = decode_value(registers, data_type, word, byte)
    again = encode_value(value, data_type, word, byte)
    if isinstance(value, float) and math.isnan(value):
        # NaN payloads need not survive (a signalling NaN may come back quiet), NaN-ness must.
        assert math.isnan(decode_value(again, data_type, word, byte))
    else:
        assert again == registers


# --- scale and offset ----------------------------------------------------------------------

# The XY-MD02 register map, written out here so this test does not depend on the profile file.
TEMPERATURE = MetricSpec(
    name="temperature",
    address=1,
    function=Function.INPUT,
    type=DataType.INT16,
    scale=0.1,
    unit="Cel",
)
HUMIDITY = MetricSpec(
    name="humidity",
    address=2,
    function=Function.INPUT,
    type=DataType.UINT16,
    scale=0.1,
    unit="%RH",
)


def test_decode_block_xy_md02_worked_example() -> None:
    # Response 01 04 04 01 31 02 22 2A CE: T = 0x0131 -> 30.5 degC, RH = 0x0222 -> 54.6 %RH.
    (block,) = plan_reads([TEMPERATURE, HUMIDITY])
    assert (block.function, block.address, block.count) == (Function.INPUT, 1, 2)
    temperature, humidity = decode_block(block, [0x0131, 0x0222])
    assert temperature.metric == "temperature"
    assert temperature.unit == "Cel"
    assert temperature.value == pytest.approx(30.5, abs=1e-9)
    assert (humidity.metric, humidity.unit) == ("humidity", "%RH")
    assert humidity.value == pytest.approx(54.6, abs=1e-9)
    assert isinstance(humidity, Sample)


def test_decode_block_negative_temperature() -> None:
    (block,) = plan_reads([TEMPERATURE, HUMIDITY])
    samples = decode_block(block, [0xFF33, 0x0000])
    assert [s.value for s in samples] == pytest.approx([-20.5, 0.0], abs=1e-9)


def test_scale_and_offset() -> None:
    # A 0.01-scaled clone reporting Kelvin-like offsets: 6500 * 0.01 - 40 = 25.
    metric = MetricSpec(name="t", address=10, type=DataType.UINT16, scale=0.01, offset=-40.0)
    assert scaled(metric, 6500) == pytest.approx(25.0)
    assert raw_for(metric, 25.0) == 6500
    assert isinstance(raw_for(metric, 25.0), int)
    (block,) = plan_reads([metric])
    assert decode_block(block, [6500])[0].value == pytest.approx(25.0)


def test_raw_for_inverts_scaled() -> None:
    assert raw_for(TEMPERATURE, -20.5) == -205
    assert raw_for(HUMIDITY, 54.6) == 546
    voltage = MetricSpec(name="v", address=0, type=DataType.FLOAT32)
    assert raw_for(voltage, 230.1) == 230.1
    assert encode_value(raw_for(TEMPERATURE, -20.5), DataType.INT16) == [0xFF33]


def test_decode_block_reads_each_metric_at_its_offset() -> None:
    metrics = [
        MetricSpec(name="a", address=100, type=DataType.UINT16),
        MetricSpec(name="b", address=103, type=DataType.INT32, word_order=Order.LITTLE),
        MetricSpec(name="c", address=105, type=DataType.FLOAT32),
    ]
    (block,) = plan_reads(metrics, max_gap=2)
    assert (block.address, block.count) == (100, 7)
    registers = [7, 0xDEAD, 0xBEEF, 0xFFFE, 0xFFFF, 0x4366, 0x199A]
    values = {s.metric: s.value for s in decode_block(block, registers)}
    assert values == {"a": 7.0, "b": -2.0, "c": pytest.approx(230.1, abs=1e-4)}


def test_a_missing_value_gives_no_sample() -> None:
    """A sentinel the profile names `missing` (the device has no valid reading) is left out;
    the same register holding anything else, or other metrics, still decode."""
    pm = MetricSpec(name="pm", address=0, type=DataType.UINT16, scale=0.1, missing=0xFFFF)
    t = MetricSpec(name="t", address=1, type=DataType.INT16, scale=0.01, missing=-32768)
    (block,) = plan_reads([pm, t])
    assert [s.metric for s in decode_block(block, [0xFFFF, 0x8000])] == []
    assert {s.metric: s.value for s in decode_block(block, [0xFFFF, 2150])} == {"t": 21.5}
    assert {s.metric: s.value for s in decode_block(block, [0xFFFE, 0x8001])} == {
        "pm": 6553.4,
        "t": -327.67,
    }


@pytest.mark.parametrize(
    ("data_type", "missing", "expected"),
    [
        (DataType.UINT16, 65536, "65536 is not a uint16 \\(expected 0..65535\\)"),
        (DataType.INT16, 0xFFFF, "65535 is not a int16 \\(expected -32768..32767\\)"),
        (DataType.FLOAT32, 0, "only integer types have a sentinel"),
    ],
)
def test_missing_must_be_a_value_of_the_type(
    data_type: DataType, missing: int, expected: str
) -> None:
    with pytest.raises(ValueError, match=expected):
        MetricSpec(name="x", address=0, type=data_type, missing=missing)


def test_decode_block_rejects_short_response() -> None:
    (block,) = plan_reads([TEMPERATURE, HUMIDITY])
    with pytest.raises(ValueError, match="expected 2 registers from address 1, got 1"):
        decode_block(block, [0x0131])


# --- read planning -------------------------------------------------------------------------


def spec(
    name: str,
    address: int,
    data_type: DataType = DataType.UINT16,
    function: Function = Function.HOLDING,
) -> MetricSpec:
    return MetricSpec(name=name, address=address, type=data_type, function=function)


def shape(blocks: list[ReadBlock]) -> list[tuple[str, int, int, list[str]]]:
    return [(b.function.value, b.address, b.count, [m.name for m in b.metrics]) for b in blocks]


def test_plan_nothing() -> None:
    assert plan_reads([]) == []


def test_plan_merges_adjacent_metrics() -> None:
    metrics = [
        spec("a", 0),
        spec("b", 1),
        spec("c", 2, DataType.FLOAT32),
        spec("d", 4, DataType.INT64),
    ]
    assert shape(plan_reads(metrics)) == [("holding", 0, 8, ["a", "b", "c", "d"])]


def test_plan_sorts_by_address() -> None:
    metrics = [spec("c", 2), spec("a", 0), spec("b", 1)]
    assert shape(plan_reads(metrics)) == [("holding", 0, 3, ["a", "b", "c"])]


@pytest.mark.parametrize(
    ("max_gap", "expected"),
    [
        (0, [("holding", 0, 1, ["a"]), ("holding", 3, 1, ["b"])]),
        (1, [("holding", 0, 1, ["a"]), ("holding", 3, 1, ["b"])]),
        (2, [("holding", 0, 4, ["a", "b"])]),  # registers 1 and 2 are read and ignored
        (124, [("holding", 0, 4, ["a", "b"])]),
    ],
)
def test_plan_gap(max_gap: int, expected: list[tuple[str, int, int, list[str]]]) -> None:
    assert shape(plan_reads([spec("a", 0), spec("b", 3)], max_gap=max_gap)) == expected


def test_plan_exactly_125_registers_fit_in_one_request() -> None:
    metrics = [spec("first", 0), spec("last", 124)]
    assert shape(plan_reads(metrics, max_gap=124)) == [("holding", 0, 125, ["first", "last"])]


def test_plan_126_registers_need_two_requests() -> None:
    metrics = [spec("first", 0), spec("last", 125)]
    assert shape(plan_reads(metrics, max_gap=124)) == [
        ("holding", 0, 1, ["first"]),
        ("holding", 125, 1, ["last"]),
    ]


def test_plan_multi_register_metric_at_the_limit() -> None:
    fits = [spec("a", 0, DataType.FLOAT32), spec("b", 123, DataType.FLOAT32)]
    assert shape(plan_reads(fits, max_gap=124)) == [("holding", 0, 125, ["a", "b"])]
    too_far = [spec("a", 0, DataType.FLOAT32), spec("b", 124, DataType.FLOAT32)]
    assert [b.count for b in plan_reads(too_far, max_gap=124)] == [2, 2]


def test_plan_contiguous_run_splits_at_125() -> None:
    metrics = [spec(f"r{i}", 1000 + i) for i in range(126)]
    blocks = plan_reads(metrics)
    assert [(b.address, b.count, len(b.metrics)) for b in blocks] == [
        (1000, 125, 125),
        (1125, 1, 1),
    ]
    assert [(b.address, b.count) for b in plan_reads(metrics[:125])] == [(1000, 125)]


def test_plan_respects_smaller_max_count() -> None:
    metrics = [spec(f"f{i}", 2 * i, DataType.FLOAT32) for i in range(30)]  # 60 registers
    blocks = plan_reads(metrics, max_count=60)
    assert [(b.address, b.count) for b in blocks] == [(0, 60)]
    blocks = plan_reads(metrics, max_count=59)  # a float32 never straddles two requests
    assert [(b.address, b.count) for b in blocks] == [(0, 58), (58, 2)]


def test_plan_never_merges_holding_and_input() -> None:
    metrics = [
        spec("h0", 0, function=Function.HOLDING),
        spec("i1", 1, function=Function.INPUT),
        spec("h1", 1, function=Function.HOLDING),
        spec("i0", 0, function=Function.INPUT),
    ]
    assert shape(plan_reads(metrics)) == [
        ("holding", 0, 2, ["h0", "h1"]),
        ("input", 0, 2, ["i0", "i1"]),
    ]


def test_plan_overlapping_metrics_share_a_request() -> None:
    # A float32 and a uint16 view of its low word; an int64 and a uint16 inside it.
    metrics = [
        spec("f", 10, DataType.FLOAT32),
        spec("low", 11),
        spec("wide", 20, DataType.INT64),
        spec("inner", 22),
    ]
    assert shape(plan_reads(metrics)) == [
        ("holding", 10, 2, ["f", "low"]),
        ("holding", 20, 4, ["wide", "inner"]),
    ]


def test_plan_overlap_beyond_max_count_splits() -> None:
    metrics = [spec("f", 0, DataType.FLOAT32), spec("wide", 1, DataType.INT64)]
    assert shape(plan_reads(metrics, max_count=4)) == [
        ("holding", 0, 2, ["f"]),
        ("holding", 1, 4, ["wide"]),
    ]
    assert shape(plan_reads(metrics, max_count=5)) == [("holding", 0, 5, ["f", "wide"])]


@pytest.mark.parametrize("max_count", [0, 126, -1])
def test_plan_rejects_max_count_outside_protocol(max_count: int) -> None:
    with pytest.raises(ValueError, match=r"max_count must be 1\.\.125"):
        plan_reads([spec("a", 0)], max_count=max_count)


def test_plan_rejects_metric_larger_than_max_count() -> None:
    with pytest.raises(ValueError, match="metric wide needs more than 2 registers"):
        plan_reads([spec("wide", 0, DataType.UINT64)], max_count=2)


@pytest.mark.parametrize("name", builtin_profiles())
@pytest.mark.parametrize("max_count", [None, 4, 10, 61])
def test_plan_shipped_profiles_within_max_count(name: str, max_count: int | None) -> None:
    profile = load_profile(name)
    limit = profile.max_registers_per_request if max_count is None else max_count
    blocks = plan_reads(profile.metrics, limit, profile.max_gap)
    assert all(b.count <= limit for b in blocks)
    planned = sorted(m.name for b in blocks for m in b.metrics)
    assert planned == sorted(m.name for m in profile.metrics)


def test_plan_sdm120_requests() -> None:
    # 60 registers per request and gaps of up to 40 registers, as the profile allows.
    profile = load_profile("sdm120")
    blocks = plan_reads(profile.metrics, profile.max_registers_per_request, profile.max_gap)
    assert [(b.function, b.address, b.count) for b in blocks] == [
        (Function.INPUT, 0x0000, 0x26),  # voltage .. phase angle
        (Function.INPUT, 0x0046, 6),  # frequency, import and export energy
        (Function.INPUT, 0x0156, 2),  # total energy
    ]


# --- planning properties -------------------------------------------------------------------


@st.composite
def metric_sets(draw: st.DrawFn) -> list[MetricSpec]:
    n = draw(st.integers(0, 40))
    return [
        MetricSpec(
            name=f"m{i}",
            address=draw(st.integers(0, 400)),
            type=draw(st.sampled_from(DataType)),
            function=draw(st.sampled_from(Function)),
        )
        for i in range(n)
    ]


@given(metric_sets(), st.integers(4, 125), st.integers(0, 130 // 2))
def test_plan_properties(metrics: list[MetricSpec], max_count: int, max_gap: int) -> None:
    blocks = plan_reads(metrics, max_count=max_count, max_gap=max_gap)

    # Every metric is in exactly one block, of its function, inside the block's registers.
    names = [m.name for b in blocks for m in b.metrics]
    assert sorted(names) == sorted(m.name for m in metrics)
    for block in blocks:
        assert 1 <= block.count <= max_count
        assert block.metrics
        for m in block.metrics:
            assert m.function is block.function
            assert block.address <= m.address
            assert m.address + m.count <= block.address + block.count
        # Tight: the block starts at its first metric and ends with its last register.
        assert block.address == min(m.address for m in block.metrics)
        assert block.address + block.count == max(m.address + m.count for m in block.metrics)

    # Minimal for the greedy rule: no two neighbouring blocks of a function could be joined.
    for function in Function:
        mine = [b for b in blocks if b.function is function]
        assert [b.address for b in mine] == sorted(b.address for b in mine)
        for prev, nxt in itertools.pairwise(mine):
            prev_end = prev.address + prev.count
            gap_too_wide = nxt.address - prev_end > max_gap
            too_long = max(prev_end, nxt.address + nxt.count) - prev.address > max_count
            assert gap_too_wide or too_long


@st.composite
def laid_out_values(draw: st.DrawFn) -> tuple[list[MetricSpec], dict[str, int | float]]:
    """Non-overlapping metrics with random gaps, orders and values."""
    metrics: list[MetricSpec] = []
    values: dict[str, int | float] = {}
    address = draw(st.integers(0, 100))
    for i in range(draw(st.integers(1, 25))):
        data_type = draw(st.sampled_from(DataType))
        name = f"m{i}"
        metrics.append(
            MetricSpec(
                name=name,
                address=address,
                type=data_type,
                word_order=draw(orders),
                byte_order=draw(orders),
            )
        )
        if data_type is DataType.FLOAT32:
            values[name] = draw(st.floats(width=32, allow_nan=False, allow_infinity=False))
        elif data_type is DataType.FLOAT64:
            values[name] = draw(st.floats(allow_nan=False, allow_infinity=False))
        else:
            values[name] = draw(st.integers(*RANGES[data_type]))
        address += data_type.registers + draw(st.integers(0, 8))
    return metrics, values


@given(laid_out_values(), st.integers(4, 125), st.integers(0, 10))
def test_plan_then_decode_returns_every_value(
    case: tuple[list[MetricSpec], dict[str, int | float]], max_count: int, max_gap: int
) -> None:
    metrics, values = case
    image: dict[int, int] = {}
    for m in metrics:
        registers = encode_value(values[m.name], m.type, m.word_order, m.byte_order)
        image.update(zip(range(m.address, m.address + m.count), registers, strict=True))
    decoded: dict[str, float] = {}
    for block in plan_reads(metrics, max_count=max_count, max_gap=max_gap):
        response = [image.get(a, 0xFFFF) for a in range(block.address, block.address + block.count)]
        for sample in decode_block(block, response):
            decoded[sample.metric] = sample.value
    as_float32 = {m.name for m in metrics if m.type is DataType.FLOAT32}
    # float32 values come back as the shortest decimal of the same float32: same registers.
    assert {
        name: struct.pack(">f", v) if name in as_float32 else v for name, v in decoded.items()
    } == {
        name: struct.pack(">f", v) if name in as_float32 else float(v) for name, v in values.items()
    }


@given(st.floats(width=32, allow_nan=False, allow_infinity=False))
def test_shortest_float32_is_the_same_float32_and_never_longer(value: float) -> None:
    short = shortest_float32(value)
    assert struct.pack(">f", short) == struct.pack(">f", value)
    assert len(repr(short)) <= len(repr(value))


@pytest.mark.parametrize(
    ("registers", "scale", "offset", "expected"),
    [
        ([0x0222], 0.1, 0.0, 54.6),
        ([0x0131], 0.1, 0.0, 30.5),
        ([0x0001], 0.01, -40.0, -39.99),
        ([1234], 0.001, 0.0, 1.234),
    ],
)
def test_scaled_integers_carry_no_binary_noise(
    registers: list[int], scale: float, offset: float, expected: float
) -> None:
    metric = MetricSpec(name="x", address=0, type=DataType.UINT16, scale=scale, offset=offset)
    block = plan_reads([metric])[0]
    assert repr(decode_block(block, registers)[0].value) == repr(expected)
