"""Preparing an object's BTF for BTF_LOAD, as libbpf does.

clang leaves DATASEC sizes and global variables' offsets at zero (only the ELF knows
them); extern-backed DATASECs (.ksyms) hold FUNCs and extern VARs the kernel refuses;
and a kernel older than the compiler may not know some kinds. The result keeps every
type id of the object, so func_info and CO-RE records stay valid.
"""

from __future__ import annotations

from ..errors import BTFError
from ..model import KCONFIG_SEC, KSYMS_SEC
from . import format as btf_format
from . import types as btf_types
from .encode import StringTable, encode

DUMMY_KSYM = "dummy_ksym"


class Features:
    """Which BTF kinds the kernel accepts (all True unless probed otherwise)."""

    def __init__(self, func=True, datasec=True, global_func=True, float_=True, decl_tag=True,
                 type_tag=True, enum64=True, qmark_datasec=True):
        self.func = func
        self.datasec = datasec
        self.global_func = global_func
        self.float = float_
        self.decl_tag = decl_tag
        self.type_tag = type_tag
        self.enum64 = enum64
        self.qmark_datasec = qmark_datasec

    def missing(self) -> list[str]:
        return [k.rstrip("_") for k, v in vars(self).items() if not v]


def program_types(obj, features: Features | None = None,
                  kconfig_offsets: dict[str, int] | None = None) -> tuple[list[btf_types.Type],
                                                                          list[str]]:
    """The object's types fixed up for the kernel, and notes on what was changed.

    `obj` is a model.ObjectSpec with BTF. Ids are preserved; at most one type (the
    dummy VAR for kfunc externs) is appended at the end.
    """
    btf = obj.btf
    types = [btf.fresh(i) for i in btf.ids()]
    first = btf.first_id
    notes: list[str] = []

    def get(type_id: int) -> btf_types.Type:
        if not first <= type_id < first + len(types):
            raise BTFError(f"BTF type id {type_id} out of range")
        return types[type_id - first]

    for t in list(types):
        if not isinstance(t, btf_types.Datasec):
            continue
        if t.name == KSYMS_SEC:
            _fix_ksyms(t, types, get, first)
        elif t.name == KCONFIG_SEC:
            if kconfig_offsets is None:  # where the reader laid the values out
                kconfig_offsets = {e.name: e.offset for e in obj.externs.values()
                                   if e.kind == "kconfig"}
            _fix_kconfig(t, get, kconfig_offsets)
        else:
            _fix_datasec(obj, t, get)
    _hidden_functions_static(obj, types)
    if features is not None:
        notes += _sanitize(types, features)
    return types, notes


def loadable(obj, features: Features | None = None) -> tuple[bytes, dict[str, int], list[str]]:
    """The object's BTF as BTF_LOAD takes it (program_types encoded), the offsets in it
    of the strings line_info records name (file names and source lines: they must be
    in the blob), and notes on what was changed.

    Without `features` it depends on the object alone, so objcache keeps it with the
    cached model (ObjectSpec.loadable_btf) and a warm load neither fixes up nor encodes.
    """
    types, notes = program_types(obj, features)
    strings = StringTable()
    offsets: dict[str, int] = {}
    for fn in obj.functions.values():
        for li in fn.line_info:
            offsets[li.file] = strings.add(li.file)
            offsets[li.line_text] = strings.add(li.line_text)
    return encode(types, strings), offsets, notes


def _hidden_functions_static(obj, types: list[btf_types.Type]) -> None:
    """A global subprogram of .text with hidden visibility (__hidden) is verified like a
    static one, in its callers' context: libbpf marks its FUNC static."""
    hidden = {fn.name for fn in obj.functions.values()
              if fn.section == ".text" and fn.is_global and fn.hidden}
    for t in types:
        if hidden and isinstance(t, btf_types.Func) and t.linkage == btf_format.LINKAGE_GLOBAL \
                and t.name in hidden:
            t.linkage = btf_format.LINKAGE_STATIC
            hidden.discard(t.name)  # the first FUNC of that name, as libbpf


def _int32(types: list[btf_types.Type], first: int) -> int:
    for i, t in enumerate(types):
        if isinstance(t, btf_types.Int) and t.bits == 32:
            return first + i
    types.append(btf_types.Int("int", 4, btf_format.INT_SIGNED))
    return first + len(types) - 1


