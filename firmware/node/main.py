"""Entry point on the board: pick the hardware layer, read /node.json, run the sensor node."""

import gc
import sys

# One module at a time, collecting in between, biggest first: compiling from source needs far
# more RAM than the code keeps, and a fragmented heap is what runs out first.
from sgnode import hal

board = hal.load_board()
gc.collect()
from sgnode import config, node  # noqa: E402

gc.collect()
cfg, why = config.load(board.config_path)
if cfg is not None and cfg.ble.enabled:
    import sgnode.beacon  # noqa: F401  (BLE's modules only where BLE is on)

    gc.collect()
try:
    node.start(board, cfg, why)
except Exception as exc:  # noqa: BLE001  (anything that escapes the loop)
    # Without this a board would sit in the REPL until someone noticed.
    sys.print_exception(exc)
    board.log("fatal: {}: {}; resetting in 10 s".format(type(exc).__name__, exc))
    board.clock.sleep_ms(10000)
    board.reset()
