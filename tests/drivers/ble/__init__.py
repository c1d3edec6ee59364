"""Tests of drivers/ble."""
