"""The node loop on a fake clock: Modbus answers, sensor failures, watchdog, safe mode, BLE."""

import json

from fakeboard import FakeBoard
from mpcheck import eq
from sgnode import config, registers
from sgnode.modbus_slave import crc16
from sgnode.node import Node, boot

DOC = {
    "schema": 1,
    "node_id": "pole-17-aq",
    "sample_interval_s": 10,
    "modbus": {"enabled": True, "unit_id": 5, "baudrate": 9600},
    "ble": {"enabled": False, "interval_s": 5, "key": None},
}


def _cfg(**ble):
    doc = json.loads(json.dumps(DOC))
    doc["ble"].update(ble)
    return config.parse(doc)


def _request(unit, function, address, count):
    body = bytes((unit, function, address >> 8, address & 0xFF, count >> 8, count & 0xFF))
    crc = crc16(body)
    return body + bytes((crc & 0xFF, crc >> 8))


def _registers(reply):
    n = reply[2] // 2
    return [(reply[3 + 2 * i] << 8) | reply[4 + 2 * i] for i in range(n)]


def _run_until(node, board, ms):
    while board.clock.elapsed < ms:
        node.run(1)


def test_modbus_master_reads_the_sample_the_console_printed():
    board = FakeBoard()
    node = Node(board, _cfg())
    board.master.send_at(2500, _request(5, 4, 0, 12))
    board.master.send_at(2600, _request(9, 4, 0, 12))  # another unit's: silence
    _run_until(node, board, 3000)
    eq(board.master.reply_count, 1)
    table = _registers(board.master.replies[0])
    sample = json.loads([x for x in board.lines if x.startswith("sample ")][-1][7:])
    eq(table[registers.PM25], sample["pm25_x10"])
    eq(table[registers.PM10], sample["pm10_x10"])
    eq(table[registers.TEMPERATURE], sample["temp_x100"] & 0xFFFF)
    eq(table[registers.HUMIDITY], sample["rh_x100"])
    eq(table[registers.STATUS], registers.STATUS_PM_VALID | registers.STATUS_TH_VALID)
    eq(table[registers.ERROR], 0)
    eq(table[registers.UPTIME + 1], 2, "uptime 2 s (the clock wrapped on the way)")
    eq(node.stats.not_ours, 1)
    eq(len(board.sds.commands), 3, "the SDS011 was woken and set to report actively")


def test_sensor_failures_are_status_and_error_not_a_failed_loop():
    board = FakeBoard()
    node = Node(board, _cfg())
    _run_until(node, board, 2500)
    board.bus.broken = True
    _run_until(node, board, 12500)
    eq(node.table[registers.TEMPERATURE], registers.NO_INT16)
    eq(node.table[registers.HUMIDITY], registers.NO_UINT16)
    eq(node.table[registers.ERROR], registers.ERROR_SHT3X_NO_ANSWER)
    eq(node.table[registers.STATUS], registers.STATUS_PM_VALID)
    board.sds.broken = True
    _run_until(node, board, 22500)
    eq(node.table[registers.PM25], registers.NO_UINT16)
    eq(node.table[registers.ERROR], registers.ERROR_SDS011_NO_FRAME)
    eq(node.table[registers.STATUS], 0)
    eq(node.table[registers.SAMPLES], 3)
    board.bus.broken = board.sds.broken = False
    _run_until(node, board, 32500)
    eq(node.table[registers.ERROR], 0)
    eq(node.failed_steps, 0)
    eq(board.wdt.feeds, node_steps(board, node), "every good step fed the watchdog")


def node_steps(board, node):
    return board.wdt.feeds + node.failed_steps


def test_watchdog_is_not_fed_after_a_step_that_raised():
    board = FakeBoard()
    node = Node(board, _cfg())
    node.run(20)
    eq(board.wdt.feeds, 20)

    def broken_read():
        raise OSError(5)  # EIO: the UART driver failed

    board.sds.read = broken_read
    node.run(5)
    eq(board.wdt.feeds, 20, "no feed while the loop fails")
    eq(node.failed_steps, 5)
    eq(
        [x for x in board.lines if x.startswith("error in loop")][-1],
        "error in loop: OSError: [Errno 5] EIO",
    )
    del board.sds.read
    node.run(3)
    eq(board.wdt.feeds, 23, "fed again once a step completes")


