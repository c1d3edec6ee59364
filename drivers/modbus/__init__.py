"""Modbus TCP and RTU: codec, framing, drivers."""
