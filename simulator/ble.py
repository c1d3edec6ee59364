"""A simulated BLE neighbourhood: sensors that advertise, peripherals that answer, an adapter.

:class:`BleSimulator` holds BTHome and Ruuvi advertisers (RuuviTag formats 3 and 5; a Ruuvi Air's
6 and E1, the latter in a BLE 5 extended advert) and GATT peripherals and hands out two
bleak backends for bleak's ``backend=`` argument: :attr:`BleSimulator.scanner_backend` (a
``BaseBleakScanner``) and :attr:`BleSimulator.client_backend` (a ``BaseBleakClient``). The
gateway's real drivers run on them unchanged (:class:`drivers.ble_common.BleBackends`).

Adverts are real bytes: each sensor's values are encoded with the gateway's own encoders into
advertising PDU data (AD structures, at most 31 bytes in a legacy advert, 254 in an extended
one), which the fake scanner parses back into bleak's ``AdvertisementData`` as BlueZ would,
honouring a passive scan's or-patterns. Each measurement is sent ``repeats`` times, as real
sensors do.

Faults: :meth:`SimBthome.corrupt_next` / :meth:`SimRuuvi.corrupt_next` (damaged payloads),
a BTHome key that differs from the gateway's, :meth:`BleSimulator.remove_adapter` (missing at
start, or vanishing mid-scan: the scan goes silent, restarts fail) and
:meth:`BleSimulator.restore_adapter`, ``passive_supported = False``, and per peripheral:
``present = False`` (not found), ``refuse_next``/``refuse_all`` (connection failed),
``connect_delay`` (slow: the gateway's timeout fires), ``short_reads`` (wrong value length).
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from bleak.args import SizedBuffer
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, AdvertisementDataCallback, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import (
    BleakBluetoothNotAvailableError,
    BleakBluetoothNotAvailableReason,
    BleakDBusError,
    BleakDeviceNotFoundError,
    BleakError,
)
from bleak.uuids import normalize_uuid_str
from pydantic import SecretStr

from drivers.ble.bthome import OBJECTS, SERVICE_UUID16, encode_bthome
from drivers.ble.gatt_codec import CharacteristicCodec
from drivers.ble.ruuvi import DATA_FORMAT, MANUFACTURER_ID, TAG_METRICS, RuuviFields, encode_ruuvi
from drivers.ble.ruuvi_air import RuuviAirFields, encode_ruuvi_air
from gateway.config.devices import BthomeDevice, GattCharacteristic, GattDevice, RuuviDevice
from gateway.core.model import Sample

__all__ = [
    "AdapterFault",
    "BleSimulator",
    "SentPacket",
    "SimBthome",
    "SimGattPeripheral",
    "SimRuuvi",
    "SimRuuviAir",
    "ad_structures",
    "parse_ad_structures",
]

MAX_LEGACY_AD = 31  # bytes of advertising data in a legacy (BLE 4.x) advertisement
MAX_EXTENDED_AD = 254  # in one BLE 5 extended advertising PDU (AUX_ADV_IND), no chaining
_AD_FLAGS, _AD_NAME, _AD_SERVICE_DATA16, _AD_MANUFACTURER = 0x01, 0x09, 0x16, 0xFF
_G = 9.80665

AdapterFault = Literal["not_found", "no_bluetooth", "no_dbus", "not_ready"]


def ad_structures(
    *,
    service_data16: dict[int, bytes] | None = None,
    manufacturer_data: dict[int, bytes] | None = None,
    flags: int | None = 0x06,
    extended: bool = False,
) -> bytes:
    """Advertising data as it goes on air: ``<len><type><data>`` structures; ``extended``: in a
    BLE 5 extended advertisement (up to 254 bytes) rather than a legacy one (31)."""
    out = bytearray()
    if flags is not None:
        out += bytes((2, _AD_FLAGS, flags))
    for uuid, data in (service_data16 or {}).items():
        out += bytes((3 + len(data), _AD_SERVICE_DATA16)) + uuid.to_bytes(2, "little") + data
    for company, data in (manufacturer_data or {}).items():
        out += bytes((3 + len(data), _AD_MANUFACTURER)) + company.to_bytes(2, "little") + data
    if extended and len(out) > MAX_EXTENDED_AD:
        raise ValueError(f"{len(out)} bytes of advertising data; an extended advert holds 254")
    if not extended and len(out) > MAX_LEGACY_AD:
        raise ValueError(f"{len(out)} bytes of advertising data; a legacy advert holds 31")
    return bytes(out)


def parse_ad_structures(raw: bytes) -> tuple[dict[str, bytes], dict[int, bytes]]:
    """Service data (keyed by 128-bit UUID, as bleak does) and manufacturer data of an advert."""
    service_data: dict[str, bytes] = {}
    manufacturer_data: dict[int, bytes] = {}
    i = 0
    while i < len(raw):
        length = raw[i]
        if length == 0 or i + 1 + length > len(raw):
            break  # padding or a damaged structure: what a controller would drop
        ad_type, body = raw[i + 1], raw[i + 2 : i + 1 + length]
        if ad_type == _AD_SERVICE_DATA16 and len(body) >= 2:
            uuid = int.from_bytes(body[:2], "little")
            service_data[f"0000{uuid:04x}-0000-1000-8000-00805f9b34fb"] = body[2:]
        elif ad_type == _AD_MANUFACTURER and len(body) >= 2:
            manufacturer_data[int.from_bytes(body[:2], "little")] = body[2:]
        i += 1 + length
    return service_data, manufacturer_data


def _matches(raw: bytes, patterns: Sequence[tuple[int, int, bytes]]) -> bool:
    """Whether an advert passes BlueZ advertisement-monitor or-patterns."""
    i = 0
    while i < len(raw):
        length = raw[i]
        if length == 0 or i + 1 + length > len(raw):
            return False
        ad_type, body = raw[i + 1], raw[i + 2 : i + 1 + length]
        for start, pattern_type, content in patterns:
            if ad_type == pattern_type and body[start : start + len(content)] == content:
                return True
        i += 1 + length
    return False


class _Climate:
    """Plausible street-side values, drifting slowly, seeded; ``at(t)`` with t in seconds."""

    def __init__(self, seed: int | str) -> None:
        rng = random.Random(f"ble/{seed}")
        self._temperature = rng.uniform(8.0, 24.0)
        self._humidity = rng.uniform(45.0, 80.0)
        self._pressure = rng.uniform(990.0, 1030.0)
        self._phase = rng.uniform(0.0, 2 * math.pi)
        self._period = rng.uniform(600.0, 1800.0)
        self._battery = rng.uniform(60.0, 100.0)
        self._rng = rng

    def at(self, t: float) -> dict[str, float]:
        wave = math.sin(2 * math.pi * t / self._period + self._phase)
        noise = self._rng.gauss(0.0, 0.02)
        battery = max(0.0, self._battery - t / 36_000.0)  # 1 % per 10 hours
        return {
            "temperature": self._temperature + 2.0 * wave + noise,
            "humidity": min(100.0, max(0.0, self._humidity - 6.0 * wave + 5 * noise)),
            "pressure": self._pressure + 0.5 * wave,  # hPa
            "battery": battery,
            "voltage": 2.2 + battery / 100.0,  # a CR2032 from 2.2 V (empty) to 3.2 V
            "acceleration": _G + noise,
        }


_CLIMATE_METRICS = frozenset(_Climate(0).at(0))


@dataclass
class SentPacket:
    """One measurement a simulated sensor sent: what a receiver must decode from it."""

    device: str
    key: int | None  # BTHome packet id / Ruuvi measurement sequence (None: not sent)
    values: dict[str, float]  # metric -> value as encoded (already at the format's resolution)
    payload: bytes
    corrupted: bool = False
    adverts: int = 0  # times it went on air
    # A sensor that sends one measurement in several data formats (a Ruuvi Air: 6 and E1):
    # the payload of each, by format; ``payload`` is the one whose values are ``values``.
    payloads: dict[int, bytes] = dataclasses.field(default_factory=dict)


class _Advertiser:
    """What SimBthome and SimRuuvi share: identity, repeats, corruption, history."""

    def __init__(self, name: str, mac: str, seed: int | str, repeats: int) -> None:
        if repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {repeats}")
        self.name = name
        self.mac = mac.upper()
        self.repeats = repeats
        self.silent = False  # True: stops advertising (battery out, out of range)
        self.sent: list[SentPacket] = []
        self._climate = _Climate(seed)
        self._corrupt = 0

    def corrupt_next(self, count: int = 1) -> None:
        """Damage the next ``count`` measurements (each of their adverts, cut one byte short)."""
        self._corrupt += count

    def _take_corruption(self) -> bool:
        if self._corrupt:
            self._corrupt -= 1
            return True
        return False

    def measure(self, t: float) -> SentPacket:
        """A new measurement at ``t`` (seconds since the simulator started)."""
        raise NotImplementedError

    def advertising_data(self, packet: SentPacket) -> bytes:
        """The on-air advertising data of a packet."""
        raise NotImplementedError

    def adverts(self, packet: SentPacket) -> list[bytes]:
        """Every advert one repeat of a packet puts on air (one, unless several formats)."""
        return [self.advertising_data(packet)]


#: The objects a simulated BTHome sensor sends by default: battery, temperature, humidity.
BTHOME_TH = (0x01, 0x02, 0x03)


class SimBthome(_Advertiser):
    """A BTHome v2 sensor (think Xiaomi LYWSD03MMC with pvvx firmware, Shelly BLU H&T)."""

    def __init__(
        self,
        name: str,
        mac: str,
        *,
        key: bytes | None = None,
        objects: Sequence[int] = BTHOME_TH,
        packet_id: bool = True,
        first_packet_id: int = 0,
        include_mac: bool = False,
        seed: int | str = 0,
        repeats: int = 3,
    ) -> None:
        super().__init__(name, mac, seed or name, repeats)
        for object_id in objects:
            shape = OBJECTS.get(object_id)
            if shape is None or shape.metric not in _CLIMATE_METRICS:
                raise ValueError(f"the simulator cannot make values for object 0x{object_id:02x}")
        self.key = key
        self.objects = tuple(objects)
        self.send_packet_id = packet_id
        self.next_packet_id = first_packet_id
        self.counter = 0
        self.include_mac = include_mac

    def gateway_config(self, **overrides: Any) -> BthomeDevice:
        """The gateway's config entry for this sensor."""
        settings: dict[str, Any] = {"kind": "bthome", "name": self.name, "mac": self.mac}
        if self.key is not None:
            settings["key"] = SecretStr(self.key.hex())
        return BthomeDevice.model_validate({**settings, **overrides})

    def measure(self, t: float) -> SentPacket:
        climate = self._climate.at(t)
        objects, values = [], {}
        for object_id in self.objects:
            shape = OBJECTS[object_id]
            raw = shape.to_raw(climate[shape.metric])
            objects.append((object_id, shape.to_value(raw)))
            values[shape.metric] = shape.to_value(raw)
        packet_id = None
        if self.send_packet_id:
            packet_id = self.next_packet_id
            self.next_packet_id = (packet_id + 1) % 256
        self.counter = (self.counter + 1) % 2**32
        payload = encode_bthome(
            objects,
            packet_id=packet_id,
            key=self.key,
            mac=self.mac,
            counter=self.counter,
            include_mac=self.include_mac,
        )
        corrupted = self._take_corruption()
        if corrupted:
            payload = payload[:-1]
        packet = SentPacket(self.name, packet_id, values, payload, corrupted)
        self.sent.append(packet)
        return packet

    def advertising_data(self, packet: SentPacket) -> bytes:
        return ad_structures(service_data16={SERVICE_UUID16: packet.payload})


