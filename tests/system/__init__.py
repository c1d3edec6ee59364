"""Whole-system tests: end to end, faults, the README's commands."""
