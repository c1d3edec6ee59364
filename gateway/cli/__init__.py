"""The streetgate command line: one module per command group."""
