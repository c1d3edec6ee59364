"""node.json parsing in MicroPython: the deploy tool's document, every kind of bad input."""

import json

from fakeboard import STATE_DIR
from mpcheck import eq, raises
from sgnode import config

GOOD = {
    "schema": 1,
    "node_id": "pole-17-aq",
    "sample_interval_s": 10,
    "modbus": {"enabled": True, "unit_id": 1, "baudrate": 9600},
    "ble": {"enabled": False, "interval_s": 5, "key": None},
}


def _with(path, value):
    doc = json.loads(json.dumps(GOOD))
    keys = path.split(".")
    target = doc
    for k in keys[:-1]:
        target = target[k]
    if value is KeyError:
        del target[keys[-1]]
    else:
        target[keys[-1]] = value
    return doc


def test_the_deploy_document_parses():
    cfg = config.parse_text(json.dumps(GOOD))
    eq((cfg.node_id, cfg.sample_interval_s), ("pole-17-aq", 10))
    eq((cfg.modbus.enabled, cfg.modbus.unit_id, cfg.modbus.baudrate), (True, 1, 9600))
    eq((cfg.ble.enabled, cfg.ble.interval_s, cfg.ble.key), (False, 5, None))
    eq(cfg.pins, {})


def test_key_and_pins():
    doc = _with("ble.key", "231D39C1d7cc1ab1aee224cd096db932")
    doc["pins"] = {"modbus_de": 4, "i2c_sda": 21}
    cfg = config.parse(doc)
    eq(cfg.ble.key, bytes.fromhex("231d39c1d7cc1ab1aee224cd096db932"))
    eq(cfg.pins, {"modbus_de": 4, "i2c_sda": 21})


BAD = [
    ("schema", 2, "schema"),
    ("schema", KeyError, "schema: missing"),
    ("node_id", "Pole-17", "node_id"),
    ("node_id", "", "node_id"),
    ("node_id", "x" * 33, "node_id"),
    ("node_id", 17, "node_id"),
    ("sample_interval_s", 0, "sample_interval_s"),
    ("sample_interval_s", "10", "sample_interval_s"),
    ("sample_interval_s", True, "sample_interval_s"),
    ("modbus.unit_id", 0, "modbus.unit_id"),
    ("modbus.unit_id", 248, "modbus.unit_id"),
    ("modbus.baudrate", 9601, "modbus.baudrate"),
    ("modbus.enabled", "yes", "modbus.enabled"),
    ("modbus.parity", "E", "modbus.parity: unknown key"),
    ("modbus", [], "modbus: expected a JSON object"),
    ("ble.key", "abc", "ble.key"),
    ("ble.key", "zz" * 16, "ble.key"),
    ("ble.interval_s", KeyError, "ble.interval_s: missing"),
    ("wifi", {}, "wifi: unknown key"),
    ("pins", {"led": 2}, "pins.led: unknown key"),
    ("pins", {"i2c_sda": -1}, "pins.i2c_sda"),
]


def test_every_bad_value_names_its_key():
    for path, value, expected in BAD:
        exc = raises(ValueError, config.parse, _with(path, value))
        message = str(exc)
        if not message.startswith(expected):
            raise AssertionError("{}={!r}: message {!r}".format(path, value, message))


def test_not_json_and_not_an_object():
    eq(str(raises(ValueError, config.parse_text, "{")).startswith("not valid JSON"), True)
    eq(str(raises(ValueError, config.parse_text, "[1]")), "config: expected a JSON object")


def test_load_reports_missing_and_broken_files():
    cfg, why = config.load("/nonexistent/node.json")
    eq(cfg, None)
    eq(why.startswith("cannot read /nonexistent/node.json"), True, why)
    path = STATE_DIR + "/sgnode-broken.json"
    with open(path, "w") as f:
        f.write('{"schema": 1, "node_id": "a"')
    cfg, why = config.load(path)
    eq(cfg, None)
    eq(why.startswith(path + ": not valid JSON"), True, why)
