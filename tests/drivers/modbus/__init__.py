"""Tests of drivers/modbus."""
