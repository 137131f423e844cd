"""CO-RE: rewriting an object's relocatable instructions for the target kernel's BTF.

Every ``.BTF.ext`` CO-RE record names an instruction, a root type of the object's own
BTF, an access string ("0:1:2": array index, then member indexes and array indexes)
and what to compute (a field's byte offset, size, existence, signedness or bitfield
shifts; a type's id, existence, size or match; an enumerator's existence or value).
The local side is computed from the object's BTF, the target side from the candidate
types of the target BTF whose name, ignoring ``___flavour`` suffixes, equals the root
type's. The rules are libbpf's (tools/lib/bpf/relo_core.c): which types are
compatible, how anonymous members and (flexible) arrays are walked, that every
matching candidate must give the same answer, what is an error and what only poisons
the instruction (libbpf's ``call 0xbad2310``, which the verifier rejects only if the
instruction is reachable), and how each instruction class is patched after checking
that it holds the value computed from the object's own BTF.

Candidates are found with :meth:`.spec.Spec.find_flavors` (byte searches, no decoding of
the target's other types), so resolving against vmlinux decodes only the handful of
types the relocations actually walk.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Callable

from ..errors import BTFError, RelocationError
from . import ext as btf_ext
from . import format as btf_format
from . import types as btf_types
from .spec import Spec, essential_len, essential_name

#: Longest access path libbpf accepts (BPF_CORE_SPEC_MAX_LEN).
MAX_SPEC_LEN = 64
_M64 = (1 << 64) - 1

FIELD_KINDS = frozenset((btf_ext.CORE_FIELD_BYTE_OFFSET, btf_ext.CORE_FIELD_BYTE_SIZE,
                         btf_ext.CORE_FIELD_EXISTS, btf_ext.CORE_FIELD_SIGNED,
                         btf_ext.CORE_FIELD_LSHIFT_U64, btf_ext.CORE_FIELD_RSHIFT_U64))
TYPE_KINDS = frozenset((btf_ext.CORE_TYPE_ID_LOCAL, btf_ext.CORE_TYPE_ID_TARGET,
                        btf_ext.CORE_TYPE_EXISTS, btf_ext.CORE_TYPE_SIZE,
                        btf_ext.CORE_TYPE_MATCHES))
ENUMVAL_KINDS = frozenset((btf_ext.CORE_ENUMVAL_EXISTS, btf_ext.CORE_ENUMVAL_VALUE))

_ENUMS = (btf_format.KIND_ENUM, btf_format.KIND_ENUM64)
_COMPOSITES = (btf_format.KIND_STRUCT, btf_format.KIND_UNION)


class _Invalid(RelocationError):
    """A relocation that cannot be applied at all (libbpf fails the load); also what
    types_are_compat() raises on malformed (looping, too deep) BTF."""


# --- specs: a parsed access path on one BTF ---------------------------------------------


class _Acc:
    """One high-level step of an access path: a named member or an array index."""

    __slots__ = ("type_id", "idx", "name")

    def __init__(self, type_id: int, idx: int, name: str | None):
        self.type_id = type_id  # the struct/union (named member), or the element type
        self.idx = idx
        self.name = name  # member or enumerator name; None for an array index


class _CoreSpec:
    __slots__ = ("btf", "root_id", "accs", "raw", "bit_offset")

    def __init__(self, btf: Spec, root_id: int):
        self.btf = btf
        self.root_id = root_id
        self.accs: list[_Acc] = []
        self.raw: list[int] = []  # every step, anonymous members included
        self.bit_offset = 0


def _kind(btf: Spec, type_id: int) -> int:
    return btf.kind_of(type_id)


def _skip(btf: Spec, type_id: int) -> tuple[int, btf_types.Type]:
    tid = btf.skip_modifiers(type_id)
    return tid, btf[tid]


def _kind_compat(k1: int, k2: int) -> bool:
    return k1 == k2 or (k1 in _ENUMS and k2 in _ENUMS)


def _is_flex(btf: Spec, prev: _Acc | None, arr: btf_types.Array) -> bool:
    """A zero-length array that is the last member of the struct that holds it."""
    if prev is None or prev.name is None or arr.nelems > 0:
        return False
    holder = btf[prev.type_id]
    return isinstance(holder, btf_types.Struct) and prev.idx == len(holder.members) - 1


def _parse_access(access: str) -> list[int]:
    if not access or access[0] == ":":
        raise _Invalid(f"bad access string {access!r}")
    raw = []
    for part in access.split(":"):
        if not part.isdigit():
            raise _Invalid(f"bad access string {access!r}")
        raw.append(int(part))
    if len(raw) > MAX_SPEC_LEN:
        raise _Invalid(f"access string {access!r} is longer than {MAX_SPEC_LEN} steps")
    return raw


def _parse_spec(btf: Spec, relo: btf_ext.CoreRelo) -> _CoreSpec:
    """The local spec of a relocation (bpf_core_parse_spec)."""
    spec = _CoreSpec(btf, relo.type_id)
    if relo.kind in TYPE_KINDS:
        if relo.access != "0":
            raise _Invalid(f"type relocation with access string {relo.access!r} (not '0')")
        return spec
    raw = _parse_access(relo.access)
    spec.raw = raw
    tid, t = _skip(btf, relo.type_id)
    acc = _Acc(tid, raw[0], None)
    spec.accs.append(acc)
    if relo.kind in ENUMVAL_KINDS:
        if not isinstance(t, btf_types.Enum) or len(raw) > 1 or raw[0] >= len(t.values):
            raise _Invalid("enumerator relocation does not name an enumerator of an enum")
        acc.name = t.values[raw[0]].name
        return spec
    if relo.kind not in FIELD_KINDS:
        raise _Invalid(f"unknown CO-RE relocation kind {relo.kind}")
    spec.bit_offset = raw[0] * btf.size_of(tid) * 8
    for i in range(1, len(raw)):
        tid, t = _skip(btf, tid)
        idx = raw[i]
        if isinstance(t, btf_types.Struct):  # and Union
            if idx >= len(t.members):
                raise _Invalid(f"member index {idx} out of range of {btf.describe(tid)}")
            m = t.members[idx]
            spec.bit_offset += m.bit_offset
            if m.name:
                spec.accs.append(_Acc(tid, idx, m.name))
            tid = m.type
        elif isinstance(t, btf_types.Array):
            elem, _ = _skip(btf, t.type)
            if not _is_flex(btf, spec.accs[-1], t) and idx >= t.nelems:
                raise _Invalid(f"index {idx} out of range of {btf.describe(tid)}")
            spec.accs.append(_Acc(elem, idx, None))
            spec.bit_offset += idx * btf.size_of(elem) * 8
            tid = elem
        else:
            raise _Invalid(f"access step {i} reaches {btf.describe(tid)}, which is neither "
                           f"a struct, a union nor an array")
    return spec


# --- compatibility rules ----------------------------------------------------------------


def _fields_compat(lb: Spec, lid: int, tb: Spec, tid: int) -> bool:
    """bpf_core_fields_are_compat: may a local member's type be relocated to a target's?"""
    for _ in range(64):
        lid, lt = _skip(lb, lid)
        tid, tt = _skip(tb, tid)
        if lt.kind in _COMPOSITES and tt.kind in _COMPOSITES:
            return True
        if not _kind_compat(lt.kind, tt.kind):
            return False
        if lt.kind in (btf_format.KIND_PTR, btf_format.KIND_FLOAT):
            return True
        if lt.kind in (btf_format.KIND_FWD, btf_format.KIND_ENUM, btf_format.KIND_ENUM64):
            ln, tn = essential_name(lt.name), essential_name(tt.name)
            return not ln or not tn or ln == tn
        if lt.kind == btf_format.KIND_INT:  # only the deprecated bitfield-like ints are refused
            return lt.offset == 0 and tt.offset == 0
        if lt.kind == btf_format.KIND_ARRAY:
            lid, tid = lt.type, tt.type
            continue
        return False
    raise _Invalid("type chain too deep")


def types_are_compat(lb: Spec, lid: int, tb: Spec, tid: int, level: int = 32) -> bool:
    """bpf_core_types_are_compat: the rule for type-based relocations and for checking a
    kfunc's or typed ksym's declaration against the kernel's."""
    if not _kind_compat(_kind(lb, lid), _kind(tb, tid)):
        return False
    for _ in range(32):
        lid, lt = _skip(lb, lid)
        tid, tt = _skip(tb, tid)
        if not _kind_compat(lt.kind, tt.kind):
            return False
        k = lt.kind
        if k in (0, btf_format.KIND_STRUCT, btf_format.KIND_UNION, btf_format.KIND_ENUM,
                 btf_format.KIND_FWD, btf_format.KIND_ENUM64):
            return True
        if k == btf_format.KIND_INT:
            return lt.offset == 0 and tt.offset == 0
        if k in (btf_format.KIND_PTR, btf_format.KIND_ARRAY):
            lid, tid = lt.type, tt.type
            continue
        if k == btf_format.KIND_FUNC_PROTO:
            if len(lt.params) != len(tt.params):
                return False
            for lp, tp in zip(lt.params, tt.params):
                if level <= 0:
                    raise _Invalid("function prototypes nest too deeply")
                if not types_are_compat(lb, lb.skip_modifiers(lp.type), tb,
                                        tb.skip_modifiers(tp.type), level - 1):
                    return False
            lid, tid = lt.type, tt.type
            continue
        return False
    raise _Invalid("type chain too deep")


