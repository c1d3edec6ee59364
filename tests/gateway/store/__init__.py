"""Tests of gateway/store."""
