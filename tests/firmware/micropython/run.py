"""A tiny test runner for MicroPython (the unix port has no unittest).

    micropython run.py mp_config mp_modbus ...

Imports each module, calls every ``test_*`` function in it (in source order is not promised:
sorted by name), prints ``ok``/``FAIL`` per test with the traceback, a summary line, and exits 1
if anything failed. Paths: the firmware (firmware/node) and this directory are put on sys.path
from ``SGNODE_ROOT`` (the repository root; default: three levels up from here).
"""

import os
import sys

HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
ROOT = os.getenv("SGNODE_ROOT") or HERE + "/../../.."
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT + "/firmware/node")


def main(names):
    passed = failed = 0
    for name in names:
        try:
            module = __import__(name)
        except Exception as exc:
            print("FAIL", name, "(import)")
            sys.print_exception(exc)
            failed += 1
            continue
        for attr in sorted(dir(module)):
            if not attr.startswith("test_"):
                continue
            try:
                getattr(module, attr)()
            except Exception as exc:
                print("FAIL", name + "." + attr)
                sys.print_exception(exc)
                failed += 1
            else:
                print("ok  ", name + "." + attr)
                passed += 1
    print("{} passed, {} failed".format(passed, failed))
    return failed


if __name__ == "__main__":
    sys.exit(1 if main(sys.argv[1:]) else 0)
