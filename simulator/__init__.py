"""Simulated street devices speaking their real protocols, for development and tests."""
