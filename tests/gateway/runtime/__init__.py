"""Tests of gateway/runtime."""
