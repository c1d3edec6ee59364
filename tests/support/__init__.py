"""Helpers shared by the tests: brokers, PKI, simulators, terminals, waiting."""
