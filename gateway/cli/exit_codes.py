"""Exit codes of every ``streetgate`` command, for scripts (documented in README.md)."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """What a command's exit status means; the same number means the same thing everywhere."""

    OK = 0
    FAILURE = 1  # the command ran and something failed (a check, a runtime error)
    USAGE = 2  # bad command line (typer's own code)
    CONFIG = 3  # the config file is invalid or unreadable
    UNREACHABLE = 4  # a broker, device, port or API could not be reached
    PERMISSION = 5  # a file's permissions are unsafe or do not allow the operation
    NOT_FOUND = 6  # what the command was asked about does not exist (yet)
    DAMAGED = 7  # a data file is damaged (left untouched)
    DECLINED = 8  # refused or declined: nothing changed
