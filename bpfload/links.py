"""Attaching loaded programs to their hooks. A Link owns the attachment: closing it (or
the process exiting) detaches the program.

fentry/fexit/fmod_ret/lsm and tp_btf use BPF_LINK_CREATE with the target's BTF id
given at load time; raw tracepoints use BPF_RAW_TRACEPOINT_OPEN; tracepoints and
kprobes go through a perf event (tracepoint id from tracefs, or the kprobe PMU).
"""

from __future__ import annotations

import ctypes
import errno
import os

from . import sections
from .errors import NOT_SUPPORTED, AttachError, SyscallError
from .programs import Program
from .sys import attrs
from .sys.constants import (
    PERF_EVENT_IOC_ENABLE,
    PERF_EVENT_IOC_SET_BPF,
    PERF_SAMPLE_RAW,
    PERF_TYPE_TRACEPOINT,
    AttachType,
    Cmd,
)
from .sys.syscall import FD, address, bpf_fd, ioctl, perf_event_open

TRACEFS_DIRS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
PMU_DIR = "/sys/bus/event_source/devices"


class Link:
    """An attached program. close() detaches it."""

    def __init__(self, kind: str, program: Program, target: str, fd: FD,
                 perf_fd: FD | None = None):
        self.kind = kind
        self.program = program
        self.target = target
        self.fd = fd
        self.perf_fd = perf_fd

    def close(self) -> None:
        self.fd.close()
        if self.perf_fd is not None:
            self.perf_fd.close()

    @property
    def closed(self) -> bool:
        return self.fd.closed

    def __enter__(self) -> Link:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Link({self.kind} {self.target!r} -> {self.program.name!r})"


def attach(prog: Program, target: str | None = None) -> Link:
    """Attach `prog` the way its section name says (target overrides the name's part)."""
    kind = prog.attach_kind
    target = target if target is not None else prog.attach_target
    where = f"attaching program '{prog.name}'"
    if kind in (sections.ATTACH_TRACING, sections.ATTACH_TP_BTF):
        return attach_tracing(prog, target)
    if kind == sections.ATTACH_RAW_TP:
        return attach_raw_tracepoint(prog, target)
    if kind == sections.ATTACH_TRACEPOINT:
        return attach_tracepoint(prog, target)
    if kind in (sections.ATTACH_KPROBE, sections.ATTACH_KRETPROBE):
        return attach_kprobe(prog, target, ret=kind == sections.ATTACH_KRETPROBE)
    if kind == sections.ATTACH_RUN:
        raise AttachError(f"{where}: {prog.section} programs are not attached; run them "
                          f"with test_run()")
    if kind in (sections.ATTACH_NONE, "", None):
        raise AttachError(f"{where}: section '{prog.section}' does not say where to attach")
    raise AttachError(f"{where}: bpfload cannot attach {kind} programs yet (section "
                      f"'{prog.section}'); it loads them")


def attach_tracing(prog: Program, target: str = "") -> Link:
    """fentry/fexit/fmod_ret/lsm/tp_btf: the target was fixed at load time (attach_btf_id)."""
    attr = attrs.LinkCreateAttr(prog_fd=prog.fileno(), attach_type=prog.attach_type)
    try:
        fd = bpf_fd(Cmd.LINK_CREATE, attr, f"attaching '{prog.name}' to {target}")
    except SyscallError as e:
        if e.errno != errno.EINVAL:
            raise _attach_error(prog, target, e) from e
        # kernels before 5.13 attach tracing programs through RAW_TRACEPOINT_OPEN
        try:
            fd = bpf_fd(Cmd.RAW_TRACEPOINT_OPEN, attrs.RawTracepointAttr(prog_fd=prog.fileno()),
                        f"attaching '{prog.name}' to {target}")
        except SyscallError as e2:
            raise _attach_error(prog, target, e2) from e2
    return Link(prog.attach_kind, prog, target, fd)


def attach_raw_tracepoint(prog: Program, name: str) -> Link:
    if not name:
        raise AttachError(f"attaching '{prog.name}': no raw tracepoint name in section "
                          f"'{prog.section}'")
    buf = ctypes.create_string_buffer(name.encode())
    attr = attrs.RawTracepointAttr(name=address(buf), prog_fd=prog.fileno())
    try:
        fd = bpf_fd(Cmd.RAW_TRACEPOINT_OPEN, attr, f"attaching '{prog.name}' to raw "
                                                   f"tracepoint {name}")
    except SyscallError as e:
        if e.errno == errno.ENOENT:
            raise AttachError(f"attaching '{prog.name}': the kernel has no raw tracepoint "
                              f"'{name}'", e.errno) from e
        raise _attach_error(prog, name, e) from e
    return Link(sections.ATTACH_RAW_TP, prog, name, fd)


