"""Benchmark subscriber (own process): waits for a sequence number, prints when it arrived.

Usage: python -m tests.benchmarks.subscriber PORT TOPIC LAST_SEQ
Prints "ready" once subscribed, then one JSON line {"first": t, "last": t, "messages": n}
(time.time() of the first and of the completing message).
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time

import aiomqtt

_LAST = re.compile(rb'"last_seq":(\d+)')


async def main(port: int, topic: str, last_seq: int) -> None:
    first = None
    messages = 0
    async with aiomqtt.Client("127.0.0.1", port, max_queued_incoming_messages=0) as client:
        await client.subscribe(topic, qos=1)
        print("ready", flush=True)
        async for message in client.messages:
            assert isinstance(message.payload, bytes)
            messages += 1
            now = time.time()
            if first is None:
                first = now
            match = _LAST.search(message.payload, 0, 400)
            if match and int(match.group(1)) >= last_seq:
                print(json.dumps({"first": first, "last": now, "messages": messages}), flush=True)
                return


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3])))
