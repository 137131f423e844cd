"""The one place bpf(2) and perf_event_open(2) are called.

Every kernel object comes back as an :class:`FD` that owns the descriptor: it closes on
``close()``, at garbage collection, and on leaving a ``with`` block.
"""

from __future__ import annotations

import _signal  # the signal module's C half: the module itself imports enum
import ctypes
import errno
import fcntl
import os

from ..errors import SyscallError
from . import attrs
from .constants import PERF_FLAG_FD_CLOEXEC, Cmd

# System call numbers by architecture (asm/unistd_64.h and friends).
_SYSCALLS = {
    "x86_64": (321, 298),
    "aarch64": (280, 241),
    "riscv64": (280, 241),
    "ppc64le": (361, 319),
    "s390x": (351, 331),
    "loongarch64": (280, 241),
}

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long

try:
    SYS_BPF, SYS_PERF_EVENT_OPEN = _SYSCALLS[os.uname().machine]
except KeyError:  # pragma: no cover - only on architectures we never ran on
    SYS_BPF = SYS_PERF_EVENT_OPEN = -1


class FD:
    """An owned file descriptor of a kernel object."""

    __slots__ = ("_fd", "__weakref__")

    def __init__(self, fd: int):
        self._fd = fd

    def fileno(self) -> int:
        if self._fd < 0:
            raise ValueError("file descriptor is closed")
        return self._fd

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def __del__(self):
        try:
            self.close()
        except OSError:
            pass

    def __enter__(self) -> FD:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __int__(self) -> int:
        return self.fileno()

    def __repr__(self) -> str:
        return f"FD({self._fd})" if self._fd >= 0 else "FD(closed)"


def address(buf) -> int:
    """Address of a ctypes object or a writable buffer, for pointer fields of attrs.

    The caller keeps `buf` alive for as long as the kernel may touch it.
    """
    if buf is None:
        return 0
    if isinstance(buf, (bytearray, memoryview)):
        return ctypes.addressof((ctypes.c_char * len(buf)).from_buffer(buf)) if len(buf) else 0
    if isinstance(buf, bytes):
        return ctypes.cast(ctypes.c_char_p(buf), ctypes.c_void_p).value or 0
    return ctypes.addressof(buf)


def bpf(cmd: Cmd, attr: ctypes.Structure, what: str | None = None) -> int:
    """Call bpf(cmd, &attr, sizeof(attr)); returns the result or raises SyscallError."""
    size = ctypes.sizeof(attr)
    ref = ctypes.byref(attr)
    while True:
        ret = _syscall(SYS_BPF, ctypes.c_int(int(cmd)), ref, ctypes.c_uint(size))
        if ret >= 0:
            return ret
        err = ctypes.get_errno()
        # The verifier can be interrupted; PROG_LOAD says EAGAIN for it.
        if err == errno.EINTR or (err == errno.EAGAIN and cmd == Cmd.PROG_LOAD):
            continue
        raise SyscallError(what or f"bpf({Cmd.name_of(cmd)})", err)


def bpf_fd(cmd: Cmd, attr: ctypes.Structure, what: str | None = None) -> FD:
    """bpf() for commands that return a new file descriptor."""
    return _owned(bpf, cmd, attr, what)


#: Signals held back from a system call that makes a file descriptor until an FD owns
#: it: a Python handler raising in between (KeyboardInterrupt, SIGTERM turned into an
#: exception) would lose the number, and the program, map or link would stay in the
#: kernel until the process exits.  Faults cannot be held, and need not be.
_HELD = frozenset(_signal.valid_signals()) - {
    _signal.SIGKILL, _signal.SIGSTOP, _signal.SIGSEGV, _signal.SIGBUS, _signal.SIGFPE,
    _signal.SIGILL, _signal.SIGTRAP, _signal.SIGSYS, _signal.SIGABRT}


