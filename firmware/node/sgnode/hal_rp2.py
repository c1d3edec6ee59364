"""Raspberry Pi Pico W: UART0 for RS-485, UART1 for the SDS011, I2C0 for the SHT3x."""

from sgnode.hal_mcu import McuBoard


class Board(McuBoard):
    """Pico W default wiring (override any pin in node.json ``pins``)."""

    name = "rp2"
    MODBUS_UART = 0
    SDS_UART = 1
    I2C_ID = 0
    PINS = {
        "modbus_tx": 0,
        "modbus_rx": 1,
        "modbus_de": 2,
        "sds_tx": 4,
        "sds_rx": 5,
        "i2c_sda": 8,
        "i2c_scl": 9,
    }
