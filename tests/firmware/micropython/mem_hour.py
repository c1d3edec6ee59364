"""A simulated hour of the node loop in a small heap; prints one JSON line of figures.

    micropython -X heapsize=64k mem_hour.py

Worst case for RAM: Modbus on with a master reading all registers every second, BTHome on
and encrypted every 5 s, a sample every 10 s. Free heap (after a collection) is taken at 6 and
at 60 simulated minutes: the loop must not grow (tests/firmware/test_node.py compares them).
``leak`` as an argument makes the console keep one small object per sample: the growth the
comparison must catch (that test shows the check can fail).
"""

import gc
import json
import sys

HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
sys.path.insert(0, HERE)
import run  # noqa: F401  (puts the firmware on sys.path)

# Biggest first, as main.py does: the board (hal_sim), then the node, then BLE.
gc.collect()
from fakeboard import STATE_DIR, FakeBoard

gc.collect()
import sgnode.node

gc.collect()
import sgnode.aes

gc.collect()
import sgnode.bthome

gc.collect()
import sgnode.beacon
from sgnode import config
from sgnode.modbus_slave import crc16

gc.collect()

MINUTE = 60000


def request():
    body = bytes((1, 4, 0, 0, 0, 12))
    crc = crc16(body)
    return body + bytes((crc & 0xFF, crc >> 8))


def main():
    try:
        with open(STATE_DIR + "/bthome_counter", "w") as f:
            f.write("0")  # what `node deploy` writes with a new key
    except OSError:
        pass
    cfg = config.parse(
        {
            "schema": 1,
            "node_id": "mem-hour",
            "sample_interval_s": 10,
            "modbus": {"enabled": True, "unit_id": 1, "baudrate": 9600},
            "ble": {"enabled": True, "interval_s": 5, "key": "231d39c1d7cc1ab1aee224cd096db932"},
        }
    )
    board = FakeBoard(keep_lines=4)
    if "leak" in sys.argv:
        kept = []
        log = board.log

        def leaky_log(text):
            if text.startswith("sample "):
                kept.append(len(text))
            log(text)

        board.log = leaky_log
    node = sgnode.node.Node(board, cfg)
    master = board.master
    req = request()
    free = {}
    steps = 0
    next_request = 1500
    for minute in (6, 60):
        while board.clock.elapsed < minute * MINUTE:
            if not master.queue:
                master.send_at(next_request, req)
                next_request += 1000
            node.run(1)
            steps += 1
        gc.collect()
        free[minute] = gc.mem_free()
    last = master.replies[-1]
    ok = len(last) == 29 and crc16(last[:-2]) == last[-2] | (last[-1] << 8)
    print(
        json.dumps(
            {
                "simulated_s": board.clock.elapsed // 1000,
                "steps": steps,
                "samples": node.reading.samples,
                "modbus_replies": master.reply_count,
                "last_reply_ok": ok,
                "adverts": board.ble.sent,
                "watchdog_feeds": board.wdt.feeds,
                "failed_steps": node.failed_steps,
                "free_after_6_min": free[6],
                "free_after_60_min": free[60],
                "heap_total": gc.mem_free() + gc.mem_alloc(),
            }
        )
    )


main()