class SimRuuvi(_Advertiser):
    """A RuuviTag broadcasting data format 5 (RAWv2) or, as older firmware does, 3 (RAWv1).

    ``next_fields``: what the next measurement sends instead of simulated values (e.g. one of
    Ruuvi's test vectors); cleared once sent.
    """

    def __init__(
        self,
        name: str,
        mac: str,
        *,
        seed: int | str = 0,
        repeats: int = 3,
        first_sequence: int = 0,
        data_format: int = DATA_FORMAT,
    ) -> None:
        super().__init__(name, mac, seed or name, repeats)
        if data_format not in (3, DATA_FORMAT):
            raise ValueError(
                f"a RuuviTag sends data format 3 or 5, not {data_format} (SimRuuviAir: 6, E1)"
            )
        self.data_format = data_format
        self.sequence = first_sequence
        self.movements = 0
        self.next_fields: RuuviFields | None = None

    def gateway_config(self, **overrides: Any) -> RuuviDevice:
        """The gateway's config entry for this tag."""
        settings = {"kind": "ruuvi", "name": self.name, "mac": self.mac}
        return RuuviDevice.model_validate({**settings, **overrides})

    def _simulated(self, t: float) -> RuuviFields:
        c = self._climate.at(t)
        g = 0.00980665
        if self.data_format == 3:  # resolution: 0.01 degC, 0.5 %RH, 1 Pa, 1 mG, 1 mV
            return RuuviFields(
                temperature=round(c["temperature"], 2),
                humidity=round(c["humidity"] * 2) / 2,
                pressure=float(round(c["pressure"] * 100)),
                acceleration_x=0.0,
                acceleration_y=round(round(0.05 / g) * g, 8),
                acceleration_z=round(round(c["acceleration"] / g) * g, 8),
                voltage=round(c["voltage"], 3),
            )
        if self.sequence % 10 == 9:
            self.movements = (self.movements + 1) % 255
        return RuuviFields(
            temperature=round(round(c["temperature"] / 0.005) * 0.005, 3),
            humidity=round(round(c["humidity"] / 0.0025) * 0.0025, 4),
            pressure=float(round(c["pressure"] * 100)),
            acceleration_x=0.0,
            acceleration_y=round(round(0.05 / g) * g, 8),
            acceleration_z=round(round(c["acceleration"] / g) * g, 8),
            voltage=round(c["voltage"], 3),
            tx_power=4,
            movement_count=self.movements,
            sequence=self.sequence,
            mac=self.mac,
        )

    def measure(self, t: float) -> SentPacket:
        fields, self.next_fields = self.next_fields or self._simulated(t), None
        values = {
            name: float(value)
            for name in TAG_METRICS
            if (value := getattr(fields, name)) is not None
        }
        payload = encode_ruuvi(fields, self.data_format)
        corrupted = self._take_corruption()
        if corrupted:
            payload = payload[:-1]
        key = fields.sequence if self.data_format == DATA_FORMAT else None
        packet = SentPacket(self.name, key, values, payload, corrupted)
        if self.data_format == DATA_FORMAT:
            self.sequence = (self.sequence + 1) % 65535  # 65535 means "not available"
        self.sent.append(packet)
        return packet

    def advertising_data(self, packet: SentPacket) -> bytes:
        return ad_structures(manufacturer_data={MANUFACTURER_ID: packet.payload})


