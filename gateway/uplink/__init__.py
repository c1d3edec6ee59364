"""The uplink: the MQTT session, its topics and the payload encoders."""
