"""``python -m gateway`` is the ``streetgate`` command."""

from gateway.cli.main import main

main()
