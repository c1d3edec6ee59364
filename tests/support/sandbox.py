"""Run a command in the kernel-side sandbox of deploy/systemd/streetgate.service, no systemd.

There is no systemd PID 1 in the test machine, so `systemd-run -p ...` cannot start a unit.
This applies the parts of the unit that decide whether Python, the gateway and its drivers
still work, the way systemd applies them, then execs the command:

- SystemCallFilter= (expanded by `systemd-analyze syscall-filter`, so the sets are systemd's
  own), SystemCallErrorNumber=, SystemCallArchitectures=native, with libseccomp as systemd does;
- RestrictAddressFamilies=: socket() only for the listed families;
- MemoryDenyWriteExecute=: prctl(PR_SET_MDWE), what newer systemd uses where the kernel has
  it (systemd 252 of Bookworm filters mmap and mprotect with seccomp: much the same rule);
- NoNewPrivileges= and CapabilityBoundingSet= (empty).

Not applied (systemd's mount namespace and cgroup parts): ProtectSystem=, PrivateTmp=,
DevicePolicy=, MemoryMax= and the other limits, User=.

    python -m tests.sandbox UNIT -- COMMAND [ARG...]
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import subprocess
import sys
from functools import cache
from pathlib import Path

_ALLOW = 0x7FFF0000
_CMP_EQ = 4
_PR_CAPBSET_DROP = 24
_PR_SET_MDWE = 65
_PR_MDWE_REFUSE_EXEC_GAIN = 1


class _ArgCmp(ctypes.Structure):
    _fields_ = (  # struct scmp_arg_cmp
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    )


def _errno_action(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)  # SCMP_ACT_ERRNO


@cache
def syscall_sets() -> dict[str, list[str]]:
    """systemd's named sets (``@system-service`` ...) as it lists them: names and sub-sets."""
    out = subprocess.run(
        ["systemd-analyze", "syscall-filter"], capture_output=True, text=True, check=True
    ).stdout
    sets: dict[str, list[str]] = {}
    current: list[str] = []
    for line in out.splitlines():
        if line.startswith("@"):
            current = sets.setdefault(line.strip(), [])
        elif line.strip() and not line.strip().startswith("#") and line.startswith(" "):
            current.append(line.strip())
    return sets


def expand(name: str) -> set[str]:
    """A system call name, or a set expanded recursively into its calls."""
    if not name.startswith("@"):
        return {name}
    return set().union(*(expand(item) for item in syscall_sets()[name]))


def unit_values(unit: Path, key: str) -> list[str]:
    """Every value of ``key`` in the unit, in order."""
    prefix = key + "="
    return [
        line.removeprefix(prefix).strip()
        for line in unit.read_text().splitlines()
        if line.startswith(prefix)
    ]


def allowed_syscalls(unit: Path) -> set[str]:
    """What the unit's SystemCallFilter= lines allow: the first sets an allow list, each
    later line adds to it, or takes away with ``~``."""
    allowed: set[str] = set()
    for value in unit_values(unit, "SystemCallFilter"):
        deny = value.startswith("~")
        names = set().union(*(expand(word) for word in value.removeprefix("~").split()))
        allowed = allowed - names if deny else allowed | names
    return allowed


def apply(unit: Path) -> None:
    """Apply the unit's seccomp, MDWE, no-new-privileges and capability settings to us."""
    if not unit_values(unit, "SystemCallFilter"):
        raise SystemExit(f"{unit}: no SystemCallFilter= to apply")
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in range(64):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() == errno.EINVAL:
            break  # past the last capability this kernel knows
    mdwe = unit_values(unit, "MemoryDenyWriteExecute") == ["yes"]
    if mdwe and libc.prctl(_PR_SET_MDWE, _PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_MDWE)")
    seccomp = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    seccomp.seccomp_init.restype = ctypes.c_void_p
    seccomp.seccomp_init.argtypes = [ctypes.c_uint32]
    seccomp.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    seccomp.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, ctypes.POINTER(_ArgCmp)
    ]  # fmt: skip
    seccomp.seccomp_load.argtypes = [ctypes.c_void_p]
    [error_name] = unit_values(unit, "SystemCallErrorNumber") or ["EPERM"]
    ctx = seccomp.seccomp_init(_errno_action(getattr(errno, error_name)))  # native arch only
    families = [
        getattr(socket, name)
        for name in " ".join(unit_values(unit, "RestrictAddressFamilies")).split()
    ]
    for name in sorted(allowed_syscalls(unit)):
        number = seccomp.seccomp_syscall_resolve_name(name.encode())
        if number < 0:
            continue  # not a call of this architecture
        if name == "socket" and families:
            for family in families:
                cmp = _ArgCmp(0, _CMP_EQ, int(family), 0)
                seccomp.seccomp_rule_add_array(ctx, _ALLOW, number, 1, ctypes.byref(cmp))
            continue
        if seccomp.seccomp_rule_add_array(ctx, _ALLOW, number, 0, None) != 0:
            raise OSError(f"seccomp rule for {name} failed")
    if seccomp.seccomp_load(ctx) != 0:  # sets no_new_privs itself
        raise OSError("seccomp_load failed")


def main(argv: list[str]) -> None:
    unit, separator, *command = argv
    if separator != "--" or not command:
        raise SystemExit(__doc__)
    apply(Path(unit))
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
