"""Tests of the drivers, one folder per transport."""