def _names_match(ln: str, tn: str) -> bool:
    if not tn:
        return not ln
    return essential_name(ln) == essential_name(tn)


def _enums_match(lt: btf_types.Enum, tt: btf_types.Enum) -> bool:
    if lt.size != tt.size or len(lt.values) > len(tt.values):
        return False
    return all(any(_names_match(lv.name, tv.name) for tv in tt.values) for lv in lt.values)


def types_match(lb: Spec, lid: int, tb: Spec, tid: int, behind_ptr: bool = False,
                level: int = 32) -> bool:
    """bpf_core_types_match: the stricter rule of bpf_core_type_matches()."""
    if level <= 0:
        raise _Invalid("types nest too deeply")
    for _ in range(32):
        lid, lt = _skip(lb, lid)
        tid, tt = _skip(tb, tid)
        if not _names_match(lt.name, tt.name):
            return False
        lk, tk = lt.kind, tt.kind
        if lk == 0:
            return tk == 0
        if lk == btf_format.KIND_FWD:
            if behind_ptr and tk != lk:
                return ((tk == btf_format.KIND_STRUCT and not lt.union)
                        or (tk == btf_format.KIND_UNION and lt.union))
            return tk == lk and lt.union == tt.union
        if lk in _ENUMS:
            return tk in _ENUMS and _enums_match(lt, tt)
        if lk in _COMPOSITES:
            if behind_ptr:
                if lk == tk:
                    return True
                return tk == btf_format.KIND_FWD and (lk == btf_format.KIND_UNION) == tt.union
            if lk != tk or len(lt.members) > len(tt.members):
                return False
            for lm in lt.members:
                if not any(_names_match(lm.name, tm.name)
                           and types_match(lb, lm.type, tb, tm.type, behind_ptr, level - 1)
                           for tm in tt.members):
                    return False
            return True
        if lk == btf_format.KIND_INT:
            return (lk == tk and lt.size == tt.size
                    and (lt.encoding & btf_format.INT_SIGNED)
                    == (tt.encoding & btf_format.INT_SIGNED))
        if lk == btf_format.KIND_PTR:
            if lk != tk:
                return False
            behind_ptr = True
            lid, tid = lt.type, tt.type
            continue
        if lk == btf_format.KIND_ARRAY:
            if lk != tk or lt.nelems != tt.nelems:
                return False
            lid, tid = lt.type, tt.type
            continue
        if lk == btf_format.KIND_FUNC_PROTO:
            if lk != tk or len(lt.params) != len(tt.params):
                return False
            for lp, tp in zip(lt.params, tt.params):
                if not types_match(lb, lp.type, tb, tp.type, behind_ptr, level - 1):
                    return False
            lid, tid = lt.type, tt.type
            continue
        return False
    raise _Invalid("type chain too deep")