#: Ruuvi Air's luminosity code step in data format 6: ln(lx + 1) per code (drivers.ble.ruuvi_air).
_LUX_STEP = math.log(65536) / 254


class SimRuuviAir(_Advertiser):
    """A Ruuvi Air: each measurement goes on air in data format 6 (a legacy advert, for
    Bluetooth 4 receivers) and E1 (a BLE 5 extended advert, with PM1/4/10, finer luminosity, a
    24-bit sequence and the full MAC), as the real one does.

    ``formats``: which it sends and in which order within each repeat (default E1, then 6).
    ``values`` of a packet are what E1 carries (6's when E1 is not sent); ``payloads`` holds
    both. ``next_fields``: what the next measurement sends instead of simulated values.
    """

    def __init__(
        self,
        name: str,
        mac: str,
        *,
        seed: int | str = 0,
        repeats: int = 3,
        first_sequence: int = 0,
        formats: Sequence[int] = (0xE1, 6),
    ) -> None:
        super().__init__(name, mac, seed or name, repeats)
        if not formats or set(formats) - {6, 0xE1} or len(set(formats)) != len(formats):
            raise ValueError(f"a Ruuvi Air sends formats 6 and/or 0xE1, not {list(formats)}")
        self.formats = tuple(formats)
        self.sequence = first_sequence
        self.calibrating = False
        self.next_fields: RuuviAirFields | None = None
        rng = random.Random(f"ruuvi-air/{seed or name}")
        self._pm = rng.uniform(3.0, 25.0)
        self._co2 = rng.uniform(420.0, 900.0)
        self._lux = rng.uniform(50.0, 20_000.0)

    def gateway_config(self, **overrides: Any) -> RuuviDevice:
        """The gateway's config entry for this Ruuvi Air."""
        settings = {"kind": "ruuvi", "name": self.name, "mac": self.mac}
        return RuuviDevice.model_validate({**settings, **overrides})

    def _simulated(self, t: float) -> RuuviAirFields:
        c = self._climate.at(t)
        wave = 1 + 0.2 * math.sin(t / 300.0)
        return RuuviAirFields(
            temperature=round(c["temperature"] * 200) / 200,
            humidity=round(c["humidity"] * 400) / 400,
            pressure=float(round(c["pressure"] * 100)),
            pm1=round(self._pm * 0.6 * wave * 10) / 10,
            pm25=round(self._pm * wave * 10) / 10,
            pm4=round(self._pm * 1.3 * wave * 10) / 10,
            pm10=round(self._pm * 1.6 * wave * 10) / 10,
            co2=float(round(self._co2 * wave)),
            voc_index=round(100 * wave),
            nox_index=round(wave),
            illuminance=round(self._lux * wave * 100) / 100,
            calibrating=self.calibrating,
            sequence=self.sequence,
            mac=self.mac,
        )

    def measure(self, t: float) -> SentPacket:
        fields, self.next_fields = self.next_fields or self._simulated(t), None
        legacy = dataclasses.replace(
            fields,
            pm1=None,
            pm4=None,
            pm10=None,
            sequence=None if fields.sequence is None else fields.sequence & 0xFF,
            # format 6's luminosity code ends at 65535 lx: it saturates there
            illuminance=None if fields.illuminance is None else min(fields.illuminance, 65535),
        )
        encoded = {0xE1: fields, 6: legacy}
        payloads = {f: encode_ruuvi_air(encoded[f], f) for f in self.formats}
        corrupted = self._take_corruption()
        if corrupted:
            payloads = {f: p[:-1] for f, p in payloads.items()}
        main = 0xE1 if 0xE1 in self.formats else 6
        values = _air_values(fields if main == 0xE1 else legacy, main)
        packet = SentPacket(
            self.name,
            fields.sequence,
            values,
            payloads[main],
            corrupted,
            payloads=payloads,
        )
        if fields.sequence is not None:
            self.sequence = (fields.sequence + 1) % 0xFFFFFF  # 0xFFFFFF means "not available"
        self.sent.append(packet)
        return packet

    def advertising_data(self, packet: SentPacket) -> bytes:
        return self.adverts(packet)[0]

    def adverts(self, packet: SentPacket) -> list[bytes]:
        return [
            ad_structures(
                manufacturer_data={MANUFACTURER_ID: packet.payloads[f]}, extended=f == 0xE1
            )
            for f in self.formats
        ]


