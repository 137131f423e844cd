"""The loader's error types: every failure bpfload raises on purpose is a BPFLoadError.

Messages are one line a user can act on; the details (errno, the verifier's full log,
the relocation that failed) stay on the exception for callers who want them.
"""

from __future__ import annotations

import errno as _errno
import os


class BPFLoadError(Exception):
    """Base class of all bpfload errors."""


class ObjectError(BPFLoadError):
    """The ELF object is malformed or uses something bpfload does not support."""


class BTFError(BPFLoadError):
    """BTF data is malformed, unsupported, or a kernel type lookup failed."""


class RelocationError(BPFLoadError):
    """A relocation (map, global data, call, extern, CO-RE) could not be applied."""


# Hints for errno values whose usual cause is not obvious from strerror().
_HINTS = {
    _errno.EPERM: "needs root (CAP_BPF with CAP_PERFMON, or CAP_SYS_ADMIN)",
    _errno.EACCES: "needs root (CAP_BPF with CAP_PERFMON, or CAP_SYS_ADMIN), "
                   "or the verifier refused the program",
    _errno.ENOSYS: "the kernel has no bpf(2) (CONFIG_BPF_SYSCALL off)",
}
# ... and when this process has every capability bpf(2) checks, so root is not the answer
_HINTS_PRIVILEGED = {
    _errno.EPERM: "refused although this process has CAP_SYS_ADMIN: this kernel does not "
                  "allow it here (a feature it was built without, lockdown, a security "
                  "module, or a container's user namespace)",
    _errno.EACCES: "the verifier or a security module refused it",
}

#: The errnos that mean "this kernel cannot do that": EOPNOTSUPP (ENOTSUP) and the
#: kernel-internal ENOTSUPP (524), which bpf(2) lets reach user space.
ENOTSUPP = 524
NOT_SUPPORTED = frozenset({_errno.EOPNOTSUPP, ENOTSUPP})


def _hint(err: int) -> str | None:
    from .procfs import has_all_bpf_privileges  # (only for errors: not on a load's path)

    if err in _HINTS_PRIVILEGED and has_all_bpf_privileges():
        return _HINTS_PRIVILEGED[err]
    return _HINTS.get(err)


def errno_name(err: int) -> str:
    return _errno.errorcode.get(err, f"errno {err}")


def errno_text(err: int) -> str:
    """An errno as messages show it: 'ENOENT (No such file or directory)'."""
    return f"{errno_name(err)} ({os.strerror(err)})"


class SyscallError(BPFLoadError):
    """A bpf(2) or perf_event_open(2) call failed; carries the errno and its name."""

    def __init__(self, what: str, err: int, hint: str | None = None):
        self.what = what
        self.errno = err
        self.errname = errno_name(err)
        self.hint = hint if hint is not None else _hint(err)
        msg = f"{what}: {errno_text(err)}"
        if self.hint:
            msg += f": {self.hint}"
        super().__init__(msg)


class VerifierError(SyscallError):
    """The kernel refused to load a program; carries the verifier's log."""

    #: How many meaningful lines of the log go into the message.
    TAIL_LINES = 6

    def __init__(self, program: str, err: int, log: str, hint: str | None = None):
        self.program = program
        self.log = log
        self.tail = _meaningful_tail(log, self.TAIL_LINES)
        if hint is None and log:
            hint = ""  # the log explains the refusal better than an errno hint
        super().__init__(f"loading program '{program}'", err, hint)
        if self.tail:
            self.args = (f"{self.args[0]}\n  verifier: " + "\n  verifier: ".join(self.tail),)


class AttachError(BPFLoadError):
    """A program could not be attached to its hook; `errno` is the system call's when
    one failed (None when the hook was not found before any call)."""

    def __init__(self, msg: str, err: int | None = None):
        super().__init__(msg)
        self.errno = err
        self.errname = errno_name(err) if err is not None else None


def _meaningful_tail(log: str, n: int) -> list[str]:
    """The last n lines that say something (drop statistics and blank lines)."""
    keep = []
    for line in log.splitlines():
        line = line.rstrip()
        if not line or line.startswith(("processed ", "verification time", "stack depth")):
            continue
        keep.append(line)
    return keep[-n:]
