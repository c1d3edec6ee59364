"""The hardware layer on a real microcontroller (``machine`` and ``bluetooth``), shared by the
ESP32 and Pico W boards, which differ only in UART/I2C ids and default pins.

Kept thin on purpose: it cannot be tested without the hardware, so all logic lives elsewhere.
"""

import select
import sys

import machine  # type: ignore[import-not-found]

from sgnode.ticks import Clock

_RESET_CAUSES = (
    ("PWRON_RESET", "power-on"),
    ("HARD_RESET", "hard"),
    ("WDT_RESET", "watchdog"),
    ("DEEPSLEEP_RESET", "deep-sleep"),
    ("SOFT_RESET", "soft"),
)


class UartPort:
    """A ``machine.UART`` as a port; ``de`` drives an RS-485 transceiver's driver-enable pin."""

    def __init__(self, uart, de=None):
        self._uart = uart
        self._de = de
        if de is not None:
            de.value(0)
        self._poll = select.poll()
        self._poll.register(uart, select.POLLIN)

    def wait(self, timeout_ms):
        """Whether bytes are waiting, after up to ``timeout_ms``."""
        return bool(self._poll.poll(max(0, timeout_ms)))

    def read(self):
        """What is waiting, or None."""
        if not self._uart.any():
            return None
        return self._uart.read()

    def write(self, data):
        """Send ``data`` and release the bus once the last bit is out."""
        if self._de is not None:
            self._de.value(1)
        self._uart.write(data)
        self._uart.flush()  # waits for the transmit shift register to empty
        if self._de is not None:
            self._de.value(0)


class Advertiser:
    """Non-connectable BLE advertising with the ``bluetooth`` module."""

    def __init__(self):
        import bluetooth  # type: ignore[import-not-found]

        self._ble = bluetooth.BLE()
        self._ble.active(True)

    def mac(self):
        """The controller's 6-byte address."""
        return bytes(self._ble.config("mac")[1])

    def advertise(self, service_data, interval_ms):
        """Replace the advertisement with one carrying ``service_data``."""
        from sgnode.bthome import advertising_payload

        self._ble.gap_advertise(
            interval_ms * 1000 // 4,  # a few repeats per interval: scanners miss some
            adv_data=advertising_payload(service_data),
            connectable=False,
        )


class McuBoard:
    """A board described by its peripheral ids and default pins (``PINS`` in a subclass)."""

    name = "mcu"
    MODBUS_UART = 1
    SDS_UART = 2
    I2C_ID = 0
    PINS = {}

    def __init__(self):
        self.clock = Clock()
        self.config_path = "/node.json"
        self.state_dir = ""  # files at the filesystem root: "/bthome_counter"
        self._advertiser = None

    def _pin(self, pins, name):
        number = pins.get(name, self.PINS.get(name))
        return None if number is None else machine.Pin(number)

    def log(self, text):
        """One console line (USB serial / REPL)."""
        sys.stdout.write(text + "\n")

    def modbus_port(self, baudrate, pins):
        """The RS-485 UART (8N1) with its driver-enable pin, if wired."""
        uart = machine.UART(
            self.MODBUS_UART,
            baudrate=baudrate,
            bits=8,
            parity=None,
            stop=1,
            tx=self._pin(pins, "modbus_tx"),
            rx=self._pin(pins, "modbus_rx"),
        )
        de = self._pin(pins, "modbus_de")
        if de is not None:
            de.init(machine.Pin.OUT)
        return UartPort(uart, de)

    def sds011_port(self, pins):
        """The SDS011's UART at 9600 8N1."""
        uart = machine.UART(
            self.SDS_UART,
            baudrate=9600,
            tx=self._pin(pins, "sds_tx"),
            rx=self._pin(pins, "sds_rx"),
        )
        return UartPort(uart)

    def i2c(self, pins):
        """The sensor I2C bus at 100 kHz."""
        return machine.I2C(
            self.I2C_ID,
            sda=self._pin(pins, "i2c_sda"),
            scl=self._pin(pins, "i2c_scl"),
            freq=100000,
        )

    def watchdog(self, timeout_ms):
        """The hardware watchdog (cannot be stopped once started)."""
        return machine.WDT(timeout=timeout_ms)

    def advertiser(self):
        """The BLE radio, or None when the firmware has no ``bluetooth`` module."""
        if self._advertiser is None:
            try:
                self._advertiser = Advertiser()
            except ImportError:
                return None
        return self._advertiser

    def mac(self):
        """The BLE address (for the BTHome nonce)."""
        adv = self.advertiser()
        return adv.mac() if adv is not None else bytes(6)

    def reset(self):
        """Reboot the board."""
        machine.reset()

    def reset_cause(self):
        """Why the board started, as a word."""
        cause = machine.reset_cause()
        for name, word in _RESET_CAUSES:
            if getattr(machine, name, None) == cause:
                return word
        return str(cause)
