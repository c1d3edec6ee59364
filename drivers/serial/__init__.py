"""Serial sensors: ports, stream framing, SDS011, PMS5003, line protocol."""
