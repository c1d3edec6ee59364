"""Serial port specs: paths and URLs pass through, usb:VID:PID[:SERIAL] finds the one adapter."""

from __future__ import annotations

import asyncio

import pytest
from serial.tools.list_ports_common import ListPortInfo  # type: ignore[import-untyped]

from drivers.serial.port import (
    UsbPortSpec,
    match_usb_port,
    parse_usb_spec,
    resolve_port,
    resolve_port_async,
)
from gateway.core.errors import PortUnavailable


def _port(device: str, vid: int | None = None, pid: int | None = None, serial: str | None = None):
    info = ListPortInfo(device, skip_link_detection=True)
    info.vid, info.pid, info.serial_number = vid, pid, serial
    return info


FTDI_A = _port("/dev/ttyUSB0", 0x0403, 0x6001, "A10K3XYZ")
FTDI_B = _port("/dev/ttyUSB1", 0x0403, 0x6001, "B77QQ")
CH340 = _port("/dev/ttyUSB2", 0x1A86, 0x7523)
ONBOARD = _port("/dev/ttyAMA0")
ATTACHED = [FTDI_A, FTDI_B, CH340, ONBOARD]


@pytest.mark.parametrize(
    "spec",
    [
        "/dev/ttyUSB0",
        "/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A10K3XYZ-if00-port0",
        "socket://127.0.0.1:4001",
        "rfc2217://cabinet-12.local:2217",
        "COM3",
    ],
)
def test_paths_and_urls_are_used_as_written(spec):
    # A by-id symlink stays a path: the OS follows it at open, so a re-plugged adapter that
    # came back as another ttyUSBn is still found.
    assert resolve_port(spec) == spec
    assert asyncio.run(resolve_port_async(spec)) == spec


def test_usb_spec_parses_hex_ids_and_optional_serial():
    assert parse_usb_spec("usb:0403:6001") == UsbPortSpec(0x0403, 0x6001)
    assert parse_usb_spec("usb:1A86:7523:ab12") == UsbPortSpec(0x1A86, 0x7523, "ab12")
    assert parse_usb_spec("/dev/ttyUSB0") is None
    assert str(UsbPortSpec(0x1A86, 0x7523, "ab12")) == "usb:1a86:7523:ab12"


@pytest.mark.parametrize("spec", ["usb:403:6001", "usb:0403", "usb:0403:60zz", "usb:0403:6001:"])
def test_malformed_usb_spec_is_named(spec):
    with pytest.raises(ValueError, match="usb:VID:PID"):
        parse_usb_spec(spec)
    with pytest.raises(PortUnavailable, match="usb:VID:PID"):
        resolve_port(spec, "meter-bus")


def test_unique_vid_pid_needs_no_serial():
    assert match_usb_port(UsbPortSpec(0x1A86, 0x7523), ATTACHED, "bus") == "/dev/ttyUSB2"


def test_serial_number_chooses_between_identical_adapters():
    wanted = UsbPortSpec(0x0403, 0x6001, "b77qq")  # case-insensitive
    assert match_usb_port(wanted, ATTACHED, "bus") == "/dev/ttyUSB1"


def test_identical_adapters_without_serial_ask_for_it():
    with pytest.raises(PortUnavailable) as info:
        match_usb_port(UsbPortSpec(0x0403, 0x6001), ATTACHED, "meter-bus")
    message = str(info.value)
    assert info.value.device == "meter-bus"
    assert "2 serial ports match usb:0403:6001" in message
    assert "add the serial number" in message
    assert "A10K3XYZ" in message
    assert "B77QQ" in message


def test_missing_adapter_names_what_was_wanted_and_what_is_attached():
    with pytest.raises(PortUnavailable) as info:
        match_usb_port(UsbPortSpec(0x0403, 0x6001, "NOPE"), ATTACHED, "meter-bus")
    message = str(info.value)
    assert "no serial port usb:0403:6001:NOPE is attached" in message
    assert "/dev/ttyUSB0 (usb:0403:6001 serial A10K3XYZ)" in message
    assert "/dev/ttyUSB2 (usb:1a86:7523 no serial)" in message
    assert "/dev/ttyAMA0 (not USB)" in message


def test_nothing_attached_says_so():
    with pytest.raises(PortUnavailable, match="no serial ports are attached"):
        match_usb_port(UsbPortSpec(0x0403, 0x6001), [], "bus")


def test_usb_lookup_off_the_event_loop_reports_a_missing_adapter():
    # Runs the real sysfs scan (in a thread: the blockbuster fixture would catch it on the
    # loop). No adapter with this made-up identity is attached to a test machine.
    async def scenario() -> str:
        return await resolve_port_async("usb:ffff:fffe:streetgate-test", "meter-bus")

    with pytest.raises(PortUnavailable, match=r"usb:ffff:fffe:streetgate-test is attached"):
        asyncio.run(scenario())
