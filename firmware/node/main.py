"""Entry point on the board: pick the hardware layer and run the sensor node."""

import gc

# Import the big modules one at a time, collecting in between: compiling from source needs
# far more RAM than the code keeps, and a fragmented heap is what runs out first.
import sgnode.hal  # noqa: F401
import sgnode.sampler  # noqa: F401

gc.collect()
import sgnode.node  # noqa: E402

gc.collect()
sgnode.node.start(sgnode.hal.load_board())
