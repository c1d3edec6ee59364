"""The node's Modbus register map (docs/node.md; drivers/profiles/streetgate-node.toml).

Input registers (function 0x04; 0x03 reads the same table), 16-bit, big-endian words:

====  =================  ======  =======  ======================================
addr  name               type    scale    unit / meaning
====  =================  ======  =======  ======================================
0     pm25               uint16  0.1      µg/m³ (0xFFFF: no valid reading)
1     pm10               uint16  0.1      µg/m³ (0xFFFF: no valid reading)
2     temperature        int16   0.01     °C (0x8000: no valid reading)
3     humidity           uint16  0.01     %RH (0xFFFF: no valid reading)
4     pressure           uint16  0.1      hPa (reserved for BME280: 0xFFFF)
5     status             uint16  bits     STATUS_* below
6     error              uint16  code     ERROR_* below (0: last sample was good)
7-8   uptime             uint32  1        s since boot, high word first
9     sample_age         uint16  1        s since the last sample (saturates)
10    samples            uint16  1        samples taken (wraps at 65536)
11    firmware_version   uint16           major << 8 | minor
====  =================  ======  =======  ======================================
"""

from array import array

PM25 = 0
PM10 = 1
TEMPERATURE = 2
HUMIDITY = 3
PRESSURE = 4
STATUS = 5
ERROR = 6
UPTIME = 7
SAMPLE_AGE = 9
SAMPLES = 10
FIRMWARE_VERSION = 11
COUNT = 12

NO_UINT16 = 0xFFFF
NO_INT16 = 0x8000

STATUS_PM_VALID = 0x01
STATUS_TH_VALID = 0x02
STATUS_PRESSURE_VALID = 0x04
STATUS_BLE_ON = 0x08

ERROR_NONE = 0
ERROR_SDS011_NO_FRAME = 1  # no frame from the particulate sensor for 3 s
ERROR_SDS011_BAD_FRAME = 2  # frames arrive, none passes its checksum
ERROR_SHT3X_NO_ANSWER = 3  # I2C error (no ACK)
ERROR_SHT3X_CRC = 4  # answer with a wrong CRC


def new_table():
    """A zeroed register table (allocated once; the loop updates it in place)."""
    table = array("H", bytes(2 * COUNT))
    table[PM25] = table[PM10] = table[HUMIDITY] = table[PRESSURE] = NO_UINT16
    table[TEMPERATURE] = NO_INT16
    return table


def _u16(value, lo, hi, missing):
    if value is None or not lo <= value <= hi:
        return missing
    return value & 0xFFFF


def store(table, reading, version):
    """Write one reading (an object with the fields below) into ``table`` in place.

    ``reading``: pm25_x10, pm10_x10, temp_x100, rh_x100 (int or None), status, error,
    uptime_s, sample_age_s, samples.
    """
    table[PM25] = _u16(reading.pm25_x10, 0, 0xFFFE, NO_UINT16)
    table[PM10] = _u16(reading.pm10_x10, 0, 0xFFFE, NO_UINT16)
    table[TEMPERATURE] = _u16(reading.temp_x100, -0x7FFF, 0x7FFF, NO_INT16)
    table[HUMIDITY] = _u16(reading.rh_x100, 0, 0xFFFE, NO_UINT16)
    table[PRESSURE] = NO_UINT16
    table[STATUS] = reading.status & 0xFFFF
    table[ERROR] = reading.error & 0xFFFF
    uptime = reading.uptime_s & 0xFFFFFFFF
    table[UPTIME] = uptime >> 16
    table[UPTIME + 1] = uptime & 0xFFFF
    table[SAMPLE_AGE] = min(reading.sample_age_s, 0xFFFF)
    table[SAMPLES] = reading.samples & 0xFFFF
    table[FIRMWARE_VERSION] = (version[0] << 8) | version[1]