def _fix_ksyms(sec: btf_types.Datasec, types, get, first) -> None:
    int_id = _int32(types, first)
    dummy_id = 0
    for i, vsi in enumerate(sec.vars):
        t = get(vsi.type)
        if isinstance(t, btf_types.Func):
            if not dummy_id:
                types.append(btf_types.Var(DUMMY_KSYM, int_id, btf_format.LINKAGE_GLOBAL))
                dummy_id = first + len(types) - 1
            proto = get(t.type)
            if not isinstance(proto, btf_types.FuncProto):
                raise BTFError(f"kfunc '{t.name}' has no function prototype in the BTF")
            for p in proto.params:
                if p.type and not p.name:
                    p.name = DUMMY_KSYM
            t.linkage = btf_format.LINKAGE_GLOBAL
            vsi.type = dummy_id
        elif isinstance(t, btf_types.Var):
            t.linkage = btf_format.LINKAGE_GLOBAL
            t.type = int_id
        vsi.offset = 4 * i
        vsi.size = 4
    sec.size = 4 * len(sec.vars)


def _fix_kconfig(sec: btf_types.Datasec, get, offsets: dict[str, int]) -> None:
    end = 0
    for vsi in sec.vars:
        var = get(vsi.type)
        if not isinstance(var, btf_types.Var):
            raise BTFError(f"DATASEC '{sec.name}' holds a non-variable type {vsi.type}")
        var.linkage = btf_format.LINKAGE_GLOBAL
        if var.name in offsets:
            vsi.offset = offsets[var.name]
        end = max(end, vsi.offset + vsi.size)
    sec.size = max(sec.size, end)
    sec.vars.sort(key=lambda v: v.offset)


def _fix_datasec(obj, sec: btf_types.Datasec, get) -> None:
    fix_offsets = False
    if sec.size == 0:
        size = obj.section_sizes.get(sec.name, 0)
        if not size:
            raise BTFError(f"DATASEC '{sec.name}' has no ELF section to take its size from")
        sec.size = size
        fix_offsets = True
    for vsi in sec.vars:
        var = get(vsi.type)
        if not isinstance(var, btf_types.Var):
            raise BTFError(f"DATASEC '{sec.name}' holds a non-variable type {vsi.type}")
        if var.linkage in (btf_format.LINKAGE_STATIC, btf_format.LINKAGE_EXTERN):
            continue
        sym = obj.data_symbols.get(var.name)
        if sym is None:
            raise BTFError(f"variable '{var.name}' of '{sec.name}' has no ELF symbol")
        offset, hidden = sym
        if fix_offsets:
            vsi.offset = offset
        if hidden:
            var.linkage = btf_format.LINKAGE_STATIC
    sec.vars.sort(key=lambda v: v.offset)


def _sanitize(types: list[btf_types.Type], f: Features) -> list[str]:
    """Replace kinds the kernel lacks with ones it accepts (libbpf's substitutions)."""
    notes: set[str] = set()
    placeholder = None
    for i, t in enumerate(types):
        new = None
        if (not f.datasec and isinstance(t, btf_types.Var)) or (not f.decl_tag and
                                                         isinstance(t, btf_types.DeclTag)):
            new = btf_types.Int(t.name, 1, 0, 0, 8)
        elif not f.datasec and isinstance(t, btf_types.Datasec):
            name = t.name.replace(".", "_").replace("?", "_")
            new = btf_types.Struct(name, t.size,
                                   [btf_types.Member("", v.type, v.offset * 8) for v in t.vars])
        elif not f.qmark_datasec and isinstance(t, btf_types.Datasec) and t.name.startswith("?"):
            t.name = "_" + t.name[1:]
        elif not f.func and isinstance(t, btf_types.FuncProto):
            new = btf_types.Enum(t.name, 4, [btf_types.EnumValue(p.name, 0) for p in t.params])
        elif not f.func and isinstance(t, btf_types.Func):
            new = btf_types.Typedef(t.name, t.type)
        elif not f.global_func and isinstance(t, btf_types.Func):
            t.linkage = btf_format.LINKAGE_STATIC
        elif not f.float and isinstance(t, btf_types.Float):
            new = btf_types.Struct("", t.size, [])
        elif not f.type_tag and isinstance(t, btf_types.TypeTag):
            new = btf_types.Const("", t.type)
        elif not f.enum64 and isinstance(t, btf_types.Enum64):
            if placeholder is None:
                types.append(btf_types.Int("enum64_placeholder", 1, 0))
                placeholder = len(types)  # id = index + 1 for a base blob
            new = btf_types.Union(t.name, t.size,
                                  [btf_types.Member(v.name, placeholder, 0) for v in t.values])
        elif not f.enum64 and isinstance(t, btf_types.Enum) and t.signed:
            t.signed = False
        if new is not None:
            notes.add(f"BTF {t.kind_name} replaced by {new.kind_name} (the kernel lacks it)")
            types[i] = new
    return sorted(notes)
