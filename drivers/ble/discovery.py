"""One BLE scan of everything in range, for ``streetgate scan ble``: who advertises, how loud,
and what the adverts say where the format is known (BTHome v2, Ruuvi 3, 5, 6 and E1).

:func:`discover` runs an active scan for a number of seconds through bleak (``backend=`` takes
the simulator's scanner in tests, as :class:`drivers.ble_scan.BleScanSource` does) and returns
plain :class:`BleFound` records, so nothing outside ``drivers/`` sees bleak. bleak's errors
become :class:`gateway.errors.AdapterUnavailable` through :class:`drivers.ble_common.BleakErrors`.
"""

from __future__ import annotations

import asyncio
import re
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from bleak import BleakScanner
from bleak.args.bluez import BlueZScannerArgs

from drivers.ble.bthome import INFO_ENCRYPTED, INFO_MAC_INCLUDED, SERVICE_UUID, decode_bthome
from drivers.ble.common import BleakErrors
from drivers.ble.ruuvi import DATA_FORMATS, MANUFACTURER_ID, decode_ruuvi
from gateway.core.errors import FrameError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from bleak.backends.device import BLEDevice
    from bleak.backends.scanner import AdvertisementData, BaseBleakScanner

__all__ = ["BleFound", "Format", "discover", "find_address", "interpret", "toml_snippet"]

Format = Literal["bthome", "bthome-encrypted", "ruuvi", "unknown"]


@dataclass(slots=True)
class BleFound:
    """A device heard during the scan, as of its last advert."""

    address: str
    name: str | None
    rssi: int | None
    format: Format = "unknown"
    mac: str | None = None  # the MAC to configure (a BTHome advert may carry its own)
    values: dict[str, float] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    note: str = ""  # e.g. "encrypted (needs key)", or why a known format did not decode
    adverts: int = 0

    @property
    def recognised(self) -> bool:
        """Whether the gateway can read it as a ``[[devices]]`` entry."""
        return self.format != "unknown"

    def as_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "address": self.address,
            "name": self.name,
            "rssi": self.rssi,
            "format": self.format,
            "mac": self.mac,
            "values": self.values,
            "units": self.units,
            "note": self.note,
            "adverts": self.adverts,
            "toml": toml_snippet(self) if self.recognised else None,
        }


def interpret(found: BleFound, adv: AdvertisementData) -> None:
    """Fill in ``found``'s format, MAC and values from one advert (pure; never raises)."""
    bthome = adv.service_data.get(SERVICE_UUID)
    ruuvi = adv.manufacturer_data.get(MANUFACTURER_ID)
    if bthome:
        mac = found.address.upper()
        if bthome[0] & INFO_MAC_INCLUDED and len(bthome) >= 7:
            mac = ":".join(f"{b:02X}" for b in bthome[6:0:-1])
        found.mac = mac
        if bthome[0] & INFO_ENCRYPTED:
            found.format, found.note, found.values, found.units = (
                "bthome-encrypted",
                "encrypted (needs key)",
                {},
                {},
            )
            return
        found.format = "bthome"
        try:
            samples = decode_bthome(bytes(bthome)).samples
        except FrameError as exc:
            found.note = f"does not decode: {exc}"
            return
    elif ruuvi and ruuvi[0] in DATA_FORMATS:
        found.format = "ruuvi"
        try:
            advert = decode_ruuvi(bytes(ruuvi))
        except FrameError as exc:
            found.note = f"does not decode: {exc}"
            return
        found.mac = advert.mac or found.address.upper()
        samples = advert.samples
    else:
        return
    found.note = ""
    found.values = {s.metric: s.value for s in samples}
    found.units = {s.metric: s.unit for s in samples}


def _config_name(found: BleFound) -> str:
    base = found.name or ("ruuvi" if found.format == "ruuvi" else "bthome")
    slug = re.sub(r"[^a-z0-9]+", "-", base.lower()).strip("-") or "sensor"
    suffix = (found.mac or found.address).replace(":", "")[-4:].lower()
    return f"{slug[:40]}-{suffix}"


def toml_snippet(found: BleFound) -> str:
    """The ``[[devices]]`` entry for a recognised sensor, to paste into a config."""
    kind = "ruuvi" if found.format == "ruuvi" else "bthome"
    lines = [
        "[[devices]]",
        f'kind = "{kind}"',
        f'name = "{_config_name(found)}"',
        f'mac = "{found.mac or found.address.upper()}"',
    ]
    if found.format == "bthome-encrypted":
        lines.append('key = "..."  # the sensor\'s 32-hex-digit bindkey: required, it encrypts')
    return "\n".join(lines)


@asynccontextmanager
async def _active_scan(
    on_advert: Callable[[BLEDevice, AdvertisementData], None],
    backend: type[BaseBleakScanner] | None,
    adapter: str | None,
) -> AsyncIterator[None]:
    """An active scan calling ``on_advert`` while the block runs; bleak's errors in starting or
    stopping it become :class:`gateway.errors.AdapterUnavailable`."""
    bluez: BlueZScannerArgs = {}
    if adapter is not None:
        bluez["adapter"] = adapter
    errors = BleakErrors(None, adapter)
    errors.doing = "starting a scan"
    with errors:
        scanner = BleakScanner(on_advert, None, "active", bluez=bluez, backend=backend)
        await scanner.start()
    try:
        yield
    finally:
        errors.doing = "stopping the scan"
        with errors:
            await scanner.stop()


async def discover(
    seconds: float,
    backend: type[BaseBleakScanner] | None = None,
    adapter: str | None = None,
    heard: Callable[[BleFound], None] | None = None,
) -> list[BleFound]:
    """Every device heard in an active scan of ``seconds``, loudest first.

    ``heard`` is called for each advert (the CLI's progress). Raises
    :class:`gateway.errors.AdapterUnavailable` when the adapter is missing or fails.
    """
    found: dict[str, BleFound] = {}

    def on_advert(device: BLEDevice, adv: AdvertisementData) -> None:
        entry = found.get(device.address)
        if entry is None:
            entry = found[device.address] = BleFound(device.address, None, None)
        entry.name = adv.local_name or device.name or entry.name
        entry.rssi = adv.rssi
        entry.adverts += 1
        interpret(entry, adv)
        if heard is not None:
            heard(entry)

    async with _active_scan(on_advert, backend, adapter):
        await asyncio.sleep(seconds)
    return sorted(found.values(), key=lambda f: (-(f.rssi or -999), f.address))


async def find_address(
    address: str,
    seconds: float,
    backend: type[BaseBleakScanner] | None = None,
    adapter: str | None = None,
) -> BleFound | None:
    """Scan until ``address`` is heard (its first advert) or ``seconds`` pass; None: not heard.

    For ``streetgate doctor``: it proves a device is in range without connecting to it (a GATT
    peripheral takes one connection at a time, which a running gateway may hold). An active
    scan, because BlueZ's passive scan needs advert patterns and a GATT device's are unknown.
    Raises :class:`gateway.errors.AdapterUnavailable` when the adapter is missing or fails.
    """
    wanted = address.upper()
    heard: asyncio.Future[BleFound] = asyncio.get_running_loop().create_future()

    def on_advert(device: BLEDevice, adv: AdvertisementData) -> None:
        if device.address.upper() == wanted and not heard.done():
            found = BleFound(device.address, adv.local_name or device.name, adv.rssi, adverts=1)
            interpret(found, adv)
            heard.set_result(found)

    async with _active_scan(on_advert, backend, adapter):
        await asyncio.wait({heard}, timeout=seconds)
    return heard.result() if heard.done() else None
