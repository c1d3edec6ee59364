"""Encode readings given on stdin (one JSON object a line) as the node would; one JSON line out
per reading: its register table and its BTHome service data, plain and encrypted.

    micropython encode_batch.py < readings.jsonl

Used by tests/firmware/test_node.py to check a seeded batch, bounds included, against the
gateway's decoders.
"""

import json
import sys

HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
sys.path.insert(0, HERE + "/../../../firmware/node")

from sgnode import aes, beacon, bthome, registers
from sgnode.sampler import Reading

KEY = bytes.fromhex("231d39c1d7cc1ab1aee224cd096db932")
MAC = bytes.fromhex("5448e68f80a5")
CIPHER = aes.ecb(KEY)

table = registers.new_table()
for line in sys.stdin:
    if not line.strip():
        continue
    fields = json.loads(line)
    r = Reading()
    for key in fields:
        setattr(r, key, fields[key])
    registers.store(table, r, (0, 1))
    objects = beacon.objects(r)
    packet_id = fields["samples"] & 0xFF
    out = {
        "registers": list(table),
        "plain": bthome.encode(objects, packet_id=packet_id).hex(),
        "encrypted": bthome.encode(
            objects, packet_id=packet_id, cipher=CIPHER, mac=MAC, counter=fields["samples"]
        ).hex(),
    }
    sys.stdout.write(json.dumps(out) + "\n")
