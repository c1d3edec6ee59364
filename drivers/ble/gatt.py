"""The ``ble_gatt`` driver: a BLE peripheral read actively, one connection per poll.

Each :meth:`GattDriver.poll` connects, reads the configured characteristics, disconnects and
decodes them (:mod:`drivers.gatt_codec`). The connection is not kept between polls: a
peripheral usually serves one central at a time and a held connection drains a sensor's
battery. A poll makes at most ``connect_attempts`` attempts, a short backoff apart, each
bounded by ``timeout`` (connect and reads together); a timed-out attempt is a
:class:`DeviceTimeout`, a refused or failed one :class:`DeviceUnreachable`, a missing adapter
:class:`AdapterUnavailable` (not retried within the poll: the scheduler's backoff is the right
pace for that), a value of the wrong length :class:`BadFrame`. bleak's errors are translated
by :class:`drivers.ble_common.BleakErrors` only.
"""

from __future__ import annotations

import asyncio
import logging
import random
from types import TracebackType
from typing import TYPE_CHECKING, Self

from bleak import BleakClient
from bleak.args.bluez import BlueZClientArgs

from drivers.ble.common import BleakErrors
from drivers.ble.gatt_codec import CharacteristicCodec
from gateway.core.backoff import next_delay
from gateway.core.errors import (
    AdapterUnavailable,
    BadFrame,
    DeviceError,
    DeviceTimeout,
    DeviceUnreachable,
    FrameError,
)

if TYPE_CHECKING:
    from bleak.backends.client import BaseBleakClient

    from drivers.ble.config import GattDevice
    from gateway.core.model import Sample

__all__ = ["GattDriver"]

log = logging.getLogger(__name__)


class GattDriver:
    """``async with GattDriver(cfg) as dev: await dev.poll()`` (see module doc)."""

    def __init__(
        self,
        config: GattDevice,
        backend: type[BaseBleakClient] | None = None,
        adapter: str | None = None,
        *,
        retry_delay: float = 0.5,
        rng: random.Random | None = None,
    ) -> None:
        if retry_delay <= 0:
            raise ValueError(f"retry_delay must be > 0, got {retry_delay}")
        self._config = config
        self._backend = backend
        self._adapter = adapter
        self._retry_delay = retry_delay
        self._rng = rng or random.Random()
        self._codecs = tuple(CharacteristicCodec(c) for c in config.characteristics)
        self._errors = BleakErrors(config.name, adapter)
        self.attempts = 0  # connection attempts made, all polls together

    @property
    def name(self) -> str:
        """The device name from the config."""
        return self._config.name

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None  # every poll disconnects before it returns

    async def poll(self) -> list[Sample]:
        """Connect, read every characteristic, disconnect; retried up to connect_attempts."""
        attempts = self._config.connect_attempts
        for attempt in range(attempts):
            if attempt:
                cap = self._retry_delay * 4
                await asyncio.sleep(next_delay(attempt - 1, self._rng, self._retry_delay, cap))
            try:
                values = await self._read_once()
            except AdapterUnavailable:
                raise
            except (DeviceTimeout, DeviceUnreachable) as exc:
                if attempt + 1 == attempts:
                    raise
                log.debug("%s: attempt %d of %d failed: %s", self.name, attempt + 1, attempts, exc)
                continue
            return self._decode(values)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _read_once(self) -> list[bytes]:
        cfg = self._config
        errors = self._errors
        self.attempts += 1
        bluez: BlueZClientArgs = {} if self._adapter is None else {"adapter": self._adapter}
        errors.doing = f"connecting to {cfg.mac}"
        with errors:
            client = BleakClient(cfg.mac, timeout=cfg.timeout, bluez=bluez, backend=self._backend)
        values = []
        try:
            with errors:
                async with asyncio.timeout(cfg.timeout):
                    await client.connect()
                    for codec in self._codecs:
                        errors.doing = f"reading characteristic {codec.spec.uuid}"
                        values.append(bytes(await client.read_gatt_char(codec.spec.uuid)))
        finally:
            await self._disconnect(client)
        return values

    async def _disconnect(self, client: BleakClient) -> None:
        errors = self._errors
        errors.doing = "disconnecting"
        try:
            with errors:
                async with asyncio.timeout(self._config.timeout):
                    await client.disconnect()
        except DeviceError as exc:
            log.debug("%s: disconnect failed: %s", self.name, exc)

    def _decode(self, values: list[bytes]) -> list[Sample]:
        try:
            return [codec.decode(value) for codec, value in zip(self._codecs, values, strict=True)]
        except FrameError as exc:
            raise BadFrame(self.name, exc) from exc