# --- matching a local spec against one candidate ----------------------------------------


def _match_member(lb: Spec, lacc: _Acc, tb: Spec, targ_id: int, ts: _CoreSpec,
                  why: list[str]) -> int | None:
    """Find the local named member in target struct `targ_id` (looking into anonymous
    members too); extend the target spec and return the member's type id."""
    targ_id, tt = _skip(tb, targ_id)
    if not isinstance(tt, btf_types.Struct):
        return None
    lm = lb[lacc.type_id].members[lacc.idx]
    for i, m in enumerate(tt.members):
        if len(ts.raw) == MAX_SPEC_LEN:
            raise _Invalid(f"target access path longer than {MAX_SPEC_LEN} steps")
        ts.bit_offset += m.bit_offset
        ts.raw.append(i)
        if not m.name:
            found = _match_member(lb, lacc, tb, m.type, ts, why)
            if found is not None:
                return found
        elif m.name == lm.name:
            if _fields_compat(lb, lm.type, tb, m.type):
                ts.accs.append(_Acc(targ_id, i, m.name))
                return m.type
            why.append(f"field '{m.name}' of {tb.describe(targ_id)} has an incompatible "
                       f"type ({tb.describe(m.type)}, locally {lb.describe(lm.type)})")
            ts.bit_offset -= m.bit_offset
            ts.raw.pop()
            return None
        ts.bit_offset -= m.bit_offset
        ts.raw.pop()
    return None


