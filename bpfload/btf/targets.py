"""What an object's names mean in the running kernel, resolved as libbpf does: the
attach targets of BTF-attached programs (fentry/FUNC, tp_btf/NAME, lsm/HOOK, iter/NAME,
MODULE:FUNC) and the object's externs (kfuncs and typed __ksym variables by BTF, in
vmlinux then modules, type-checked; typeless __ksym from /proc/kallsyms).

A missing or mismatched strong extern is not an error here: it is recorded with its
reason, and the linker raises it for the program that uses it, so the object's other
programs still load.
"""

from __future__ import annotations

from ..errors import BPFLoadError, RelocationError
from ..record import REQUIRED, Record
from ..sys.constants import AttachType, ProgType
from . import format as btf_format

TYPE_CHECKING = False  # (importing typing costs more than a warm load's own work)
if TYPE_CHECKING:  # pragma: no cover
    from .. import model
    from .kernel import KernelBTF
    from .spec import Spec

# libbpf's btf_get_kernel_prefix_kind(): what a BTF attach target is called in the kernel
_TARGET_NAMING = {
    AttachType.TRACE_RAW_TP: ("btf_trace_", btf_format.KIND_TYPEDEF, "tracepoint"),
    AttachType.LSM_MAC: ("bpf_lsm_", btf_format.KIND_FUNC, "LSM hook"),
    AttachType.LSM_CGROUP: ("bpf_lsm_", btf_format.KIND_FUNC, "LSM hook"),
    AttachType.TRACE_ITER: ("bpf_iter_", btf_format.KIND_FUNC, "iterator"),
}


class ExternTarget(Record):
    """Where an extern resolved in the kernel: a BTF id, in vmlinux or a module (kfuncs
    and typed __ksym variables), or an address from /proc/kallsyms (typeless __ksym)."""

    _fields = (
        ("btf_id", REQUIRED),
        ("btf_fd", 0),  # module BTF object fd; 0 for vmlinux
        ("kind", "kfunc"),
        ("addr", 0),  # typeless ksyms (btf_id 0): the symbol's kernel address
    )


class Externs(Record):
    """The object's externs resolved: name -> target, None where the kernel lacks it
    (NULL or a poisoned call for a __weak one); why each missing strong one is missing."""

    _fields = (
        ("targets", dict),  # dict[str, ExternTarget | None]
        ("unresolved", dict),  # dict[str, str]: strong externs that cannot be resolved
    )


def attach_target(kernel_btf: KernelBTF, prog: model.ProgramSpec) -> tuple[int, int]:
    """attach_btf_id and the module BTF fd (0: vmlinux) of a program whose section
    names a kernel function, tracepoint, LSM hook or iterator."""
    target = prog.attach_target
    if prog.prog_type == ProgType.EXT:
        raise BPFLoadError(f"program '{prog.name}': freplace programs replace a function of "
                           f"another loaded BPF program, which the object cannot name "
                           f"(libbpf needs bpf_program__set_attach_target() too)")
    if not target:
        raise BPFLoadError(f"program '{prog.name}': section '{prog.section}' names no "
                           f"attach target")
    module_name = None
    if ":" in target:  # SEC("fentry/module:function"), as libbpf allows
        module_name, target = target.split(":", 1)
    prefix, kind, what = _TARGET_NAMING.get(prog.attach_type,
                                            ("", btf_format.KIND_FUNC, "function"))
    if module_name is None:
        found = kernel_btf.find_id(prefix + target, kind)
    else:
        found = _find_in_module(kernel_btf, module_name, prefix + target, kind)
    if found is None:
        where = f"module {module_name}'s" if module_name not in (None, "vmlinux") \
            else "the kernel's"
        raise BPFLoadError(f"program '{prog.name}': {what} '{target}' is not in {where} "
                           f"BTF, so it cannot be attached to")
    tid, module = found
    return tid, kernel_btf.module_fd(module).fileno() if module else 0


def _find_in_module(kb: KernelBTF, module: str, name: str, kind: int):
    """libbpf's find_kernel_btf_id() for MODULE:NAME: vmlinux if it is named, then the
    modules whose name starts with the one given. (type id, module) or None."""
    if "vmlinux".startswith(module):
        tid = kb.vmlinux.find_one(name, kind)
        if tid is not None:
            return tid, ""
    for mod in kb.module_names():
        if mod.startswith(module):
            spec = kb.module(mod)
            own = [i for i in spec.find(name, kind) if i >= spec.first_id]
            if own:
                return own[0], mod
    return None


