"""Tests of gateway/diagnostics."""
