"""Sensirion SHT3x temperature/humidity over I2C: single-shot command, CRC-8, conversion.

Measure: write 0x24 0x00 (high repeatability, no clock stretching), wait 15 ms, read 6 bytes
``T_msb T_lsb crc RH_msb RH_lsb crc``. CRC-8 polynomial 0x31, init 0xFF (crc(BE EF) = 0x92).
T = -45 + 175 · raw / 65535 °C, RH = 100 · raw / 65535 %. Integer arithmetic throughout (ESP32
floats are single precision): results are hundredths, rounded half up.
"""

ADDRESS = 0x44  # ADDR pin low (0x45 when high)
MEASURE_HIGH = b"\x24\x00"
MEASURE_MS = 16  # datasheet: 15.5 ms max at high repeatability


def crc8(data):
    """Sensirion CRC-8 of ``data``."""
    crc = 0xFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x31) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def decode(data):
    """(temperature °C × 100, humidity % × 100) from 6 bytes; ValueError on a CRC mismatch."""
    if len(data) != 6:
        raise ValueError("SHT3x: expected 6 bytes, got {}".format(len(data)))
    if crc8(data[0:2]) != data[2]:
        raise ValueError("SHT3x: temperature CRC mismatch")
    if crc8(data[3:5]) != data[5]:
        raise ValueError("SHT3x: humidity CRC mismatch")
    raw_t = (data[0] << 8) | data[1]
    raw_rh = (data[3] << 8) | data[4]
    return -4500 + (17500 * raw_t + 32767) // 65535, (10000 * raw_rh + 32767) // 65535


def encode(temp_x100, rh_x100):
    """The 6 bytes a sensor returns for these values (simulated sensor, tests)."""
    raw_t = max(0, min(65535, ((temp_x100 + 4500) * 65535 + 8750) // 17500))
    raw_rh = max(0, min(65535, (rh_x100 * 65535 + 5000) // 10000))
    t = bytes((raw_t >> 8, raw_t & 0xFF))
    rh = bytes((raw_rh >> 8, raw_rh & 0xFF))
    return t + bytes((crc8(t),)) + rh + bytes((crc8(rh),))
