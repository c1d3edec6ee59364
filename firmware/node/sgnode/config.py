"""The node's config file (/node.json): a pure parser that runs on MicroPython and CPython.

Exactly the keys ``streetgate node deploy`` writes are accepted, plus the optional ``pins``
table; anything else is refused so a typo never silently falls back to a default::

    {"schema": 1, "node_id": "pole-17-aq", "sample_interval_s": 10,
     "modbus": {"enabled": true, "unit_id": 1, "baudrate": 9600},
     "ble": {"enabled": false, "interval_s": 5, "key": null}}

:func:`parse` raises ValueError naming the key and what was expected; the caller (node.py)
turns that into safe mode.
"""

import json

SCHEMA = 1
BAUD_RATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)
PIN_NAMES = ("modbus_tx", "modbus_rx", "modbus_de", "sds_tx", "sds_rx", "i2c_sda", "i2c_scl")
_ID_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-"
_HEX = "0123456789abcdefABCDEF"


class ModbusConfig:
    """The RS-485 Modbus RTU slave."""

    def __init__(self, enabled, unit_id, baudrate):
        self.enabled = enabled
        self.unit_id = unit_id
        self.baudrate = baudrate


class BleConfig:
    """BTHome v2 advertisements."""

    def __init__(self, enabled, interval_s, key):
        self.enabled = enabled
        self.interval_s = interval_s
        self.key = key  # 16 bytes, or None for plain adverts


class NodeConfig:
    """A validated node config."""

    def __init__(self, node_id, sample_interval_s, modbus, ble, pins):
        self.node_id = node_id
        self.sample_interval_s = sample_interval_s
        self.modbus = modbus
        self.ble = ble
        self.pins = pins  # name -> GPIO number, only the ones given


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _table(data, where, required, optional=()):
    if not isinstance(data, dict):
        raise ValueError("{}: expected a JSON object".format(where[:-1] or "config"))
    for key in data:
        if key not in required and key not in optional:
            expected = ", ".join(tuple(required) + tuple(optional))
            raise ValueError("{}{}: unknown key (expected: {})".format(where, key, expected))
    for key in required:
        if key not in data:
            raise ValueError("{}{}: missing".format(where, key))
    return data


def _int(data, key, where, lo, hi):
    value = data[key]
    if not _is_int(value) or not lo <= value <= hi:
        raise ValueError(
            "{}{}: expected an integer {}..{}, got {}".format(where, key, lo, hi, value)
        )
    return value


def _bool(data, key, where):
    value = data[key]
    if value is not True and value is not False:
        raise ValueError("{}{}: expected true or false, got {}".format(where, key, value))
    return value


def _node_id(value):
    if (
        not isinstance(value, str)
        or not 1 <= len(value) <= 32
        or any(c not in _ID_CHARS for c in value)
    ):
        raise ValueError(
            "node_id: expected 1-32 characters of a-z, 0-9 and -, got {}".format(value)
        )
    return value


def _key(value):
    if value is None:
        return None
    if not isinstance(value, str) or len(value) != 32 or any(c not in _HEX for c in value):
        raise ValueError("ble.key: expected null or 32 hex digits (a 16-byte AES key)")
    return bytes.fromhex(value)


def parse(data):
    """A :class:`NodeConfig` from the decoded JSON document."""
    _table(data, "", ("schema", "node_id", "sample_interval_s", "modbus", "ble"), ("pins",))
    schema = data["schema"]
    if schema != SCHEMA or not _is_int(schema):
        raise ValueError("schema: expected {}, got {}".format(SCHEMA, schema))
    node_id = _node_id(data["node_id"])
    interval = _int(data, "sample_interval_s", "", 1, 3600)
    m = _table(data["modbus"], "modbus.", ("enabled", "unit_id", "baudrate"))
    baudrate = m["baudrate"]
    if not _is_int(baudrate) or baudrate not in BAUD_RATES:
        raise ValueError(
            "modbus.baudrate: expected one of {}, got {}".format(list(BAUD_RATES), baudrate)
        )
    modbus = ModbusConfig(
        _bool(m, "enabled", "modbus."), _int(m, "unit_id", "modbus.", 1, 247), baudrate
    )
    b = _table(data["ble"], "ble.", ("enabled", "interval_s", "key"))
    ble = BleConfig(
        _bool(b, "enabled", "ble."), _int(b, "interval_s", "ble.", 1, 3600), _key(b["key"])
    )
    pins = {}
    if "pins" in data:
        p = _table(data["pins"], "pins.", (), PIN_NAMES)
        for name in p:
            pins[name] = _int(p, name, "pins.", 0, 99)
    return NodeConfig(node_id, interval, modbus, ble, pins)


def parse_text(text):
    """Parse the file's text: JSON errors become ValueError too."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValueError("not valid JSON: {}".format(exc)) from None
    return parse(data)


def load(path):
    """(config, None) from the file at ``path``, or (None, why) when it is missing or broken."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError as exc:
        return None, "cannot read {}: {}".format(path, exc)
    try:
        return parse_text(text), None
    except ValueError as exc:
        return None, "{}: {}".format(path, exc)
