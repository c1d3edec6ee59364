"""sgnode: streetgate sensor-node firmware (MicroPython; the pure modules also run on CPython)."""

VERSION = (0, 1)
