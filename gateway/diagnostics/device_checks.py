"""The device lines of ``streetgate doctor``: one real read of each configured device.

Every device is read once through the gateway's own drivers (:mod:`gateway.diagnostics.
device_read`), all at once (one named task each in a TaskGroup), each bounded by
:func:`read_budget` (a few seconds, from the device's own timeout). A device that answers is a
pass showing what was read; one that does not is a failure with the reason and a hint.

Doctor must not disturb a running gateway: a serial port or RS-485 bus is opened exclusively,
so while the gateway of this config runs (its state file says so) those devices are skipped
with the reason, never fought for. A BLE device is only listened for (BTHome, Ruuvi: one
advert decoded; GATT: its address heard), never connected to; without bleak, a Bluetooth
adapter or the system D-Bus (BlueZ) that is a skip that says why, not a failure (the
``ble:adapter`` line reports the adapter). Modbus TCP devices are read in any case: a second
client connection is what a Modbus TCP server expects.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import importlib.util
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.config.devices import (
    BthomeDevice,
    DeviceConfig,
    GattDevice,
    LineSensor,
    ModbusRtuBus,
    ModbusTcpDevice,
    Pms5003Device,
    RtuUnit,
    RuuviDevice,
    Sds011Device,
)
from gateway.config.model import GatewayConfig
from gateway.core.errors import (
    BadFrame,
    ChecksumError,
    DeviceError,
    DeviceTimeout,
    DeviceUnreachable,
    ModbusExceptionCode,
    ModbusExceptionResponse,
    PortUnavailable,
)
from gateway.diagnostics.device_read import listen_ble
from gateway.diagnostics.doctor import CheckResult, ble_adapter_check
from gateway.runtime.state_file import current_view, state_path

if TYPE_CHECKING:
    from drivers.ble.common import BleBackends
    from drivers.modbus.rtu import ModbusRtuBusDriver
    from gateway.core.model import Sample

__all__ = [
    "BLE_LISTEN",
    "DEVICE_PREFIX",
    "DeviceCheckSetup",
    "device_check_setup",
    "device_checks",
    "read_budget",
]

#: Bounds of one device's read: never less (a slow first connect), never more (doctor waits
#: for the slowest device).
BUDGET_FLOOR = 2.0
BUDGET_CAP = 15.0
#: The name of a device's line: ``device:<name>``.
DEVICE_PREFIX = "device:"
#: How long doctor listens for a BLE device by default (sensors advertise every few seconds).
BLE_LISTEN = 10.0
#: The system bus BlueZ is reached through.
SYSTEM_BUS = Path("/run/dbus/system_bus_socket")


def read_budget(timeout: float, requests: int) -> float:
    """Seconds one device's read may take: its own timeout per request and one more for the
    connect, at least ``BUDGET_FLOOR``, at most ``BUDGET_CAP``."""
    return min(BUDGET_CAP, max(BUDGET_FLOOR, timeout * (requests + 1)))


@dataclass(frozen=True, slots=True)
class DeviceCheckSetup:
    """What the device checks need to know first, found outside the event loop."""

    gateway_pid: int | None  # a gateway of this config runs (and holds the serial ports)
    ble_problem: str | None  # why BLE devices cannot be listened for here (None: they can)
    ble_listen: float = BLE_LISTEN
    ble: BleBackends | None = None  # the simulator's bleak backends in tests


def _ble_problem(config: GatewayConfig, sysfs: Path, system_bus: Path) -> str | None:
    if importlib.util.find_spec("bleak") is None:
        return "bleak is not installed"
    adapter = ble_adapter_check(config, sysfs)
    if adapter is not None and not adapter.ok:
        return f"no usable Bluetooth adapter ({adapter.detail}; see ble:adapter)"
    if not system_bus.exists():
        return f"no system D-Bus ({system_bus} absent), so no BlueZ to scan with"
    return None


def device_check_setup(
    config: GatewayConfig,
    *,
    ble_listen: float = BLE_LISTEN,
    ble: BleBackends | None = None,
    sysfs: Path = Path("/sys"),
    system_bus: Path = SYSTEM_BUS,
) -> DeviceCheckSetup:
    """Is the gateway of this config running, can BLE be scanned here (blocking: reads files).

    With ``ble`` backends given (tests), BLE is taken as available.
    """
    view = current_view(state_path(config.outbox.path))
    uses_ble = any(isinstance(d, BthomeDevice | RuuviDevice | GattDevice) for d in config.devices)
    problem = _ble_problem(config, sysfs, system_bus) if uses_ble and ble is None else None
    return DeviceCheckSetup(view.pid if view.running else None, problem, ble_listen, ble)


# -- what was read, what went wrong ----------------------------------------------------------


def _value(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:g}"


def _read_ok(name: str, samples: Sequence[Sample], start: float, where: str) -> CheckResult:
    if not samples:
        return CheckResult(name, True, f"{where}: answered, no values", duration_ms=_ms(start))
    first = samples[0]
    unit = f" {first.unit}" if first.unit else ""
    more = f" (+{len(samples) - 1} more)" if len(samples) > 1 else ""
    return CheckResult(
        name,
        True,
        f"{where}: {first.metric} = {_value(first.value)}{unit}{more}",
        duration_ms=_ms(start),
    )


def _failed(name: str, where: str, what: str, hint: str, start: float) -> CheckResult:
    """A device check that failed: where it looked, what went wrong there, what to do about it."""
    return CheckResult(name, False, f"{where}: {what}", hint, duration_ms=_ms(start))


def _ms(start: float) -> float:
    return round((time.monotonic() - start) * 1000, 1)


def _modbus_exception_hint(exc: ModbusExceptionResponse, unit_id: int, profile: str) -> str:
    code = exc.code
    if code in (
        ModbusExceptionCode.GATEWAY_PATH_UNAVAILABLE,
        ModbusExceptionCode.GATEWAY_TARGET_NO_RESPONSE,
    ):
        return (
            f"a Modbus gateway answered, but unit {unit_id} behind it did not: check unit_id (the"
            " device's slave id on the gateway's RS-485 side) and that bus's wiring and baud rate"
        )
    if code in (ModbusExceptionCode.DEVICE_BUSY, ModbusExceptionCode.ACKNOWLEDGE):
        return "the device is busy: run doctor again; if it stays busy, poll it less often"
    if code in (
        ModbusExceptionCode.ILLEGAL_FUNCTION,
        ModbusExceptionCode.ILLEGAL_DATA_ADDRESS,
        ModbusExceptionCode.ILLEGAL_DATA_VALUE,
    ):
        return (
            f"the device answers but has no such registers: is profile {profile!r} the right one"
            f" for it, and is unit {unit_id} the device you mean? (`streetgate scan modbus`"
            " suggests a profile)"
        )
    return "the device reports a failure of its own: check it on site (display, power cycle)"


def _rtu_frame_hint(exc: BadFrame, bus: ModbusRtuBus, unit: RtuUnit) -> str:
    if isinstance(exc.reason, ChecksumError):
        return (
            "CRC errors: the line is noisy or its settings differ from the device's: check"
            f" baudrate ({bus.baudrate}), parity ({bus.parity}) and stopbits ({bus.stopbits}),"
            " A/B polarity, 120 ohm termination at both ends of the bus and a common ground"
        )
    return (
        "not the answer asked for: baudrate or parity differ from the device's, the wiring is"
        f" bad (A/B swapped, no termination), or two devices share unit id {unit.unit_id}"
    )


def _locked_by_another(spec: str, name: str) -> bool:
    """Whether another process holds the port's exclusive lock (``flock``, as the gateway's
    serial link and pyserial's ``exclusive=True`` take it). Blocking: run it in a thread."""
    from drivers.serial.port import resolve_port  # noqa: PLC0415 - imports pyserial

    try:
        path = resolve_port(spec, name)
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    except (PortUnavailable, OSError):
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # also lets go of the lock, if this took it
    return False


