"""``python -m gateway`` is the ``streetgate`` command."""

from gateway.cli import main

main()
