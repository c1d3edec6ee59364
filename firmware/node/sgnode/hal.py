"""The hardware layer: what the node loop needs from a board, and how a board is chosen.

A board object (``hal_esp32.Board``, ``hal_rp2.Board``, ``hal_sim.Board``, or a test's fake)
provides:

- ``clock``: ``ticks_ms()`` (wrapping, compare with :mod:`sgnode.ticks`) and ``sleep_ms(ms)``.
- ``modbus_port(baudrate, pins)``: the RS-485 UART as a *port* (below), or None when there is none.
- ``sds011_port(pins)``: the particulate sensor's UART as a port.
- ``i2c(pins)``: an object with ``writeto(addr, buf)`` and ``readfrom(addr, n)`` raising OSError
  when nothing answers (``machine.I2C`` does exactly this).
- ``watchdog(timeout_ms)``: an object with ``feed()``; once started it cannot be stopped.
- ``advertiser()``: an object with ``advertise(service_data, interval_ms)``, or None (no BLE).
- ``mac()``: the 6 bytes of the BLE address (BTHome encryption nonce).
- ``config_path`` and ``state_dir``: where node.json and small state files live.
- ``log(text)``: one line on the console. ``reset_cause()``: why the board last started;
  ``reset()``: reboot (the simulated board exits the process).

A *port* has ``wait(timeout_ms) -> bool`` (bytes are waiting; sleeps up to ``timeout_ms``
otherwise), ``read() -> bytes | None`` (never blocks) and ``write(data)`` (returns once the bytes
are on the wire, which matters for the RS-485 driver-enable pin).
"""

import sys


def load_board():
    """The board this firmware is running on, picked by ``sys.platform``."""
    platform = sys.platform
    if platform == "esp32":
        from sgnode import hal_esp32

        return hal_esp32.Board()
    if platform == "rp2":
        from sgnode import hal_rp2

        return hal_rp2.Board()
    if platform == "linux":
        from sgnode import hal_sim

        return hal_sim.Board()
    raise OSError("sgnode: no hardware layer for platform {}".format(platform))