class _SigSet(ctypes.Structure):
    """glibc's sigset_t (1024 bits), for pthread_sigmask(3) called directly: the
    signal module's wrapper turns every returned mask into a set of enum members,
    which made holding signals cost more than the bpf() call it protects."""

    _fields_ = [("bits", ctypes.c_ulong * (1024 // (8 * ctypes.sizeof(ctypes.c_ulong))))]

    @classmethod
    def of(cls, signals) -> _SigSet:
        s = cls()
        width = 8 * ctypes.sizeof(ctypes.c_ulong)
        for sig in signals:
            s.bits[(sig - 1) // width] |= 1 << ((sig - 1) % width)
        return s


_HELD_SET = _SigSet.of(_HELD)
_sigmask = _libc.pthread_sigmask
_sigmask.argtypes = [ctypes.c_int, ctypes.POINTER(_SigSet), ctypes.POINTER(_SigSet)]


_signalfd = _libc.signalfd
_signalfd.argtypes = [ctypes.c_int, ctypes.POINTER(_SigSet), ctypes.c_int]
SFD_CLOEXEC = 0o2000000
SFD_NONBLOCK = 0o4000
SIGNALFD_INFO_SIZE = 128  # struct signalfd_siginfo


def signalfd(signals) -> FD:
    """A descriptor that becomes readable when one of `signals` is pending (they must
    be blocked): lets one epoll wait for both events and a stop signal."""
    mask = _SigSet.of(signals)
    return _owned(_signalfd_fd, mask)


def _signalfd_fd(mask: _SigSet) -> int:
    fd = _signalfd(-1, ctypes.byref(mask), SFD_CLOEXEC | SFD_NONBLOCK)
    if fd < 0:
        raise SyscallError("signalfd", ctypes.get_errno())
    return fd


def _owned(make_fd, *args) -> FD:
    """FD(make_fd(*args)) with no Python signal handler running in between (a signal
    that arrives meanwhile is delivered afterwards; the FD then closes as it unwinds).
    The verifier is not interrupted by Ctrl-C while signals are held: it finishes."""
    old = _SigSet()
    if _sigmask(_signal.SIG_BLOCK, _HELD_SET, old):
        raise OSError("pthread_sigmask failed")  # pragma: no cover - EINVAL only
    try:
        return FD(_above_stdio(make_fd(*args)))
    finally:
        _sigmask(_signal.SIG_SETMASK, old, None)


def _above_stdio(fd: int) -> int:
    """`fd`, moved to 3 or above if it is 0-2. A process started with stdin (or stdout,
    stderr) closed gets those numbers for its kernel objects, and 0 means "none" in
    bpf(2) attributes (btf_fd, inner_map_fd, ...): the object's BTF at fd 0 would
    silently not be used. libbpf and cilium/ebpf move them the same way."""
    if fd > 2:
        return fd
    try:
        return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    finally:
        os.close(fd)


def obj_info(fd: int, info: ctypes.Structure) -> ctypes.Structure:
    """BPF_OBJ_GET_INFO_BY_FD into `info` (pre-set pointer fields are honoured)."""
    attr = attrs.InfoAttr(bpf_fd=fd, info_len=ctypes.sizeof(info), info=address(info))
    bpf(Cmd.OBJ_GET_INFO_BY_FD, attr, "bpf(OBJ_GET_INFO_BY_FD)")
    return info


def obj_pin(fd: int, path: str, what: str) -> None:
    """BPF_OBJ_PIN: make `path` (in a bpffs) refer to the object."""
    name = ctypes.create_string_buffer(os.fsencode(path))
    bpf(Cmd.OBJ_PIN, attrs.ObjPinAttr(pathname=address(name), bpf_fd=fd), what)


def obj_get(path: str, what: str) -> FD:
    """BPF_OBJ_GET: a file descriptor of the object pinned at `path`."""
    name = ctypes.create_string_buffer(os.fsencode(path))
    return bpf_fd(Cmd.OBJ_GET, attrs.ObjPinAttr(pathname=address(name)), what)


def next_id(cmd: Cmd, start: int) -> int | None:
    """The id after `start` for a *_GET_NEXT_ID command, or None at the end."""
    attr = attrs.GetIdAttr(start_id=start)
    try:
        bpf(cmd, attr)
    except SyscallError as e:
        if e.errno == errno.ENOENT:
            return None
        raise
    return attr.next_id


def ids(cmd: Cmd) -> list[int]:
    """Every id of one object kind currently in the kernel (PROG/MAP/BTF/LINK_GET_NEXT_ID)."""
    out = []
    cur = next_id(cmd, 0)
    while cur is not None:
        out.append(cur)
        cur = next_id(cmd, cur)
    return out


def fd_by_id(cmd: Cmd, obj_id: int) -> FD:
    """Open a kernel object by id (PROG/MAP/BTF/LINK_GET_FD_BY_ID)."""
    return bpf_fd(cmd, attrs.GetIdAttr(start_id=obj_id))


def perf_event_open(attr: attrs.PerfEventAttr, pid: int = -1, cpu: int = 0,
                    group_fd: int = -1, what: str = "perf_event_open") -> FD:
    attr.size = ctypes.sizeof(attr)
    return _owned(_perf_event_open, attr, pid, cpu, group_fd, what)


def _perf_event_open(attr, pid: int, cpu: int, group_fd: int, what: str) -> int:
    ret = _syscall(SYS_PERF_EVENT_OPEN, ctypes.byref(attr), ctypes.c_int(pid),
                   ctypes.c_int(cpu), ctypes.c_int(group_fd),
                   ctypes.c_ulong(PERF_FLAG_FD_CLOEXEC))
    if ret < 0:
        raise SyscallError(what, ctypes.get_errno())
    return ret


_mmap = _libc.mmap
_mmap.restype = ctypes.c_void_p
_mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                  ctypes.c_long]
_munmap = _libc.munmap
_munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_MAP_FAILED = ctypes.c_void_p(-1).value
PROT_READ_WRITE = 0x3
MAP_SHARED = 0x1
MAP_FIXED = 0x10


def map_shared(fd: int, size: int, addr: int = 0, what: str = "mmap") -> int:
    """mmap(addr, size, PROT_READ|PROT_WRITE, MAP_SHARED[|MAP_FIXED], fd, 0): the
    address. (The mmap module cannot place a mapping at a given address, which an
    arena with map_extra needs.)"""
    flags = MAP_SHARED | (MAP_FIXED if addr else 0)
    ret = _mmap(addr or None, size, PROT_READ_WRITE, flags, fd, 0)
    if ret is None or ret == _MAP_FAILED:
        raise SyscallError(what, ctypes.get_errno())
    return ret


def unmap(addr: int, size: int) -> None:
    _munmap(addr, size)


_ioctl = _libc.ioctl
_ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong]


def ioctl(fd: int, request: int, arg: int = 0, what: str = "ioctl") -> int:
    ret = _ioctl(fd, request, arg)
    if ret < 0:
        raise SyscallError(what, ctypes.get_errno())
    return ret