async def _port_hint(port: str, name: str, check: str) -> str:
    if "://" not in port and await asyncio.to_thread(_locked_by_another, port, name):
        return (
            f"another program holds {port}: find it with `fuser -v {port}` (a second gateway,"
            " ModemManager, a terminal program) and stop it"
        )
    return f"plug in the adapter or fix the port in the config (see the {check} line)"


# -- one device each -------------------------------------------------------------------------


async def _tcp_reason(host: str, port: int, wait: float) -> tuple[str, str]:
    """Why a TCP connect to a Modbus device fails (pymodbus only says that it did): the
    reason and the hint."""
    try:
        async with asyncio.timeout(wait):
            _, writer = await asyncio.open_connection(host, port)
    except ConnectionRefusedError:
        return (
            f"connection refused by {host}:{port}",
            f"nothing listens on port {port}: is the device (or its Modbus TCP gateway) on, and"
            " is `port` right (Modbus TCP: 502)?",
        )
    except TimeoutError:
        return (
            f"connection to {host}:{port} timed out ({wait:g}s)",
            f"no answer from {host}: check `host` (its IP), that it is on this network (`ping"
            f" {host}`), the cabling, and firewalls between",
        )
    except OSError as exc:
        return (
            f"cannot connect to {host}:{port}: {exc.strerror or exc}",
            f"check `host` ({host}) and this machine's network (`ip route`, `ping {host}`)",
        )
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return (
        f"{host}:{port} accepts connections, but the Modbus connection failed or dropped",
        "the device may take only one client at a time (is another one, e.g. the running"
        " gateway or a SCADA, connected?); run doctor again",
    )


