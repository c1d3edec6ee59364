"""Attacks that must fail: a hostile platform, a hostile network, a hostile file system.

Each module takes the point of view of someone holding one right they should not be able to
stretch (publish on the command topic, a socket to the local listener, a BLE radio nearby) and
shows the attempt failing against real parts (mosquitto, the gateway as its own process).
"""
