"""What the running kernel can do, probed the way libbpf probes it (once per process).

Only the probes whose answer changes what bpfload loads live here: the values of
libbpf's virtual __kconfig externs (LINUX_HAS_BPF_COOKIE, LINUX_HAS_SYSCALL_WRAPPER)
and whether usdt programs load as uprobe-multi ones. BTF kinds are probed in
:mod:`.btf.load`.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os

from . import asm
from .errors import BPFLoadError, SyscallError
from .sys import attrs
from .sys.constants import AttachType, Cmd, ProgType
from .sys.syscall import FD, address, bpf_fd

BPF_FUNC_get_attach_cookie = 174

# the syscall wrapper prefix of each architecture (libbpf's arch_specific_syscall_pfx)
SYSCALL_PREFIX = {"x86_64": "x64", "i686": "ia32", "aarch64": "arm64", "s390x": "s390x",
                   "ppc64le": "powerpc", "riscv64": "riscv", "loongarch64": "loongarch"}


def _load(prog_type: int, insns: list[asm.Insn], attach_type: int = 0) -> FD:
    code = asm.encode(insns)
    buf = ctypes.create_string_buffer(code, len(code))
    lic = ctypes.create_string_buffer(b"GPL")
    attr = attrs.ProgLoadAttr(prog_type=prog_type, insn_cnt=len(insns), insns=address(buf),
                              license=address(lic), expected_attach_type=attach_type)
    return bpf_fd(Cmd.PROG_LOAD, attr, "probing the kernel")


def _exit0() -> list[asm.Insn]:
    return [asm.mov64_imm(0, 0), asm.Insn(asm.OP_EXIT)]


@functools.cache
def bpf_cookie() -> bool:
    """bpf_get_attach_cookie() exists (libbpf's FEAT_BPF_COOKIE)."""
    call = asm.Insn(asm.OP_CALL, 0, 0, 0, BPF_FUNC_get_attach_cookie)
    try:
        _load(ProgType.TRACEPOINT, [call, asm.Insn(asm.OP_EXIT)]).close()
    except SyscallError:
        return False
    return True


@functools.cache
def syscall_wrapper() -> bool:
    """System calls enter through __<arch>_sys_NAME wrappers (FEAT_SYSCALL_WRAPPER):
    a kprobe on __x64_sys_bpf opens."""
    prefix = SYSCALL_PREFIX.get(os.uname().machine)
    if prefix is None:
        return False
    from .links import open_kprobe

    try:
        open_kprobe(f"__{prefix}_sys_bpf", pid=os.getpid(), cpu=-1).close()
    except BPFLoadError:  # no kprobe PMU, no such function: the answer is no either way
        return False
    return True


@functools.cache
def uprobe_multi_link() -> bool:
    """uprobe-multi links work, PID filtering included (FEAT_UPROBE_MULTI_LINK): a
    link on '/' with an invalid PID must fail with EINVAL, not EBADF or ESRCH."""
    try:
        prog = _load(ProgType.KPROBE, _exit0(), AttachType.TRACE_UPROBE_MULTI)
    except SyscallError:
        return False
    with prog:
        path = ctypes.create_string_buffer(b"/")
        offset = ctypes.c_uint64(0)
        for pid, ok in ((0, errno.EBADF), (2**32 - 1, errno.EINVAL)):
            attr = attrs.LinkCreateAttr(prog_fd=prog.fileno(),
                                        attach_type=AttachType.TRACE_UPROBE_MULTI)
            attr.uprobe_multi.path = address(path)
            attr.uprobe_multi.offsets = ctypes.addressof(offset)
            attr.uprobe_multi.cnt = 1
            attr.uprobe_multi.pid = pid
            try:
                bpf_fd(Cmd.LINK_CREATE, attr).close()
                return False
            except SyscallError as e:
                if e.errno != ok:
                    return False
    return True


@functools.cache
def struct_ops_link() -> bool:
    """struct_ops maps can be created BPF_F_LINK (Linux 6.4+): an array map with the
    flag is refused with EINVAL either way, so ask for a struct_ops map with a
    value type that cannot exist and see which error comes back."""
    from .maps import Map
    from .sys.constants import MapFlags, MapType

    try:
        Map.create("probe", MapType.STRUCT_OPS, 4, 4, 1, MapFlags.LINK,
                   btf_vmlinux_value_type=1 << 30).close()
    except SyscallError as e:
        return e.errno != errno.EINVAL
    return True
