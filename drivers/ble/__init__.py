"""Bluetooth LE: passive scanning (BTHome, Ruuvi) and GATT polling."""