def _air_values(fields: RuuviAirFields, data_format: int) -> dict[str, float]:
    """What a receiver decodes from ``fields`` sent in ``data_format`` (its resolution)."""
    values: dict[str, float] = {}
    for name in ("temperature", "humidity", "pressure", "pm1", "pm25", "pm4", "pm10", "co2"):
        value = getattr(fields, name)
        if value is not None:
            values[name] = float(value)
    for name in ("voc_index", "nox_index"):
        index = getattr(fields, name)
        if index is not None:
            values[name] = float(index)
    if fields.illuminance is not None:
        if data_format == 6:  # a logarithmic code of one byte, read back to 0.01 lx
            code = round(math.log1p(fields.illuminance) / _LUX_STEP)
            values["illuminance"] = round(math.expm1(code * _LUX_STEP), 2)
        else:
            values["illuminance"] = round(fields.illuminance * 100) / 100
    values["calibration_state"] = float(fields.calibrating)
    return values


class SimGattPeripheral:
    """A connectable BLE peripheral serving the characteristics a ``ble_gatt`` config reads."""

    def __init__(
        self, name: str, mac: str, characteristics: Sequence[GattCharacteristic], seed: int = 0
    ) -> None:
        self.name = name
        self.mac = mac.upper()
        self.characteristics = tuple(characteristics)
        self._codecs = {normalize_uuid_str(c.uuid): CharacteristicCodec(c) for c in characteristics}
        self._climate = _Climate(seed or name)
        self._start = time.monotonic()
        # fault switches
        self.present = True  # False: out of range, BlueZ cannot find it
        self.refuse_next = 0  # refuse this many connection attempts
        self.refuse_all = False
        self.connect_delay = 0.0  # seconds before a connection completes
        self.short_reads = False  # answer reads one byte short
        # counters
        self.connect_attempts = 0
        self.connections = 0
        self.disconnects = 0
        self.reads = 0
        self.served: list[Sample] = []  # every value read, as the gateway decodes it

    def gateway_config(self, **overrides: Any) -> GattDevice:
        """The gateway's config entry for this peripheral."""
        settings = {
            "kind": "ble_gatt",
            "name": self.name,
            "mac": self.mac,
            "characteristics": self.characteristics,
        }
        return GattDevice.model_validate({**settings, **overrides})

    def was_served(self, metric: str, value: float) -> bool:
        """Whether ``value`` of ``metric`` was read from this peripheral."""
        return any(s.metric == metric and s.value == value for s in self.served)

    def read(self, uuid: str) -> bytes:
        """The value of a characteristic now (as the peripheral answers a read)."""
        codec = self._codecs[normalize_uuid_str(uuid)]
        metric = codec.spec.metric
        climate = self._climate.at(time.monotonic() - self._start)
        value = next((v for k, v in climate.items() if metric.startswith(k)), 42.0)
        data = codec.encode(value)
        self.reads += 1
        self.served.append(codec.decode(data))
        return data[:-1] if self.short_reads else data

    def services(self) -> BleakGATTServiceCollection:
        """The GATT table: one service holding every characteristic."""
        collection = BleakGATTServiceCollection()
        service = BleakGATTService(None, 1, normalize_uuid_str("181a"))  # Environmental Sensing
        collection.add_service(service)
        for handle, uuid in enumerate(self._codecs, start=2):
            characteristic = BleakGATTCharacteristic(None, handle, uuid, ["read"], _mtu, service)
            collection.add_characteristic(characteristic)
        return collection


