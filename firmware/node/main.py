"""Entry point on the board: pick the hardware layer and run the sensor node."""

import gc

# One module at a time, collecting in between, biggest first: compiling from source needs far
# more RAM than the code keeps, and a fragmented heap is what runs out first.
from sgnode import hal

board = hal.load_board()
gc.collect()
from sgnode import node  # noqa: E402

gc.collect()
node.start(board)
