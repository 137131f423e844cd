"""Loading programs into the kernel, the verifier's log, and running programs.

A program is loaded without a log first (fast, and what libbpf does); only when the
kernel refuses it is it loaded again with a log, grown on ENOSPC, so the error can
name the program, the errno and the log's last meaningful lines.
"""

from __future__ import annotations

import ctypes
import errno

from . import asm
from .errors import SyscallError, VerifierError
from .record import REQUIRED, Record
from .sys import attrs
from .sys.constants import Cmd, ProgType, kernel_name
from .sys.syscall import FD, address, bpf, bpf_fd, obj_info

LOG_START = 256 * 1024
LOG_MAX = 64 * 1024 * 1024
LOG_LEVEL = 1


class LoadOptions(Record):
    """Everything BPF_PROG_LOAD takes besides the instructions."""

    _fields = (
        ("prog_type", REQUIRED),
        ("expected_attach_type", 0),
        ("license", "GPL"),
        ("flags", 0),
        ("kern_version", 0),
        ("btf_fd", 0),
        ("func_info", b""),  # packed struct bpf_func_info records
        ("func_info_count", 0),
        ("line_info", b""),  # packed struct bpf_line_info records
        ("line_info_count", 0),
        ("attach_btf_id", 0),
        ("attach_btf_obj_fd", 0),
        ("fd_array", None),  # list[int] | None: module BTF fds for kfunc calls
    )


class Program:
    """A program loaded in the kernel."""

    def __init__(self, fd: FD, name: str, prog_type: int, insn_count: int, *,
                 attach_type: int = 0, section: str = "", attach_target: str = "",
                 attach_kind: str = "", attach_btf_id: int = 0, attach_btf_obj_fd: int = 0):
        self.fd = fd
        self.name = name
        self.type = prog_type
        self.insn_count = insn_count
        self.attach_type = attach_type
        self.section = section
        self.attach_target = attach_target
        self.attach_kind = attach_kind
        self.attach_btf_id = attach_btf_id
        self.attach_btf_obj_fd = attach_btf_obj_fd

    @classmethod
    def load(cls, name: str, insns: list[asm.Insn], opts: LoadOptions, *,
             explain=None, **kw) -> Program:
        """Load `insns`; raises VerifierError with the log when the kernel refuses.

        `explain(log) -> str | None` may add a hint from the log (for example the CO-RE
        relocation behind a poisoned instruction).
        """
        code = asm.encode(insns)
        try:
            fd = prog_load(name, code, opts, log_level=0)
        except SyscallError as e:
            if e.errno == errno.EPERM and not _has_log(name, code, opts):
                raise VerifierError(name, e.errno, "") from None
            log = _load_log(name, code, opts)
            hint = explain(log) if explain is not None else None
            raise VerifierError(name, e.errno, log, hint) from None
        return cls(fd, name, opts.prog_type, len(insns), attach_type=opts.expected_attach_type,
                   attach_btf_id=opts.attach_btf_id,
                   attach_btf_obj_fd=opts.attach_btf_obj_fd, **kw)

    def fileno(self) -> int:
        return self.fd.fileno()

    def info(self, xlated: bool = False) -> tuple[attrs.ProgInfo, bytes]:
        """The kernel's view of the program, and its translated instructions on request."""
        info = obj_info(self.fileno(), attrs.ProgInfo())
        if not xlated:
            return info, b""
        buf = ctypes.create_string_buffer(info.xlated_prog_len)
        map_ids = (ctypes.c_uint32 * max(1, info.nr_map_ids))()
        again = attrs.ProgInfo(xlated_prog_len=info.xlated_prog_len,
                               xlated_prog_insns=address(buf), nr_map_ids=info.nr_map_ids,
                               map_ids=address(map_ids))
        obj_info(self.fileno(), again)
        return again, buf.raw[:again.xlated_prog_len]

    @property
    def id(self) -> int:
        return self.info()[0].id

    def test_run(self, ctx: bytes | bytearray | None = None, data: bytes | None = None,
                 repeat: int = 1, data_out_size: int = 0) -> TestRunResult:
        """Run the program once (or `repeat` times) with BPF_PROG_TEST_RUN.

        `ctx` is the context the program sees (syscall programs read and write it); it
        comes back, as modified by the program, in the result.
        """
        ctx_buf = ctypes.create_string_buffer(bytes(ctx), len(ctx)) if ctx else None
        data_buf = ctypes.create_string_buffer(bytes(data), len(data)) if data else None
        out_buf = ctypes.create_string_buffer(data_out_size) if data_out_size else None
        # syscall programs get their context written back in place; the others through
        # ctx_out (which the kernel refuses for syscall programs)
        out_ctx = ctx_buf if self.type != ProgType.SYSCALL else None
        attr = attrs.TestRunAttr(
            prog_fd=self.fileno(), repeat=repeat if repeat > 1 else 0,
            ctx_in=address(ctx_buf), ctx_size_in=len(ctx) if ctx else 0,
            ctx_out=address(out_ctx), ctx_size_out=len(ctx) if out_ctx is not None else 0,
            data_in=address(data_buf), data_size_in=len(data) if data else 0,
            data_out=address(out_buf), data_size_out=data_out_size)
        bpf(Cmd.PROG_TEST_RUN, attr, f"running program '{self.name}'")
        return TestRunResult(attr.retval, attr.duration,
                             ctx_buf.raw if ctx_buf is not None else b"",
                             out_buf.raw[:attr.data_size_out] if out_buf is not None else b"")

    def close(self) -> None:
        self.fd.close()

    def __enter__(self) -> Program:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Program({self.name!r}, {ProgType.name_of(self.type)}, {self.insn_count} insns)"