def _mtu() -> int:
    return 20


class BleSimulator:
    """Advertisers, peripherals and the adapter they are heard through (see module doc)."""

    def __init__(self, adapter: str = "hci0", clock: Callable[[], float] = time.monotonic) -> None:
        self.adapter = adapter
        self.advertisers: dict[str, SimBthome | SimRuuvi | SimRuuviAir] = {}
        self.peripherals: dict[str, SimGattPeripheral] = {}
        self.adapter_present = True
        self.adapter_fault: AdapterFault = "not_found"
        self.passive_supported = True
        self.scanners: list[_SimScanner] = []  # running scanners
        self.scanner_starts = 0
        self.adverts_sent = 0
        self._clock = clock
        self._start = clock()
        self.scanner_backend: type[BaseBleakScanner] = type(
            "SimScanner", (_SimScanner,), {"sim": self}
        )
        self.client_backend: type[BaseBleakClient] = type("SimClient", (_SimClient,), {"sim": self})

    # -- the neighbourhood -----------------------------------------------------------------

    def add(self, device: SimBthome | SimRuuvi | SimRuuviAir | SimGattPeripheral) -> None:
        """Put a sensor or peripheral in range."""
        if isinstance(device, SimGattPeripheral):
            self.peripherals[device.mac] = device
        else:
            self.advertisers[device.mac] = device

    def remove_adapter(self, fault: AdapterFault = "not_found") -> None:
        """Unplug the adapter: running scans go silent; starts and connects fail with ``fault``."""
        self.adapter_present = False
        self.adapter_fault = fault

    def restore_adapter(self) -> None:
        """Plug the adapter back in."""
        self.adapter_present = True

    def adapter_error(self) -> Exception:
        """What bleak's BlueZ backend raises while the adapter is missing."""
        fault = self.adapter_fault
        if fault == "no_bluetooth":
            return BleakBluetoothNotAvailableError(
                "No Bluetooth adapters found.", BleakBluetoothNotAvailableReason.NO_BLUETOOTH
            )
        if fault == "no_dbus":
            return FileNotFoundError(2, "No such file or directory", "/run/dbus/system_bus_socket")
        if fault == "not_ready":
            return BleakDBusError("org.bluez.Error.NotReady", ["Resource Not Ready"])
        return BleakError(f"adapter '{self.adapter}' not found")

    # -- the air ---------------------------------------------------------------------------

    def broadcast(self, rounds: int = 1) -> list[SentPacket]:
        """Every advertiser measures ``rounds`` times; each packet goes on air ``repeats`` times."""
        sent = []
        for _ in range(rounds):
            t = self._clock() - self._start
            for advertiser in self.advertisers.values():
                if advertiser.silent:
                    continue
                packet = advertiser.measure(t)
                raws = advertiser.adverts(packet)
                for _ in range(advertiser.repeats):
                    for raw in raws:
                        self.transmit(advertiser.mac, advertiser.name, raw)
                        packet.adverts += 1
                sent.append(packet)
        return sent

    def transmit(self, address: str, name: str | None, raw: bytes) -> None:
        """One advert on air, heard by every running scanner (none while the adapter is gone)."""
        self.adverts_sent += 1
        if not self.adapter_present:
            return
        for scanner in list(self.scanners):
            scanner.hear(address, name, raw)

    async def air(self, interval: float, rounds: int | None = None) -> None:
        """Broadcast a round every ``interval`` seconds (forever, or ``rounds`` times)."""
        done = 0
        while rounds is None or done < rounds:
            self.broadcast()
            done += 1
            await asyncio.sleep(interval)


