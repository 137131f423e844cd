"""Uprobes: programs on functions and instructions of user-space binaries, through the
kernel's uprobe PMU (a perf event per probe) or one uprobe-multi link for many
offsets (Linux 6.6+). Where a function is in a binary comes from :mod:`.binaries`.

A uprobe hits every process that runs the probed file unless a pid is given. A USDT
semaphore is a counter in the binary the kernel raises while a probe with its
ref_ctr_offset is attached (and lowers when it is detached).
"""

from __future__ import annotations

import ctypes
import errno

from . import binaries, sections
from .errors import AttachError, SyscallError
from .links import Link, attach_error, attach_perf_event, pmu_type, retprobe_bit
from .programs import Program
from .sys import attrs
from .sys.constants import AttachType, Cmd
from .sys.syscall import FD, address, bpf_fd, perf_event_open

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

REF_CTR_OFFSET_SHIFT = 32  # PERF_UPROBE_REF_CTR_OFFSET_SHIFT: config bits 32-63
UPROBE_MULTI_RETURN = 1  # BPF_F_UPROBE_MULTI_RETURN


def parse_target(target: str, prog_name: str) -> tuple[str, str, int]:
    """'BINARY:FUNCTION[+OFFSET]' (libbpf's u[ret]probe/ section form) as
    (binary, function, offset)."""
    binary, sep, func = target.partition(":")
    if not sep or not binary or not func:
        raise AttachError(f"program '{prog_name}': '{target}' is not BINARY:FUNCTION"
                          f"[+OFFSET]")
    offset = 0
    name, plus, off = func.rpartition("+")
    if plus:
        try:
            offset = int(off, 0)
            func = name
        except ValueError:
            pass  # libbpf too keeps a '+' that is not an offset as part of the name
    return binary, func, offset


def attach_from_section(prog: Program, target: str) -> Link:
    ret = prog.attach_kind in (sections.ATTACH_URETPROBE, sections.ATTACH_URETPROBE_MULTI)
    if prog.attach_kind in (sections.ATTACH_UPROBE_MULTI, sections.ATTACH_URETPROBE_MULTI):
        binary, sep, pattern = target.partition(":")
        if not sep or not binary or not pattern:
            raise AttachError(f"program '{prog.name}': '{target}' is not BINARY:PATTERN")
        return attach_uprobe_multi(prog, binary, pattern, ret=ret)
    binary, func, offset = parse_target(target, prog.name)
    if ret and offset:
        raise AttachError(f"program '{prog.name}': a uretprobe takes no offset "
                          f"('{target}')")
    return attach_uprobe(prog, binary, func, offset, ret=ret)


def open_uprobe(path: str, offset: int, ret: bool = False, pid: int = -1,
                ref_ctr_offset: int = 0) -> FD:
    """A perf event of the uprobe PMU at `offset` in file `path`, not yet given a
    program (pid -1: every process)."""
    name = ctypes.create_string_buffer(path.encode())
    pattr = attrs.PerfEventAttr(type=pmu_type("uprobe"), sample_period=1, wakeup_events=1,
                                config1=address(name), config2=offset)
    pattr.config = (ref_ctr_offset << REF_CTR_OFFSET_SHIFT) | \
        ((1 << retprobe_bit("uprobe")) if ret else 0)
    kind = "uretprobe" if ret else "uprobe"
    return perf_event_open(pattr, pid=pid if pid >= 0 else -1, cpu=0 if pid < 0 else -1,
                           what=f"opening {kind} at {path}+{offset:#x}")


def attach_uprobe(prog: Program, binary: str, function: str = "", offset: int = 0, *,
                  ret: bool = False, pid: int = -1, cookie: int = 0,
                  ref_ctr_offset: int = 0) -> Link:
    """Attach to `function` (+offset) of `binary`, or to file offset `offset` when no
    function is named; a return probe with ret=True."""
    path = binaries.resolve_path(binary)
    file_offset = offset + (binaries.function_offset(path, function) if function else 0)
    kind = "uretprobe" if ret else "uprobe"
    where = f"{path}:{function}" if function else f"{path}+{offset:#x}"
    try:
        pfd = open_uprobe(path, file_offset, ret, pid, ref_ctr_offset)
    except SyscallError as e:
        raise attach_error(prog, where, e) from e
    return attach_perf_event(prog, pfd, kind, where, cookie)


def attach_uprobe_multi(prog: Program, binary: str, pattern: str | None = None, *,
                        offsets: Sequence[int] | None = None,
                        ref_ctr_offsets: Sequence[int] | None = None,
                        cookies: Sequence[int] | None = None, ret: bool = False,
                        pid: int = -1) -> Link:
    """One uprobe-multi link on every function of `binary` the glob `pattern` matches,
    or on the file `offsets` given. The program must have been loaded for it
    (expected attach type TRACE_UPROBE_MULTI: SEC("uprobe.multi"), or usdt where the
    kernel has uprobe-multi links)."""
    path = binaries.resolve_path(binary)
    if offsets is None:
        if pattern is None:
            raise AttachError(f"attaching '{prog.name}': uprobe-multi needs a pattern or "
                              f"offsets")
        offsets = [off for _, off in binaries.pattern_offsets(path, pattern)]
    n = len(offsets)
    path_buf = ctypes.create_string_buffer(path.encode())
    offs = (ctypes.c_uint64 * n)(*offsets)
    attr = attrs.LinkCreateAttr(prog_fd=prog.fileno(), attach_type=AttachType.TRACE_UPROBE_MULTI)
    um = attr.uprobe_multi
    um.path, um.offsets, um.cnt = address(path_buf), ctypes.addressof(offs), n
    um.flags = UPROBE_MULTI_RETURN if ret else 0
    um.pid = pid if pid > 0 else 0
    keep = [path_buf, offs]
    for field, values in (("ref_ctr_offsets", ref_ctr_offsets), ("cookies", cookies)):
        if values is not None:
            buf = (ctypes.c_uint64 * n)(*values)
            keep.append(buf)
            setattr(um, field, ctypes.addressof(buf))
    where = f"{path}:{pattern}" if pattern else f"{path} ({n} offsets)"
    try:
        fd = bpf_fd(Cmd.LINK_CREATE, attr, f"attaching '{prog.name}' to {where}")
    except SyscallError as e:
        if e.errno == errno.EINVAL and prog.attach_type != AttachType.TRACE_UPROBE_MULTI:
            raise AttachError(f"attaching '{prog.name}' to {where}: the program was not "
                              f"loaded for uprobe-multi links (SEC(\"uprobe.multi/...\"))",
                              e.errno) from e
        raise attach_error(prog, where, e) from e
    return Link("uretprobe.multi" if ret else "uprobe.multi", prog, where, fd)
