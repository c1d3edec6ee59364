"""The Modbus RTU slave and the register map against the shared vectors, in MicroPython."""

from array import array

from mpcheck import eq, vectors
from sgnode import registers
from sgnode.modbus_slave import Receiver, Stats, answer, crc16, gap_ms
from sgnode.sampler import Reading

NODE = vectors("node.json")


def _reading(fields):
    r = Reading()
    for k in fields:
        setattr(r, k, fields[k])
    return r


def test_crc16_check_value_and_sdm120_request():
    eq(crc16(b"123456789"), 0x4B37, "CRC-16/MODBUS check value")
    eq(crc16(bytes.fromhex("010400000002")), 0xCB71, "SDM120 voltage request")


def test_register_vectors():
    for v in NODE["modbus_registers"]:
        table = registers.new_table()
        registers.store(table, _reading(v["reading"]), (0, 1))
        eq(list(table), v["registers"], v["name"])


def test_frame_vectors():
    table = array("H", NODE["modbus_registers"][0]["registers"])
    for v in NODE["modbus_frames"]:
        stats = Stats()
        reply = answer(bytes.fromhex(v["request"]), v["unit_id"], table, stats)
        expected = v["response"]
        eq(None if reply is None else reply.hex(), expected, v["name"])


def test_silence_is_counted_by_reason():
    table = registers.new_table()
    stats = Stats()
    frames = {v["name"]: bytes.fromhex(v["request"]) for v in NODE["modbus_frames"]}
    for name in ("other_unit", "broadcast", "bad_crc"):
        eq(answer(frames[name], 1, table, stats), None, name)
    eq((stats.not_ours, stats.bad_crc, stats.answered), (2, 1, 0))


def test_receiver_cuts_back_to_back_and_split_requests():
    rx = Receiver(9600)
    eq(gap_ms(9600), 6)  # 4.01 ms, rounded up, + 1 for tick granularity
    eq(gap_ms(115200), 2)
    a = bytes.fromhex("01040000000cf00f")
    b = bytes.fromhex("070400070002c06c")
    rx.push(a + b[:3], 100)
    eq(rx.take(100), a)
    eq(rx.take(101), None)  # half a frame, no gap yet
    rx.push(b[3:], 102)
    eq(rx.take(102), b)
    eq(rx.take(500), None)


def test_receiver_flushes_an_unknown_function_at_the_gap():
    rx = Receiver(9600)
    rx.push(bytes.fromhex("01112c"), 0)  # report server id + CRC-ish tail
    eq(rx.take(5), None)
    eq(rx.take(6), bytes.fromhex("01112c"))


def test_receiver_drops_a_run_of_noise_longer_than_any_frame():
    rx = Receiver(9600)
    for i in range(40):
        rx.push(bytes((0x55,)) * 10, i)
    eq(rx.overruns >= 1, True)
    eq(len(rx._buf) <= 256, True)
