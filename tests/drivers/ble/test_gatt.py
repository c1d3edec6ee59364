"""The ble_gatt driver through the real DevicePoller, against simulated peripherals.

The simulator's client backend goes in through bleak's ``BleakClient(backend=...)``; connect
failures, slowness and a missing adapter are the simulator's fault switches, not mocks.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence

import pytest
from pydantic import ValidationError

from drivers import build_driver
from drivers.ble.common import BleBackends
from drivers.ble.gatt import GattDriver
from drivers.profile import DataType, Order
from gateway.config.devices import GattCharacteristic, GattDevice
from gateway.core.clock import SystemClock
from gateway.core.errors import (
    AdapterUnavailable,
    BadFrame,
    DeviceTimeout,
    DeviceUnreachable,
    ProtocolError,
)
from gateway.core.health import Health
from gateway.core.model import Reading
from gateway.runtime.scheduler import DevicePoller
from simulator.ble import BleSimulator, SimGattPeripheral
from tests.support.waiting import until

CHARACTERISTICS = [
    GattCharacteristic(
        uuid="00002a6e-0000-1000-8000-00805f9b34fb",
        metric="temperature",
        type=DataType.INT16,
        scale=0.01,
        unit="Cel",
    ),
    GattCharacteristic(
        uuid="00002A6F-0000-1000-8000-00805F9B34FB",  # upper case in the config: still found
        metric="humidity",
        type=DataType.UINT16,
        scale=0.01,
        unit="%RH",
    ),
    GattCharacteristic(
        uuid="00002a19-0000-1000-8000-00805f9b34fb",
        metric="battery",
        type=DataType.UINT16,
        byte_order=Order.BIG,
        unit="%",
    ),
]


class Sink:
    def __init__(self) -> None:
        self.readings: list[Reading] = []

    async def __call__(self, readings: Sequence[Reading]) -> None:
        self.readings.extend(readings)


def setup(**config: object) -> tuple[BleSimulator, SimGattPeripheral, GattDriver]:
    sim = BleSimulator()
    peripheral = SimGattPeripheral("cabinet-env", "C0:FF:EE:00:00:01", CHARACTERISTICS)
    sim.add(peripheral)
    settings = {"timeout": 0.2, "connect_attempts": 3, **config}
    driver = GattDriver(
        peripheral.gateway_config(**settings),
        sim.client_backend,
        retry_delay=0.01,
        rng=random.Random(1),
    )
    return sim, peripheral, driver


def test_a_poll_connects_reads_every_characteristic_and_disconnects():
    _, peripheral, driver = setup()

    async def scenario() -> None:
        poller = DevicePoller(driver, 1.0, Sink(), SystemClock())
        async with driver:
            readings = [await poller.poll_once() for _ in range(3)]
        for poll in readings:
            assert [(r.metric, r.unit) for r in poll] == [
                ("temperature", "Cel"),
                ("humidity", "%RH"),
                ("battery", "%"),
            ]
            for reading in poll:
                assert peripheral.was_served(reading.metric, reading.value), reading
        assert peripheral.connections == peripheral.disconnects == 3
        assert peripheral.reads == 9

    asyncio.run(scenario())


def test_failed_connections_are_retried_within_a_poll_up_to_connect_attempts():
    _, peripheral, driver = setup(connect_attempts=3)
    peripheral.refuse_next = 2

    async def scenario() -> None:
        async with driver:
            samples = await driver.poll()
        assert len(samples) == 3
        assert peripheral.connect_attempts == 3
        assert driver.attempts == 3

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("fault", "error", "message"),
    [
        ("refuse", DeviceUnreachable, "org.bluez.Error.Failed"),
        ("gone", DeviceUnreachable, "not found while connecting"),
        ("slow", DeviceTimeout, "no answer while connecting"),
    ],
)
def test_a_failing_device_is_tried_connect_attempts_times_per_poll_then_goes_down(
    fault: str, error: type[Exception], message: str
):
    _, peripheral, driver = setup(connect_attempts=2, interval=0.05)
    if fault == "refuse":
        peripheral.refuse_all = True
    elif fault == "gone":
        peripheral.present = False
    else:
        peripheral.connect_delay = 1.0

    async def scenario() -> None:
        async with driver:
            with pytest.raises(error, match=message):
                await driver.poll()
        assert driver.attempts == 2
        poller = DevicePoller(driver, 0.05, Sink(), SystemClock(), rng=random.Random(2))
        task = asyncio.create_task(poller.run(), name="poll:ble_gatt:cabinet-env")
        await until(lambda: poller.status.consecutive_failures >= 3, timeout=5)
        task.cancel()
        polls = poller.status.polls_failed
        assert poller.status.health is Health.DOWN
        assert poller.status.errors_by_kind == {error.__name__: polls}
        # every poll made exactly connect_attempts attempts (one more poll may be under way)
        assert driver.attempts in (2 + 2 * polls, 2 + 2 * polls + 1)
        if fault != "gone":
            assert peripheral.connect_attempts == driver.attempts
        assert peripheral.connections == peripheral.disconnects

    asyncio.run(scenario())


def test_a_slow_peripheral_that_answers_in_time_is_read():
    _, peripheral, driver = setup(timeout=0.5)
    peripheral.connect_delay = 0.05

    async def scenario() -> None:
        async with driver:
            assert len(await driver.poll()) == 3

    asyncio.run(scenario())


def test_a_value_of_the_wrong_length_is_a_bad_frame_and_not_retried():
    _, peripheral, driver = setup()
    peripheral.short_reads = True

    async def scenario() -> None:
        async with driver:
            with pytest.raises(BadFrame, match=r"returned 1 bytes, expected 2") as caught:
                await driver.poll()
        assert isinstance(caught.value, ProtocolError)
        assert driver.attempts == 1
        assert peripheral.disconnects == peripheral.connections == 1

    asyncio.run(scenario())


def test_a_missing_characteristic_is_a_protocol_error():
    sim = BleSimulator()
    peripheral = SimGattPeripheral("cabinet-env", "C0:FF:EE:00:00:01", CHARACTERISTICS[:1])
    sim.add(peripheral)
    config = peripheral.gateway_config(characteristics=CHARACTERISTICS)  # asks for more

    async def scenario() -> None:
        async with GattDriver(config, sim.client_backend) as driver:
            with pytest.raises(ProtocolError, match="has no characteristic 00002A6F"):
                await driver.poll()

    asyncio.run(scenario())


@pytest.mark.parametrize("fault", ["not_found", "no_bluetooth", "no_dbus", "not_ready"])
def test_a_missing_adapter_is_adapter_unavailable_and_not_retried_within_the_poll(fault: object):
    sim, _, driver = setup(connect_attempts=3)
    sim.remove_adapter(fault)  # type: ignore[arg-type]

    async def scenario() -> None:
        async with driver:
            if fault == "not_found":
                # bleak raises a plain BleakError for it, like any failed connection
                with pytest.raises(DeviceUnreachable):
                    await driver.poll()
                return
            with pytest.raises(AdapterUnavailable, match="needed by cabinet-env"):
                await driver.poll()
            assert driver.attempts == 1
        sim.restore_adapter()
        async with driver:
            assert len(await driver.poll()) == 3

    asyncio.run(scenario())


def test_build_driver_makes_the_gatt_driver_with_the_injected_backend():
    sim = BleSimulator()
    peripheral = SimGattPeripheral("cabinet-env", "C0:FF:EE:00:00:01", CHARACTERISTICS)
    sim.add(peripheral)
    driver = build_driver(peripheral.gateway_config(), ble=BleBackends(client=sim.client_backend))
    assert isinstance(driver, GattDriver)

    async def scenario() -> None:
        async with driver:
            assert [s.metric for s in await driver.poll()] == ["temperature", "humidity", "battery"]

    asyncio.run(scenario())


def test_a_config_reading_two_characteristics_into_one_metric_is_rejected():
    with pytest.raises(ValidationError, match=r"its own metric; repeated: \['temperature'\]"):
        GattDevice.model_validate(
            {
                "kind": "ble_gatt",
                "name": "cabinet-env",
                "mac": "C0:FF:EE:00:00:01",
                "characteristics": [
                    {"uuid": c.uuid, "metric": "temperature"} for c in CHARACTERISTICS[:2]
                ],
            }
        )
