"""Tests of drivers/serial."""