def resolve_externs(obj: model.ObjectSpec, kernel_btf: KernelBTF,
                    wanted: set[str] | None = None) -> Externs:
    """Resolve the object's kfunc and __ksym externs (`wanted`: only these names;
    __kconfig externs are values, see :mod:`..kconfig`)."""
    out = Externs()
    typeless: list[model.Extern] = []
    for ext in obj.externs.values():
        if ext.kind == "kconfig" or (wanted is not None and ext.name not in wanted):
            continue
        try:
            if ext.kind == "kfunc":
                out.targets[ext.name] = _kfunc(obj.btf, kernel_btf, ext)
            elif ksym_local_type(obj.btf, ext):
                out.targets[ext.name] = _ksym_var(obj.btf, kernel_btf, ext)
            else:
                typeless.append(ext)
        except RelocationError as e:
            out.targets[ext.name] = None
            out.unresolved[ext.name] = str(e)
    if typeless:
        addrs = kallsyms({e.name for e in typeless})
        for ext in typeless:
            addr = addrs.get(ext.name)
            out.targets[ext.name] = None if addr is None else ExternTarget(0, 0, ext.kind, addr)
    for name, target in out.targets.items():
        ext = obj.externs[name]
        if target is None and not ext.weak and name not in out.unresolved:
            typed = ext.kind == "kfunc" or ksym_local_type(obj.btf, ext)
            where = ("kernel's BTF (vmlinux or modules)" if typed
                     else "kernel's symbols (/proc/kallsyms)")
            what = "kfunc" if ext.kind == "kfunc" else "__ksym variable"
            out.unresolved[name] = (f"extern {what} '{name}' is not in the {where}; declare "
                                    f"it __weak to load without it")
    return out


def ksym_local_type(btf: Spec | None, ext: model.Extern) -> int:
    """The object's BTF type of a __ksym variable, modifiers skipped (0: typeless)."""
    if btf is None or not ext.btf_type or ext.kind == "kfunc":
        return 0
    return btf.skip_modifiers(btf[ext.btf_type].type)


def _kfunc(btf: Spec | None, kb: KernelBTF, ext: model.Extern) -> ExternTarget | None:
    from .core import types_are_compat
    from .spec import essential_name

    found = kb.find(essential_name(ext.name), btf_format.KIND_FUNC)
    if found is None:
        return None
    kspec, kid, module = found
    if btf is not None and ext.btf_type:
        local_proto = btf[ext.btf_type].type
        kernel_proto = kspec[kid].type
        if not types_are_compat(btf, local_proto, kspec, kernel_proto):
            if ext.weak:
                return None
            raise RelocationError(
                f"kfunc '{ext.name}': the object declares it as "
                f"{proto_text(btf, local_proto)} but the kernel "
                f"({module or 'vmlinux'}) has {proto_text(kspec, kernel_proto)}")
    btf_fd = kb.module_fd(module).fileno() if module else 0
    return ExternTarget(kid, btf_fd, ext.kind)


def _ksym_var(btf: Spec, kb: KernelBTF, ext: model.Extern) -> ExternTarget | None:
    from .core import types_are_compat

    found = kb.find(ext.name, btf_format.KIND_VAR)
    if found is None:
        return None
    kspec, kid, module = found
    local_type = ksym_local_type(btf, ext)
    kernel_type = kspec.skip_modifiers(kspec[kid].type)
    if not types_are_compat(btf, local_type, kspec, kernel_type):
        raise RelocationError(f"__ksym variable '{ext.name}': the object declares it as "
                              f"{btf.describe(local_type)} but the kernel has "
                              f"{kspec.describe(kernel_type)}")
    btf_fd = kb.module_fd(module).fileno() if module else 0
    return ExternTarget(kid, btf_fd, ext.kind)


def proto_text(btf: Spec, proto_id: int) -> str:
    """'int (struct task_struct *, u64)' for messages."""
    from . import types as btf_types

    proto = btf[proto_id]
    if not isinstance(proto, btf_types.FuncProto):
        return btf.describe(proto_id)
    args = ", ".join(btf.describe(p.type) for p in proto.params)
    return f"{btf.describe(proto.type)} ({args})"


def kallsyms(names: set[str]) -> dict[str, int]:
    """Addresses of `names` in /proc/kallsyms (libbpf's rule for typeless __ksym: data
    symbols may carry an LLVM '.llvm.NNN' suffix)."""
    out: dict[str, int] = {}
    try:
        with open("/proc/kallsyms", "rb") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise RelocationError(f"cannot read /proc/kallsyms for __ksym externs: "
                              f"{e.strerror}") from None
    wanted = {n.encode(): n for n in names}
    for line in lines:
        parts = line.split(None, 3)
        if len(parts) < 3:
            continue
        sym = parts[2]
        if parts[1] == b"d" and b".llvm." in sym:
            sym = sym[:sym.index(b".llvm.")]
        name = wanted.get(sym)
        if name is None:
            continue
        addr = int(parts[0], 16)
        if out.get(name, addr) != addr:
            raise RelocationError(f"__ksym '{name}' is ambiguous in /proc/kallsyms: "
                                  f"{out[name]:#x} or {addr:#x}")
        out[name] = addr
    return out