class TestRunResult(Record):
    _fields = (("retval", REQUIRED), ("duration_ns", REQUIRED), ("ctx", REQUIRED),
               ("data", REQUIRED))


def prog_load(name: str, code: bytes, o: LoadOptions, log_level: int, log=None) -> FD:
    """One BPF_PROG_LOAD of encoded instructions (a log buffer if `log` is given)."""
    insns = ctypes.create_string_buffer(code, len(code))
    lic = ctypes.create_string_buffer(o.license.encode())
    fi = ctypes.create_string_buffer(o.func_info, len(o.func_info)) if o.func_info else None
    li = ctypes.create_string_buffer(o.line_info, len(o.line_info)) if o.line_info else None
    fds = (ctypes.c_int32 * len(o.fd_array))(*o.fd_array) if o.fd_array else None
    attr = attrs.ProgLoadAttr(
        prog_type=o.prog_type, insn_cnt=len(code) // asm.SIZE, insns=address(insns),
        license=address(lic), log_level=log_level,
        log_size=len(log) if log is not None else 0, log_buf=address(log),
        kern_version=o.kern_version or _kernel_version(), prog_flags=o.flags,
        prog_name=kernel_name(name).encode(), expected_attach_type=o.expected_attach_type,
        prog_btf_fd=o.btf_fd,
        func_info_rec_size=ctypes.sizeof(attrs.FuncInfo) if fi else 0,
        func_info=address(fi), func_info_cnt=o.func_info_count,
        line_info_rec_size=ctypes.sizeof(attrs.LineInfo) if li else 0,
        line_info=address(li), line_info_cnt=o.line_info_count,
        attach_btf_id=o.attach_btf_id, attach_btf_obj_fd=o.attach_btf_obj_fd,
        fd_array=address(fds))
    return bpf_fd(Cmd.PROG_LOAD, attr, f"loading program '{name}'")


def _has_log(name: str, code: bytes, o: LoadOptions) -> bool:
    """Whether the kernel explains an EPERM (the verifier) or refuses outright (no CAP_BPF)."""
    log = ctypes.create_string_buffer(4096)
    try:
        prog_load(name, code, o, LOG_LEVEL, log).close()
    except SyscallError:
        pass
    return bool(log.value)


def _load_log(name: str, code: bytes, o: LoadOptions) -> str:
    size = LOG_START
    while True:
        log = ctypes.create_string_buffer(size)
        try:
            prog_load(name, code, o, LOG_LEVEL, log).close()
            return log.value.decode("utf-8", "replace")  # accepted with a log: a flake
        except SyscallError as e:
            if e.errno == errno.ENOSPC and size < LOG_MAX:
                size *= 4
                continue
            return log.value.decode("utf-8", "replace")


_KVER: int | None = None


def _kernel_version() -> int:
    """LINUX_VERSION_CODE of the running kernel (old kernels check it for kprobes)."""
    global _KVER
    if _KVER is None:
        from .kconfig import kernel_version

        _KVER = kernel_version()
    return _KVER
