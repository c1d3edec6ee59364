"""Tests of gateway/management."""