def _spec_match(local: _CoreSpec, kind: int, tb: Spec, tid: int,
                why: list[str]) -> _CoreSpec | None:
    """bpf_core_spec_match: the target spec if candidate `tid` matches, else None."""
    ts = _CoreSpec(tb, tid)
    lb = local.btf
    if kind in TYPE_KINDS:
        if kind == btf_ext.CORE_TYPE_MATCHES:
            ok = types_match(lb, local.root_id, tb, tid)
        else:
            ok = types_are_compat(lb, local.root_id, tb, tid)
        if not ok:
            why.append(f"{tb.describe(tid)} is not compatible")
        return ts if ok else None
    lacc = local.accs[0]
    if kind in ENUMVAL_KINDS:
        tid, tt = _skip(tb, tid)
        if not isinstance(tt, btf_types.Enum):
            return None
        want = essential_name(lacc.name)
        for i, v in enumerate(tt.values):
            if essential_name(v.name) == want:
                ts.accs.append(_Acc(tid, i, v.name))
                ts.raw.append(i)
                return ts
        why.append(f"{tb.describe(tid)} has no enumerator {want}")
        return None
    targ_id = tid
    for i, lacc in enumerate(local.accs):
        targ_id, tt = _skip(tb, targ_id)
        if lacc.name is not None:
            holder = tb.describe(targ_id)
            nxt = _match_member(lb, lacc, tb, targ_id, ts, why)
            if nxt is None:
                if not why:
                    why.append(f"{holder} has no field '{lacc.name}'")
                return None
            targ_id = nxt
            continue
        if i > 0:
            if not isinstance(tt, btf_types.Array):
                why.append(f"{tb.describe(targ_id)} is not an array")
                return None
            if not _is_flex(tb, ts.accs[-1], tt) and lacc.idx >= tt.nelems:
                why.append(f"index {lacc.idx} is out of range of {tb.describe(targ_id)}")
                return None
            targ_id, _ = _skip(tb, tt.type)
        if len(ts.raw) == MAX_SPEC_LEN:
            raise _Invalid(f"target access path longer than {MAX_SPEC_LEN} steps")
        ts.accs.append(_Acc(targ_id, lacc.idx, None))
        ts.raw.append(lacc.idx)
        ts.bit_offset += lacc.idx * tb.size_of(targ_id) * 8
    return ts


# --- computing values -------------------------------------------------------------------


