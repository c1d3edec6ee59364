"""streetgate gateway runtime: poll devices, buffer readings in SQLite, forward them over MQTT."""

__version__ = "0.1.0"
