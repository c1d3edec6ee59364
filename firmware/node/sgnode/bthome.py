"""BTHome v2 advertisement encoder (service data of UUID 0xFCD2), plain or AES-CCM encrypted.

Layout (bthome.io/format): device info byte (bit 0 encrypted, bit 2 trigger-based, version 2 in
bits 5-7), then ``<object id><value little-endian>`` in ascending id order. Encrypted:
``info | ciphertext | counter (4, LE) | MIC (4)`` with the nonce
``MAC (6) | D2 FC | info | counter``. The node sends raw integers in each object's own unit
(temperature in 0.01 °C ...); :func:`to_raw` converts engineering values for the shared vectors.
"""

from sgnode import aes

SERVICE_UUID16 = 0xFCD2
INFO_ENCRYPTED = 0x01
INFO_TRIGGER_BASED = 0x04
_VERSION_BITS = 2 << 5
_UUID_LE = b"\xd2\xfc"

# object id: (value bytes, signed, decimal places of its factor)
OBJECTS = {
    0x00: (1, False, 0),  # packet id
    0x01: (1, False, 0),  # battery %
    0x02: (2, True, 2),  # temperature 0.01 °C
    0x03: (2, False, 2),  # humidity 0.01 %
    0x04: (3, False, 2),  # pressure 0.01 hPa
    0x05: (3, False, 2),  # illuminance 0.01 lx
    0x0C: (2, False, 3),  # voltage 0.001 V
    0x0D: (2, False, 0),  # PM2.5 µg/m³
    0x0E: (2, False, 0),  # PM10 µg/m³
    0x12: (2, False, 0),  # CO2 ppm
    0x1E: (1, False, 0),  # light (binary)
    0x2E: (1, False, 0),  # humidity %, 1 byte
    0x45: (2, True, 1),  # temperature 0.1 °C
}

PACKET_ID = 0x00
TEMPERATURE = 0x02
HUMIDITY = 0x03
PM25 = 0x0D
PM10 = 0x0E


def to_raw(object_id, value):
    """The raw integer of an engineering value for ``object_id`` (25.06 °C -> 2506)."""
    places = OBJECTS[object_id][2]
    return round(value * 10**places)


def _put(out, object_id, raw):
    shape = OBJECTS.get(object_id)
    if shape is None:
        raise ValueError("BTHome object 0x{:02x}: not supported by this encoder".format(object_id))
    length, signed, _ = shape
    bits = 8 * length
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if not lo <= raw <= hi:
        raise ValueError("BTHome object 0x{:02x}: {} outside {}..{}".format(object_id, raw, lo, hi))
    raw &= (1 << bits) - 1
    out.append(object_id)
    for _ in range(length):
        out.append(raw & 0xFF)
        raw >>= 8


def encode(objects, *, packet_id=None, trigger_based=False, cipher=None, mac=None, counter=0):
    """Service data bytes for ``objects`` (a list of (object id, raw int)).

    ``cipher``: an AES-128-ECB object (:func:`sgnode.aes.ecb`) to encrypt for ``mac`` (6 bytes,
    as written, e.g. 54 48 E6 8F 80 A5) with ``counter``.
    """
    info = _VERSION_BITS | (INFO_TRIGGER_BASED if trigger_based else 0)
    body = bytearray()
    if packet_id is not None:
        _put(body, PACKET_ID, packet_id)
    for object_id, raw in sorted(objects):
        _put(body, object_id, raw)
    if cipher is None:
        return bytes((info,)) + bytes(body)
    if mac is None or len(mac) != 6:
        raise ValueError("BTHome encryption needs the 6-byte MAC")
    if not 0 <= counter <= 0xFFFFFFFF:
        raise ValueError("BTHome counter {} outside 0..2**32-1".format(counter))
    info |= INFO_ENCRYPTED
    counter_le = bytes(
        (counter & 0xFF, (counter >> 8) & 0xFF, (counter >> 16) & 0xFF, counter >> 24)
    )
    nonce = bytes(mac) + _UUID_LE + bytes((info,)) + counter_le
    sealed = aes.ccm_encrypt(cipher, nonce, bytes(body), 4)
    return bytes((info,)) + sealed[:-4] + counter_le + sealed[-4:]


def advertising_payload(service_data):
    """The whole legacy advertising PDU payload: flags + service data AD structures."""
    return b"\x02\x01\x06" + bytes((len(service_data) + 3, 0x16)) + _UUID_LE + service_data
