"""Exit codes of every ``streetgate`` command, for scripts (documented in README.md)."""

from __future__ import annotations

from enum import IntEnum

from gateway.core.errors import (
    BoardDidNotReturn,
    BoardNotFound,
    BrokerUnavailable,
    BundleError,
    ConfigError,
    CopyMismatch,
    CredsFileMissing,
    CredsNotConfigured,
    CredsPermissionDenied,
    CredsWouldOverwrite,
    DeviceUnreachable,
    FleetBadRequest,
    FleetNotFound,
    FleetPermissionDenied,
    FleetUnreachable,
    KeyReuseRefused,
    OutboxDamaged,
    OutboxForeign,
    OutboxLocked,
    OutboxMissing,
    OutboxNotOurs,
    PayloadError,
    ReleaseKeyError,
    SignatureInvalid,
    UnknownMetadata,
    UnsafeKeyFile,
    UnsafeReleaseKey,
)


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


#: Most specific first: the first type an exception is an instance of decides its code.
_EXIT_CODES: tuple[tuple[type[BaseException], ExitCode], ...] = (
    (CredsFileMissing, ExitCode.NOT_FOUND),
    (CredsPermissionDenied, ExitCode.PERMISSION),
    (CredsNotConfigured, ExitCode.CONFIG),
    (CredsWouldOverwrite, ExitCode.DECLINED),
    (FleetUnreachable, ExitCode.UNREACHABLE),
    (FleetNotFound, ExitCode.NOT_FOUND),
    (FleetPermissionDenied, ExitCode.PERMISSION),
    (FleetBadRequest, ExitCode.USAGE),
    (ConfigError, ExitCode.CONFIG),
    (OutboxMissing, ExitCode.NOT_FOUND),
    (OutboxDamaged, ExitCode.DAMAGED),
    (OutboxLocked, ExitCode.DECLINED),
    (OutboxForeign, ExitCode.DECLINED),
    (OutboxNotOurs, ExitCode.PERMISSION),
    (UnsafeKeyFile, ExitCode.PERMISSION),
    (DeviceUnreachable, ExitCode.UNREACHABLE),
    (BrokerUnavailable, ExitCode.UNREACHABLE),
    (SignatureInvalid, ExitCode.DECLINED),
    (KeyReuseRefused, ExitCode.DECLINED),
    (UnsafeReleaseKey, ExitCode.PERMISSION),
    (BoardNotFound, ExitCode.UNREACHABLE),
    (BoardDidNotReturn, ExitCode.UNREACHABLE),
    (CopyMismatch, ExitCode.DAMAGED),
    (UnknownMetadata, ExitCode.NOT_FOUND),
    (PayloadError, ExitCode.DAMAGED),
)


def exit_code_for(exc: BaseException) -> ExitCode:
    """The exit status a command ends with when ``exc`` stops it: decided here, not by the error.

    Anything not listed (a failed check, a runtime error) is ``FAILURE``.
    """
    for kind, code in _EXIT_CODES:
        if isinstance(exc, kind):
            return code
    if isinstance(exc, BundleError | ReleaseKeyError):  # a file that is there but unusable
        return ExitCode.DAMAGED if exc.path.exists() else ExitCode.NOT_FOUND
    return ExitCode.FAILURE