class _SimScanner(BaseBleakScanner):
    """bleak scanner backend on the simulator's air."""

    sim: ClassVar[BleSimulator]

    def __init__(
        self,
        detection_callback: AdvertisementDataCallback | None,
        service_uuids: list[str] | None,
        scanning_mode: Literal["active", "passive"] = "active",
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        bluez = kwargs.get("bluez") or {}
        self.mode = scanning_mode
        self.or_patterns: list[tuple[int, int, bytes]] = [
            (int(start), int(ad_type), bytes(content))
            for start, ad_type, content in bluez.get("or_patterns") or ()
        ]
        self.adapter = bluez.get("adapter")
        if scanning_mode == "passive" and not self.or_patterns:
            raise BleakError("passive scanning mode requires bluez or_patterns")  # as BlueZ's

    async def start(self) -> None:
        sim = self.sim
        if not sim.adapter_present:
            raise sim.adapter_error()
        if self.adapter is not None and self.adapter != sim.adapter:
            raise BleakError(f"adapter '{self.adapter}' not found")
        if self.mode == "passive" and not sim.passive_supported:
            raise BleakError(
                "passive scanning on Linux requires BlueZ >= 5.56 with --experimental enabled "
                "and Linux kernel >= 5.10"
            )
        self.seen_devices = {}
        sim.scanner_starts += 1
        sim.scanners.append(self)

    async def stop(self) -> None:
        sim = self.sim
        if self in sim.scanners:
            sim.scanners.remove(self)
        if not sim.adapter_present:
            raise BleakDBusError("org.freedesktop.DBus.Error.UnknownObject", ["adapter gone"])

    def hear(self, address: str, name: str | None, raw: bytes) -> None:
        """An advert reached the antenna: filter it as BlueZ would and report it."""
        if self.mode == "passive" and not _matches(raw, self.or_patterns):
            return
        service_data, manufacturer_data = parse_ad_structures(raw)
        adv = AdvertisementData(
            local_name=name,
            manufacturer_data=manufacturer_data,
            service_data=service_data,
            service_uuids=list(service_data),
            tx_power=None,
            rssi=-60,
            platform_data=(),
        )
        if not self.is_allowed_uuid(adv.service_uuids):
            return
        device = self.create_or_update_device(address, address, name, None, adv)
        self.call_detection_callbacks(device, adv)


class _SimClient(BaseBleakClient):
    """bleak client backend connecting to the simulator's peripherals."""

    sim: ClassVar[BleSimulator]

    def __init__(self, address_or_ble_device: BLEDevice | str, **kwargs: Any) -> None:
        super().__init__(
            address_or_ble_device,
            disconnected_callback=kwargs.pop("disconnected_callback", None),
            timeout=kwargs.pop("timeout", 10.0),
        )
        self._peripheral: SimGattPeripheral | None = None

    @property
    def name(self) -> str:
        return self._peripheral.name if self._peripheral is not None else self.address

    @property
    def mtu_size(self) -> int:
        return 23

    @property
    def is_connected(self) -> bool:
        return self._peripheral is not None

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        sim = self.sim
        if not sim.adapter_present:
            raise sim.adapter_error()
        peripheral = sim.peripherals.get(self.address.upper())
        if peripheral is None or not peripheral.present:
            raise BleakDeviceNotFoundError(
                self.address, f"Device with address {self.address} was not found."
            )
        peripheral.connect_attempts += 1
        if peripheral.refuse_all or peripheral.refuse_next > 0:
            peripheral.refuse_next = max(0, peripheral.refuse_next - 1)
            raise BleakDBusError("org.bluez.Error.Failed", ["le-connection-abort-by-local"])
        if peripheral.connect_delay:
            await asyncio.sleep(peripheral.connect_delay)
        peripheral.connections += 1
        self._peripheral = peripheral
        self.services = peripheral.services()

    async def disconnect(self) -> None:
        if self._peripheral is not None:
            self._peripheral.disconnects += 1
        self._peripheral = None
        self.services = None

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        raise BleakError("the simulator does not pair")

    async def unpair(self) -> None:
        raise BleakError("the simulator does not pair")

    async def read_gatt_char(
        self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        if self._peripheral is None:
            raise BleakError("Not connected")
        if not self.sim.adapter_present:
            raise self.sim.adapter_error()
        return bytearray(self._peripheral.read(characteristic.uuid))

    async def read_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        raise BleakError("the simulator has no descriptors")

    async def write_gatt_char(
        self, characteristic: BleakGATTCharacteristic, data: SizedBuffer, response: bool
    ) -> None:
        raise BleakError("the simulator's characteristics are read-only")

    async def write_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, data: SizedBuffer
    ) -> None:
        raise BleakError("the simulator has no descriptors")

    async def start_notify(
        self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback, **kwargs: Any
    ) -> None:
        raise BleakError("the simulator does not notify")

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        raise BleakError("the simulator does not notify")