def tracefs() -> str:
    for d in TRACEFS_DIRS:
        if os.path.isdir(os.path.join(d, "events")):
            return d
    raise AttachError("tracefs is not mounted (mount -t tracefs nodev /sys/kernel/tracing)")


def tracepoint_id(category: str, name: str) -> int:
    path = os.path.join(tracefs(), "events", category, name, "id")
    try:
        with open(path) as f:
            return int(f.read())
    except FileNotFoundError:
        raise AttachError(f"the kernel has no tracepoint {category}/{name}") from None
    except (OSError, ValueError) as e:
        raise AttachError(f"cannot read {path}: {e}") from None


def attach_tracepoint(prog: Program, target: str) -> Link:
    category, _, name = target.partition("/")
    if not category or not name:
        raise AttachError(f"attaching '{prog.name}': tracepoint section needs CATEGORY/NAME, "
                          f"got '{target}'")
    pattr = attrs.PerfEventAttr(type=PERF_TYPE_TRACEPOINT, config=tracepoint_id(category, name),
                                sample_period=1, sample_type=PERF_SAMPLE_RAW, wakeup_events=1)
    pfd = perf_event_open(pattr, what=f"opening tracepoint {target}")
    return _attach_perf_event(prog, pfd, "tracepoint", target)


def _pmu_type(pmu: str) -> int:
    try:
        with open(os.path.join(PMU_DIR, pmu, "type")) as f:
            return int(f.read())
    except OSError:
        raise AttachError(f"the kernel has no {pmu} PMU (CONFIG_KPROBE_EVENTS off?)") from None


def _retprobe_bit(pmu: str) -> int:
    try:
        with open(os.path.join(PMU_DIR, pmu, "format", "retprobe")) as f:
            return int(f.read().strip().split(":")[1])
    except (OSError, IndexError, ValueError):
        return 0


def attach_kprobe(prog: Program, function: str, ret: bool = False) -> Link:
    if not function:
        raise AttachError(f"attaching '{prog.name}': no function in section '{prog.section}'")
    func, _, off = function.partition("+")
    try:
        offset = int(off, 0) if off else 0
    except ValueError:
        raise AttachError(f"attaching '{prog.name}': '{off}' in '{function}' is not an "
                          f"offset (kprobe/FUNCTION+OFFSET)") from None
    kind = "kretprobe" if ret else "kprobe"
    try:
        pfd = open_kprobe(func, offset, ret)
    except SyscallError as e:
        if e.errno == errno.ENOENT:
            raise AttachError(f"attaching '{prog.name}': no kernel function '{func}' to "
                              f"probe", e.errno) from e
        raise
    return _attach_perf_event(prog, pfd, kind, function)


def open_kprobe(func: str, offset: int = 0, ret: bool = False, pid: int = -1,
                cpu: int = 0) -> FD:
    """A perf event of the kprobe PMU on `func` (+offset), not yet given a program."""
    name = ctypes.create_string_buffer(func.encode())
    pattr = attrs.PerfEventAttr(type=_pmu_type("kprobe"), sample_period=1, wakeup_events=1,
                                config1=address(name), config2=offset)
    if ret:
        pattr.config = 1 << _retprobe_bit("kprobe")
    kind = "kretprobe" if ret else "kprobe"
    return perf_event_open(pattr, pid=pid, cpu=cpu, what=f"opening {kind} on {func}")


def _attach_perf_event(prog: Program, pfd: FD, kind: str, target: str) -> Link:
    attr = attrs.LinkCreateAttr(prog_fd=prog.fileno(), target_fd=pfd.fileno(),
                                attach_type=AttachType.PERF_EVENT)
    try:
        fd = bpf_fd(Cmd.LINK_CREATE, attr, f"attaching '{prog.name}' to {kind} {target}")
        return Link(kind, prog, target, fd, perf_fd=pfd)
    except SyscallError as e:
        if e.errno not in NOT_SUPPORTED and e.errno != errno.EINVAL:
            pfd.close()
            raise _attach_error(prog, target, e) from e
    try:  # kernels before 5.15: the perf event owns the attachment
        ioctl(pfd.fileno(), PERF_EVENT_IOC_SET_BPF, prog.fileno(), "PERF_EVENT_IOC_SET_BPF")
        ioctl(pfd.fileno(), PERF_EVENT_IOC_ENABLE, 0, "PERF_EVENT_IOC_ENABLE")
    except SyscallError as e:
        pfd.close()
        raise _attach_error(prog, target, e) from e
    return Link(kind, prog, target, pfd)


def _attach_error(prog: Program, target: str, e: SyscallError) -> AttachError:
    msg = f"attaching program '{prog.name}' to {target or prog.section}: {e.errname}"
    if e.hint:
        msg += f": {e.hint}"
    elif e.errno in NOT_SUPPORTED:
        msg += ": the kernel cannot attach this program type here"
    return AttachError(msg, e.errno)
