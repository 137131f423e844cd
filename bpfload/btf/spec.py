"""Decoding BTF: a :class:`Spec` is one BTF blob, decoded lazily.

Opening a spec parses the header and scans the type section once into two compact
arrays (the byte offset and the name offset of every type); nothing else is built
until a caller asks for a type. Looking a name up is a byte search in the string
section followed by a byte search in the name-offset array, both running in C, so
finding a handful of functions in vmlinux's 100k+ types never builds a Python object
per type. Split BTF (kernel modules) continues the ids and strings of its base.
"""

from __future__ import annotations

import struct
import sys
from array import array

from ..errors import BTFError
from . import format as btf_format
from . import types as btf_types

_MAX_DEPTH = 64  # longest chain of modifiers/typedefs we follow before calling it a loop

_TRAILERS = [None] * 32
for _kind, _trailer in btf_format.TRAILER.items():
    _TRAILERS[_kind] = _trailer


def essential_len(name: str) -> int:
    """Length of `name` without its ``___flavour`` suffix (libbpf's rule: the suffix
    starts at the last ``X___Y`` where neither X nor Y is an underscore)."""
    for i in range(len(name) - 5, -1, -1):
        if name[i] != "_" and name[i + 1:i + 4] == "___" and name[i + 4] != "_":
            return i + 1
    return len(name)


def essential_name(name: str) -> str:
    """`name` without its CO-RE ``___flavour`` suffix: task_struct___old -> task_struct."""
    return name[:essential_len(name)]


def scan(types: bytes) -> tuple[array, array]:
    """Byte offset and name offset of every type record in a BTF type section."""
    offsets = array("I")
    names = array("I")
    add_off = offsets.append
    add_name = names.append
    unpack = btf_format.TYPE.unpack_from
    trailers = _TRAILERS
    pos = 0
    end = len(types)
    try:
        while pos < end:
            name_off, info, _ = unpack(types, pos)
            extra = trailers[(info >> 24) & 0x1F]
            if extra is None:
                raise BTFError(f"unknown BTF kind {(info >> 24) & 0x1F} at type section "
                               f"offset {pos}")
            add_off(pos)
            add_name(name_off)
            pos += 12 + extra[0] + extra[1] * (info & 0xFFFF)
    except struct.error:
        raise BTFError(f"BTF type section truncated at offset {pos}") from None
    if pos != end:
        raise BTFError(f"BTF type section truncated: last type ends at {pos}, section at {end}")
    return offsets, names