async def _modbus_tcp(device: ModbusTcpDevice) -> CheckResult:
    from drivers import build_driver  # noqa: PLC0415 - imports pymodbus
    from drivers.modbus.tcp import ModbusTcpDriver  # noqa: PLC0415

    name = f"{DEVICE_PREFIX}{device.name}"
    where = f"modbus_tcp {device.host}:{device.port} unit {device.unit_id}"
    driver = build_driver(device)
    requests = len(driver.plan) if isinstance(driver, ModbusTcpDriver) else 1
    budget = read_budget(device.timeout, requests)
    start = time.monotonic()
    try:
        async with asyncio.timeout(budget), driver:
            samples = await driver.poll()
    except ModbusExceptionResponse as exc:
        hint = _modbus_exception_hint(exc, device.unit_id, device.profile.name)
        return _failed(name, where, _text(exc), hint, start)
    except DeviceTimeout as exc:
        return _failed(
            name,
            where,
            f"connected, but {_text(exc)}",
            f"the device does not answer for unit {device.unit_id}: check unit_id (its Modbus"
            " slave/unit address; behind a TCP-to-RS-485 gateway, the address on the bus) and"
            " that it is powered",
            start,
        )
    except DeviceUnreachable:
        reason, hint = await _tcp_reason(device.host, device.port, max(device.timeout, 1.0))
        return _failed(name, where, reason, hint, start)
    except DeviceError as exc:
        return _failed(
            name,
            where,
            _text(exc),
            f"the device answered something unexpected: is profile {device.profile.name!r} the"
            " right one for it?",
            start,
        )
    except TimeoutError:
        return _failed(
            name,
            where,
            f"no complete read within {budget:g}s",
            "the device answers slowly: raise its `timeout`, or check the network",
            start,
        )
    return _read_ok(name, samples, start, where)


def _text(exc: DeviceError) -> str:
    """The error's message without the device name it starts with."""
    text = str(exc)
    prefix = f"{exc.device}: "
    return text[len(prefix) :] if text.startswith(prefix) else text


def _held(names: Sequence[str], port: str, pid: int) -> list[CheckResult]:
    return [
        CheckResult(
            f"{DEVICE_PREFIX}{n}",
            True,
            f"skipped: {port} is held by the running gateway (pid {pid}); doctor does not take"
            " the port from it",
            "`streetgate status` shows how its reads go",
            skipped=True,
        )
        for n in names
    ]


async def _rtu_bus(bus: ModbusRtuBus) -> list[CheckResult]:
    """Open the bus once and read its units one after another (RS-485: one talker at a time)."""
    from drivers.modbus.rtu import ModbusRtuBusDriver  # noqa: PLC0415 - imports pymodbus

    async with contextlib.AsyncExitStack() as stack:
        driver = ModbusRtuBusDriver(bus)
        try:
            async with asyncio.timeout(BUDGET_CAP):
                await stack.enter_async_context(driver)
        except (DeviceError, TimeoutError) as exc:
            reason = _text(exc) if isinstance(exc, DeviceError) else f"{bus.port} did not open"
            hint = (
                await _port_hint(bus.port, bus.name, f"serial:{bus.name}")
                if isinstance(exc, PortUnavailable)
                else "check the port"
            )
            return [
                CheckResult(f"{DEVICE_PREFIX}{u.name}", False, f"bus {bus.name}: {reason}", hint)
                for u in bus.units
            ]
        return [await _rtu_unit(driver, bus, unit) for unit in bus.units]


async def _rtu_unit(driver: ModbusRtuBusDriver, bus: ModbusRtuBus, unit: RtuUnit) -> CheckResult:
    name = f"{DEVICE_PREFIX}{unit.name}"
    where = f"modbus_rtu {bus.name} unit {unit.unit_id}"
    budget = read_budget(bus.timeout, len(driver.plans[unit.name]))
    start = time.monotonic()
    try:
        async with asyncio.timeout(budget):
            samples = await driver.read_unit(unit)
    except ModbusExceptionResponse as exc:
        hint = _modbus_exception_hint(exc, unit.unit_id, unit.profile.name)
        return _failed(name, where, _text(exc), hint, start)
    except BadFrame as exc:
        return _failed(name, where, _text(exc), _rtu_frame_hint(exc, bus, unit), start)
    except (DeviceTimeout, TimeoutError) as exc:
        reason = _text(exc) if isinstance(exc, DeviceTimeout) else f"no answer within {budget:g}s"
        return _failed(
            name,
            where,
            reason,
            f"unit {unit.unit_id} is silent: check its slave id (unit_id), the bus settings"
            f" (baudrate {bus.baudrate}, parity {bus.parity}: the same as the device's), the A/B"
            " wiring and its power",
            start,
        )
    except PortUnavailable as exc:
        hint = await _port_hint(bus.port, bus.name, f"serial:{bus.name}")
        return _failed(name, where, _text(exc), hint, start)
    except DeviceError as exc:
        return _failed(
            name,
            where,
            _text(exc),
            f"is profile {unit.profile.name!r} the right one for it?",
            start,
        )
    return _read_ok(name, samples, start, where)