class _Res:
    """What one relocation resolves to (struct bpf_core_relo_res)."""

    __slots__ = ("orig_val", "new_val", "poison", "validate", "fail_memsz", "orig_sz",
                 "new_sz", "bit_offset", "why")

    def __init__(self):
        self.orig_val = self.new_val = 0
        self.poison = False
        self.validate = True
        self.fail_memsz = False
        self.orig_sz = self.new_sz = 0
        self.bit_offset = 0
        self.why = ""


class _Poison(Exception):
    pass


def _field_value(kind: int, spec: _CoreSpec | None):
    """(value, memory size, field type, validate) of a field relocation on one spec."""
    if kind == btf_ext.CORE_FIELD_EXISTS:
        return (1 if spec is not None else 0), 0, None, True
    if spec is None:
        raise _Poison()
    btf = spec.btf
    acc = spec.accs[-1]
    if acc.name is None:  # the last step is an array index
        if kind == btf_ext.CORE_FIELD_BYTE_OFFSET:
            return spec.bit_offset // 8, btf.size_of(acc.type_id), (btf, acc.type_id), True
        if kind == btf_ext.CORE_FIELD_BYTE_SIZE:
            return btf.size_of(acc.type_id), 0, None, True
        raise _Invalid(f"{btf_ext.CORE_KIND_NAMES[kind]} cannot be applied to an array element")
    holder = btf[acc.type_id]
    m = holder.members[acc.idx]
    ftid, mt = _skip(btf, m.type)
    bit_off = spec.bit_offset
    bit_sz = m.bitfield_size
    bitfield = bit_sz > 0
    if bitfield:
        byte_sz = getattr(mt, "size", 0)
        if not byte_sz:
            raise _Invalid(f"bitfield '{m.name}' has a type without a size")
        byte_off = bit_off // 8 // byte_sz * byte_sz
        # the smallest load (of at least the field type's size) holding the bitfield
        while bit_off + bit_sz - byte_off * 8 > byte_sz * 8:
            if byte_sz >= 8:
                raise _Invalid(f"bitfield '{m.name}' cannot be read with one 64-bit load")
            byte_sz *= 2
            byte_off = bit_off // 8 // byte_sz * byte_sz
    else:
        byte_sz = btf.size_of(ftid)
        byte_off = bit_off // 8
        bit_sz = byte_sz * 8
    # for bitfields the compiler and libbpf may legitimately disagree on everything
    # except signedness and the right shift, so only those are checked
    validate = not bitfield
    mem_sz, mem_type = 0, None
    if kind == btf_ext.CORE_FIELD_BYTE_OFFSET:
        val = byte_off
        if not bitfield:
            mem_sz, mem_type = byte_sz, (btf, ftid)
    elif kind == btf_ext.CORE_FIELD_BYTE_SIZE:
        val = byte_sz
    elif kind == btf_ext.CORE_FIELD_SIGNED:
        val = int((isinstance(mt, btf_types.Enum) and mt.signed)
                  or (isinstance(mt, btf_types.Int) and mt.signed))
        validate = True
    elif kind == btf_ext.CORE_FIELD_LSHIFT_U64:
        val = 64 - (bit_off + bit_sz - byte_off * 8)  # little endian
    else:  # CORE_FIELD_RSHIFT_U64
        val = 64 - bit_sz
        validate = True
    return val, mem_sz, mem_type, validate


def _type_value(kind: int, spec: _CoreSpec | None):
    if spec is None:  # type-based relocations are 0 when the target has no such type
        return 0
    if kind == btf_ext.CORE_TYPE_ID_TARGET:
        return spec.root_id
    if kind in (btf_ext.CORE_TYPE_EXISTS, btf_ext.CORE_TYPE_MATCHES):
        return 1
    return spec.btf.size_of(spec.root_id)  # CORE_TYPE_SIZE


def _enum_value(kind: int, spec: _CoreSpec | None):
    if kind == btf_ext.CORE_ENUMVAL_EXISTS:
        return 1 if spec is not None else 0
    if spec is None:
        raise _Poison()
    acc = spec.accs[0]
    t = spec.btf[acc.type_id]
    v = t.values[acc.idx].value
    if not isinstance(t, btf_types.Enum64):  # libbpf reads the 32-bit value as s32
        v &= 0xFFFFFFFF
        if v >= 1 << 31:
            v -= 1 << 32
    return v & _M64


