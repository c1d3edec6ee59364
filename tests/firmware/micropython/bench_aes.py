"""Time to encrypt one node advert (AES-CCM) with cryptolib and with the pure-Python AES.

micropython bench_aes.py [rounds]      -> one JSON line (microseconds per advert)
"""

import json
import sys
import time

HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
sys.path.insert(0, HERE + "/../../../firmware/node")

from sgnode import aes, bthome

KEY = bytes.fromhex("231d39c1d7cc1ab1aee224cd096db932")
MAC = bytes.fromhex("5448e68f80a5")
OBJECTS = [(0x02, 2506), (0x03, 5055), (0x0D, 14), (0x0E, 15)]


def per_advert_us(cipher, rounds):
    start = time.ticks_us()
    for counter in range(rounds):
        bthome.encode(OBJECTS, packet_id=1, cipher=cipher, mac=MAC, counter=counter)
    return time.ticks_diff(time.ticks_us(), start) / rounds


rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 200
print(
    json.dumps(
        {
            "ccm_advert_us_cryptolib": per_advert_us(aes.ecb(KEY), rounds),
            "ccm_advert_us_pure_python": per_advert_us(aes.ecb(KEY, pure=True), rounds),
        }
    )
)