async def _serial_sensor(device: Sds011Device | Pms5003Device | LineSensor) -> CheckResult:
    from drivers import build_driver  # noqa: PLC0415 - imports pyserial

    name = f"{DEVICE_PREFIX}{device.name}"
    where = f"{device.kind} on {device.port}"
    budget = read_budget(device.timeout, 2)  # the driver may send set-up commands, then a frame
    start = time.monotonic()
    try:
        async with asyncio.timeout(budget), build_driver(device) as driver:
            samples = await driver.poll()
    except PortUnavailable as exc:
        hint = await _port_hint(device.port, device.name, f"serial:{device.name}")
        return _failed(name, where, _text(exc), hint, start)
    except BadFrame as exc:
        return _failed(
            name,
            where,
            _text(exc),
            f"bytes arrive but no valid {device.kind} frame: check baudrate ({device.baudrate})"
            " and that this port has this sensor on it",
            start,
        )
    except (DeviceTimeout, TimeoutError) as exc:
        reason = _text(exc) if isinstance(exc, DeviceTimeout) else f"no frame within {budget:g}s"
        return _failed(
            name,
            where,
            reason,
            "silence: check the wiring (the sensor's TX to the adapter's RX), its power supply"
            " (5 V for SDS011/PMS5003) and its baudrate",
            start,
        )
    except DeviceError as exc:
        return _failed(name, where, _text(exc), "", start)
    return _read_ok(name, samples, start, where)


async def _ble(
    device: BthomeDevice | RuuviDevice | GattDevice, setup: DeviceCheckSetup
) -> CheckResult:
    name = f"{DEVICE_PREFIX}{device.name}"
    where = f"{device.kind} {device.mac}"
    if setup.ble_problem is not None:
        return CheckResult(name, True, f"skipped: {where}: {setup.ble_problem}", skipped=True)
    start = time.monotonic()
    listen = setup.ble_listen
    not_heard = (
        f"is it in range and powered (battery)? Is mac {device.mac} right? `streetgate scan"
        " ble` lists what this adapter hears"
    )
    try:
        async with asyncio.timeout(listen + BUDGET_FLOOR):
            if isinstance(device, GattDevice):
                from drivers.ble.discovery import find_address  # noqa: PLC0415 - imports bleak

                backends = setup.ble
                found = await find_address(
                    device.mac,
                    listen,
                    backends.scanner if backends else None,
                    backends.adapter if backends else None,
                )
                if found is None:
                    return _failed(name, where, f"not heard within {listen:g}s", not_heard, start)
                rssi = f" at {found.rssi} dBm" if found.rssi is not None else ""
                return CheckResult(
                    name, True, f"{where}: heard{rssi} (not connected to)", duration_ms=_ms(start)
                )
            samples = await listen_ble(device, listen, setup.ble)
    except (DeviceTimeout, TimeoutError):
        return _failed(name, where, f"no advert decoded within {listen:g}s", not_heard, start)
    except DeviceError as exc:
        return _failed(
            name,
            where,
            _text(exc),
            "check the adapter (`bluetoothctl show`) and that bluetoothd runs",
            start,
        )
    return _read_ok(name, samples, start, where)


async def _check(device: DeviceConfig, setup: DeviceCheckSetup) -> list[CheckResult]:
    if isinstance(device, ModbusTcpDevice):
        return [await _modbus_tcp(device)]
    if isinstance(device, BthomeDevice | RuuviDevice | GattDevice):
        return [await _ble(device, setup)]
    if isinstance(device, ModbusRtuBus):
        if setup.gateway_pid is not None:
            return _held([u.name for u in device.units], device.port, setup.gateway_pid)
        return await _rtu_bus(device)
    if setup.gateway_pid is not None:
        return _held([device.name], device.port, setup.gateway_pid)
    return [await _serial_sensor(device)]


async def device_checks(config: GatewayConfig, setup: DeviceCheckSetup) -> list[CheckResult]:
    """One line per configured device (per unit of a bus), in config order; all read at once."""
    async with asyncio.TaskGroup() as tg:
        tasks = [
            tg.create_task(_check(device, setup), name=f"doctor:device:{device.name}")
            for device in config.devices
        ]
    return [check for task in tasks for check in task.result()]