def _is_unsigned_int(t: btf_types.Type) -> bool:
    return isinstance(t, btf_types.Int) and t.encoding != btf_format.INT_SIGNED


def _calc(kind: int, local: _CoreSpec, targ: _CoreSpec | None) -> _Res:
    """bpf_core_calc_relo: the local (expected) and target (new) values."""
    res = _Res()
    try:
        if kind in FIELD_KINDS:
            res.orig_val, res.orig_sz, orig_t, res.validate = _field_value(kind, local)
            res.new_val, res.new_sz, new_t, _ = _field_value(kind, targ)
            if res.orig_sz != res.new_sz:
                # only pointers and unsigned integers load correctly with another size
                ot = orig_t[0][orig_t[1]] if orig_t else None
                nt = new_t[0][new_t[1]] if new_t else None
                if not ((isinstance(ot, btf_types.Ptr) and isinstance(nt, btf_types.Ptr))
                        or (_is_unsigned_int(ot) and _is_unsigned_int(nt))):
                    res.fail_memsz = True
        elif kind in TYPE_KINDS:
            res.orig_val = _type_value(kind, local)
            res.validate = kind != btf_ext.CORE_TYPE_ID_TARGET  # ids change when linking
            res.new_val = _type_value(kind, targ)
        else:
            res.orig_val = _enum_value(kind, local)
            res.new_val = _enum_value(kind, targ)
    except _Poison:
        res.poison = True
    res.bit_offset = targ.bit_offset if targ is not None else 0
    return res


# --- candidates, caching, resolution ----------------------------------------------------


class CoreCache:
    """State shared by the relocations of one object against one target: the candidate
    list of each local root type (pruned as relocations rule candidates out, as libbpf
    does) and each relocation's result."""

    def __init__(self):
        self.cands: dict[int, list[tuple[Spec, int]]] = {}
        self.results: dict[tuple[int, str, int], _Res | RelocationError] = {}


ModuleSource = Callable[[], Sequence[Spec]]


def _find_cands(local: Spec, local_id: int, target: Spec,
                modules: ModuleSource | None) -> list[tuple[Spec, int]]:
    """Target types with the local root type's essential name and a compatible kind:
    vmlinux (or the given target) first; modules only if it has none."""
    lt = local[local_id]
    ess = essential_name(lt.name)
    kinds = _ENUMS if lt.kind in _ENUMS else (lt.kind,)
    cands = [(target, i) for i in target.find_flavors(ess, kinds)]
    if cands or modules is None:
        return cands
    for mod in modules():
        cands += [(mod, i) for i in mod.find_flavors(ess, kinds) if i >= mod.first_id]
    return cands


def describe(btf: Spec, relo: btf_ext.CoreRelo) -> str:
    """'byte_off struct task_struct.pid', 'enumval_value enum e::B', 'type_size u64'."""
    kind = relo.kind_name
    try:
        root = btf.describe(relo.type_id)
    except BTFError:
        return f"{kind} of type {relo.type_id} ({relo.access})"
    if relo.kind in TYPE_KINDS:
        return f"{kind} {root}"
    try:
        raw = _parse_access(relo.access)
        if relo.kind in ENUMVAL_KINDS:
            t = btf[btf.skip_modifiers(relo.type_id)]
            return f"{kind} {root}::{t.values[raw[0]].name}"
        spec = _parse_spec(btf, relo)
    except (_Invalid, BTFError, IndexError, AttributeError):
        return f"{kind} {root} ({relo.access})"
    path = ""
    for i, acc in enumerate(spec.accs):
        if acc.name is not None:
            path += "." + acc.name
        elif i > 0 or acc.idx > 0:
            path += f"[{acc.idx}]"
    return f"{kind} {root}{path}"


