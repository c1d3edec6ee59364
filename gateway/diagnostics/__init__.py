"""Checks a technician runs on site: doctor, broker probe, device scan."""