def test_safe_mode_stays_off_the_bus_and_the_radio_and_says_why():
    board = FakeBoard()
    cfg, why = config.load("/nonexistent/node.json")
    node = Node(board, cfg, why)
    node.boot_banner()
    board.master.send_at(3000, _request(1, 4, 0, 2))
    _run_until(node, board, 15000)
    eq(node.port, None)
    eq(node.beacon, None)
    eq(board.master.reply_count, 0)
    eq(board.ble.sent, 0)
    safe = [x for x in board.lines if x.startswith("SAFE MODE: ")]
    eq(len(safe), 1 + 2, "at boot and with each sample")
    eq(safe[0], "SAFE MODE: cannot read /nonexistent/node.json: [Errno 2] ENOENT")
    eq(sum(1 for x in board.lines if x.startswith("sample ")), 2)
    eq(board.wdt.feeds > 0, True)


def test_bthome_adverts_carry_the_sample_and_counters_survive_a_reboot():
    from fakeboard import STATE_DIR

    with open(STATE_DIR + "/bthome_counter", "w") as f:
        f.write("0")  # what `node deploy` writes with a new key
    key = "231d39c1d7cc1ab1aee224cd096db932"
    board = FakeBoard()
    node = Node(board, _cfg(enabled=True, interval_s=2, key=key))
    _run_until(node, board, 10100)
    adverts = [x[7:] for x in board.lines if x.startswith("bthome ")]
    eq(len(adverts), 5)  # at 2 s, 4 s, 6 s, 8 s, 10 s
    counters = [int.from_bytes(bytes.fromhex(a)[-8:-4], "little") for a in adverts]
    eq(counters, [0, 1, 2, 3, 4])
    eq(node.table[registers.STATUS] & registers.STATUS_BLE_ON, registers.STATUS_BLE_ON)
    board2 = FakeBoard()
    node2 = Node(board2, _cfg(enabled=True, interval_s=2, key=key))
    _run_until(node2, board2, 2100)
    first = next(x[7:] for x in board2.lines if x.startswith("bthome "))
    eq(int.from_bytes(bytes.fromhex(first)[-8:-4], "little"), 1024, "next block after reboot")


def test_a_port_that_does_not_open_is_safe_mode_with_the_reason():
    board = FakeBoard()
    board.config_path = board.state_dir + "/node-ok.json"
    with open(board.config_path, "w") as f:
        f.write(json.dumps(DOC))

    def no_port(baudrate, pins):
        raise OSError(19)

    board.modbus_port = no_port
    node = boot(board, *config.load(board.config_path))
    eq(node.safe_reason, "cannot open the hardware: [Errno 19] ENODEV")
    eq(node.port, None)
    eq(board.lines[-1], "SAFE MODE: cannot open the hardware: [Errno 19] ENODEV")


def test_boot_with_a_good_config_runs_it():
    board = FakeBoard()
    board.config_path = board.state_dir + "/node-ok.json"
    with open(board.config_path, "w") as f:
        f.write(json.dumps(DOC))
    node = boot(board, *config.load(board.config_path))
    eq(node.safe_reason, None)
    eq(node.cfg.modbus.unit_id, 5)
    eq(board.lines[-1], "modbus on unit 5 baud 9600; ble off")


def test_no_counter_state_with_a_key_refuses_encrypted_adverts_but_modbus_runs():
    import os

    from fakeboard import STATE_DIR

    key = "231d39c1d7cc1ab1aee224cd096db932"
    for content in (None, "", "garbage", "-5", "4294967296"):
        path = STATE_DIR + "/bthome_counter"
        try:
            os.remove(path)
        except OSError:
            pass
        if content is not None:
            with open(path, "w") as f:
                f.write(content)
        board = FakeBoard()
        node = Node(board, _cfg(enabled=True, interval_s=2, key=key))
        node.boot_banner()
        board.master.send_at(3000, _request(5, 4, 0, 2))
        _run_until(node, board, 10100)
        eq(node.beacon, None, repr(content))
        eq(board.ble.sent, 0, repr(content))
        eq(sum(1 for x in board.lines if x.startswith("bthome ")), 0, repr(content))
        eq(board.master.reply_count, 1, "modbus still answers")
        refused = [x for x in board.lines if x.startswith("BLE OFF: no encryption counter")]
        eq(len(refused) >= 2, True, "said at boot and with samples: {}".format(board.lines[:3]))
        eq("--rotate-key" in refused[0], True)
        if content is None:
            try:
                os.stat(path)
                raise AssertionError("the node must not create a counter file of its own")
            except OSError:
                pass