def _resolve(local: Spec, target: Spec, relo: btf_ext.CoreRelo, modules: ModuleSource | None,
             cache: CoreCache) -> _Res:
    try:
        spec = _parse_spec(local, relo)
    except _Invalid as e:
        raise _Invalid(f"cannot parse it: {e}") from None
    if relo.kind == btf_ext.CORE_TYPE_ID_LOCAL:  # needs no candidates
        res = _Res()
        res.validate = False
        res.orig_val = res.new_val = relo.type_id
        return res
    local_t = local[relo.type_id]
    if not local_t.name:
        raise _Invalid("CO-RE relocations of anonymous types are not supported")
    cands = cache.cands.get(relo.type_id)
    if cands is None:
        cands = _find_cands(local, relo.type_id, target, modules)
        cache.cands[relo.type_id] = cands
    why: list[str] = []
    matched = []
    res = None
    for tb, tid in cands:
        ts = _spec_match(spec, relo.kind, tb, tid, why)
        if ts is None:
            continue
        cres = _calc(relo.kind, spec, ts)
        if res is None:
            res = cres
        elif cres.bit_offset != res.bit_offset:
            raise _Invalid(f"ambiguous: target candidates put the field at different bit "
                           f"offsets ({res.bit_offset} and {cres.bit_offset})")
        elif cres.poison != res.poison or cres.new_val != res.new_val:
            raise _Invalid(f"ambiguous: target candidates give different values "
                           f"({res.new_val} and {cres.new_val})")
        matched.append((tb, tid))
    if matched:
        cands[:] = matched
        return res
    res = _calc(relo.kind, spec, None)
    if res.poison:
        what = btf_format.KIND_NAMES.get(local_t.kind, "type").lower()
        if not cands:
            res.why = (f"the target BTF has no {what} named '{essential_name(local_t.name)}'")
        else:
            res.why = (why[0] if why else "no target candidate matches") + " in the target BTF"
    return res


def resolve(local: Spec, target: Spec, relo: btf_ext.CoreRelo, fn_name: str = "", *,
            modules: ModuleSource | None = None, cache: CoreCache | None = None) -> _Res:
    """Resolve one relocation (memoised in `cache`); RelocationError if it is invalid."""
    cache = cache if cache is not None else CoreCache()
    key = (relo.type_id, relo.access, relo.kind)
    res = cache.results.get(key)
    if res is None:
        try:
            res = _resolve(local, target, relo, modules, cache)
        except (_Invalid, BTFError) as e:
            res = RelocationError(_error_text(local, relo, fn_name, str(e)))
        cache.results[key] = res
    if isinstance(res, RelocationError):
        raise res
    return res


def _error_text(local: Spec, relo: btf_ext.CoreRelo, fn_name: str, why: str) -> str:
    where = f"function '{fn_name}', " if fn_name else ""
    return f"CO-RE relocation {describe(local, relo)} ({where}instruction {relo.insn}): {why}"


# --- patching instructions --------------------------------------------------------------


#: The call libbpf (and cilium/ebpf) writes in place of an instruction whose CO-RE
#: relocation failed; the verifier reports it as an unknown function if it is reachable.
POISON_CALL = 0xBAD2310


def poison(insn) -> None:
    """Overwrite an instruction whose relocation failed with libbpf's poison call."""
    from .. import asm

    insn.op = asm.OP_CALL
    insn.dst = 0
    insn.src = 0
    insn.off = 0
    insn.imm = POISON_CALL


def _poison(code: list, idx: int) -> None:
    insn = code[idx]
    wide = insn.is_ld_imm64
    poison(insn)
    if wide:  # both slots, or the verifier refuses the second as an unknown opcode
        poison(code[idx + 1])


