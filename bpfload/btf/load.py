"""Putting BTF into the kernel (BTF_LOAD) and probing which BTF kinds it accepts."""

from __future__ import annotations

import ctypes
import errno
import functools

from ..errors import BTFError, SyscallError
from ..sys import attrs
from ..sys.constants import Cmd
from ..sys.syscall import FD, address, bpf_fd
from . import format as btf_format

TYPE_CHECKING = False
if TYPE_CHECKING:
    from . import types as btf_types
    from .fixup import Features

_LOG_START = 64 * 1024
_LOG_MAX = 16 * 1024 * 1024


def load_btf(raw: bytes, what: str = "BTF") -> FD:
    """BTF_LOAD `raw`; on refusal retry with a log and raise BTFError quoting it."""
    buf = ctypes.create_string_buffer(raw, len(raw))
    attr = attrs.BtfLoadAttr(btf=address(buf), btf_size=len(raw))
    try:
        return bpf_fd(Cmd.BTF_LOAD, attr, f"loading {what}")
    except SyscallError as first:
        if first.errno in (errno.EPERM, errno.ENOSYS):
            raise
        log = _log_of_failed_load(buf, len(raw))
        tail = " / ".join(line for line in log.splitlines()[-3:] if line.strip())
        raise BTFError(f"the kernel refused {what}: {first.errname}"
                       + (f": {tail}" if tail else "")) from None


def _log_of_failed_load(buf, size: int) -> str:
    log_size = _LOG_START
    while log_size <= _LOG_MAX:
        log = ctypes.create_string_buffer(log_size)
        attr = attrs.BtfLoadAttr(btf=address(buf), btf_size=size, btf_log_buf=address(log),
                                 btf_log_size=log_size, btf_log_level=1)
        try:
            bpf_fd(Cmd.BTF_LOAD, attr).close()
            return ""  # loads with a log but not without: nothing to report
        except SyscallError as e:
            if e.errno != errno.ENOSPC:
                return log.value.decode("utf-8", "replace")
        log_size *= 4
    return ""


def _accepts(types: list[btf_types.Type]) -> bool:
    from .encode import encode

    try:
        load_btf(encode(types), "a BTF feature probe").close()
        return True
    except BTFError:
        return False


@functools.cache
def probe_features() -> Features:
    """Which BTF kinds the running kernel accepts (a few tiny BTF_LOADs, once)."""
    from . import types as btf_types
    from .fixup import Features  # (like encode: not imported by a load that needs no probe)

    i32 = btf_types.Int("int", 4, btf_format.INT_SIGNED)
    return Features(
        func=_accepts([i32, btf_types.FuncProto("", 1, []),
                       btf_types.Func("f", 2, btf_format.LINKAGE_STATIC)]),
        global_func=_accepts([i32, btf_types.FuncProto("", 1, []),
                              btf_types.Func("f", 2, btf_format.LINKAGE_GLOBAL)]),
        datasec=_accepts([i32, btf_types.Var("x", 1, btf_format.LINKAGE_GLOBAL),
                          btf_types.Datasec(".data", 4, [btf_types.VarSecinfo(2, 0, 4)])]),
        qmark_datasec=_accepts([i32, btf_types.Var("x", 1, btf_format.LINKAGE_GLOBAL),
                                btf_types.Datasec("?.data", 4, [btf_types.VarSecinfo(2, 0, 4)])]),
        float_=_accepts([btf_types.Float("float", 4)]),
        decl_tag=_accepts([i32, btf_types.Var("x", 1, btf_format.LINKAGE_GLOBAL),
                           btf_types.DeclTag("tag", 2, -1)]),
        type_tag=_accepts([i32, btf_types.TypeTag("tag", 1), btf_types.Ptr("", 2)]),
        enum64=_accepts([btf_types.Enum64("e", 8, [btf_types.EnumValue("v", 1)])]),
    )
