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


def test_random_bytes_never_crash_and_only_good_frames_are_answered():
    # A noisy shared bus: random chunks (seeded), with valid requests mixed in. Whatever comes,
    # the slave answers only a request for its unit with a good CRC, and never raises.
    table = registers.new_table()
    stats = Stats()
    rx = Receiver(9600)
    x = 12345
    now = 0
    good = bytes.fromhex("05040000000c")
    crc = crc16(good)
    good += bytes((crc & 0xFF, crc >> 8))
    answered = 0
    for i in range(3000):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        if i % 10 == 0:
            chunk = good
            now += 10  # silence before a real request
        else:
            chunk = bytes(((x >> s) & 0xFF) for s in range(0, 8 * (1 + x % 7), 8) if s < 31)
            now += x % 3
        rx.push(chunk, now)
        while True:
            frame = rx.take(now)
            if frame is None:
                break
            reply = answer(frame, 5, table, stats)
            if reply is not None:
                eq(reply[0], 5, "a reply is always from this unit")
                eq(crc16(reply[:-2]), reply[-2] | (reply[-1] << 8), "and carries a good CRC")
                answered += 1
    eq(answered >= 100, True, "most of the real requests got through the noise")
    eq(answered, stats.answered + stats.exceptions)


def test_bytes_after_a_silence_start_a_new_frame():
    # Noise, then t3.5 of silence, then a request: pushed before anyone took the noise.
    rx = Receiver(9600)
    request = bytes.fromhex("01040000000cf00f")
    rx.push(b"\x13\x37", 0)
    rx.push(request, 20)
    eq(rx.take(20), b"\x13\x37")
    eq(rx.take(20), request)
