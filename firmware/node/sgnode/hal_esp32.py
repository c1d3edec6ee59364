"""ESP32 (e.g. DevKitC): UART1 for RS-485, UART2 for the SDS011, I2C0 for the SHT3x."""

from sgnode.hal_mcu import McuBoard


class Board(McuBoard):
    """ESP32 default wiring (override any pin in node.json ``pins``)."""

    name = "esp32"
    MODBUS_UART = 1
    SDS_UART = 2
    I2C_ID = 0
    PINS = {
        "modbus_tx": 17,
        "modbus_rx": 16,
        "modbus_de": 4,
        "sds_tx": 26,
        "sds_rx": 25,
        "i2c_sda": 21,
        "i2c_scl": 22,
    }
