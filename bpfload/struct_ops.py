"""struct_ops maps: an object's `SEC(".struct_ops") struct tcp_congestion_ops x = {...}`
laid out the way the kernel takes it, as libbpf does (bpf_map__init_kern_struct_ops).

The kernel's value type is `struct bpf_struct_ops_NAME` (in vmlinux or a module),
which holds `struct NAME` as a member. Each member of the object's struct is matched by
name: data is copied (sizes must agree), function pointers name programs, which load
with attach_btf_id = the kernel's `struct NAME` and expected_attach_type = the member's
index there. A member the kernel lacks must be zero; a program set only there is not
loaded. The map's value, with the programs' fds in it, is what attaching writes:
register() writes it, which registers the ops with the kernel (a TCP congestion
control by its name, say); a map created BPF_F_LINK (`.struct_ops.link`) is then
registered through a link, whose closing unregisters it, also when the process dies.
Otherwise unregistering is deleting the value again: a process killed before that
leaves the ops registered, as with libbpf.
"""

from __future__ import annotations

import errno

from . import model
from .btf import format as btf_format
from .btf import types as btf_types
from .btf.spec import essential_name
from .errors import NOT_SUPPORTED, AttachError, BPFLoadError, SyscallError
from .record import REQUIRED, Record

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from .btf.kernel import KernelBTF
    from .btf.spec import Spec

VALUE_PREFIX = "bpf_struct_ops_"


class Layout(Record):
    """One struct_ops map in the kernel's terms."""

    _fields = (
        ("type_id", REQUIRED),  # int: the kernel's struct NAME
        ("vtype_id", REQUIRED),  # int: the kernel's struct bpf_struct_ops_NAME
        ("module", ""),  # str: the module whose BTF has them ('' for vmlinux)
        ("value", b""),  # bytes: the map value, programs not yet filled in
        ("func_offsets", dict),  # dict[str, int]: program -> offset of its fd in value
        ("members", dict),  # dict[str, int]: program -> the kernel member's index
        ("dropped", list),  # list[str]: programs set only in members the kernel lacks
    )


def layout(btf: Spec, m: model.MapSpec, kb: KernelBTF) -> Layout:
    st = btf[m.struct_ops_type]
    tname = essential_name(st.name)
    found = kb.find(VALUE_PREFIX + tname, btf_format.KIND_STRUCT)
    if found is None:
        raise BPFLoadError(f"struct_ops map '{m.name}': the kernel has no struct "
                           f"{VALUE_PREFIX}{tname}, so it cannot take struct {tname} ops")
    kspec, vtype_id, module = found
    type_id = next(iter(kspec.find(tname, btf_format.KIND_STRUCT)), None)
    vtype = kspec[vtype_id]
    data_member = next((mem for mem in vtype.members if mem.type == type_id), None)
    if type_id is None or data_member is None:
        raise BPFLoadError(f"struct_ops map '{m.name}': struct {VALUE_PREFIX}{tname} holds "
                           f"no struct {tname}")
    ktype = kspec[type_id]
    value = bytearray(vtype.size)
    base = data_member.bit_offset // 8
    out = Layout(type_id, vtype_id, module)
    for i, mem in enumerate(st.members):
        _member(btf, kspec, m, st, ktype, i, mem, value, base, out)
    out.value = bytes(value)
    return out


def _member(btf, kspec, m, st, ktype, i, mem, value, base, out) -> None:
    size = btf.size_of(mem.type)
    start = mem.bit_offset // 8
    local = m.data[start:start + size]
    prog = m.init_slots.get(i)
    kidx = next((j for j, k in enumerate(ktype.members) if k.name == mem.name), None)
    if kidx is None:
        if any(local):
            raise BPFLoadError(f"struct_ops map '{m.name}': the kernel's struct "
                               f"{ktype.name} has no member '{mem.name}', which is set")
        if prog is not None:
            out.dropped.append(prog)
        return
    kmem = ktype.members[kidx]
    if mem.bitfield_size or kmem.bitfield_size:
        raise BPFLoadError(f"struct_ops map '{m.name}': bitfield member '{mem.name}' is not "
                           f"supported")
    lt = btf[btf.skip_modifiers(mem.type)]
    kt = kspec[kspec.skip_modifiers(kmem.type)]
    if type(lt) is not type(kt):
        raise BPFLoadError(f"struct_ops map '{m.name}': member '{mem.name}' is a "
                           f"{lt.kind_name} here but a {kt.kind_name} in the kernel")
    koff = base + kmem.bit_offset // 8
    if isinstance(lt, btf_types.Ptr):
        if prog is None:
            return
        if not isinstance(kspec[kspec.skip_modifiers(kt.type)], btf_types.FuncProto):
            raise BPFLoadError(f"struct_ops map '{m.name}': the kernel's member "
                               f"'{mem.name}' is not a function pointer")
        if out.members.get(prog, kidx) != kidx:
            raise BPFLoadError(f"struct_ops map '{m.name}': program '{prog}' is used for two "
                               f"different members")
        out.members[prog] = kidx
        out.func_offsets[prog] = koff
        return
    ksize = kspec.size_of(kmem.type)
    if ksize != size:
        raise BPFLoadError(f"struct_ops map '{m.name}': member '{mem.name}' is {size} bytes "
                           f"here but {ksize} in the kernel")
    value[koff:koff + size] = local


def value_with_programs(lay: Layout, prog_fds: dict[str, int]) -> bytes:
    """The map value with each loaded program's fd where the kernel expects it."""
    value = bytearray(lay.value)
    for prog, off in lay.func_offsets.items():
        if prog in prog_fds:
            value[off:off + 8] = prog_fds[prog].to_bytes(8, "little")
    return bytes(value)


def register(name: str, ops_map, value: bytes):
    """Register struct_ops map `ops_map` (an object's map called `name`) with `value`,
    its value with program fds in it; returns the Link that unregisters it."""
    from .links import Link
    from .sys import attrs
    from .sys.constants import AttachType, Cmd, MapFlags
    from .sys.syscall import bpf_fd

    key = bytes(4)
    try:
        ops_map.update(key, value)
    except SyscallError as e:
        raise AttachError(_refused(name, e), e.errno) from e
    if not ops_map.flags & MapFlags.LINK:
        return Link("struct_ops", None, name, None, detach=lambda: ops_map.delete(key))
    attr = attrs.LinkCreateAttr(prog_fd=ops_map.fileno(), attach_type=AttachType.STRUCT_OPS)
    try:
        fd = bpf_fd(Cmd.LINK_CREATE, attr, f"registering struct_ops '{name}'")
    except SyscallError as e:
        raise AttachError(_refused(name, e), e.errno) from e
    return Link("struct_ops", None, name, fd)


def _refused(name: str, e: SyscallError) -> str:
    msg = f"registering struct_ops map '{name}': {e.errname}"
    if e.errno == errno.EEXIST:
        msg += ": ops of that name are registered already"
    elif e.errno in NOT_SUPPORTED:
        msg += ": this kind of struct_ops cannot be registered from user space here"
    elif e.hint:
        msg += f": {e.hint}"
    return msg
