"""SDS011, SHT3x, AES and BTHome against the shared golden vectors, in MicroPython."""

from mpcheck import eq, raises, vectors
from sgnode import aes, beacon, bthome, sds011, sht3x
from sgnode.sampler import Reading

NODE = vectors("node.json")
BLE = vectors("ble.json")


def test_sds011_vectors_decode_and_encode():
    for v in NODE["sds011"]:
        frame = bytes.fromhex(v["frame"])
        eq(sds011.decode(frame), (v["pm25_x10"], v["pm10_x10"], v["device_id"]), v["name"])
        eq(sds011.encode(v["pm25_x10"], v["pm10_x10"], v["device_id"]), frame, v["name"])


def test_sds011_invalid_frames_are_refused():
    for v in NODE["sds011_invalid"]:
        raises(ValueError, sds011.decode, bytes.fromhex(v["frame"]))


def test_sds011_reader_finds_frames_in_noise_and_split_reads():
    good = [bytes.fromhex(v["frame"]) for v in NODE["sds011"]]
    bad = bytes.fromhex(NODE["sds011_invalid"][0]["frame"])
    stream = b"\x00\xab\xaa" + good[0] + bad + good[1][:4]
    r = sds011.Reader()
    eq(r.feed(stream), 1, "frames in the first chunk")
    eq(r.latest[:2], (140, 148))
    eq(r.feed(good[1][4:] + good[3]), 2, "frames completed by the second chunk")
    eq(r.latest[:2], (1236, 2618))
    eq(r.bad, 1, "bad frames counted")
    for _ in range(200):  # garbage never makes the buffer grow
        r.feed(b"\xaa\xc0" + bytes(30))
    eq(len(r._buf) <= 2 * sds011.FRAME_SIZE, True, "buffer bounded")


def test_sht3x_datasheet_crc_and_vectors():
    eq(sht3x.crc8(b"\xbe\xef"), 0x92, "datasheet CRC example")
    for v in NODE["sht3x"]:
        data = bytes.fromhex(v["data"])
        eq(sht3x.decode(data), (v["temp_x100"], v["rh_x100"]), v["name"])
        eq(sht3x.decode(sht3x.encode(v["temp_x100"], v["rh_x100"])), (v["temp_x100"], v["rh_x100"]))
    for v in NODE["sht3x_invalid"]:
        raises(ValueError, sht3x.decode, bytes.fromhex(v["data"]))


def test_aes_fips197_vector_pure_and_cryptolib():
    key = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
    block = bytes.fromhex("00112233445566778899aabbccddeeff")
    expected = bytes.fromhex("69c4e0d86a7b0430d8cdb78070b4c55a")
    eq(aes.ecb(key, pure=True).encrypt(block), expected, "pure")
    eq(aes.ecb(key).encrypt(block), expected, "cryptolib")


def test_ccm_with_pure_aes_and_cryptolib_agree_on_a_multi_block_message():
    # The BTHome vectors check CCM on one short block; this covers several blocks and a
    # partial last one, and an 8-byte MIC.
    key = bytes(range(0xC0, 0xD0))
    nonce = bytes.fromhex("00000003020100a0a1a2a3a4a5")
    msg = bytes(range(40))
    a = aes.ccm_encrypt(aes.ecb(key, pure=True), nonce, msg, 8)
    b = aes.ccm_encrypt(aes.ecb(key), nonce, msg, 8)
    eq(a, b)
    eq(len(a), 48)


def _raw_objects(objects):
    return [(oid, bthome.to_raw(oid, value)) for oid, value in objects]


def test_bthome_ble_json_vectors_encode_byte_for_byte():
    for v in BLE["bthome"]:
        key = v.get("key")
        for pure in (False, True):
            cipher = aes.ecb(bytes.fromhex(key), pure) if key else None
            mac = bytes.fromhex(v["mac"].replace(":", "")) if key else None
            data = bthome.encode(
                _raw_objects(v["objects"]),
                packet_id=v["packet_id"],
                trigger_based=v["trigger_based"],
                cipher=cipher,
                mac=mac,
                counter=v.get("counter", 0),
            )
            eq(data.hex(), v["service_data"], v["name"])


def _reading(fields):
    r = Reading()
    for k in fields:
        setattr(r, k, fields[k])
    return r


def test_bthome_node_vectors_from_readings():
    readings = {m["name"]: m["reading"] for m in NODE["modbus_registers"]}
    for v in NODE["bthome"]:
        key = v.get("key")
        data = bthome.encode(
            beacon.objects(_reading(readings[v["reading"]])),
            packet_id=v["packet_id"],
            cipher=aes.ecb(bytes.fromhex(key)) if key else None,
            mac=bytes.fromhex(v["mac"].replace(":", "")) if key else None,
            counter=v.get("counter", 0),
        )
        eq(data.hex(), v["service_data"], v["name"])


def test_bthome_refuses_values_that_do_not_fit():
    raises(ValueError, bthome.encode, [(bthome.PM25, 70000)])
    raises(ValueError, bthome.encode, [(bthome.TEMPERATURE, -40000)])
    raises(ValueError, bthome.encode, [(0x99, 1)])


def test_advertising_payload_wraps_service_data():
    eq(
        bthome.advertising_payload(bytes.fromhex("4002ca0903bf13")).hex(),
        "0201060a16d2fc4002ca0903bf13",
    )


def test_sds011_command_vectors():
    for v in NODE["sds011_commands"]:
        eq(sds011.command(v["command"], v["value"]).hex(), v["frame"], v["name"])
    names = {v["frame"]: v["name"] for v in NODE["sds011_commands"]}
    eq(
        [names[f.hex()] for f in sds011.wake_commands()],
        ["work", "report_actively", "continuous"],
    )
