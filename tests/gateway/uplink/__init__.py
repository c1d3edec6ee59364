"""Tests of gateway/uplink."""