class Spec:
    """One BTF blob (an object's .BTF, vmlinux, or a module's split BTF)."""

    def __init__(self, data: bytes, base: Spec | None = None, *, name: str = "",
                 index: tuple[array, array] | None = None):
        self.name = name
        self.base = base
        self.raw = bytes(data)
        if len(self.raw) < btf_format.HEADER_SIZE:
            raise BTFError(f"BTF {name or 'blob'} too short for a header ({len(self.raw)} bytes)")
        magic, version, flags, hdr_len, type_off, type_len, str_off, str_len = \
            btf_format.HEADER.unpack_from(self.raw)
        if magic != btf_format.MAGIC:
            if magic == 0x9FEB:
                raise BTFError("big-endian BTF is not supported")
            raise BTFError(f"not BTF data (magic {magic:#06x})")
        if version != btf_format.VERSION:
            raise BTFError(f"unsupported BTF version {version}")
        if hdr_len < btf_format.HEADER_SIZE or hdr_len > len(self.raw):
            raise BTFError(f"bad BTF header length {hdr_len}")
        self.flags = flags
        body = hdr_len
        t0, t1 = body + type_off, body + type_off + type_len
        s0, s1 = body + str_off, body + str_off + str_len
        if t1 > len(self.raw) or s1 > len(self.raw) or type_off % 4:
            raise BTFError("BTF section offsets point past the end of the data")
        # no copies of vmlinux's megabytes: types are a view, strings are searched in
        # place between _s0 and _s1
        self._t0, self._t1 = t0, t1
        self._types = memoryview(self.raw)[t0:t1]
        self._s0, self._s1 = s0, s1
        if str_len and self.raw[s1 - 1] != 0:
            raise BTFError("BTF string section is not NUL-terminated")
        if base is None and str_len and self.raw[s0] != 0:
            raise BTFError("BTF string section does not start with an empty string")
        self.first_id = base.next_id if base is not None else 1
        self.str_base = base.str_end if base is not None else 0
        self._offsets, self._name_offs = index if index is not None else scan(self._types)
        self._cache: dict[int, btf_types.Type] = {}
        self._name_bytes: bytes | None = None

    def state(self) -> tuple[bytes, bytes, bytes, bytes]:
        """This blob as bytes only (for objcache, see model.ObjectSpec.btf): the data,
        the name and the scan, so that :meth:`from_state` need not scan again."""
        if self.base is not None:
            raise ValueError("split BTF is not kept by itself")
        name = self.name.encode("utf-8", "surrogateescape")
        return self.raw, name, self._offsets.tobytes(), self._name_offs.tobytes()

    @classmethod
    def from_state(cls, state: tuple[bytes, bytes, bytes, bytes]) -> Spec:
        raw, name, offsets, name_offs = state
        index = array("I"), array("I")
        index[0].frombytes(offsets)
        index[1].frombytes(name_offs)
        return cls(raw, name=name.decode("utf-8", "surrogateescape"), index=index)

    # --- identity and size -----------------------------------------------------------

    @property
    def count(self) -> int:
        """Number of types in this blob (void not counted)."""
        return len(self._offsets)

    @property
    def next_id(self) -> int:
        return self.first_id + len(self._offsets)

    @property
    def str_end(self) -> int:
        return self.str_base + self._s1 - self._s0

    def index(self) -> tuple[array, array]:
        """The scan result, for callers that cache it across runs."""
        return self._offsets, self._name_offs

    def __len__(self) -> int:
        return self.next_id  # valid ids are 0 .. next_id - 1

    def __contains__(self, type_id: int) -> bool:
        return 0 <= type_id < self.next_id

    # --- strings ---------------------------------------------------------------------

    def string(self, off: int) -> str:
        if off < self.str_base:
            if self.base is None:  # pragma: no cover - str_base is 0 without a base
                raise BTFError(f"BTF string offset {off} out of range")
            return self.base.string(off)
        pos = self._s0 + off - self.str_base
        if pos >= self._s1:
            raise BTFError(f"BTF string offset {off} out of range")
        end = self.raw.find(b"\0", pos, self._s1)
        return self.raw[pos:end].decode("utf-8", "replace")

    @property
    def _strings(self) -> bytes:
        """This blob's own string section (a copy: for tests and tools)."""
        return self.raw[self._s0:self._s1]

    def string_offset(self, s: str) -> int | None:
        """Offset of the string `s` in this blob (own strings first), or None."""
        if not s:
            return 0
        own = self._string_offsets(s, False)
        if own:
            return own[0]
        return self.base.string_offset(s) if self.base is not None else None

    # --- types -----------------------------------------------------------------------

    def __getitem__(self, type_id: int) -> btf_types.Type:
        if type_id == 0:
            return btf_types.Void()
        if type_id < self.first_id:
            if self.base is None or type_id < 0:
                raise BTFError(f"BTF type id {type_id} out of range")
            return self.base[type_id]
        t = self._cache.get(type_id)
        if t is None:
            idx = type_id - self.first_id
            if idx >= len(self._offsets):
                raise BTFError(f"BTF type id {type_id} out of range (last is {self.next_id - 1})")
            t = self._decode(self._offsets[idx])
            self._cache[type_id] = t
        return t

    def fresh(self, type_id: int) -> btf_types.Type:
        """A newly decoded copy of one of this blob's own types, safe to modify (what
        indexing returns is shared through the cache)."""
        idx = type_id - self.first_id
        if not 0 <= idx < len(self._offsets):
            raise BTFError(f"BTF type id {type_id} is not one of this blob's types")
        return self._decode(self._offsets[idx])

    def kind_of(self, type_id: int) -> int:
        """The BTF kind of a type without decoding it."""
        if type_id == 0:
            return 0
        if type_id < self.first_id:
            return self.base.kind_of(type_id)
        offset = self._offsets[type_id - self.first_id]
        info = btf_format.U32.unpack_from(self._types, offset + 4)[0]
        return btf_format.info_kind(info)

    def ids(self):
        """Every type id of this blob (not its base)."""
        return range(self.first_id, self.next_id)

    def items(self):
        for i in self.ids():
            yield i, self[i]

    def find(self, name: str, kind: int | None = None) -> list[int]:
        """Ids of the types called `name` (optionally of one BTF kind), base blob first."""
        out = self.base.find(name, kind) if self.base is not None else []
        offs = []
        spec = self
        while spec is not None:  # a split blob may name its types with base strings
            offs += spec._string_offsets(name, False)
            spec = spec.base
        own = set()
        for off in offs:
            own.update(self._ids_with_name_off(off))
        if kind is not None:
            own = [i for i in own if self.kind_of(i) == kind]
        return out + sorted(own)

    def find_flavors(self, name: str, kinds: tuple[int, ...] | None = None) -> list[int]:
        """Ids of the types whose essential name (the name without a ``___flavour``
        suffix, see :func:`essential_name`) is `name`, optionally of some BTF kinds,
        base blob first. This is how CO-RE finds its candidates."""
        out = self.base.find_flavors(name, kinds) if self.base is not None else []
        offs = []
        spec = self
        while spec is not None:
            offs += spec._string_offsets(name, True)
            spec = spec.base
        own = set()
        for off in offs:
            own.update(self._ids_with_name_off(off))
        if kinds is not None:
            own = [i for i in own if self.kind_of(i) in kinds]
        return out + sorted(own)

    def _string_offsets(self, name: str, flavors: bool) -> list[int]:
        """Offsets of this blob's own strings equal to `name` (the first one: BTF strings
        are deduplicated) or, with `flavors`, of all strings whose essential name is
        `name` (``name``, ``name___v2``...), searched as bytes in place."""
        needle = name.encode()
        if not needle:
            return []
        raw, s0, s1 = self.raw, self._s0, self._s1
        n = len(needle)
        hits = []
        # a split blob's first string has no NUL before it
        pos = s0 - 1 if raw.startswith(needle, s0, s1) else raw.find(b"\0" + needle, s0, s1)
        while pos >= 0:
            start = pos + 1
            nxt = start + n
            if raw[nxt] == 0:
                hits.append(start)
                if not flavors:
                    break
            elif flavors and raw.startswith(b"___", nxt, s1):
                full = raw[start:raw.find(b"\0", nxt, s1)].decode("utf-8", "replace")
                if essential_len(full) == len(name):  # not 'name___a___b'
                    hits.append(start)
            pos = raw.find(b"\0" + needle, start, s1)
        return [self.str_base + h - s0 for h in hits]

    def find_one(self, name: str, kind: int) -> int | None:
        found = self.find(name, kind)
        return found[0] if found else None

    def _ids_with_name_off(self, off: int) -> list[int]:
        # Search the packed name offsets as bytes (in C); only 4-aligned hits are records.
        if self._name_bytes is None:
            self._name_bytes = self._name_offs.tobytes()
        data = self._name_bytes
        needle = off.to_bytes(4, sys.byteorder)
        hits = []
        pos = data.find(needle)
        while pos >= 0:
            if pos % 4 == 0:
                hits.append(self.first_id + pos // 4)
                pos = data.find(needle, pos + 4)
            else:
                pos = data.find(needle, pos + 1)
        return hits

    # --- decoding one record ---------------------------------------------------------

    def _decode(self, pos: int) -> btf_types.Type:
        try:
            return self._decode_record(pos)
        except (struct.error, IndexError, ValueError) as e:
            raise BTFError(f"malformed BTF type at offset {pos}: {e}") from None

    def _decode_record(self, pos: int) -> btf_types.Type:
        data = self._types
        name_off, info, size_or_type = btf_format.TYPE.unpack_from(data, pos)
        kind = btf_format.info_kind(info)
        vlen = btf_format.info_vlen(info)
        kflag = btf_format.info_kflag(info)
        name = self.string(name_off)
        p = pos + btf_format.TYPE_SIZE
        if kind == btf_format.KIND_INT:
            (enc,) = btf_format.U32.unpack_from(data, p)
            return btf_types.Int(name, size_or_type, (enc >> 24) & 0x0F, (enc >> 16) & 0xFF,
                                 enc & 0xFF)
        if kind == btf_format.KIND_PTR:
            return btf_types.Ptr(name, size_or_type)
        if kind == btf_format.KIND_ARRAY:
            elem, index, nelems = btf_format.ARRAY.unpack_from(data, p)
            return btf_types.Array(name, elem, index, nelems)
        if kind in (btf_format.KIND_STRUCT, btf_format.KIND_UNION):
            members = []
            for i in range(vlen):
                m_name, m_type, m_off = btf_format.MEMBER.unpack_from(data, p + 12 * i)
                if kflag:
                    members.append(btf_types.Member(self.string(m_name), m_type, m_off & 0xFFFFFF,
                                            m_off >> 24))
                else:
                    members.append(btf_types.Member(self.string(m_name), m_type, m_off))
            cls = btf_types.Struct if kind == btf_format.KIND_STRUCT else btf_types.Union
            return cls(name, size_or_type, members)
        if kind == btf_format.KIND_ENUM:
            values = []
            for i in range(vlen):
                v_name, v_val = btf_format.ENUM_VAL.unpack_from(data, p + 8 * i)
                if not kflag:
                    v_val &= 0xFFFFFFFF
                values.append(btf_types.EnumValue(self.string(v_name), v_val))
            return btf_types.Enum(name, size_or_type, values, kflag)
        if kind == btf_format.KIND_ENUM64:
            values = []
            for i in range(vlen):
                v_name, lo, hi = btf_format.ENUM64_VAL.unpack_from(data, p + 12 * i)
                v = (hi << 32) | lo
                if kflag and v >= 1 << 63:
                    v -= 1 << 64
                values.append(btf_types.EnumValue(self.string(v_name), v))
            return btf_types.Enum64(name, size_or_type, values, kflag)
        if kind == btf_format.KIND_FWD:
            return btf_types.Fwd(name, kflag)
        if kind == btf_format.KIND_TYPEDEF:
            return btf_types.Typedef(name, size_or_type)
        if kind == btf_format.KIND_VOLATILE:
            return btf_types.Volatile(name, size_or_type)
        if kind == btf_format.KIND_CONST:
            return btf_types.Const(name, size_or_type)
        if kind == btf_format.KIND_RESTRICT:
            return btf_types.Restrict(name, size_or_type)
        if kind == btf_format.KIND_TYPE_TAG:
            return btf_types.TypeTag(name, size_or_type)
        if kind == btf_format.KIND_FUNC:
            return btf_types.Func(name, size_or_type, vlen)
        if kind == btf_format.KIND_FUNC_PROTO:
            params = []
            for i in range(vlen):
                p_name, p_type = btf_format.PARAM.unpack_from(data, p + 8 * i)
                params.append(btf_types.Param(self.string(p_name), p_type))
            return btf_types.FuncProto(name, size_or_type, params)
        if kind == btf_format.KIND_VAR:
            (linkage,) = btf_format.U32.unpack_from(data, p)
            return btf_types.Var(name, size_or_type, linkage)
        if kind == btf_format.KIND_DATASEC:
            secinfos = [btf_types.VarSecinfo(*btf_format.VAR_SECINFO.unpack_from(data, p + 12 * i))
                        for i in range(vlen)]
            return btf_types.Datasec(name, size_or_type, secinfos)
        if kind == btf_format.KIND_FLOAT:
            return btf_types.Float(name, size_or_type)
        if kind == btf_format.KIND_DECL_TAG:
            (component,) = btf_format.S32.unpack_from(data, p)
            return btf_types.DeclTag(name, size_or_type, component)
        raise BTFError(f"unknown BTF kind {kind}")

    # --- navigation ------------------------------------------------------------------

    def skip_modifiers(self, type_id: int) -> int:
        """Follow typedefs and qualifiers to the underlying type id."""
        return self._skip(type_id, btf_types.MODIFIERS)

    def _skip(self, type_id: int, kinds: tuple) -> int:
        for _ in range(_MAX_DEPTH):
            t = self[type_id]
            if not isinstance(t, kinds):
                return type_id
            type_id = t.type
        raise BTFError(f"BTF type chain too long or looping at type {type_id}")

    def size_of(self, type_id: int) -> int:
        """sizeof() of a type, in bytes."""
        mult = 1
        for _ in range(_MAX_DEPTH):
            t = self[type_id]
            if isinstance(t, (btf_types.Int, btf_types.Enum, btf_types.Struct, btf_types.Float,
                              btf_types.Datasec)):
                return mult * t.size
            if isinstance(t, btf_types.Ptr):
                return mult * 8
            if isinstance(t, btf_types.Array):
                mult *= t.nelems
                type_id = t.type
            elif isinstance(t, (*btf_types.MODIFIERS, btf_types.Var)):
                type_id = t.type
            else:
                raise BTFError(f"type {type_id} ({t.kind_name} {t.name!r}) has no size")
        raise BTFError(f"BTF type chain too long or looping at type {type_id}")

    def align_of(self, type_id: int, _depth: int = 0) -> int:
        """The alignment of a type, by libbpf's btf__align_of() rules (a packed struct,
        one whose members are not all naturally aligned, aligns to 1)."""
        if _depth > _MAX_DEPTH:
            raise BTFError(f"BTF type chain too long or looping at type {type_id}")
        t = self[type_id]
        if isinstance(t, (btf_types.Int, btf_types.Float, btf_types.Enum)):
            return min(t.size, 8)
        if isinstance(t, btf_types.Ptr):
            return 8
        if isinstance(t, (btf_types.Array, *btf_types.MODIFIERS, btf_types.Var)):
            return self.align_of(t.type, _depth + 1)
        if isinstance(t, btf_types.Struct):
            align = 1
            for m in t.members:
                a = self.align_of(m.type, _depth + 1)
                if m.bitfield_size == 0 and m.bit_offset % (8 * a):
                    return 1  # packed
                align = max(align, a)
            return 1 if t.size % align else align
        raise BTFError(f"type {type_id} ({t.kind_name} {t.name!r}) has no alignment")

    def describe(self, type_id: int, _depth: int = 0) -> str:
        """A short C-like name for messages: 'struct task_struct', 'int', 'u32 *'."""
        if _depth > _MAX_DEPTH:  # malformed BTF: a pointer or qualifier loop
            raise BTFError(f"BTF type chain too long or looping at type {type_id}")
        t = self[type_id]
        if isinstance(t, btf_types.Void):
            return "void"
        if isinstance(t, btf_types.Ptr):
            return self.describe(t.type, _depth + 1) + " *"
        if isinstance(t, btf_types.Array):
            return f"{self.describe(t.type, _depth + 1)}[{t.nelems}]"
        if isinstance(t, btf_types.QUALIFIERS):
            return f"{t.kind_name.lower()} {self.describe(t.type, _depth + 1)}"
        prefix = {btf_types.Struct: "struct ", btf_types.Union: "union ",
                  btf_types.Enum: "enum ", btf_types.Enum64: "enum ",
                  btf_types.Fwd: "struct "}.get(type(t), "")
        if isinstance(t, btf_types.Fwd) and t.union:
            prefix = "union "
        return prefix + (t.name or f"<anon {t.kind_name.lower()} #{type_id}>")