def _patch(code: list, idx: int, res: _Res) -> str | None:
    """bpf_core_patch_insn. Returns why the instruction was poisoned, or None."""
    from .. import asm

    insn = code[idx]
    cls = insn.cls
    orig, new = res.orig_val & _M64, res.new_val & _M64
    if cls in (asm.ALU, asm.ALU64):
        if insn.op & 0x08 != asm.SRC_K:
            raise _Invalid(f"instruction {idx} (op {insn.op:#04x}) has no immediate operand")
        if res.poison:
            _poison(code, idx)
            return res.why or "not found in the target BTF"
        if res.validate and insn.imm & _M64 != orig:
            raise _Invalid(f"instruction {idx} holds {insn.imm}, expected {res.orig_val}")
        insn.imm = asm.s32(new)
        return None
    if cls in (asm.LDX, asm.ST, asm.STX):
        if res.poison:
            _poison(code, idx)
            return res.why or "not found in the target BTF"
        if res.validate and insn.off & _M64 != orig:
            raise _Invalid(f"instruction {idx} has offset {insn.off}, expected "
                           f"{res.orig_val}")
        if new > 0x7FFF:
            raise _Invalid(f"offset {new} is too big for instruction {idx}")
        if res.fail_memsz:
            _poison(code, idx)
            return (f"the field is {res.new_sz} bytes in the target but {res.orig_sz} "
                    f"locally and is neither a pointer nor an unsigned integer, so the "
                    f"load cannot be resized")
        insn.off = new
        if res.new_sz != res.orig_sz:
            if insn.mem_size != res.orig_sz:
                raise _Invalid(f"instruction {idx} accesses {insn.mem_size} bytes, "
                               f"expected {res.orig_sz}")
            if res.new_sz not in (1, 2, 4, 8):
                raise _Invalid(f"cannot access {res.new_sz} bytes with one instruction")
            insn.set_mem_size(res.new_sz)
        return None
    if cls == asm.LD:
        nxt = code[idx + 1] if idx + 1 < len(code) else None
        if (not insn.is_ld_imm64 or insn.src or insn.off or nxt is None or nxt.op
                or nxt.dst or nxt.src or nxt.off):
            raise _Invalid(f"instruction {idx} is not a plain 64-bit immediate load")
        if res.poison:
            _poison(code, idx)
            return res.why or "not found in the target BTF"
        imm = asm.ld_imm64_value(insn, nxt)
        if res.validate and imm != orig:
            raise _Invalid(f"instruction {idx} loads {imm}, expected {orig}")
        asm.set_ld_imm64(insn, nxt, new)
        return None
    raise _Invalid(f"instruction {idx} (op {insn.op:#04x}) cannot be relocated")


def apply_core(local_btf: Spec, target_btf: Spec, relos: list[btf_ext.CoreRelo], code: list,
               fn_name: str, *, modules: ModuleSource | None = None,
               cache: CoreCache | None = None) -> dict[int, str]:
    """Apply `relos` to `code` (one function's instructions, patched in place).

    Returns {instruction index: description} of the relocations that could not be
    resolved; those instructions are poisoned (libbpf's ``call 0xbad2310``; both slots
    of a 64-bit load). Raises RelocationError for relocations libbpf refuses outright
    (malformed records, ambiguous candidates, an instruction that does not hold the
    value the object's BTF predicts). `modules` lists module BTFs to search when
    `target_btf` has no candidate for a type; `cache` shares candidates and results
    between the functions of one object.
    """
    cache = cache if cache is not None else CoreCache()
    poisoned: dict[int, str] = {}
    for relo in relos:
        if not 0 <= relo.insn < len(code):
            raise RelocationError(_error_text(local_btf, relo, fn_name,
                                              "instruction index out of range"))
        if code[relo.insn].is_ld_imm64 and relo.insn + 1 >= len(code):
            raise RelocationError(_error_text(local_btf, relo, fn_name,
                                              "truncated 64-bit load"))
        res = resolve(local_btf, target_btf, relo, fn_name, modules=modules, cache=cache)
        try:
            why = _patch(code, relo.insn, res)
        except _Invalid as e:
            raise RelocationError(_error_text(local_btf, relo, fn_name, str(e))) from None
        if why is not None:
            poisoned[relo.insn] = f"CO-RE relocation {describe(local_btf, relo)}: {why}"
    return poisoned


__all__ = ["CoreCache", "apply_core", "describe", "resolve", "types_are_compat",
           "types_match", "essential_len", "essential_name"]
