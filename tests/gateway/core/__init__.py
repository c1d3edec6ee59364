"""Tests of gateway/core."""
